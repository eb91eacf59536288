"""The deposit watcher: final ledger deposits into the journal, each exactly once."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from payg.domain.money import deposit_tokens
from payg.errors import JournalError, LedgerReorganised, LedgerUnavailable
from payg.ports import Clock, DepositSource
from payg.ports.journal import DepositJournal
from payg.services.topups import TopUps

log = logging.getLogger("payg.deposits")


@dataclass(frozen=True)
class PollResult:
    credited: tuple[str, ...]  # socket ids that received a new credit of at least one token
    duplicates: int  # deposits seen again and not booked again
    carried: int = 0  # new deposits too small for a whole token so far (kept in the carry)


class DepositWatcher:
    """Takes final deposits from a DepositSource and credits them.

    Deposits arrive in ledger units (nanos, wei, token base units); the journal counts
    tokens. Each deposit is converted with the socket's remainder from earlier deposits
    added, and what does not make a whole token is carried to the next deposit, never
    dropped.

    The credits and the new cursor are written in one transaction: a crash
    before it commits re-reads the same deposits (and books them once, by
    their idempotency key); a crash after it never reads them again.
    """

    def __init__(self, source: DepositSource, journal: DepositJournal, clock: Clock,
                 on_credit: Callable[[set[str]], None] | None = None, recovery_percent: int | Mapping[str, int] = 100):
        self.source = source
        self.journal = journal
        self.top_ups = TopUps(journal, recovery_percent)  # the debt plan (payg/domain/debt.py)
        self.clock = clock
        self.on_credit = on_credit
        self.cursor_name = f"deposits:{source.name}"
        self.status = "starting"
        self.last_error: str | None = None

    def poll(self) -> PollResult:
        cursor = self.journal.cursor(self.cursor_name)
        try:
            deposits, new_cursor = self.source.deposits_since(cursor)
        except LedgerReorganised as exc:
            self.status, self.last_error = "alarm", str(exc)
            log.error("deposits stopped: %s", exc)
            raise
        except LedgerUnavailable as exc:
            self.status, self.last_error = "unavailable", str(exc)
            raise
        self.status, self.last_error = "ok", None
        if not deposits and new_cursor == cursor:
            return PollResult((), 0)
        credited: set[str] = set()
        duplicates = carried = 0
        now = self.clock.now()
        upt = self.source.units_per_token
        running: dict[str, tuple[int, int, int]] = {}
        with self.journal.transaction() as tx:
            for d in deposits:
                if d.unexplained:
                    tx.event(d.socket_id, "unexplained_funds", f"{d.amount} {self.source.name} units at the socket's"
                             f" address that no payment explains ({d.deposit_id}), not credited: ether a contract"
                             " moved there, say; credit or refund by hand", now)
                    continue
                memo = f"deposit {d.deposit_id}" + (f" ({d.amount} units)" if upt != 1 else "")
                key = f"{self.source.name}:{d.deposit_id}"
                held = tx.deposit_carry(self.source.name, d.socket_id)
                try:
                    tokens, carry = deposit_tokens(d.amount, held, upt)
                except ValueError as exc:  # more than a journal entry holds: an alarm, and the next deposits go on
                    if isinstance(d.amount, bool) or not isinstance(d.amount, int) or d.amount <= 0:
                        raise  # not a deposit at all: the backend is wrong, nothing of this poll is booked
                    if tx.record_deposit(self.source.name, d.socket_id, key, d.amount, 0, held, now):
                        log.error("deposit %s to %s not credited: %s", d.deposit_id, d.socket_id, exc)
                        tx.event(d.socket_id, "uncreditable_deposit", f"deposit {d.deposit_id} of {d.amount} units"
                                 f" not credited: {exc} (is [ledger] token_value right?); refund it or credit by"
                                 " hand", now)
                    continue
                recorded = tx.record_deposit(self.source.name, d.socket_id, key, d.amount, tokens, carry, now)
                if recorded and tokens > 0 and not self.top_ups.book(tx, d.socket_id, tokens, "deposit", key, now,
                                                                     memo, running):
                    raise JournalError(f"credit {key} exists without its received deposit")
                if not recorded:
                    duplicates += 1
                    log.warning("deposit %s was delivered again; not credited twice", d.deposit_id)
                elif tokens == 0:
                    carried += 1
                    log.info("deposit %s of %d units to %s is less than a token; carried", d.deposit_id,
                             d.amount, d.socket_id)
                else:
                    credited.add(d.socket_id)
                    log.info("credited %s with %d tokens from deposit %s", d.socket_id, tokens, d.deposit_id)
            tx.set_cursor(self.cursor_name, new_cursor)
        if credited and self.on_credit is not None:
            self.on_credit(credited)
        return PollResult(tuple(sorted(credited)), duplicates, carried)
