"""Emergency credit: a tenant whose credit is nearly gone takes a fixed amount from the tenant page, once.

It is journaled as its own kind of entry (`emergency`), and the next top-up (a deposit or a code)
repays it before anything else (`emergency_repaid`, payg/services/topups.py); until it is
repaid it is not offered again. [protections] emergency_credit_tokens (0: off) and
emergency_below_tokens say how much and from when.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from payg.errors import CodeRefused
from payg.ports.journal import AccountJournal
from payg.services.metering import Metering

log = logging.getLogger("payg.controller")


class EmergencyDesk:
    def __init__(self, metering: Metering, journal: AccountJournal, tokens: int | Mapping[str, int],
                 below_tokens: int | Mapping[str, int]):
        """Each amount for every socket, or per socket id (a socket not named: off)."""
        self.metering, self.journal = metering, journal
        self._tokens, self._below = tokens, below_tokens

    def tokens(self, socket_id: str) -> int:
        return self._tokens.get(socket_id, 0) if isinstance(self._tokens, Mapping) else self._tokens

    def below_tokens(self, socket_id: str) -> int:
        return self._below.get(socket_id, 0) if isinstance(self._below, Mapping) else self._below

    def offer(self, socket_id: str) -> int | None:
        """The tokens a tenant may take now, or None (off, not low enough, or taken and not repaid yet)."""
        s = self.metering.socket(socket_id)
        tokens = self.tokens(socket_id)
        if not tokens:
            return None
        if self.journal.emergency_owed(socket_id)[0] > 0:
            return None
        usable = self.metering.credit_of(s, self.metering.clock.now()).balance
        return tokens if usable < self.below_tokens(socket_id) * self.metering.tariff.units_per_token else None

    def owed_tokens(self, socket_id: str) -> int:
        return -(-self.journal.emergency_owed(socket_id)[0] // self.metering.tariff.units_per_token)

    def take(self, socket_id: str) -> int:
        """Book the emergency credit and switch the socket on; CodeRefused (reason "emergency") when not offered."""
        with self.metering.lock:
            if self.offer(socket_id) is None:
                if not self.tokens(socket_id):
                    raise CodeRefused("Emergency credit is not offered on this controller.", "emergency_off")
                if self.journal.emergency_owed(socket_id)[0] > 0:
                    raise CodeRefused("Emergency credit was taken already; it is offered again once the next top-up "
                                      "has repaid it.", "emergency_owed")
                raise CodeRefused(f"Emergency credit is offered when less than {self.below_tokens(socket_id)} tokens "
                                  "are left.", "emergency_not_yet")
            _, taken = self.journal.emergency_owed(socket_id)
            now = self.metering.clock.now()
            tokens = self.tokens(socket_id)
            units = tokens * self.metering.tariff.units_per_token
            with self.journal.transaction() as tx:
                tx.credit(socket_id, units, "emergency", f"emergency:{socket_id}:{taken + 1}", now,
                          "emergency credit, repaid by the next top-up")
                tx.event(socket_id, "emergency", f"+{tokens} tokens of emergency credit taken", now)
            log.info("emergency credit on %s: %d tokens", socket_id, tokens)
            self.metering.redecide({socket_id})
        return tokens
