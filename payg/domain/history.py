"""A socket's history as the charts and the tenant's history page show it, made from the journal's entries.

The journal keeps no readings, only what was billed: a usage entry per socket per `usage_entry_s` period (a
quarter hour by default), standing charges, credits. So a chart's power is the energy billed in a bucket over the
bucket's length (its average power), and its balance the sum of every entry up to the bucket's end. Buckets are
fixed steps of epoch time, few enough to draw on a phone (at most MAX_BUCKETS), and the bucket still running ends
the series at `now` (its power over the time it has run, once it holds a usage entry: the use since the last
entry is not in one yet).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from payg.domain.money import tokens_shown

Span = Literal["hour", "day", "month"]
SPANS: tuple[Span, ...] = get_args(Span)
MAX_BUCKETS = 120
# span -> (its length, one bucket): an hour of minutes (no finer: a usage entry holds at least a tick's use, and
# entries longer than a bucket widen it, see `window`), a day of quarter hours, 30 days of 6 hours
STEPS: dict[Span, tuple[int, int]] = {"hour": (3600, 60), "day": (86_400, 900), "month": (30 * 86_400, 21_600)}
DAY_BUCKET_S = 900  # every time zone's midnight falls on a quarter hour of epoch time


@dataclass(frozen=True)
class Bucket:
    """What the journal holds for one bucket of a socket: its index from the window's start, the energy billed
    (Wh), what usage and standing charges took (journal units, positive) and the sum of all its entries."""

    index: int
    energy_wh: float
    used_units: int
    net_units: int


@dataclass(frozen=True)
class Window:
    """`count` whole buckets of `step_s` from `start`, then the one running at `now` (none when `now` is a bucket's
    end)."""

    start: float
    step_s: int
    count: int
    now: float

    @property
    def end(self) -> float:
        return self.start + self.step_s * self.count

    @property
    def buckets(self) -> int:
        """How many buckets the journal is asked for: the whole ones and the running one."""
        return self.count + (1 if self.now > self.end else 0)


def window(now: float, span: Span, entry_s: float = 0.0) -> Window:
    """The span's buckets that have ended by `now`, aligned on multiples of the step, and the one running. A step
    shorter than a usage entry (`entry_s`, the controller's `usage_entry_s`) would hold a whole entry in one bucket
    and none in the next: it is widened to a multiple of itself that holds one (an hour of 900 s entries is four
    quarter hours; the live readings draw the minutes since the controller started)."""
    length, step = STEPS[span]
    if entry_s > step:
        step *= -(-int(entry_s) // step)
    count = length // step
    end = (now // step) * step
    return Window(end - count * step, step, count, now)


@dataclass(frozen=True)
class Series:
    """Per bucket: its end (epoch s), the average power over it (W) and the balance at its end (tokens); None
    before the socket's first entry."""

    t: list[float]
    power_w: list[float | None]
    balance_tokens: list[int | float | None]


def series(w: Window, opening_units: int, buckets: list[Bucket], first_at: float | None,
           units_per_token: int) -> Series:
    """The chart of a window: `opening_units` is the sum of the socket's entries before it, `first_at` the time of
    its first entry ever (None: none yet)."""
    by_index = {b.index: b for b in buckets}
    t: list[float] = []
    power: list[float | None] = []
    balance: list[int | float | None] = []
    units = opening_units
    for i in range(w.buckets):
        begin = w.start + i * w.step_s
        end = min(begin + w.step_s, w.now)
        b = by_index.get(i)
        t.append(end)
        if first_at is None or end <= first_at:
            power.append(None)
            balance.append(None)
            continue
        if b is not None:
            units += b.net_units
        if b is not None and b.energy_wh:
            power.append(round(b.energy_wh * 3600 / (end - begin), 1))
        else:  # nothing billed: no draw, or (the bucket running) not billed yet
            power.append(0.0 if i < w.count else None)
        balance.append(tokens_shown(units, units_per_token))
    return Series(t, power, balance)


@dataclass(frozen=True)
class DayUse:
    start: float  # local midnight, epoch s
    energy_wh: float
    used_units: int  # usage and standing charges


def per_day(midnights: list[float], start: float, step_s: int, buckets: list[Bucket]) -> list[DayUse]:
    """Buckets of `step_s` from `start` summed into the days that begin at `midnights` (ascending; the last one
    ends the last day), newest day first."""
    days = [[0.0, 0] for _ in midnights[:-1]]
    k = 0
    for b in sorted(buckets, key=lambda b: b.index):
        at = start + b.index * step_s
        while k < len(days) and at >= midnights[k + 1]:
            k += 1
        if k == len(days):
            break
        if at >= midnights[k]:
            days[k][0] += b.energy_wh
            days[k][1] += b.used_units
    return [DayUse(midnights[i], round(e, 3), int(u)) for i, (e, u) in reversed(list(enumerate(days)))]
