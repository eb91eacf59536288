"""The clocks: the system's, and a virtual one that moves only when told (tests, benchmarks, simulations).

Both match payg.ports.Clock; everything that needs 'now' takes one.
"""

from __future__ import annotations

import threading
import time


class SystemClock:
    def now(self) -> float:
        return time.time()


class ManualClock:
    """A virtual clock for simulations, benchmarks and tests: time moves only when told."""

    def __init__(self, start: float = 1_700_000_000.0):
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("a clock does not go backwards")
        with self._lock:
            self._now += seconds
            return self._now

    def set(self, at: float) -> None:
        with self._lock:
            if at < self._now:
                raise ValueError("a clock does not go backwards")
            self._now = at
