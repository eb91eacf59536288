"""What every ledger backend shares: the socket <-> address book and the token amount a payment asks for."""

from __future__ import annotations

from collections.abc import Mapping

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


def payment_units(amount_tokens: object, units_per_token: int) -> int:
    """Ledger units to ask for `amount_tokens` tokens; InvalidAmount unless a positive integer."""
    if isinstance(amount_tokens, bool) or not isinstance(amount_tokens, int) or amount_tokens <= 0:
        raise InvalidAmount(f"an amount is a positive integer number of tokens, got {amount_tokens!r}")
    return amount_tokens * units_per_token
