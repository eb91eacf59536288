"""Top-up codes: a landlord makes one for a socket, a tenant enters it, the socket is credited once.

A code works with no network and no ledger: the controller decodes it with the socket's
key (payg/adapters/code_keys.py) and books it in one journal transaction together with the
decoder's new memory, under the key `code:<socket>:<count>`. So a code credits exactly once:
entered twice, or entered again after a crash at any moment, it finds its count used (or its
key booked) and books nothing. Codes of one socket may be entered out of order within the
format's window (a count less than 16 below the highest used, not used itself).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from payg.domain.codes import CodeKey, highest_count, normalise, number_of, spaced, units_for
from payg.errors import CodeRefused, InvalidAmount, UnknownSocket
from payg.ports import CodeCodec
from payg.ports.journal import CodeJournal
from payg.services.metering import Metering
from payg.services.topups import TopUps

log = logging.getLogger("payg.controller")


def N_(message: str) -> str:
    """Marks a message for the catalogue (payg/locale/): the CLI and the pages translate it by its reason."""
    return message


REFUSALS = {
    "used": N_("This code was used already, or an older code was entered after newer ones. Each code adds "
               "credit once."),
    "invalid": N_("This is not a code for this socket. Check the digits, and that the code is for this socket."),
    "unsupported": N_("This code is not a top-up code. Ask your landlord for a top-up code."),
    "locked": N_("Too many wrong codes were entered for this socket. Ask your landlord to unlock code entry."),
}
LOCKOUT: Final = "code_lockout"   # the event (an alarm in the landlord view) that stops code entry until acknowledged


@dataclass(frozen=True)
class Redeemed:
    socket_id: str
    tokens: int
    count: int
    booked: bool  # False: this very code was booked before (a repeated request after a crash or a retry)


@dataclass(frozen=True)
class Issued:
    socket_id: str
    code: str     # 9 digits
    count: int
    tokens: int
    repeated: bool = False  # made before for the same request id: the same code again, nothing new issued

    @property
    def spaced(self) -> str:
        return spaced(self.code)

    @property
    def number(self) -> int:
        """What people call it: code 1, 2, 3 ... (the count is OpenPAYGO's, payg/domain/codes.py)."""
        return number_of(self.count)


class CodeDesk:
    def __init__(self, metering: Metering, journal: CodeJournal, codec: CodeCodec, keys: dict[str, CodeKey],
                 tokens_per_unit: int, lockout_after: int = 10, lockout_window_s: float = 24 * 3600,
                 recovery_percent: int | Mapping[str, int] = 100):
        self.metering, self.journal, self.codec = metering, journal, codec
        self.top_ups = TopUps(journal, recovery_percent)  # the debt plan (payg/domain/debt.py)
        self.keys = keys
        self.tokens_per_unit = tokens_per_unit
        self.clock = metering.clock
        self.lockout_after, self.lockout_window_s = lockout_after, lockout_window_s
        self._wrong: dict[str, list[float]] = {}  # per socket, when wrong codes were entered (in memory)

    def locked(self, socket_id: str) -> bool:
        """Code entry is locked: a lockout event the landlord has not acknowledged (it survives a restart)."""
        seen = int(self.journal.cursor(f"alarms-seen:{socket_id}") or 0)
        return any(e["kind"] == LOCKOUT and e["id"] > seen for e in self.journal.events(socket_id, 50))

    def _wrong_code(self, socket_id: str, now: float) -> None:
        times = [t for t in self._wrong.get(socket_id, []) if t > now - self.lockout_window_s] + [now]
        self._wrong[socket_id] = times
        if len(times) >= self.lockout_after:
            self._wrong.pop(socket_id, None)
            with self.journal.transaction() as tx:
                tx.event(socket_id, LOCKOUT, f"{len(times)} wrong codes: code entry is locked until the landlord "
                         "acknowledges this alarm", now)
            log.warning("code entry on %s locked after %d wrong codes", socket_id, len(times))
            self.metering.publish()

    def _key(self, socket_id: str) -> CodeKey:
        self.metering.socket(socket_id)
        key = self.keys.get(socket_id)
        if key is None:
            raise UnknownSocket(socket_id)
        return key

    def issue(self, socket_id: str, tokens: int, request_id: str | None = None) -> Issued:
        """The next code for `tokens` tokens (a multiple of tokens_per_unit, at most 995 units).

        With a `request_id`, asking again (a retry after a lost answer) gives the same code, marked `repeated`,
        instead of a second code that would credit the tenant twice; the same id for another amount is refused."""
        units = units_for(tokens, self.tokens_per_unit)
        key = self._key(socket_id)
        with self.metering.lock:
            if request_id is not None and (made := self.journal.code_request(socket_id, request_id)) is not None:
                after, made_units, made_count = made
                if made_units != units:
                    raise InvalidAmount(f"request {request_id} already made code {number_of(made_count)} for"
                                        f" {made_units * self.tokens_per_unit} tokens, not {tokens}")
                count, code = self.codec.encode(key, after, units)
                return Issued(socket_id, code, count, units * self.tokens_per_unit, repeated=True)
            # above every count seen, issued here or entered (a back office's codes too): never a used one
            after = highest_count(self.journal.codes_issued(socket_id), self.journal.code_counts(socket_id))
            count, code = self.codec.encode(key, after, units)
            now = self.clock.now()
            with self.journal.transaction() as tx:
                tx.set_codes_issued(socket_id, count)
                if request_id is not None:
                    tx.record_code_request(socket_id, request_id, after, units, count, now)
                tx.event(socket_id, "code_issued", f"code {number_of(count)} for {units * self.tokens_per_unit} tokens",
                         now)
        return Issued(socket_id, code, count, units * self.tokens_per_unit)

    def redeem(self, socket_id: str, code: str) -> Redeemed:
        """Book the code's tokens; CodeRefused (with a message for the tenant) when it books nothing."""
        key = self._key(socket_id)
        try:
            digits = normalise(code)
        except ValueError as exc:
            raise CodeRefused(f"This is not a code: {exc}.", "malformed") from None
        upt = self.metering.tariff.units_per_token
        with self.metering.lock:
            if self.locked(socket_id):
                raise CodeRefused(REFUSALS["locked"], "locked")
            counts = self.journal.code_counts(socket_id)
        # Decoding may walk the code chain (a wrong or an old code: from its start), so not under the lock the
        # metering tick takes; if another code of this socket was booked meanwhile, it is decoded again.
        decoded = self.codec.decode(key, digits, counts)
        with self.metering.lock:
            now_counts = self.journal.code_counts(socket_id)
            if now_counts != counts:
                decoded = self.codec.decode(key, digits, now_counts)
            added = decoded.added()
            if added is None:
                reason = "unsupported" if decoded.kind in ("other", "add") else decoded.kind
                if reason == "invalid":
                    self._wrong_code(socket_id, self.clock.now())
                raise CodeRefused(REFUSALS[reason], reason)
            units, count, after = added
            tokens = units * self.tokens_per_unit
            idem = f"code:{socket_id}:{count}"
            now = self.clock.now()
            with self.journal.transaction() as tx:
                booked = self.top_ups.book(tx, socket_id, tokens * upt, "credit", idem, now,
                                           f"top-up code {number_of(count)}")
                tx.set_code_counts(socket_id, after)
                if booked:
                    tx.event(socket_id, "code", f"code {number_of(count)}: +{tokens} tokens", now)
            if booked:
                log.info("top-up code %d (count %d) on %s: %d tokens", number_of(count), count, socket_id, tokens)
                self.metering.redecide({socket_id})
        return Redeemed(socket_id, tokens, count, booked)
