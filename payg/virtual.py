"""Drive a controller on a virtual clock exactly as the scheduler in app.py does in real time.

Ticks every poll interval, deposit polls on their own interval, and the
predictive cut-off at the time the controller asks for. Used by tests,
benchmarks and simulations; no sleeping.
"""

from __future__ import annotations

import math
from typing import Callable

from payg.adapters.clocks import ManualClock
from payg.controller import Controller
from payg.services.deposits import DepositWatcher
from payg.errors import LedgerUnavailable


class VirtualLoop:
    def __init__(self, controller: Controller, clock: ManualClock, watcher: DepositWatcher | None = None,
                 deposit_poll_interval_s: float = 1.0):
        self.controller = controller
        self.clock = clock
        self.watcher = watcher
        self.poll_s = controller.poll_interval_s
        self.deposit_poll_interval_s = deposit_poll_interval_s
        self.start = clock.now()
        self.next_tick = self.start
        self.next_poll = self.start if watcher is not None else math.inf
        self.cutoff: float | None = None
        self.ticks = 0
        self.deposit_polls = 0
        self.ledger_errors = 0

    def next_event_at(self) -> float:
        return min(self.next_tick, self.next_poll, self.cutoff if self.cutoff is not None else math.inf)

    def _tick(self) -> None:
        self.controller.tick()

    def step(self) -> str:
        """Advance to the next scheduled event and run it. Returns "tick", "deposits" or "cutoff"."""
        candidates = [(self.next_tick, 0, "tick"), (self.next_poll, 1, "deposits")]
        if self.cutoff is not None:
            candidates.append((self.cutoff, -1, "cutoff"))
        at, _, name = min(candidates)
        if at > self.clock.now():
            self.clock.set(at)
        if name == "tick":
            self.ticks += 1
            self.next_tick = self.start + self.ticks * self.poll_s  # no drift over long runs
            self._tick()
        elif name == "deposits":
            self.deposit_polls += 1
            self.next_poll = self.start + self.deposit_polls * self.deposit_poll_interval_s
            try:
                self.watcher.poll()
            except LedgerUnavailable:
                self.ledger_errors += 1
        else:
            self.controller.enforce_cutoffs()
        self.cutoff = self.controller.next_cutoff()
        return name

    def run_until(self, end: float, stop: Callable[[], bool] | None = None) -> None:
        """Run every event up to `end` (or until `stop()` is true), then set the clock to `end`."""
        while self.next_event_at() <= end:
            self.step()
            if stop is not None and stop():
                return
        self.clock.set(max(end, self.clock.now()))

    def run_for(self, seconds: float) -> None:
        self.run_until(self.clock.now() + seconds)

    def run_ticks(self, ticks: int) -> None:
        target = self.ticks + ticks
        while self.ticks < target:
            self.step()
