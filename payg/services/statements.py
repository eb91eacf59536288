"""Receipts and statements read from the journal (payg/domain/statement.py computes them).

A statement covers local days of the controller's time zone (`[web] timezone`): from local midnight of the first
day to local midnight after the last, whatever the clock did in between (a day of 23 or 25 hours is one day).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo

from payg.domain import statement
from payg.domain.money import MoneyUnit
from payg.domain.statement import Receipt, Statement
from payg.ports import Clock
from payg.ports.journal import StatementJournal

MAX_RECEIPTS = 500  # the most one list of receipts holds


@dataclass
class StatementDesk:
    journal: StatementJournal
    clock: Clock
    tz: tzinfo | None  # the controller's time zone (None: the system's)
    money: MoneyUnit  # what the amounts are: tokens, or a currency's minor unit

    def receipts(self, socket_id: str, limit: int = 20) -> list[Receipt]:
        """The socket's top-ups, newest first."""
        if not 1 <= limit <= MAX_RECEIPTS:
            raise ValueError(f"limit is 1 to {MAX_RECEIPTS}")
        found = (statement.receipt_of(e, after) for e, after in self.journal.credits_through(socket_id, limit))
        return [r for r in found if r is not None]

    def receipt(self, socket_id: str, entry_id: int) -> Receipt | None:
        """The receipt of one of the socket's credits; None when the id is not a credit of that socket."""
        got = self.journal.credits_through(socket_id, 1, entry_id)
        if not got or got[0][0].id != entry_id:
            return None
        return statement.receipt_of(*got[0])

    def instant(self, day: date) -> float:
        """Local midnight at the start of `day`."""
        return datetime(day.year, day.month, day.day, tzinfo=self.tz).timestamp()

    def statement(self, socket_id: str, first: date, last: date) -> Statement:
        """The statement of the local days `first` to `last`, both included."""
        start, end = self.instant(first), self.instant(last + timedelta(days=1))
        entries = self.journal.entries_between(socket_id, start, end)
        opening = self.journal.sum_before(socket_id, start)
        # the repayment plan's debt is known as of now only: a statement that runs to now shows it
        deferred = self.journal.deferred_debt(socket_id) if end > self.clock.now() else None
        return statement.make(socket_id, start, end, opening, entries, deferred)

    def local_day(self, at: float) -> date:
        return datetime.fromtimestamp(at, self.tz).date() if self.tz is not None else datetime.fromtimestamp(at).date()
