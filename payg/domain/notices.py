"""What a prepaid tenant is owed notice of, and the landlord a record of: low-credit crossings and the
times a socket was off for lack of credit. Pure rules; payg/services/notices.py keeps them per socket.

- **Low credit**: with `warn_hours = (24, 2)`, a socket whose credit would last less than 24 h at
  its present power crosses the first level, less than 2 h the second. Each crossing is recorded
  once. Levels only go up as the credit drains; a new credit (the balance rising) lets them
  fall again, so a power that wavers around a threshold makes no string of warnings.
- **The pages' warning** (`low_credit`): shown when the credit crosses into low through use (at or under
  `[web] low_credit_tokens`, or little time left at the present power), never right after a top-up.
- **Off for lack of credit**: the start and the end of each such time are recorded; the landlord
  view flags a socket that was off this way for more than `flag_off_hours` in the last 7 days,
  a sign that a household is rationing itself and may need help.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

WEEK_S = 7 * 24 * 3600


@dataclass(frozen=True)
class NoticeSettings:
    warn_hours: tuple[float, ...] = ()   # descending thresholds of time left at the present power; () : off
    flag_off_hours: float = 24.0         # off for lack of credit longer than this in 7 days: flagged
    per_socket: tuple[tuple[str, tuple[float, ...]], ...] = ()  # a socket's own thresholds over warn_hours

    def warn_for(self, socket_id: str) -> tuple[float, ...]:
        return dict(self.per_socket).get(socket_id, self.warn_hours)


def hours_left(available_units: float, power_w: float | None, units_per_wh: float) -> float:
    """How long the credit lasts at this power (math.inf without a draw)."""
    if available_units <= 0:
        return 0.0
    if not power_w or power_w <= 0 or units_per_wh <= 0:
        return math.inf
    return available_units / units_per_wh / power_w


def warning_level(left_h: float, warn_hours: tuple[float, ...]) -> int:
    """How many thresholds the time left is below (0: none)."""
    return sum(1 for h in warn_hours if left_h < h)


def next_level(current: int, computed: int, credited: bool) -> int:
    """Levels rise with the drain and fall only after a credit."""
    return computed if credited or computed > current else current


@dataclass(frozen=True)
class LowCredit:
    """The pages' low-credit warning for one socket, as last decided: whether it is shown, whether the credit was
    low (`below`: at or under the balance threshold, or little time left), and the balance and time it was
    decided at."""

    warned: bool
    below: bool
    units: int
    at: float


def low_credit(previous: LowCredit | None, *, units: int, below: bool, at: float) -> LowCredit:
    """The warning fires when the credit crosses into low through use, and holds while it stays low. A top-up (the
    balance rising) silences it: a tenant who has just paid is not told to top up soon, even when what was paid
    leaves the credit low; the next crossing warns again. An older observation than the last changes nothing, so
    views made out of order cannot pass for a top-up. No previous decision (a start): low credit warns."""
    if previous is not None and at < previous.at:
        return previous
    credited = previous is not None and units > previous.units
    crossed = below and (previous is None or not previous.below)
    warned = below and not credited and (crossed or (previous is not None and previous.warned))
    return LowCredit(warned, below, units, at)


def off_hours(intervals: list[tuple[float, float | None]], now: float, window_s: float = WEEK_S) -> float:
    """Hours off for lack of credit within the last `window_s`: intervals (start, end or None while off)."""
    since = now - window_s
    total = 0.0
    for start, end in intervals:
        stop = now if end is None else end
        total += max(0.0, min(stop, now) - max(start, since))
    return total / 3600


def credit_off_intervals(events: list[dict[str, Any]]) -> list[tuple[float, float | None]]:
    """From events (any order) of kinds credit_off / credit_on, the off intervals, oldest first."""
    out: list[tuple[float, float | None]] = []
    start = None
    for e in sorted(events, key=lambda e: e["id"]):
        if e["kind"] == "credit_off" and start is None:
            start = e["at"]
        elif e["kind"] == "credit_on" and start is not None:
            out.append((start, e["at"]))
            start = None
    if start is not None:
        out.append((start, None))
    return out
