"""Dashboard: the figures the pages show beside the live state, kept up to date incrementally.

Energy today and this month and top-ups this month are sums over the journal. Summing a
month of entries every second for 200 sockets would be wasteful, so the sums are built once
(at start, and again when a day begins) and then follow the journal entry by entry: each
refresh reads only the entries booked since the last one. Usage counts on the day its entry
is closed (the controller closes one per `usage_entry_s` of consumption); usage not yet
closed into an entry is added by the caller from the live state (`pending_wh`).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, tzinfo
from fractions import Fraction

from payg.ports import Clock
from payg.adapters.journal import SqliteJournal

CHUNK = 5000


@dataclass
class Figures:
    energy_today_wh: Fraction = Fraction(0)
    energy_month_wh: Fraction = Fraction(0)
    topups_month: int = 0          # deposits this month, in journal units
    last_topup_at: float | None = None
    last_topup: int | None = None  # journal units


@dataclass(frozen=True)
class Alarm:
    count: int
    last_event_id: int
    detail: str


class Dashboard:
    def __init__(self, journal: SqliteJournal, clock: Clock, tz: tzinfo | None = None):
        self.journal = journal
        self.clock = clock
        self.tz = tz  # None: the system's local time zone
        self._lock = threading.Lock()
        self._day_start: float | None = None
        self._month_start: float | None = None
        self._last_id = 0
        self._figures: dict[str, Figures] = {}
        self._alarms: dict[str, Alarm] = {}

    def period_starts(self, now: float) -> tuple[float, float]:
        """(start of today, start of this month) as epoch seconds, in the dashboard's time zone."""
        local = datetime.fromtimestamp(now, self.tz) if self.tz else datetime.fromtimestamp(now).astimezone()
        day = local.replace(hour=0, minute=0, second=0, microsecond=0)
        return day.timestamp(), day.replace(day=1).timestamp()

    def refresh(self) -> None:
        """Follow the journal up to now: new entries, new alarms, and a rebuild when a day begins."""
        with self._lock:
            day_start, month_start = self.period_starts(self.clock.now())
            if day_start != self._day_start:
                self._rebuild(day_start, month_start)
            while True:
                entries = self.journal.entries_after(self._last_id, CHUNK)
                for e in entries:
                    self._add(e)
                if len(entries) < CHUNK:
                    break
            self._alarms = {sid: Alarm(*a) for sid, a in self.journal.open_alarms().items()}

    def _rebuild(self, day_start: float, month_start: float) -> None:
        self._day_start, self._month_start = day_start, month_start
        self._figures = {}
        for socket_id, at, amount in self.journal.last_entries("deposit"):
            f = self._figures.setdefault(socket_id, Figures())
            f.last_topup_at, f.last_topup = at, amount
        self._last_id = self.journal.first_entry_id_since(month_start)

    def _add(self, e) -> None:
        self._last_id = e.id
        f = self._figures.setdefault(e.socket_id, Figures())
        if e.at < self._month_start:
            return
        if e.kind == "usage" and e.energy_wh is not None:
            f.energy_month_wh += e.energy_wh
            if e.at >= self._day_start:
                f.energy_today_wh += e.energy_wh
        elif e.kind == "deposit":
            f.topups_month += e.amount
            f.last_topup_at, f.last_topup = e.at, e.amount

    def figures(self, socket_id: str) -> Figures:
        with self._lock:
            f = self._figures.get(socket_id)
            return Figures(**vars(f)) if f is not None else Figures()

    def alarm(self, socket_id: str) -> Alarm | None:
        with self._lock:
            return self._alarms.get(socket_id)
