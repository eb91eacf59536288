"""Books a tenant's top-up (a deposit or a top-up code): emergency credit taken is repaid from it first, then
the debt plan of payg/domain/debt.py takes its share.

Both the deposit watcher and the code desk book through here, inside their own transaction;
`running` carries what the transaction has booked so far per socket, so several top-ups in one
transaction each see the balance the one before left.
"""

from __future__ import annotations

from collections.abc import Mapping

from payg.domain.accounts import CreditKind
from payg.domain.debt import top_up
from payg.ports.journal import AccountTx, Balances


class TopUps:
    def __init__(self, journal: Balances, recovery_percent: int | Mapping[str, int] = 100):
        """`recovery_percent`: one for every socket, or per socket id (a socket not named: 100)."""
        percents = recovery_percent.values() if isinstance(recovery_percent, Mapping) else [recovery_percent]
        if not all(1 <= p <= 100 for p in percents):
            raise ValueError("debt recovery is 1 to 100 percent of a top-up")
        self.journal, self._percent = journal, recovery_percent

    def percent(self, socket_id: str) -> int:
        p = self._percent
        return p.get(socket_id, 100) if isinstance(p, Mapping) else p

    def book(self, tx: AccountTx, socket_id: str, units: int, kind: CreditKind, key: str, at: float, memo: str,
             running: dict[str, tuple[int, int, int]] | None = None) -> bool:
        """Credit `units` once per `key`; False, and nothing written, when the key was booked before."""
        running = {} if running is None else running
        balance, deferred, owed = running.get(socket_id) or (self.journal.balance(socket_id),
                                                             self.journal.deferred_debt(socket_id),
                                                             self.journal.emergency_owed(socket_id)[0])
        if not tx.credit(socket_id, units, kind, key, at, memo):
            return False
        repaid = min(owed, units)  # emergency credit is repaid first, all of it
        if repaid:
            tx.debit(socket_id, repaid, "emergency_repaid", at, idem_key=f"{key}:emergency",
                     memo="repays emergency credit")
        percent = self.percent(socket_id)
        new_deferred, recovered = top_up(balance, deferred, units - repaid, percent)
        if new_deferred != deferred:
            tx.set_deferred_debt(socket_id, new_deferred)
        if recovered:
            tx.event(socket_id, "debt_recovered", f"{recovered} of {units} units repaid debt ({percent} % at "
                     f"most); {new_deferred} units still owed", at)
        running[socket_id] = (balance + units - repaid, new_deferred, owed - repaid)
        return True
