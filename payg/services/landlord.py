"""The landlord's actions on a socket: hold it off, credit or debit it by hand, acknowledge its alarms.

Each is journaled (an entry, an event or both) and re-decides the socket's relay at once.
The web's landlord view and the JSON API call these; nothing else changes an account by hand.
"""

from __future__ import annotations

import logging

from payg.domain.socket import override_mode
from payg.errors import InvalidAmount
from payg.ports.journal import LandlordJournal
from payg.services.metering import Metering

log = logging.getLogger("payg.controller")

MAX_ADJUSTMENT_TOKENS = 10**12


class LandlordDesk:
    def __init__(self, metering: Metering, journal: LandlordJournal):
        self.metering = metering
        self.journal = journal
        self.clock = metering.clock

    def set_override(self, socket_id: str, mode: str | None) -> None:
        """mode 'off' holds the relay open whatever the balance; None returns to automatic."""
        held = override_mode(mode)
        s = self.metering.socket(socket_id)
        with self.metering.lock:
            now = self.clock.now()
            with self.journal.transaction() as tx:
                tx.set_override(socket_id, held, now)
                tx.event(socket_id, "override", held or "auto", now)
            s.override = held
            self.metering.redecide({socket_id})

    def adjust(self, socket_id: str, amount_tokens: int, reason: str, request_id: str) -> bool:
        """A manual credit (amount > 0) or debit (< 0) with a reason, booked once per request id.

        Returns False when this request id was booked before (a repeated submit). A debit may not
        take the balance below zero; a request id reused for a different adjustment is refused.
        """
        self.metering.socket(socket_id)
        if not isinstance(amount_tokens, int) or isinstance(amount_tokens, bool) or amount_tokens == 0:
            raise InvalidAmount("the amount is a non-zero whole number of tokens (negative for a debit)")
        if abs(amount_tokens) > MAX_ADJUSTMENT_TOKENS:
            raise InvalidAmount(f"{amount_tokens} tokens is beyond what a manual adjustment may book")
        reason = " ".join(reason.split())
        if not reason:
            raise InvalidAmount("a reason is required")
        upt = self.metering.tariff.units_per_token
        units = amount_tokens * upt
        key = f"manual:{request_id}"
        with self.metering.lock:
            now = self.clock.now()
            earlier = self.journal.entry_by_key(key)
            if earlier is not None:
                if (earlier.socket_id, earlier.amount) != (socket_id, units):
                    raise InvalidAmount(f"request {request_id} was already used for another adjustment")
                return False
            with self.journal.transaction() as tx:
                if units > 0:
                    tx.credit(socket_id, units, "credit", key, now, memo=reason)
                else:
                    balance = self.journal.balance(socket_id)
                    if -units > balance:
                        raise InvalidAmount(f"a debit of {-amount_tokens} tokens is more than the balance "
                                            f"({balance // upt} tokens)")
                    tx.debit(socket_id, -units, "debit", now, idem_key=key, memo=reason)
                tx.event(socket_id, "manual", f"{amount_tokens:+d} tokens: {reason}", now)
            self.metering.redecide({socket_id})
        return True

    def acknowledge_alarms(self, socket_id: str) -> int:
        """Mark a socket's open alarms as seen; returns how many there were."""
        self.metering.socket(socket_id)
        with self.metering.lock:
            open_alarms = self.journal.open_alarms().get(socket_id)
            if open_alarms is None:
                return 0
            count, last_id, _ = open_alarms
            with self.journal.transaction() as tx:
                tx.acknowledge_alarms(socket_id, last_id, self.clock.now())
            self.metering.publish()
        return count
