"""Site: the controller's loop as one object, one plain method per job.

    tick            every poll_interval_s: meter, bill, decide relays; a tick that fails trips every
                    relay open until a tick succeeds; a good tick pings the watchdog
    poll_deposits   every deposit_poll_interval_s: credit final ledger deposits
    supply          every poll_interval_s when the controller trades: open supply, stream vouchers
    enforce_cutoff  once, at next_cutoff(): the predicted moment a socket's credit runs out

Every tick, failed or not, is timed with `timer` (a monotonic clock in seconds, real time even
when the loop runs on a virtual clock: it measures the work, not the schedule) and handed to
`on_tick`, the one observer (the web's /metrics, payg/web/metrics.py); it must not raise.

`jobs()` lists the periodic ones. A driver runs them: payg/adapters/scheduler.py on
APScheduler in production, payg/adapters/virtual.py on a virtual clock in tests and
benchmarks. Both run these same methods and, after every job, schedule enforce_cutoff at
next_cutoff(); nothing else decides when or how a job runs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from payg.errors import LedgerUnavailable
from payg.ports import Clock, Notifier
from payg.services.deposits import DepositWatcher
from payg.services.metering import Metering
from payg.services.supply import SupplyDesk

log = logging.getLogger("payg")


@dataclass(frozen=True)
class Job:
    name: str
    interval_s: float
    run: Callable[[], None]
    order: int  # which runs first when two are due at the same moment (lower first)


class Site:
    def __init__(self, metering: Metering, watcher: DepositWatcher, clock: Clock, *, deposit_poll_interval_s: float,
                 supply: SupplyDesk | None = None, own_url: str = "", notifier: Notifier | None = None,
                 on_tick: Callable[[float], None] | None = None, timer: Callable[[], float] = time.perf_counter):
        self.metering = metering
        self.watcher = watcher
        self.clock = clock
        self.poll_interval_s = metering.settings.poll_interval_s
        self.deposit_poll_interval_s = deposit_poll_interval_s
        self.supply_desk = supply
        self.own_url = own_url
        self.notifier = notifier
        self.last_tick_at: float | None = None
        self.failed_ticks = 0
        self.ledger_error: str | None = None
        self.ledger_errors = 0
        self.last_poll_at: float | None = None  # the last deposit poll that reached the ledger
        self.on_tick = on_tick
        self.timer = timer

    def jobs(self) -> list[Job]:
        jobs = [Job("tick", self.poll_interval_s, self.tick, 0),
                Job("deposits", self.deposit_poll_interval_s, self.poll_deposits, 1)]
        if self.supply_desk is not None:
            jobs.append(Job("supply", self.poll_interval_s, self.supply, 2))
        return jobs

    def start(self) -> None:
        """Every relay open before anything else happens."""
        self.metering.start()
        watchdog_s = self.notifier.watchdog_interval_s() if self.notifier is not None else None
        if watchdog_s is not None and self.poll_interval_s > watchdog_s:
            log.warning("poll_interval_s (%s s) is longer than half of systemd's WatchdogSec: the watchdog will kill "
                        "a healthy controller; raise WatchdogSec", self.poll_interval_s)

    def tick(self) -> None:
        started = self.timer()
        try:
            self._tick()
        finally:
            if self.on_tick is not None:
                self.on_tick(self.timer() - started)

    def _tick(self) -> None:
        try:
            self.metering.tick()
        except Exception:
            self.failed_ticks += 1
            log.exception("tick failed; opening every relay until a tick succeeds")
            self.metering.trip("tick failed")
            return
        self.last_tick_at = self.clock.now()
        if self.notifier is not None:
            self.notifier.watchdog()  # systemd restarts a controller whose loop stops ticking

    def poll_deposits(self) -> None:
        try:
            self.watcher.poll()
        except LedgerUnavailable as exc:
            self.ledger_errors += 1
            if self.ledger_error != str(exc):
                log.warning("ledger unavailable (deposits wait, metering goes on): %s", exc)
            self.ledger_error = str(exc)
            return
        self.last_poll_at = self.clock.now()
        if self.ledger_error is not None:
            log.info("ledger reachable again")
        self.ledger_error = None

    def supply(self) -> None:
        if self.supply_desk is None:
            raise RuntimeError("Site.supply without a supply desk (its job exists only with one)")
        try:
            self.supply_desk.tick(self.own_url)
        except LedgerUnavailable as exc:
            log.warning("trade: ledger unavailable: %s", exc)
        except Exception:
            log.exception("trade: supply step failed")

    def next_cutoff(self) -> float | None:
        return self.metering.next_cutoff()

    def enforce_cutoff(self) -> None:
        self.metering.enforce_cutoffs()

    def health(self) -> dict[str, Any]:
        at = self.last_tick_at
        fresh = at is not None and self.clock.now() - at <= 3 * self.poll_interval_s + 1
        return {"status": "ok" if fresh else "stalled", "ticks": self.metering.ticks, "last_tick_at": at,
                "ledger": self.watcher.status, "ledger_error": self.watcher.last_error,
                "sockets": len(self.metering.sockets)}

    def shutdown(self) -> None:
        """Every relay open, the metered energy billed (once; a second call does nothing)."""
        self.metering.shutdown()
