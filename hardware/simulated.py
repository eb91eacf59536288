"""Simulated hardware: a whole-Wh energy meter and a relay, driven by an injected clock.

The meter integrates its load exactly over the times its relay was closed
(the relay keeps its switching history), and shows the result the way a
PZEM-004T does: a cumulative counter in whole Wh. It can persist its counter
in the data directory so that, like a real meter, it keeps counting across
controller restarts. Like a real meter's non-volatile register it writes the
file when the counter it shows steps, before showing it, not on every read: a
restart loses the energy below the next Wh (never shown, so never billed), and
the counter never goes back.
"""

from __future__ import annotations

import json
import math
import os
import random
from collections import deque
from fractions import Fraction
from pathlib import Path

from payg.domain.settings import ConstantLoad, RandomLoad, ScheduleLoad
from payg.errors import MeterUnavailable, RelayError
from payg.ports import Clock, MeterReading, Relay


class SimulatedRelay:
    """Records its switching history: the last `history_size` changes, as (time, closed)."""

    def __init__(self, clock: Clock, history_size: int = 10_000):
        self._clock = clock
        self._closed = False
        self.history: deque[tuple[float, bool]] = deque([(clock.now(), False)], maxlen=history_size)
        self._switches: list[tuple[float, bool]] = [(clock.now(), False)]  # what the meter has not integrated yet

    def set_closed(self, closed: bool) -> None:
        if closed != self._closed:
            self._closed = closed
            self.history.append((self._clock.now(), closed))
            self._switches.append((self._clock.now(), closed))

    def is_closed(self) -> bool:
        return self._closed

    def closed_intervals(self, start: float, end: float) -> list[tuple[float, float]]:
        """The parts of [start, end] during which the relay was closed."""
        switches = self._switches
        intervals = []
        for i, (at, closed) in enumerate(switches):
            if not closed:
                continue
            until = switches[i + 1][0] if i + 1 < len(switches) else math.inf
            a, b = max(at, start), min(until, end)
            if b > a:
                intervals.append((a, b))
        # Switches before `end` other than the last one are never needed again.
        keep = max((i for i, (at, _) in enumerate(switches) if at <= end), default=0)
        if keep > 0:
            del switches[:keep]
        return intervals


class SeriesRelay:
    """Two relays in series, read-only: a line that carries power only while both are closed
    (a socket fed through a neighbour's supply relay, in the two-controller trade demo)."""

    def __init__(self, first, second):
        self.first, self.second = first, second

    def set_closed(self, closed: bool) -> None:
        raise RelayError("a series view cannot be switched; switch one of its relays")

    def is_closed(self) -> bool:
        return self.first.is_closed() and self.second.is_closed()

    def closed_intervals(self, start: float, end: float) -> list[tuple[float, float]]:
        a, b = self.first.closed_intervals(start, end), self.second.closed_intervals(start, end)
        out, i, j = [], 0, 0
        while i < len(a) and j < len(b):
            lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
            if lo < hi:
                out.append((lo, hi))
            if a[i][1] < b[j][1]:
                i += 1
            else:
                j += 1
        return out


class LoadModel:
    """Piecewise-constant load in W as a function of time."""

    def __init__(self, spec: ConstantLoad | ScheduleLoad | RandomLoad):
        self.spec = spec

    def power_w(self, at: float) -> float:
        s = self.spec
        if isinstance(s, ConstantLoad):
            return s.load_w
        if isinstance(s, ScheduleLoad):
            phase = at % s.repeat_s
            value = s.steps[0][1]
            for step_at, load_w in s.steps:
                if step_at <= phase:
                    value = load_w
            return value
        index = math.floor(at / s.step_s)
        return s.min_w + (s.max_w - s.min_w) * random.Random(s.seed * 2_147_483_647 + index).random()

    def next_change(self, at: float) -> float:
        s = self.spec
        if isinstance(s, ConstantLoad):
            return math.inf
        if isinstance(s, ScheduleLoad):
            cycle = math.floor(at / s.repeat_s) * s.repeat_s
            for step_at, _ in s.steps:
                if cycle + step_at > at:
                    return cycle + step_at
            return cycle + s.repeat_s
        return (math.floor(at / s.step_s) + 1) * s.step_s

    def energy_wh(self, start: float, end: float) -> float:
        total = 0.0
        at = start
        while at < end:
            until = min(self.next_change(at), end)
            total += self.power_w(at) * (until - at) / 3600.0
            at = until
        return total


class SimulatedMeter:
    """A cumulative whole-Wh counter over a simulated load.

    Faults for demos and tests: set `offline = True` to make reads fail,
    call `reset_counter()` to emulate a meter reset (the counter restarts at 0).
    """

    def __init__(self, clock: Clock, load: LoadModel, relay: SimulatedRelay | Relay, voltage_v: float = 230.0,
                 state_path: Path | None = None):
        self._clock = clock
        self._load = load
        self._relay = relay
        self.voltage_v = voltage_v
        self._state_path = state_path
        self.offline = False
        self._at = clock.now()
        self._energy_wh = 0.0  # true energy, finer than the counter shows
        self._saved: int | None = None  # the counter the state file holds, as this meter last wrote it
        if state_path is not None and state_path.exists():
            try:
                saved = json.loads(state_path.read_text())
                self._energy_wh = float(saved["energy_wh"])
                self._saved = int(saved["counter_wh"])
            except (ValueError, KeyError, TypeError) as exc:
                raise MeterUnavailable(f"simulated meter state {state_path} is unreadable: {exc}") from exc

    @property
    def true_energy_wh(self) -> float:
        self._advance()
        return self._energy_wh

    def _advance(self) -> None:
        now = self._clock.now()
        if now <= self._at:
            return
        if hasattr(self._relay, "closed_intervals"):
            intervals = self._relay.closed_intervals(self._at, now)
        else:  # a real relay (a GPIO board on the bench): take its state since the last read
            intervals = [(self._at, now)] if self._relay.is_closed() else []
        for a, b in intervals:
            self._energy_wh += self._load.energy_wh(a, b)
        self._at = now

    def feed_through(self, relay) -> None:
        """From now on the load gets power only while `relay` is closed too (see SeriesRelay)."""
        self._advance()
        self._relay = SeriesRelay(self._relay, relay)

    def reset_counter(self) -> None:
        self._advance()
        self._energy_wh = 0.0
        self._save()

    def read(self) -> MeterReading:
        if self.offline:
            raise MeterUnavailable("simulated meter is offline")
        self._advance()
        now = self._at
        power = self._load.power_w(now) if self._relay.is_closed() else 0.0
        counter = self._counter()
        self._save()
        return MeterReading(energy_wh=counter, power_w=power, voltage_v=self.voltage_v,
                            current_a=round(power / self.voltage_v, 3), at=now, resolution_wh=Fraction(1))

    def _counter(self) -> int:
        # The integral is summed in floating point: 6 h at 1 kW comes to 5999.9999999979 Wh,
        # which a real meter would show as 6000. A micro-Wh is far below any meter's resolution.
        return math.floor(self._energy_wh + 1e-6)

    def _save(self) -> None:
        if self._state_path is None:
            return
        counter = self._counter()
        if counter == self._saved:  # the counter shown has not stepped: the file has it already
            return
        tmp = self._state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"energy_wh": self._energy_wh, "counter_wh": counter}))
        os.replace(tmp, self._state_path)
        self._saved = counter
