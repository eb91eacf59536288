"""Many controllers on one broker: what the broker carries, what the hub costs, how late it sees a state,
whether an event is lost across a broker restart, and what MQTT costs a controller's tick.

One Debian Mosquitto on 127.0.0.1 (password file, ACL, `sys_interval 1` for its own counters); a hub in
a child process (the fleet model and its MQTT link as `payg hub` composes them, plus its web app); N
simulated controllers of 16 sockets each publishing retained states at 1 Hz with QoS 1 (lightweight
in-process publishers, one paho client each, every state changed every second so every one is sent);
and K real controller processes (`app.py` with the mock ledger, 16 simulated sockets, [mqtt] on) paid by
a payer every 0.5 s so they book credits and send events through their outbox.

  messages/s        $SYS/broker/messages/received and /sent, over the measured window
  hub CPU and RSS   /proc of the hub's process over the window (CPU % of one core) and its peak RSS
  state-to-hub      hub's receive time - the state's "at" (publishers and hub share the machine's clock)
  events lost       the broker is stopped for a few seconds and started again while the payer goes on;
                    then: credits booked in the real controllers' journals vs distinct credited events the
                    hub saw (goal 0 lost), with the duplicates it dropped; and the hub's own count by seq
                    (events_complete): missing at the end, lost, the gaps it saw, the replays it asked for
                    and how long until it was complete again
  hub workers       with `--workers N` the hub runs N workers on MQTT shared subscriptions (`[hub] mqtt_workers`); its
                    CPU is the front's plus the workers', and after the broker restart one worker is SIGKILLed
                    while the payer goes on: credits booked vs seen again, and the hub's own count by seq
  tick on vs off    two in-process controllers of 16 sockets, Site.tick() timed in interleaved blocks, one
                    with its MQTT bridge (every changed state sent, no rate limit: more than at 1 Hz), while
                    the fleet runs (goal: within 10 %)

Run from the repository root: `.venv/bin/python bench/fleet.py` (~2 min; `--controllers`, `--real`,
`--seconds`, `--workers`). Prints figures; exits 1 after printing when a goal is clearly missed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from report import child_pids, cpu_by_pid, proc_rss_mib  # noqa: E402  (bench/report.py, next to this script)

from ledgers.mock import MockLedger  # noqa: E402
from payg.adapters import config as cfg  # noqa: E402
from payg.adapters.clocks import SystemClock  # noqa: E402
from payg.adapters.mqtt import client as mqtt_client  # noqa: E402
from payg.adapters.mqtt.acl import mosquitto_acl  # noqa: E402
from payg.adapters.mqtt.client import Connection  # noqa: E402
from tests.support import terminate, wait_until  # noqa: E402
from tests.support.mosquitto import Broker  # noqa: E402

SOCKETS = 16
PASSWORD = "bench-pw"


def users(real: int) -> dict[str, str]:
    return {"sim": PASSWORD, "hub": PASSWORD, "monitor": PASSWORD, "ctl-tick": PASSWORD,
            **{f"ctl-r{i}": PASSWORD for i in range(real)}}


def acl(real: int) -> str:
    base = mosquitto_acl("payg", {"tick": "ctl-tick", **{f"r{i}": f"ctl-r{i}" for i in range(real)}}, ["hub"])
    return base + "\nuser sim\ntopic write payg/#\n\nuser monitor\ntopic read $SYS/#\n"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] if ordered else float("nan")


class SimFleet:
    """N lightweight controllers: one paho client each, every socket's state every second, each changed."""

    def __init__(self, port: int, controllers: int):
        self.clients = []
        self.sent = 0
        self._stop = threading.Event()
        for i in range(controllers):
            conn = Connection("127.0.0.1", port, f"sim-{i}", "sim", PASSWORD, keepalive_s=30)
            c = mqtt_client.make_client(conn, on_connect=lambda ok, r: None, on_disconnect=lambda r: None,
                                        will=(f"payg/s{i:02d}/status", b"offline"))
            mqtt_client.start(c, conn)
            self.clients.append((f"s{i:02d}", c))
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        for name, c in self.clients:
            c.publish(f"payg/{name}/status", b"online", qos=1, retain=True)
        self._thread.start()

    def _run(self) -> None:
        rng = random.Random(7)
        energy = [[0.0] * SOCKETS for _ in self.clients]
        start = time.monotonic()
        second = 0
        while not self._stop.is_set():
            for k, (name, c) in enumerate(self.clients):  # spread over the second like independent devices
                slot = start + second + k / len(self.clients)
                delay = slot - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    return
                for s in range(SOCKETS):
                    power = rng.choice((0.0, 60.0, 400.0, 800.0, 2000.0)) + rng.random()
                    energy[k][s] += power / 3600
                    body = {"balance": 5000 - second, "balance_tokens": 5000 - second, "relay": "on",
                            "power_w": round(power, 3), "voltage_v": 230.0, "current_a": round(power / 230, 3),
                            "energy_wh": int(energy[k][s]), "meter": "ok", "override": None,
                            "credit_exhausted": False, "at": time.time()}
                    c.publish(f"payg/{name}/sock{s:02d}/state", json.dumps(body, separators=(",", ":")),
                              qos=1, retain=True)
                    self.sent += 1
            second += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for _, c in self.clients:
            mqtt_client.stop(c)


class SysCounters:
    """The broker's own counters ($SYS, every second)."""

    def __init__(self, port: int):
        self.values: dict[str, float] = {}
        conn = Connection("127.0.0.1", port, "monitor", "monitor", PASSWORD)
        self.client = mqtt_client.make_client(
            conn, on_connect=lambda ok, r: self.client.subscribe([("$SYS/broker/messages/#", 0),
                                                                   ("$SYS/broker/publish/messages/#", 0)]),
            on_disconnect=lambda r: None, on_message=self._on_message)
        mqtt_client.start(self.client, conn)

    def _on_message(self, topic: str, payload: bytes, retained: bool) -> None:
        try:
            self.values[topic.removeprefix("$SYS/broker/")] = float(payload)
        except ValueError:
            pass

    def snapshot(self) -> tuple[float, ...]:
        """(when, packets received, packets sent, PUBLISHes received, PUBLISHes sent)"""
        v = self.values
        return (time.monotonic(), v.get("messages/received", 0.0), v.get("messages/sent", 0.0),
                v.get("publish/messages/received", 0.0), v.get("publish/messages/sent", 0.0))


def real_config(path: Path, data: Path, port: int, name: str) -> Path:
    tables = "".join(f'\n[[sockets]]\nid = "sock{s:02d}"\nmeter = {{ kind = "simulated", load_w = {60 + 50 * s} }}\n'
                     f'relay = {{ kind = "simulated" }}\n' for s in range(SOCKETS))
    path.write_text(f'[controller]\ndata_dir = "{data}"\npoll_interval_s = 1.0\ndeposit_poll_interval_s = 0.5\n'
                    f'log_level = "warning"\n[web]\nenabled = false\n[ledger]\nbackend = "mock"\n[mqtt]\n'
                    f'enabled = true\nport = {port}\ncontroller = "{name}"\nusername = "ctl-{name}"\n'
                    f'password_env = "BENCH_MQTT_PASSWORD"\nkeepalive_s = 10\n{tables}')
    return path


def tick_costs(tmp: Path, port: int, blocks: int, ticks: int) -> tuple[list[float], list[float], dict]:
    """Site.tick() wall times (s) of two identical in-process controllers, one with its MQTT bridge on the
    busy broker, in interleaved blocks; and the bridge's counts at the end."""
    from payg import bootstrap as app
    from payg.adapters.clocks import ManualClock
    from payg.wiring.mqtt import start_bridge

    os.environ["BENCH_MQTT_PASSWORD"] = PASSWORD
    runtimes = {}
    for mode in ("off", "on"):
        path = real_config(tmp / f"tick-{mode}.toml", tmp / f"tick-{mode}", port, "r0" if mode == "on" else "rx")
        text = path.read_text().replace("enabled = true", f"enabled = {'true' if mode == 'on' else 'false'}")
        text = text.replace('controller = "r0"', 'controller = "tick"').replace('"ctl-r0"', '"ctl-tick"')
        path.write_text(text)
        clock = ManualClock(time.time())
        rt = app.build(cfg.load(path), clock)
        rt.site.start()
        bridge = start_bridge(rt)
        if bridge is not None:
            bridge.min_interval_s = 0.0  # every changed state sent: the virtual ticks come faster than 1 Hz
        runtimes[mode] = (rt, clock, bridge)
        rt.ledger.pay("sock00", 10**6)
    times: dict[str, list[float]] = {"off": [], "on": []}
    if runtimes["on"][2] is not None:
        runtimes["on"][2].online.wait(10)
    for block in range(blocks):
        for mode in (("off", "on") if block % 2 == 0 else ("on", "off")):
            rt, clock, _ = runtimes[mode]
            for _ in range(ticks):
                clock.advance(1.0)
                started = time.perf_counter()
                rt.site.tick()
                times[mode].append(time.perf_counter() - started)
                if _ % 50 == 0:
                    rt.site.poll_deposits()
    status = runtimes["on"][2].status() if runtimes["on"][2] else {}
    bridge = runtimes["on"][2]
    if bridge is not None:  # the tick's own share of MQTT: handing the states over (compared, no I/O)
        states = runtimes["on"][0].metering.states()
        # each call with one socket's power changed, as a tick might: the snapshots made beforehand
        changed = [[replace(s, reading=replace(s.reading, power_w=float(i))) if k == i % len(states)
                    and s.reading is not None else s for k, s in enumerate(states)] for i in range(2000)]
        started = time.perf_counter()
        for each in changed:
            bridge.publish(each)
        status["publish_us"] = (time.perf_counter() - started) / 2000 * 1e6
    for rt, _, _ in runtimes.values():
        rt.close()
    return times["off"], times["on"], status


class RealControllers:
    """K `app.py` processes with [mqtt] on, and a payer paying into their sockets every 0.5 s."""

    def __init__(self, tmp: Path, port: int, count: int):
        self.procs: list[subprocess.Popen] = []
        self.data: list[Path] = []
        self.ledgers: list[MockLedger] = []
        self.paid = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        env = dict(os.environ, BENCH_MQTT_PASSWORD=PASSWORD)
        for i in range(count):
            data = tmp / f"r{i}"
            data.mkdir(mode=0o700)
            config = real_config(tmp / f"r{i}.toml", data, port, f"r{i}")
            self.ledgers.append(MockLedger(data / "mock-ledger.sqlite", SystemClock(),
                                           [f"sock{s:02d}" for s in range(SOCKETS)]))
            log = open(tmp / f"r{i}.log", "wb")
            self.procs.append(subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--config", str(config)],
                                               stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(tmp)))
            self.data.append(data)

    def start_paying(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._pay, daemon=True)
        self._thread.start()

    def _pay(self) -> None:
        rng = random.Random(3)
        while not self._stop.wait(0.5):
            ledger = rng.choice(self.ledgers)
            ledger.pay(f"sock{rng.randrange(SOCKETS):02d}", rng.randint(1, 50))
            self.paid += 1

    def stop_paying(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def credits_booked(self) -> int:
        total = 0
        for data in self.data:
            with sqlite3.connect(data / "journal.sqlite") as db:
                total += db.execute("SELECT COUNT(*) FROM entries WHERE kind = 'deposit'").fetchone()[0]
        return total

    def outbox_pending(self) -> int:
        total = 0
        for data in self.data:
            with sqlite3.connect(data / "journal.sqlite") as db:
                total += db.execute("SELECT COUNT(*) FROM outbox WHERE seq IS NOT NULL AND delivered_at IS NULL"
                                    ).fetchone()[0]
        return total

    def stop(self) -> None:
        for proc in self.procs:
            terminate(proc)


class HubProcess:
    """The hub in a child process (`bench/fleet.py --hub-child`): the same objects `payg hub` composes, its
    web app served, and a record of each state's delay and each distinct credited event."""

    def __init__(self, tmp: Path, port: int, workers: int):
        self.out = tmp / "hub-result.json"
        self.log = open(tmp / "hub.log", "wb")
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--hub-child", str(port),
                                      str(self.out), str(tmp), str(workers)], stdout=self.log,
                                     stderr=subprocess.STDOUT,
                                     env=dict(os.environ, BENCH_MQTT_PASSWORD=PASSWORD))

    def progress(self) -> dict:
        try:
            return json.loads((self.out.with_name("hub-progress.json")).read_text())
        except (OSError, ValueError):
            return {}

    def result(self) -> dict:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)
        return json.loads(self.out.read_text())


def hub_child(port: int, out: Path, tmp: Path, workers: int) -> int:
    """The hub as `payg hub` builds it (fleet model, MQTT link, web app, live pushes, HTTP server), with each
    state's delay and each distinct credited event recorded, until SIGTERM; then the record, as JSON."""
    from werkzeug.security import generate_password_hash

    from payg.adapters.config import hub as hub_config
    from payg.wiring.hub import build_hub

    os.environ["BENCH_HUB_HASH"] = generate_password_hash("bench-landlord-password", method="scrypt")
    path = tmp / "hub.toml"
    path.write_text(f'[hub]\ndata_dir = "{tmp / "hub"}"\nlandlord_password_hash_env = "BENCH_HUB_HASH"\n'
                    f'mqtt_workers = {workers}\n'
                    f'[mqtt]\nport = {port}\nusername = "hub"\npassword_env = "BENCH_MQTT_PASSWORD"\n'
                    f'client_id = "bench-hub"\nkeepalive_s = 10\n')
    hub = build_hub(hub_config.load(path), port=0)
    fleet = hub.fleet
    delays: list[float] = []
    credited: set[str] = set()
    state, event = fleet.state, fleet.event

    window = threading.Event()  # SIGUSR1 opens the measured window, SIGUSR2 closes it (no retained replays inside)

    real_delays: list[float] = []

    def recording_state(controller: str, socket: str, body: dict | None) -> None:
        if window.is_set() and body and isinstance(body.get("at"), (int, float)):
            (real_delays if controller.startswith("r") else delays).append(time.time() - body["at"])
        state(controller, socket, body)

    def recording_event(controller: str, body: dict) -> None:
        if controller.startswith("r") and body.get("kind") == "credited" and isinstance(body.get("id"), str):
            credited.add(body["id"])  # the real controllers' (the tick bench's own controller aside)
        event(controller, body)

    fleet.state, fleet.event = recording_state, recording_event
    stop = threading.Event()
    gaps: list[list[float]] = []  # [opened, closed] of each time the fleet's events were not complete

    progress = out.with_name("hub-progress.json")

    def watch_completeness() -> None:
        n = 0
        while not stop.wait(0.05):
            missing = fleet.events_complete()["missing"]
            n += 1
            if n % 5 == 0:  # what the hub holds so far, for the parent's wait for late events
                progress.with_suffix(".tmp").write_text(json.dumps({
                    "credited": len(credited), "missing": missing,
                    "workers": hub.workers.pids() if hub.workers else [],
                    "restarts": hub.workers.restarts if hub.workers else []}))
                progress.with_suffix(".tmp").replace(progress)
            if missing and (not gaps or len(gaps[-1]) == 2):
                gaps.append([time.monotonic()])
            elif not missing and gaps and len(gaps[-1]) == 1:
                gaps[-1].append(time.monotonic())

    threading.Thread(target=watch_completeness, daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGUSR1, lambda *_: window.set())
    signal.signal(signal.SIGUSR2, lambda *_: window.clear())
    server = threading.Thread(target=hub.server.serve_forever, daemon=True)
    server.start()
    stop.wait()
    snapshot = fleet.snapshot()
    hub.server.shutdown()
    hub.close()
    complete = snapshot["events_complete"]
    out.write_text(json.dumps({"delays_s": delays, "real_delays_s": real_delays, "credited": len(credited),
                               "duplicates": fleet.counts["duplicate_events"], "states": fleet.counts["states"],
                               "sockets": len(snapshot["rows"]), "controllers": len(snapshot["controllers"]),
                               "missing": complete["missing"], "lost": complete["lost"],
                               "replays": sum(c.get("replays", 0) for c in fleet.controllers()),
                               "gaps_s": [g[1] - g[0] if len(g) == 2 else None for g in gaps]}))
    return 0


def settle(reals: RealControllers, hub: HubProcess) -> dict:
    """Stop paying, wait for the controllers' outboxes to empty, then for the hub to hold every credit booked (late,
    not lost: it may still be working through a backlog; up to a minute)."""
    reals.stop_paying()
    wait_until(lambda: reals.outbox_pending() == 0, 60, "the controllers' outboxes to empty")
    booked = reals.credits_booked()
    emptied = time.monotonic()
    while time.monotonic() - emptied < 60 and (hub.progress().get("credited", 0) < booked
                                               or hub.progress().get("missing", 1)):
        time.sleep(0.1)
    progress = hub.progress()
    return {"booked": booked, "credited": progress.get("credited", 0), "missing": progress.get("missing"),
            "late_s": time.monotonic() - emptied}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--controllers", type=int, default=50, help="simulated controllers (16 sockets each)")
    parser.add_argument("--real", type=int, default=3, help="real controller processes (16 sockets each)")
    parser.add_argument("--seconds", type=float, default=30.0, help="the measured window before the restart")
    parser.add_argument("--workers", type=int, default=0, help="hub workers on MQTT shared subscriptions")
    parser.add_argument("--hub-child", nargs=4, metavar=("PORT", "OUT", "TMP", "WORKERS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.hub_child:
        return hub_child(int(args.hub_child[0]), Path(args.hub_child[1]), Path(args.hub_child[2]),
                         int(args.hub_child[3]))
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="payg-fleet-") as name:
        tmp = Path(name)
        broker = Broker(tmp / "broker", users(args.real), acl(args.real), extra_conf=("sys_interval 1",)).start()
        hub = sims = reals = None
        try:
            hub = HubProcess(tmp, broker.port, args.workers)
            sysc = SysCounters(broker.port)
            reals = RealControllers(tmp, broker.port, args.real)
            sims = SimFleet(broker.port, args.controllers)
            time.sleep(3)
            sims.start()
            reals.start_paying()
            time.sleep(5)  # warm up
            hub.proc.send_signal(signal.SIGUSR1)
            t0, rec0, sent0, _, pub_out0 = sysc.snapshot()
            sim0 = sims.sent
            if args.workers:
                try:
                    wait_until(lambda: all(hub.progress().get("workers") or [None]), 30, "the hub's workers")
                except BaseException:
                    print((tmp / "hub.log").read_text()[-3000:])
                    raise
            hub_pids = [hub.proc.pid, *child_pids(hub.proc.pid)]
            bpid = broker.proc.pid
            cpu0, w0 = cpu_by_pid([*hub_pids, bpid]), time.monotonic()
            rss_peak = 0.0
            while time.monotonic() - w0 < args.seconds:
                time.sleep(1)
                rss_peak = max(rss_peak, sum(proc_rss_mib(pid) for pid in hub_pids))
            t1, rec1, sent1, _, pub_out1 = sysc.snapshot()
            sim1 = sims.sent
            cpu1, w1 = cpu_by_pid([*hub_pids, bpid]), time.monotonic()
            brss = proc_rss_mib(broker.proc.pid)
            hub.proc.send_signal(signal.SIGUSR2)
            off_times, on_times, bridge = tick_costs(tmp, broker.port, blocks=6, ticks=100)
            broker.stop()  # a restart: the payer goes on, the real controllers keep their events
            time.sleep(3)
            broker.start()
            time.sleep(10)
            restart = settle(reals, hub)
            kill, kill_restarts = None, []
            if args.workers:  # a worker SIGKILLed while the payer goes on
                reals.start_paying()
                time.sleep(3)
                victim = hub.progress()["workers"][0]
                os.kill(victim, signal.SIGKILL)
                time.sleep(7)
                kill = settle(reals, hub)
                kill_restarts = hub.progress().get("restarts", [])
            time.sleep(1)
            sims.stop()
            result = hub.result()
        finally:
            for part in (sims, reals):
                if part is not None:
                    part.stop()
            if hub is not None and hub.proc.poll() is None:
                terminate(hub.proc)
            broker.stop()

    n_sockets = (args.controllers + args.real) * SOCKETS
    span = t1 - t0
    rate_in, rate_out = (rec1 - rec0) / span, (sent1 - sent0) / span
    pub_out = (pub_out1 - pub_out0) / span  # ($SYS publish/messages/received leaves QoS 1 out here: not shown)
    sim_rate = (sim1 - sim0) / span
    delays, real = result["delays_s"], result["real_delays_s"]
    delays_all = delays + real
    p50, p95 = percentile(delays_all, 50) * 1e3, percentile(delays_all, 95) * 1e3
    lost = restart["booked"] - restart["credited"]
    front_cpu = cpu1[hub.proc.pid] - cpu0[hub.proc.pid]
    workers_cpu = sum(cpu1[pid] - cpu0[pid] for pid in hub_pids[1:] if pid in cpu1 and pid in cpu0)
    hub_cpu = 100 * (front_cpu + workers_cpu) / (w1 - w0)
    mean_off, mean_on = statistics.fmean(off_times) * 1e3, statistics.fmean(on_times) * 1e3
    print(f"fleet: {args.controllers} simulated + {args.real} real controllers x {SOCKETS} sockets = {n_sockets} "
          f"sockets at 1 Hz, {args.seconds:.0f} s window")
    print(f"  broker: {sim_rate:,.0f} states/s published by the simulated controllers (their count), "
          f"{pub_out:,.0f} PUBLISH/s delivered; all packets (acks, pings too) {rate_in:,.0f}/s in, {rate_out:,.0f}/s "
          f"out ($SYS counters); CPU "
          f"{100 * (cpu1[bpid] - cpu0[bpid]) / (w1 - w0):.1f} % of one core, RSS {brss:.1f} MiB")
    print(f"  hub ({args.workers} workers): CPU {hub_cpu:.1f} % of one core"
          + (f" (front {100 * front_cpu / (w1 - w0):.1f} %, workers {100 * workers_cpu / (w1 - w0):.1f} %)"
             if args.workers else "")
          + f", {1000 * hub_cpu / n_sockets:.1f} % per 1,000 sockets, RSS peak {rss_peak:.1f} MiB, "
          f"{result['states']:,} states seen, {result['sockets']} sockets, {result['controllers']} controllers "
          f"(the tick bench's own among them)")
    print(f"  state-to-hub delay: p50 {p50:.1f} ms, p95 {p95:.1f} ms, max {max(delays_all) * 1e3:.1f} ms "
          f"({len(delays_all):,} states); simulated publishers p95 {percentile(delays, 95) * 1e3:.1f} ms, real "
          f"controllers p50 {percentile(real, 50) * 1e3:.1f} ms p95 {percentile(real, 95) * 1e3:.1f} ms ({len(real):,}"
          f" states; from the state's making in the tick, so with the bridge's wait of up to 0.8 s)")
    print(f"  broker restart (3 s down): {restart['booked']} credits booked, {restart['credited']} distinct credited "
          f"events at the hub, {lost} missing at the end, {restart['missing']} missing by seq; the last of them "
          f"reached the hub {restart['late_s']:.1f} s after the controllers' outboxes were empty"
          + (" (gave up after 60 s)" if lost else ""))
    if kill is not None:
        print(f"  a worker SIGKILLed mid-stream: {kill['booked']} credits booked in all, {kill['credited']} at the "
              f"hub, {kill['booked'] - kill['credited']} missing at the end, {kill['missing']} missing by seq; the "
              f"last reached the hub {kill['late_s']:.1f} s after the outboxes were empty; worker restarts "
              f"{kill_restarts}")
        if kill["booked"] != kill["credited"] or kill["missing"]:
            problems.append(f"{kill['booked'] - kill['credited']} events missing after a worker was killed")
    print(f"  duplicates dropped by id at the hub: {result['duplicates']}")
    gaps = result["gaps_s"]
    closed = [g for g in gaps if g is not None]
    print(f"  events' completeness at the hub (seq): {result['missing']} missing at the end, {result['lost']} lost "
          f"past the controllers' retention; {len(gaps)} gap(s) seen, {result['replays']} replay(s) asked, "
          + (f"complete again after {max(closed):.2f} s at the longest" if closed else "none closed")
          + (f", {len(gaps) - len(closed)} still open" if len(closed) < len(gaps) else ""))
    print(f"  controller tick (16 sockets): MQTT off mean {mean_off:.3f} ms p95 {percentile(off_times, 95) * 1e3:.3f}"
          f" ms; on mean {mean_on:.3f} ms p95 {percentile(on_times, 95) * 1e3:.3f} ms; on/off {mean_on / mean_off:.3f}"
          f" (bridge: {bridge.get('states', 0)} states, {bridge.get('events', 0)} events sent); the tick's own share, "
          f"bridge.publish(16 states): {bridge.get('publish_us', float('nan')):.1f} us a call")
    if p95 >= 1000:
        problems.append(f"state-to-hub p95 {p95:.0f} ms >= 1 s")
    if lost != 0:
        problems.append(f"{lost} events lost")
    if result["missing"] or result["lost"]:
        problems.append(f"the hub's events not complete: {result['missing']} missing, {result['lost']} lost")
    if mean_on > 1.10 * mean_off:
        problems.append(f"tick with MQTT {mean_on / mean_off:.2f}x the tick without (goal within 10 %)")
    for p in problems:
        print("GOAL MISSED:", p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
