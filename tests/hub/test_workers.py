"""The hub's workers (`[hub] workers = N`, payg/wiring/hub_workers.py): processes that share the controllers'
messages through MQTT shared subscriptions on a real Mosquitto and hand them to the front over a pipe.

The pipe's own rules are tested on an os.pipe; the rest with a real broker, a real controller (its credits are
events with a seq, kept in its journal for replays) and real worker processes, one of them SIGKILLed mid-stream."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from ledgers.mock import MockLedger
from payg.adapters.clocks import SystemClock
from payg.adapters.config import hub as hub_config
from payg.adapters.mqtt import client as mqtt_client
from payg.adapters.mqtt.client import Connection
from payg.adapters.mqtt.hub_pipe import PipeSink, feed
from payg.wiring.hub import build_hub
from tests.support import launcher, terminate, wait_until
from tests.support.mqtt_beds import PASSWORDS, controller_toml, fleet_broker


class Recorder:
    """A front's sink that keeps everything, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def status(self, controller, value):
        self.calls.append(("status", controller, value))

    def state(self, controller, socket, body):
        self.calls.append(("state", controller, socket, body))

    def event(self, controller, body):
        self.calls.append(("event", controller, body))


def pipe(batch_max: int = 2000):
    """A worker's sink writing into an os.pipe (its batches never due by time here), and the front's end."""
    r, w = os.pipe()
    return PipeSink(os.fdopen(w, "wb"), batch_s=30, batch_max=batch_max), os.fdopen(r, "rb")


def test_states_wait_for_their_batch_but_an_event_goes_at_once_behind_the_states_before_it():
    sink, reader = pipe()
    sink.state("home", "kitchen", {"balance": 5})
    sink.state("home", "hall", None)  # a cleared state
    sink.event("home", {"id": "home:1", "seq": 1})  # written now, the two states ahead of it
    line = reader.readline()
    assert json.loads(line) == [["s", "home", "kitchen", {"balance": 5}], ["s", "home", "hall", None],
                                ["e", "home", {"id": "home:1", "seq": 1}]]
    sink.state("home", "kitchen", {"balance": 4})
    sink.status("shop", "offline")
    sink.link(True, None)
    sink.out.close()
    front = Recorder()
    links: list[tuple] = []
    assert feed(reader, front, lambda ok, error: links.append((ok, error))) == 3
    assert front.calls == [("state", "home", "kitchen", {"balance": 4}), ("status", "shop", "offline")]
    assert links == [(True, None)]


def test_a_full_batch_is_written_without_waiting_and_a_bad_line_is_skipped():
    sink, reader = pipe(batch_max=3)
    for i in range(3):
        sink.state("home", f"s{i}", {"balance": i})
    out = sink.out
    out.write(b"not json\n" + b'[["x"], ["s", "home"], ["e", "home", {"id": "home:2"}]]\n')
    out.close()
    front = Recorder()
    assert feed(reader, front) == 4  # three states and the event; the unknown kind and the short one not
    assert [c[2] for c in front.calls[:3]] == ["s0", "s1", "s2"] and front.calls[3] == ("event", "home",
                                                                                          {"id": "home:2"})


def test_a_worker_whose_front_is_gone_ends(tmp_path, monkeypatch):
    broker = fleet_broker(tmp_path / "broker")
    try:
        path = hub_file(tmp_path, broker.port, workers=1)
        monkeypatch.setenv("PAYG_TEST_HUB_MQTT", PASSWORDS["landlord"])
        proc = subprocess.Popen([sys.executable, "-m", "payg.wiring.hub_workers", "--config", str(path), "--index",
                                 "0"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert proc.stdout is not None and proc.stdin is not None
        line = json.loads(proc.stdout.readline())  # connected: its link says so on the pipe
        assert line == [["l", True, None]]
        proc.stdin.close()  # the front's end of its lifeline
        assert proc.wait(5) == 0
    finally:
        broker.stop()


def hub_file(tmp_path: Path, port: int, workers: int) -> Path:
    path = tmp_path / "hub.toml"
    path.write_text(f'[hub]\ndata_dir = "{tmp_path / "hub-data"}"\nmqtt_workers = {workers}\n'
                    'landlord_password_hash_env = "PAYG_TEST_HUB_HASH"\n'
                    f'[mqtt]\nport = {port}\nusername = "landlord"\npassword_env = "PAYG_TEST_HUB_MQTT"\n'
                    f'client_id = "hub-e2e"\nkeepalive_s = 5\n')
    return path


def credited(fleet) -> set[str]:
    return {e["id"] for e in fleet.events() if e.get("kind") == "credited"}


def test_two_workers_share_the_fleet_and_one_killed_mid_stream_loses_no_event(tmp_path, monkeypatch):
    broker = fleet_broker(tmp_path / "broker")
    monkeypatch.setenv("PAYG_TEST_HUB_MQTT", PASSWORDS["landlord"])
    hub = build_hub(hub_config.load(hub_file(tmp_path, broker.port, workers=2)), web=False)
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    sockets = ("kitchen", "hall")
    config = tmp_path / "payg.toml"
    config.write_text(controller_toml(data, broker.port, sockets=sockets, load_w=0).replace(
        "[controller]\n", "[controller]\npoll_interval_s = 0.1\ndeposit_poll_interval_s = 0.05\n", 1))
    ledger = MockLedger(data / "mock-ledger.sqlite", SystemClock(), list(sockets))
    log = tmp_path / "controller.log"
    proc = launcher.start(["--config", str(config)], cwd=tmp_path, stdout=log,
                          env=dict(os.environ, PAYG_TEST_MQTT_PASSWORD=PASSWORDS["ctl-home"]))
    # and the states of 40 more sockets a simulated controller publishes, 20 times a second each
    conn = Connection("127.0.0.1", broker.port, "ctl-shop", "ctl-shop", PASSWORDS["ctl-shop"], keepalive_s=5)
    shop = mqtt_client.make_client(conn, on_connect=lambda ok, r: None, on_disconnect=lambda r: None)
    mqtt_client.start(shop, conn)
    stop = threading.Event()
    sent = [0]

    def publish_states() -> None:
        while not stop.wait(0.05):
            sent[0] += 1
            for s in range(40):
                shop.publish(f"payg/shop/s{s}/state", json.dumps({"balance": sent[0], "relay": "on",
                                                                  "at": time.time()}), qos=0, retain=False)

    publisher = threading.Thread(target=publish_states, daemon=True)
    try:
        assert hub.workers is not None
        wait_until(lambda: all(hub.workers.connected) and hub.link.ready.is_set(), 20, "the workers and the front up")
        publisher.start()
        paid = 0
        for _ in range(8):
            ledger.pay(sockets[paid % 2], 10 + paid)
            paid += 1
            time.sleep(0.1)
        wait_until(lambda: len(credited(hub.fleet)) == paid, 30, "the first credits at the hub")
        first_pids = hub.workers.pids()
        victim = first_pids[0]
        assert victim is not None and all(first_pids)
        for i in range(20):  # credits flowing while the worker dies
            ledger.pay(sockets[paid % 2], 10 + paid)
            paid += 1
            if i == 5:
                os.kill(victim, signal.SIGKILL)
            time.sleep(0.05)
        wait_until(lambda: hub.workers.restarts[0] == 1 and hub.workers.pids()[0] not in (None, victim)
                   and hub.workers.connected[0], 30, "the killed worker started again and connected")
        wait_until(lambda: len(credited(hub.fleet)) == paid, 30, f"all {paid} credits at the hub")
        wait_until(lambda: hub.fleet.snapshot()["events_complete"]["missing"] == 0, 30, "the events complete")
        stop.set()
        publisher.join(5)
        time.sleep(0.3)
        received = hub.workers.received()
        # the broker shared the traffic: each worker passed on a good part of it, and no message went to both
        # (the shop's states are most of it: 40 every 50 ms, against the home controller's 2 every 100 ms)
        assert min(received) > 0.2 * sum(received), received
        assert sum(received) < 1.3 * 40 * sent[0], (received, 40 * sent[0])
        home = next(c for c in hub.fleet.controllers() if c["name"] == "home")
        assert home["lost"] == 0 and home["missing"] == 0
        shop_rows = [r for r in hub.fleet.snapshot()["rows"] if r["controller"] == "shop"]
        assert len(shop_rows) == 40
    finally:
        stop.set()
        publisher.join(5)
        mqtt_client.stop(shop)
        terminate(proc)
        began = time.monotonic()
        hub.close()
        closed_s = time.monotonic() - began
        broker.stop()
    assert closed_s < 1.5, f"the hub and its workers took {closed_s:.2f} s to stop"
    assert all(pid is None for pid in hub.workers.pids())
    assert "Traceback" not in log.read_text()


def test_a_hub_that_changes_its_number_of_workers_leaves_no_session_taking_a_part(tmp_path, monkeypatch):
    # Every session here is persistent. Without care, the hub's own session would keep what it subscribed to
    # before it had workers (each event twice), and a worker no longer run would keep its shared subscription
    # and go on taking its part of the events, queued for nobody (missing at the hub, for ever).
    broker = fleet_broker(tmp_path / "broker")
    monkeypatch.setenv("PAYG_TEST_HUB_MQTT", PASSWORDS["landlord"])
    conn = Connection("127.0.0.1", broker.port, "ctl-home", "ctl-home", PASSWORDS["ctl-home"], keepalive_s=5)
    ctl = mqtt_client.make_client(conn, on_connect=lambda ok, r: None, on_disconnect=lambda r: None)
    mqtt_client.start(ctl, conn)
    seq = [0]

    def publish_events(n: int) -> None:
        for _ in range(n):
            seq[0] += 1
            ctl.publish("payg/home/events", json.dumps({"id": f"home:{seq[0]}", "seq": seq[0], "kind": "credited",
                                                        "socket": "kitchen", "amount": 1}), qos=1).wait_for_publish(5)

    def run(workers: int, events: int) -> None:
        hub = build_hub(hub_config.load(hub_file(tmp_path, broker.port, workers=workers)), web=False)
        try:
            noted = tmp_path / "hub-data" / "hub-workers.json"
            wait_until(lambda: noted.exists() and json.loads(noted.read_text())["workers"] == workers, 20,
                       "the stale sessions forgotten")
            wait_until(lambda: hub.link.ready.is_set() and (hub.workers is None or all(hub.workers.connected)), 20,
                       "the hub up")
            time.sleep(0.3)  # the workers' subscriptions acknowledged
            first = seq[0] + 1
            publish_events(events)
            wait_until(lambda: {e["seq"] for e in hub.fleet.events()} >= set(range(first, seq[0] + 1)), 20,
                       f"events {first}-{seq[0]} at the hub ({workers} workers)")
            time.sleep(0.3)
            assert hub.fleet.counts["duplicate_events"] == 0, workers  # none came twice
            assert hub.fleet.snapshot()["events_complete"]["missing"] == 0
            if hub.workers is not None:
                assert sum(hub.workers.received()) == events  # all through the workers, none through the front
        finally:
            hub.close()

    try:
        run(0, 5)
        run(2, 20)
        run(1, 20)  # worker 1's session forgotten: with it, about half of these would wait in it
        run(0, 10)
    finally:
        mqtt_client.stop(ctl)
        broker.stop()
