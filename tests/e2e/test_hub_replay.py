"""The hub fills a gap in a real controller's events: a real Mosquitto with the fleet's users and ACL, the
controller as a process of its own (`app.py --config`, MQTT on, the mock ledger), and the hub's Fleet and
HubLink in this process. Credits booked while the hub was away, and dropped by the broker, come back through
one replay from the controller's journal with their original id and seq, and the hub ends complete."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from ledgers.mock import MockLedger
from payg.adapters.clocks import SystemClock
from payg.adapters.mqtt.acl import mosquitto_acl
from payg.adapters.mqtt.client import Connection
from payg.adapters.mqtt.hub_link import HubLink
from payg.hub.fleet import Fleet
from tests.support import launcher, terminate, wait_until
from tests.support.mosquitto import Broker
from tests.support.mqtt_beds import PASSWORDS, controller_toml

SOCKETS = ("kitchen", "hall")


def journal_events(data_dir: Path) -> list[tuple[int, str, str, bool]]:
    """The controller's numbered events as its journal keeps them: (seq, id on the wire, kind, delivered)."""
    with sqlite3.connect(data_dir / "journal.sqlite") as db:
        rows = db.execute("SELECT seq, uid, kind, delivered_at IS NOT NULL FROM outbox WHERE seq IS NOT NULL"
                          " ORDER BY seq").fetchall()
    return [(seq, f"home:{uid}", kind, bool(delivered)) for seq, uid, kind, delivered in rows]


def start_link(port: int, fleet: Fleet) -> HubLink:
    """The hub's link as `payg hub` makes it (a persistent session under a fixed client id), feeding `fleet`."""
    conn = Connection("127.0.0.1", port, "hub-e2e", "landlord", PASSWORDS["landlord"], keepalive_s=5)
    link = HubLink(conn, "payg", fleet, replay_check_s=0.2)
    link.start()
    wait_until(link.ready.is_set, 10, "the hub subscribed")
    return link


def home(fleet: Fleet) -> dict:
    return next(c for c in fleet.controllers() if c["name"] == "home")


def credits_at_hub(fleet: Fleet) -> list[dict]:
    return [e for e in fleet.events() if e.get("kind") == "credited"]


def start_fleet(tmp_path: Path, broker_conf: str) -> tuple[Broker, Path, MockLedger, Fleet, HubLink, Path,
                                                          launcher.Process]:
    """A broker with `broker_conf`, the hub's link feeding a Fleet, and the controller as a process ticking every
    0.1 s: (broker, data dir, the controller's ledger, fleet, link, the controller's log, its process)."""
    broker = Broker(tmp_path / "broker", PASSWORDS, mosquitto_acl("payg", {"home": "ctl-home"}, ["landlord"]),
                    extra_conf=(broker_conf,)).start()
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    config = tmp_path / "payg.toml"
    config.write_text(controller_toml(data, broker.port, sockets=SOCKETS, load_w=0).replace(
        "[controller]\n", "[controller]\npoll_interval_s = 0.1\ndeposit_poll_interval_s = 0.1\n", 1))
    ledger = MockLedger(data / "mock-ledger.sqlite", SystemClock(), list(SOCKETS))
    fleet = Fleet(SystemClock(), command_timeout_s=30)  # no second request within a test unless one is lost
    link = start_link(broker.port, fleet)
    log = tmp_path / "controller.log"
    proc = launcher.start(["--config", str(config)], cwd=tmp_path, stdout=log, append=True,
                          env=dict(os.environ, PAYG_TEST_MQTT_PASSWORD=PASSWORDS["ctl-home"]))
    return broker, data, ledger, fleet, link, log, proc


def test_events_the_broker_dropped_while_the_hub_was_away_come_back_by_one_replay(tmp_path):
    # The hub's session is persistent: after a plain disconnect the broker would queue its QoS 1 events and hand
    # them over on its return, and no gap would open. The outage played here is one where the broker drops them:
    # a broker without persistence restarted while the hub is away loses the hub's session and its queue (the
    # hub then reconnects under its own client id and finds no session).
    broker, data, ledger, fleet, link, log, proc = start_fleet(tmp_path, "persistence false")
    try:
        ledger.pay("kitchen", 50)
        wait_until(lambda: len(credits_at_hub(fleet)) == 1, 30, "the first credit at the hub")
        seen = {e["seq"] for e in fleet.events()}
        assert home(fleet)["baseline_seq"] == 1 and home(fleet)["missing"] == 0  # from the controller's first event
        link.stop()

        ledger.pay("hall", 20)
        ledger.pay("kitchen", 30)
        wait_until(lambda: sum(k == "credited" and d for _, _, k, d in journal_events(data)) == 3, 30,
                   "the two credits booked while the hub was away, taken by the broker")
        away = [seq for seq, *_ in journal_events(data) if seq > max(seen)]
        broker.restart()

        link = start_link(broker.port, fleet)  # the same Fleet: what it held before, it holds still
        assert home(fleet)["missing"] == 0 and not any(e["seq"] in away for e in fleet.events())  # nothing came
        ledger.pay("kitchen", 40)
        wait_until(lambda: len(credits_at_hub(fleet)) == 4 and home(fleet)["missing"] == 0
                   and home(fleet)["complete_through"] == journal_events(data)[-1][0], 30,
                   "the gap seen, replayed and closed")

        journal = journal_events(data)
        last = journal[-1][0]
        assert [seq for seq, *_ in journal] == list(range(1, last + 1))  # the controller's seqs: no gap
        at_hub = fleet.events()
        assert sorted((e["seq"], e["id"], e["kind"]) for e in at_hub) == [(s, i, k) for s, i, k, _ in journal]
        credited = [i for _, i, k, _ in journal if k == "credited"]
        assert len(credited) == 4 and all([e["id"] for e in at_hub].count(i) == 1 for i in credited)
        assert sorted((e["socket"], e["amount"]) for e in credits_at_hub(fleet)) == [
            ("hall", 20), ("kitchen", 30), ("kitchen", 40), ("kitchen", 50)]
        ctl = home(fleet)
        assert (ctl["complete_through"], ctl["missing"], ctl["lost"], ctl["replaying"]) == (last, 0, 0, False)
        assert fleet.snapshot()["events_complete"] == {"complete": True, "controllers": 1, "controllers_complete": 1,
                                                       "missing": 0, "lost": 0}
        # one request for the gap, from its first seq, which the controller answered (the answer matched the
        # hub's own request). The gap shows either in a state's "events_through" (a state sent after the hub was
        # back: then the replay came before the last credit) or with the last credit (then the replay sent it
        # again, and the hub dropped it by its id): each credit is held once either way (above)
        assert ctl["replays"] == 1
        asked = [line for line in log.read_text().splitlines() if "MQTT: replay from seq" in line]
        assert len(asked) == 1 and f"replay from seq {away[0]} " in asked[0], asked
        assert fleet.counts["unmatched_responses"] == 0 and fleet.counts["duplicate_events"] <= 1
    finally:
        link.stop()
        terminate(proc)
        broker.stop()
    assert "Traceback" not in log.read_text()


def book_while_the_hub_is_away(ledger: MockLedger, data: Path, fleet: Fleet, link: HubLink, n: int) -> int:
    """A first credit seen at the hub, then the hub's link stopped (a plain disconnect: the broker keeps its session
    and queues for it) and `n` credits booked, each taken by the broker; the last seq the hub saw."""
    ledger.pay("kitchen", 50)
    wait_until(lambda: len(credits_at_hub(fleet)) == 1, 30, "the first credit at the hub")
    before = max(e["seq"] for e in fleet.events())
    link.stop()
    for tokens in range(1, n + 1):  # each its own credit (and a changed balance: a new state each)
        ledger.pay("hall" if tokens % 2 else "kitchen", tokens)
        wait_until(lambda n=tokens: sum(k == "credited" and d for _, _, k, d in journal_events(data)) == 1 + n,
                   30, "the credit booked while the hub is away and taken by the broker")
    return before


def test_a_queue_limit_reached_while_the_hub_is_away_drops_events_and_the_replay_fills_them(tmp_path):
    # The broker keeps the hub's persistent session but queues at most LIMIT messages for it: what the controller
    # books beyond that while the hub is away is dropped by the broker (it says so in its log). States are not
    # queued at all (the hub takes them at QoS 0, hub_link.subscriptions), so the queue holds events only: the
    # first LIMIT events booked while away come from it, the rest from one replay.
    limit = 5
    broker, data, ledger, fleet, link, log, proc = start_fleet(tmp_path, f"max_queued_messages {limit}")
    try:
        before = book_while_the_hub_is_away(ledger, data, fleet, link, 8)
        away = [seq for seq, *_ in journal_events(data) if seq > before]
        assert len(away) > limit
        wait_until(lambda: "Outgoing messages are being dropped" in broker.log.read_text(), 10,
                   "the broker saying it dropped messages for the hub")

        link = start_link(broker.port, fleet)
        wait_until(lambda: len([e for e in fleet.events() if e["seq"] > before]) == limit, 30,
                   "the queued events, and only events, handed over")
        assert sorted(e["seq"] for e in fleet.events() if e["seq"] > before) == away[:limit]
        ledger.pay("kitchen", 9)  # the next event shows the gap
        wait_until(lambda: len(credits_at_hub(fleet)) == 10 and home(fleet)["missing"] == 0
                   and home(fleet)["complete_through"] == journal_events(data)[-1][0], 30,
                   "the gap seen, replayed and closed")
        journal = journal_events(data)
        assert sorted((e["seq"], e["id"]) for e in fleet.events()) == [(s, i) for s, i, _, _ in journal]
        assert sorted((e["socket"], e["amount"]) for e in credits_at_hub(fleet)) == sorted(
            [("kitchen", 50), ("kitchen", 9)] + [("hall" if t % 2 else "kitchen", t) for t in range(1, 9)])
        assert home(fleet)["replays"] >= 1 and home(fleet)["lost"] == 0
    finally:
        link.stop()
        terminate(proc)
        broker.stop()
    assert "Traceback" not in log.read_text()


def test_the_last_events_dropped_while_the_hub_was_away_are_replayed_with_no_later_event(tmp_path):
    # As above, the broker drops what passes its queue limit, but nothing is booked afterwards: no later event
    # shows the gap. The controller's retained states say which events it sent ("events_through"), and the hub,
    # back, asks for the rest from them alone.
    limit = 3
    broker, data, ledger, fleet, link, log, proc = start_fleet(tmp_path, f"max_queued_messages {limit}")
    try:
        book_while_the_hub_is_away(ledger, data, fleet, link, 6)
        wait_until(lambda: "Outgoing messages are being dropped" in broker.log.read_text(), 10,
                   "the broker saying it dropped messages for the hub")
        last = journal_events(data)[-1][0]
        time.sleep(1.0)  # the states that follow the last event, retained

        link = start_link(broker.port, fleet)
        wait_until(lambda: home(fleet)["missing"] == 0 and home(fleet)["complete_through"] == last, 30,
                   "the last events, seen missing from the states, replayed")
        assert journal_events(data)[-1][0] == last  # nothing booked since: no later event showed the gap
        assert sorted(e["seq"] for e in fleet.events()) == [s for s, *_ in journal_events(data)]
        assert len(credits_at_hub(fleet)) == 7 and home(fleet)["replays"] >= 1 and home(fleet)["lost"] == 0
    finally:
        link.stop()
        terminate(proc)
        broker.stop()
    assert "Traceback" not in log.read_text()
