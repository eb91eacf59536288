"""The deposit watcher: final ledger deposits into the journal, each exactly once."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

from payg.clock import Clock
from payg.errors import LedgerUnavailable
from payg.journal import SqliteJournal
from payg.ports import DepositSource

log = logging.getLogger("payg.deposits")


@dataclass(frozen=True)
class PollResult:
    credited: tuple[str, ...]  # socket ids that received a new credit
    duplicates: int  # deposits seen again and not booked again


class DepositWatcher:
    """Takes final deposits from a DepositSource and credits them.

    The credits and the new cursor are written in one transaction: a crash
    before it commits re-reads the same deposits (and books them once, by
    their idempotency key); a crash after it never reads them again.
    """

    def __init__(self, source: DepositSource, journal: SqliteJournal, clock: Clock,
                 on_credit: Callable[[set[str]], None] | None = None):
        self.source = source
        self.journal = journal
        self.clock = clock
        self.on_credit = on_credit
        self.cursor_name = f"deposits:{source.name}"
        self.status = "starting"
        self.last_error: str | None = None

    def poll(self) -> PollResult:
        cursor = self.journal.cursor(self.cursor_name)
        try:
            deposits, new_cursor = self.source.deposits_since(cursor)
        except LedgerUnavailable as exc:
            self.status, self.last_error = "unavailable", str(exc)
            raise
        self.status, self.last_error = "ok", None
        if not deposits and new_cursor == cursor:
            return PollResult((), 0)
        credited: set[str] = set()
        duplicates = 0
        now = self.clock.now()
        with self.journal.transaction() as tx:
            for d in deposits:
                if tx.credit(d.socket_id, d.amount, "deposit", f"{self.source.name}:{d.deposit_id}", now,
                             memo=f"deposit {d.deposit_id}"):
                    credited.add(d.socket_id)
                    log.info("credited %s with %d from deposit %s", d.socket_id, d.amount, d.deposit_id)
                else:
                    duplicates += 1
                    log.warning("deposit %s was delivered again; not credited twice", d.deposit_id)
            tx.set_cursor(self.cursor_name, new_cursor)
        if credited and self.on_credit is not None:
            self.on_credit(credited)
        return PollResult(tuple(sorted(credited)), duplicates)
