"""A socket's history read from the journal: the charts' spans (hour, day, month) and the energy and money used
per local day (the tenant's history page). The rules are payg/domain/history.py's; the sums are the journal's
(`HistoryJournal.history`), so the history survives a restart and costs no memory while nobody looks.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo

from payg.domain import history
from payg.domain.history import DAY_BUCKET_S, DayUse, Series, Span
from payg.ports import Clock
from payg.ports.journal import HistoryJournal


@dataclass(frozen=True)
class Chart:
    span: Span
    start: float
    end: float
    step_s: int
    series: Series


@dataclass
class HistoryDesk:
    journal: HistoryJournal
    clock: Clock
    units_per_token: int
    tz: tzinfo | None  # the controller's time zone (None: the system's)
    entry_s: float = 0.0  # the controller's `usage_entry_s`: no bucket shorter than an entry

    def chart(self, socket_id: str, span: Span) -> Chart:
        w = history.window(self.clock.now(), span, self.entry_s)
        opening, buckets, first_at = self.journal.history(socket_id, w.start, w.step_s, w.buckets)
        return Chart(span, w.start, w.end, w.step_s,
                     history.series(w, opening, buckets, first_at, self.units_per_token))

    def days(self, socket_id: str, days: int = 30) -> list[DayUse]:
        """The last `days` local days, today among them, newest first."""
        now = self.clock.now()
        today = (datetime.fromtimestamp(now, self.tz) if self.tz else datetime.fromtimestamp(now).astimezone()).date()
        midnights = [self._midnight(today - timedelta(days=n)) for n in range(days - 1, -2, -1)]
        start = midnights[0] // DAY_BUCKET_S * DAY_BUCKET_S
        count = int((midnights[-1] - start) // DAY_BUCKET_S) + 1
        _, buckets, _ = self.journal.history(socket_id, start, DAY_BUCKET_S, count)
        return history.per_day(midnights, start, DAY_BUCKET_S, buckets)

    def _midnight(self, day: date) -> float:
        if self.tz is not None:
            return datetime(day.year, day.month, day.day, tzinfo=self.tz).timestamp()
        return datetime(day.year, day.month, day.day).astimezone().timestamp()
