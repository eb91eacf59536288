"""Drive a controller on a virtual clock exactly as the scheduler in app.py does in real time.

Ticks every poll interval, deposit polls on their own interval, and the
predictive cut-off at the time the controller asks for. Used by tests,
benchmarks and simulations; no sleeping.
"""

from __future__ import annotations

import math

from payg.clock import ManualClock
from payg.controller import Controller
from payg.deposits import DepositWatcher
from payg.errors import LedgerUnavailable


class VirtualLoop:
    def __init__(self, controller: Controller, clock: ManualClock, watcher: DepositWatcher | None = None,
                 deposit_poll_interval_s: float = 1.0):
        self.controller = controller
        self.clock = clock
        self.watcher = watcher
        self.deposit_poll_interval_s = deposit_poll_interval_s
        start = clock.now()
        self.next_tick = start
        self.next_poll = start if watcher is not None else math.inf
        self.cutoff: float | None = None
        self.ledger_errors = 0

    def step(self) -> str:
        """Advance to the next scheduled event and run it. Returns its name."""
        candidates = [(self.next_tick, 0, "tick"), (self.next_poll, 1, "deposits")]
        if self.cutoff is not None:
            candidates.append((self.cutoff, -1, "cutoff"))
        at, _, name = min(candidates)
        if at > self.clock.now():
            self.clock.set(at)
        if name == "tick":
            self.next_tick += self.controller.poll_interval_s
            self.controller.tick()
        elif name == "deposits":
            self.next_poll += self.deposit_poll_interval_s
            try:
                self.watcher.poll()
            except LedgerUnavailable:
                self.ledger_errors += 1
        else:
            self.controller.enforce_cutoffs()
        self.cutoff = self.controller.next_cutoff()
        return name

    def run_for(self, seconds: float) -> None:
        end = self.clock.now() + seconds
        while True:
            upcoming = min(self.next_tick, self.next_poll, self.cutoff if self.cutoff is not None else math.inf)
            if upcoming > end:
                break
            self.step()
        self.clock.set(max(end, self.clock.now()))

    def run_ticks(self, ticks: int) -> None:
        target = self.controller.ticks + ticks
        while self.controller.ticks < target:
            self.step()
