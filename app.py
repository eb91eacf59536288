"""payg's composition root: read the config, build every object, start the loop and the web server.

`python app.py --config FILE` and `payg run --config FILE` are the same.
Nothing is built at import time.
"""

from __future__ import annotations

import atexit
import fcntl
import logging
import os
import signal
import sys
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent
log = logging.getLogger("payg")


@dataclass
class Runtime:
    config: object
    clock: object
    journal: object
    ledger: object
    controller: object
    watcher: object
    meters: dict
    relays: dict


def build(config, clock=None) -> Runtime:
    """Every object of a controller, wired, not started. Tests pass a virtual clock."""
    from hardware.simulated import LoadModel, SimulatedMeter, SimulatedRelay
    from ledgers.mock import MockLedger
    from payg.billing import Tariff
    from payg.clock import SystemClock
    from payg.controller import Controller, Socket
    from payg.deposits import DepositWatcher
    from payg.journal import SqliteJournal

    clock = clock or SystemClock()
    data_dir = config.controller.data_dir
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    journal = SqliteJournal(data_dir / "journal.sqlite")
    ledger = MockLedger(data_dir / "mock-ledger.sqlite", clock, [s.id for s in config.sockets],
                        finality_s=config.ledger.mock.finality_s)
    sockets, meters, relays = [], {}, {}
    for sc in config.sockets:
        relay = SimulatedRelay(clock)
        state_path = None
        if sc.meter.persist:
            (data_dir / "simulated").mkdir(exist_ok=True, mode=0o700)
            state_path = data_dir / "simulated" / f"{sc.id}.json"
        meter = SimulatedMeter(clock, LoadModel(sc.meter.load), relay, sc.meter.voltage_v, state_path)
        meters[sc.id], relays[sc.id] = meter, relay
        sockets.append(Socket(sc.id, sc.name, meter, relay, sc.max_power_w))
    c = config.controller
    controller = Controller(sockets, journal, clock, Tariff(config.tariff.tokens_per_wh, 1),
                            poll_interval_s=c.poll_interval_s, grace_s=c.meter_offline_grace_s,
                            usage_entry_s=c.usage_entry_s, counter_confirmations=c.counter_confirmations,
                            predictive_cutoff=c.predictive_cutoff)
    watcher = DepositWatcher(ledger, journal, clock, on_credit=controller.credits_arrived)
    return Runtime(config, clock, journal, ledger, controller, watcher, meters, relays)


class _DataDirLock:
    """One controller per data directory: two would bill the same meters twice."""

    def __init__(self, data_dir: Path):
        self.path = data_dir / "controller.lock"
        self._fh = open(self.path, "a+")
        try:
            fcntl.flock(self._fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._fh.close()
            raise SystemExit(f"payg: another controller is running on {data_dir} (lock {self.path})") from None
        self._fh.seek(0)
        self._fh.truncate()
        self._fh.write(f"{os.getpid()}\n")
        self._fh.flush()


def run(config) -> int:
    from apscheduler.schedulers.background import BackgroundScheduler
    from werkzeug.serving import make_server

    from payg.errors import LedgerUnavailable
    from payg.web import WebServices, create_app

    logging.basicConfig(level=config.controller.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    config.controller.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    lock = _DataDirLock(config.controller.data_dir)
    rt = build(config)
    controller = rt.controller
    controller.start()  # every relay open before anything else happens
    atexit.register(controller.shutdown)

    scheduler = BackgroundScheduler(timezone=timezone.utc,
                                    job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None})
    last_tick = {"at": None}

    def tick_job() -> None:
        try:
            controller.tick()
        except Exception:
            log.exception("tick failed; opening every relay until a tick succeeds")
            controller.trip("tick failed")
            return
        last_tick["at"] = rt.clock.now()
        schedule_cutoff()

    def schedule_cutoff() -> None:
        cut = controller.next_cutoff()
        if cut is not None:
            scheduler.add_job(controller.enforce_cutoffs, "date", id="cutoff", replace_existing=True,
                              run_date=datetime.fromtimestamp(cut, timezone.utc))

    ledger_state = {"error": None}

    def deposit_job() -> None:
        try:
            rt.watcher.poll()
        except LedgerUnavailable as exc:
            if ledger_state["error"] != str(exc):
                log.warning("ledger unavailable (deposits wait, metering goes on): %s", exc)
            ledger_state["error"] = str(exc)
            return
        if ledger_state["error"] is not None:
            log.info("ledger reachable again")
        ledger_state["error"] = None
        schedule_cutoff()

    def health() -> dict:
        at = last_tick["at"]
        fresh = at is not None and rt.clock.now() - at <= 3 * config.controller.poll_interval_s + 1
        return {"status": "ok" if fresh else "stalled", "ticks": controller.ticks, "last_tick_at": at,
                "ledger": rt.watcher.status, "ledger_error": rt.watcher.last_error,
                "sockets": len(controller.sockets)}

    now = datetime.now(timezone.utc)
    scheduler.add_job(tick_job, "interval", seconds=config.controller.poll_interval_s, id="tick", next_run_time=now)
    scheduler.add_job(deposit_job, "interval", seconds=config.controller.deposit_poll_interval_s, id="deposits",
                      next_run_time=now)

    stop = threading.Event()

    def on_signal(signum, _frame):
        if stop.is_set():
            return  # already stopping; a second Ctrl-C must not interrupt the shutdown
        log.info("signal %s: stopping", signal.Signals(signum).name)
        stop.set()
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    server = None
    try:
        if config.web.enabled:
            services = WebServices(controller, rt.journal, rt.ledger, payer=rt.ledger, health=health)
            try:
                server = make_server(config.web.host, config.web.port, create_app(services, ROOT / "templates"),
                                     threaded=True)
            except (OSError, SystemExit) as exc:  # werkzeug exits (SystemExit 1) when the port is taken
                log.error("cannot serve on %s:%s: %s", config.web.host, config.web.port,
                          exc if isinstance(exc, OSError) else "address unavailable (in use?)")
                return 1
        scheduler.start()
        log.info("payg running: %d sockets, ledger %s, web %s", len(controller.sockets), rt.ledger.name,
                 f"http://{config.web.host}:{config.web.port}" if server else "off")
        if server is not None:
            server.serve_forever()
        else:
            while not stop.wait(3600):
                pass
    except SystemExit:
        pass
    finally:
        if scheduler.running:
            scheduler.shutdown(wait=True)
        controller.shutdown()
        if server is not None:
            server.server_close()
        rt.journal.close()
        rt.ledger.close()
        del lock
    return 0


def main(argv: list[str] | None = None) -> int:
    from payg import cli
    from payg import config as config_module
    from payg.errors import ConfigError

    args = cli.parse_args(argv)
    try:
        config = config_module.load(args.config)
    except ConfigError as exc:
        print(f"payg: invalid configuration: {exc}", file=sys.stderr)
        return 2
    if args.command == "run":
        return run(config)
    if args.command == "deposit":
        if config.socket(args.socket) is None:
            return cli.unknown_socket(args.socket, config)
        from ledgers.mock import MockLedger
        from payg.clock import SystemClock

        config.controller.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        ledger = MockLedger(config.controller.data_dir / "mock-ledger.sqlite", SystemClock(),
                            [s.id for s in config.sockets], finality_s=config.ledger.mock.finality_s)
        try:
            return cli.cmd_deposit(args, config, ledger)
        finally:
            ledger.close()
    journal_path = config.controller.data_dir / "journal.sqlite"
    journal = None
    if journal_path.exists():
        from payg.journal import SqliteJournal

        journal = SqliteJournal(journal_path)
    try:
        if args.command == "status":
            return cli.cmd_status(config, journal, cli.fetch_live_states(config))
        if journal is None:
            print(f"payg: no journal at {journal_path} yet (has the controller run?)", file=sys.stderr)
            return 1
        return cli.cmd_journal(args, config, journal)
    finally:
        if journal is not None:
            journal.close()


if __name__ == "__main__":
    sys.exit(main())
