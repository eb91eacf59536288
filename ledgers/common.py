"""What every ledger backend shares: the socket <-> address book and the token amount a payment asks for."""

from __future__ import annotations

from collections.abc import Mapping

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
