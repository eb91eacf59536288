"""Friendly-credit periods: the hours, weekdays and holidays during which a socket whose credit runs out is
not switched off ([protections.friendly_credit]).

Usage during such a period is still billed and becomes debt (a negative balance). If there is
still no credit when the period ends, the socket goes off then. Periods that touch (a weekday
evening window running into a friendly Saturday) are one period. A period only keeps a socket
on: one already off for lack of credit when it starts stays off.

Times are the controller's local time (`[web] timezone`, else the system's), given as a tzinfo
(None: the system's local time through the C library, which knows its own DST rules).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo
from functools import lru_cache

from payg.domain.config_keys import setting

SEARCH_DAYS = 400  # a period longer than this (every day friendly) never ends


@dataclass(frozen=True)
class FriendlyCredit:
    # hours: (start, end) in minutes after midnight; days: 0 = Monday; tz: the controller's, not a key
    hours: tuple[tuple[int, int], ...] = setting((), "daily windows; one that ends before it starts runs past "
                                                 "midnight (`\"16:00-08:00\"`)", kind='list of `"HH:MM-HH:MM"`',
                                                 shown="`[]`", by_hand=True)
    days: frozenset[int] = setting(frozenset(), 'weekdays friendly all day (`["saturday", "sunday"]`)',
                                   kind="list of weekday names", shown="`[]`", by_hand=True)
    holidays: frozenset[date] = setting(frozenset(), "dates friendly all day (public holidays)",
                                        kind='list of `"YYYY-MM-DD"`', shown="`[]`", by_hand=True)
    tz: tzinfo | None = field(default=None, compare=False, metadata={"not_a_key": True})

    @property
    def enabled(self) -> bool:
        return bool(self.hours or self.days or self.holidays)

    def _local(self, t: float) -> datetime:
        return datetime.fromtimestamp(t, self.tz) if self.tz is not None else datetime.fromtimestamp(t)

    def _instant(self, d: date, minute: int) -> float:
        local = datetime(d.year, d.month, d.day, minute // 60, minute % 60, tzinfo=self.tz)
        return local.timestamp()

    def covers(self, t: float) -> bool:
        return self._covers_local(self._local(t))

    def _covers_local(self, local: datetime) -> bool:
        if local.weekday() in self.days or local.date() in self.holidays:
            return True
        minute = local.hour * 60 + local.minute + local.second / 60 + local.microsecond / 60e6
        for start, end in self.hours:
            if (start <= minute < end) if start < end else (minute >= start or minute < end):
                return True
        return False

    def ends_at(self, t: float) -> float | None:
        """When the friendly period around `t` ends (math.inf: never), or None when `t` is not in one.

        Coverage can only end at a window's end or at a midnight, so the first such instant after `t`
        that is not covered is the end."""
        if not self.enabled:
            return None
        local = self._local(t)
        if not self._covers_local(local):
            return None
        day = local.date()
        for offset in range(SEARCH_DAYS):
            for at, covered in _day_ends(self, self.tz, day + timedelta(days=offset)):
                if at > t and not covered:
                    return at
        return math.inf


@lru_cache(maxsize=512)
def _day_ends(friendly: FriendlyCredit, tz: tzinfo | None, d: date) -> tuple[tuple[float, bool], ...]:
    """The instants of day `d` where coverage can end (its windows' ends, its midnight), each with whether it is
    covered: the same whatever `t` asks, so worked out once a day, not at every tick of a socket that is on.
    `tz` is in the key because it is not in the periods' equality."""
    ends = sorted({*(e for _, e in friendly.hours), 0})
    return tuple((at, friendly.covers(at)) for at in (friendly._instant(d, minute) for minute in ends))


def parse_window(text: str) -> tuple[int, int]:
    """"16:00-08:00" as (960, 480); ValueError for anything else."""
    try:
        start, end = (part.strip() for part in text.split("-"))
        s, e = (_minute(p) for p in (start, end))
    except ValueError:
        raise ValueError(f"{text!r} is not a window such as \"16:00-08:00\"") from None
    if s == e:
        raise ValueError(f"{text!r} starts where it ends")
    return s, e


def _minute(text: str) -> int:
    hour, _, minute = text.partition(":")
    if not (hour.isdigit() and minute.isdigit() and len(minute) == 2 and 0 <= int(hour) <= 24
            and 0 <= int(minute) < 60 and int(hour) * 60 + int(minute) <= 24 * 60):
        raise ValueError(text)
    return (int(hour) * 60 + int(minute)) % (24 * 60)


WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
