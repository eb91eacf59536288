"""VirtualDriver: runs a Site's jobs on a virtual clock, as payg/adapters/scheduler.py does in real time.

Each periodic job of `Site.jobs()` runs at start + n * its interval (no drift over long
runs), and after every job the one-shot cut-off is set to `Site.next_cutoff()`. When two are
due at the same moment the cut-off runs first, then the jobs in their `order`. Time moves
only from one event to the next: tests, benchmarks and simulations run hours in seconds,
without sleeping.
"""

from __future__ import annotations

from collections.abc import Callable

from payg.adapters.clocks import ManualClock
from payg.services.site import Site


class VirtualDriver:
    def __init__(self, site: Site, clock: ManualClock):
        self.site = site
        self.clock = clock
        self.start = clock.now()
        self.jobs = site.jobs()
        self._by_name = {job.name: job for job in self.jobs}
        self.runs = {job.name: 0 for job in self.jobs}
        self.cutoff: float | None = None

    @property
    def ticks(self) -> int:
        return self.runs["tick"]

    @property
    def deposit_polls(self) -> int:
        return self.runs["deposits"]

    @property
    def poll_s(self) -> float:
        return self.site.poll_interval_s

    def _events(self) -> list[tuple[float, int, str]]:
        events = [(self.start + self.runs[job.name] * job.interval_s, job.order, job.name) for job in self.jobs]
        if self.cutoff is not None:
            events.append((self.cutoff, -1, "cutoff"))
        return events

    def next_event_at(self) -> float:
        return min(at for at, _, _ in self._events())

    def step(self) -> str:
        """Advance to the next event and run it. Returns its name: "tick", "deposits", "supply" or "cutoff"."""
        return self._run(min(self._events()))

    def _run(self, event: tuple[float, int, str]) -> str:
        at, _, name = event
        if at > self.clock.now():
            self.clock.set(at)
        if name == "cutoff":
            self.site.enforce_cutoff()
        else:
            self.runs[name] += 1
            self._by_name[name].run()
        self.cutoff = self.site.next_cutoff()
        return name

    def run_until(self, end: float, stop: Callable[[], bool] | None = None) -> None:
        """Run every event up to `end` (or until `stop()` is true), then set the clock to `end`."""
        while (event := min(self._events()))[0] <= end:
            self._run(event)
            if stop is not None and stop():
                return
        self.clock.set(max(end, self.clock.now()))

    def run_for(self, seconds: float) -> None:
        self.run_until(self.clock.now() + seconds)

    def run_ticks(self, ticks: int) -> None:
        target = self.ticks + ticks
        while self.ticks < target:
            self.step()
