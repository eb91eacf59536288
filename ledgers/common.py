"""What every ledger backend shares: the socket <-> address book, the token amount a payment asks for, and reads
shared by the callers that wait for them (FreshRead)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from payg.domain.money import MAX_TOKENS
from payg.errors import InvalidAmount, UnknownSocket


class AddressBook:
    """Each socket's top-up address, and the socket behind an address (compared in `key` form)."""

    def __init__(self, addresses: Mapping[str, str], key=lambda address: address):
        self._addresses = dict(addresses)
        self._key = key
        self._sockets = {key(address): socket_id for socket_id, address in self._addresses.items()}
        if len(self._sockets) != len(self._addresses):
            raise ValueError("two sockets were given the same address")

    def address_for(self, socket_id: str) -> str:
        try:
            return self._addresses[socket_id]
        except KeyError:
            raise UnknownSocket(socket_id) from None

    def socket_at(self, address: str) -> str | None:
        return self._sockets.get(self._key(address))

    def socket_ids(self) -> list[str]:
        return list(self._addresses)

    def addresses(self) -> list[str]:
        return list(self._addresses.values())


def payment_units(amount_tokens: object, units_per_token: int, max_units: int | None = None) -> int:
    """Ledger units to ask for `amount_tokens` tokens; InvalidAmount unless a positive integer the journal can
    credit (below MAX_TOKENS) and, with `max_units`, the ledger can carry."""
    if isinstance(amount_tokens, bool) or not isinstance(amount_tokens, int) or amount_tokens <= 0:
        raise InvalidAmount(f"an amount is a positive integer number of tokens, got {amount_tokens!r}")
    if amount_tokens >= MAX_TOKENS:
        raise InvalidAmount(f"amount {amount_tokens} is too large: at most {MAX_TOKENS - 1} tokens (2**62 - 1) "
                            "can be credited at once")
    units = amount_tokens * units_per_token
    if max_units is not None and units > max_units:
        raise InvalidAmount(f"amount {amount_tokens} is too large for the ledger: at most "
                            f"{max_units // units_per_token} tokens ({max_units} units) in one payment")
    return units


class FreshRead:
    """A read from the ledger that concurrent callers share, each getting a read that STARTED after it asked.

    `get(*keys)` waits for the next read to start (it starts it itself when none is running), so what it returns is
    never older than the call, exactly as if every caller read on its own; but callers that arrive while a read is
    running all share the one read that follows it. `read(keys)` is given the union of the keys asked for since the
    last read started and returns a value for them; `get` returns the value of the read it waited for (the one whose
    keys included its own). With one caller at a time it is one read per call; under load the reads per second are
    bounded by one per round trip, however many callers.
    A failed read raises its error in every caller that waited for it."""

    def __init__(self, read: Callable[[frozenset], Any]):
        self._read = read
        self._cond = threading.Condition()
        self._started = 0      # reads started
        self._finished = 0     # reads finished
        self._running = False
        self._keys: set = set()
        self._outcomes: dict[int, tuple[bool, Any]] = {}  # read number -> (ok, value or exception), the last few

    def get(self, *keys: Any) -> Any:
        with self._cond:
            self._keys.update(keys)
            ticket = self._started + 1  # the first read to start from now on
            while True:
                if self._finished >= ticket:
                    ok, value = self._outcomes.get(ticket) or self._outcomes[self._finished]
                    if ok:
                        return value
                    raise value
                if not self._running and self._started < ticket:
                    break  # this caller runs read number `ticket`
                self._cond.wait()
            self._running = True
            self._started = ticket
            asked, self._keys = frozenset(self._keys), set()
        try:
            outcome = (True, self._read(asked))
        except BaseException as exc:  # handed to every waiter; raised below for this caller too
            outcome = (False, exc)
        with self._cond:
            self._running = False
            self._finished = ticket
            self._outcomes[ticket] = outcome
            self._outcomes.pop(ticket - 8, None)  # a waiter wakes long before eight more reads have finished
            self._cond.notify_all()
        if not outcome[0]:
            raise outcome[1]
        return outcome[1]
