"""The signed-message protocol of IOTA trade, and the trade keys of this controller's sockets.

Keys. Socket i (its index in `accounts`, the wallet account number) trades with
its own party key, never with its top-up key, so trade money is never taken for
a tenant's deposit:

    m/44'/4218'/{i}'/0'/0'    top-up address (ledgers/iota/deposits.py)
    m/44'/4218'/{i}'/1'/0'    trade party: signs messages and vouchers, pays buys, funds channels
    m/44'/4218'/{i}'/2'/{n}'  escrow address of the socket's n-th payment channel

n comes from a counter in the store that is incremented (and committed) before
the channel's escrow is sent, so a channel address, which is also the channel's
id, is never used twice, even across a crash.

Signed messages. Every message that acts (POST /api/peer/iota/<kind>) is a JSON envelope

    {"message": {"kind", "network", "domain", "party", "at", "nonce", ...fields},
     "public_key": hex, "signature": hex}

signed with the acting party's Ed25519 key over MESSAGE_TAG + the canonical
encoding of "message" (JSON, keys sorted, no spaces, ASCII). The receiver checks
the kind against the endpoint, the network against its node's, the domain
(the market's, or `iota:{network}:{channel_id}` for a channel), that the party is address_of(public_key), the signature,
that `at` is within MAX_SKEW_S of its clock, and that the (party, nonce) pair
was never seen: a message cannot be replayed, reused for another operation,
another market, channel or network. Failures are NotAuthorised.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections.abc import Mapping
from typing import Any, Protocol

from ledgers.common import AddressBook
from ledgers.iota.sdk import account_indexes, normalise_address, parse_address
from ledgers.iota.store import TradeStore
from payg.errors import InsufficientFunds, InvalidAmount, NotAuthorised, PaygError
from payg.ports import Clock

PARTY_PATH = "m/44'/4218'/{index}'/1'/0'"
CHANNEL_PATH = "m/44'/4218'/{index}'/2'/{n}'"
MESSAGE_TAG = b"payg/iota/message/v1\n"
VOUCHER_TAG = b"payg/iota/voucher/v1\n"
MAX_SKEW_S = 300           # a signed message older or newer than this is refused
CLOCK_TOLERANCE_S = 30     # checkpoint time (and another controller's clock) vs this controller's clock


class Wallet(Protocol):
    """What IOTA trade needs of ledgers/iota/wallet.IotaWallet."""

    def address(self, path: str) -> str: ...
    def public_key(self, path: str) -> str: ...
    def sign(self, path: str, message: bytes) -> str: ...
    def verify(self, public_key_hex: str, message: bytes, signature_hex: str) -> bool: ...
    def address_of(self, public_key_hex: str) -> str: ...
    def balance(self, address: str) -> int: ...
    def balances(self, addresses: list[str]) -> tuple[int, dict[str, int]]: ...
    def send(self, path: str, outputs: list[tuple[str, int]]) -> str: ...
    def sweep(self, path: str, to: str) -> tuple[str, int]: ...
    def transaction(self, digest: str) -> dict: ...
    def network(self) -> str: ...


def canonical(obj: Any) -> bytes:
    """The bytes that are signed: JSON with sorted keys, no whitespace, ASCII only."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def voucher_bytes(channel_id: str, amount: int, domain: str) -> bytes:
    return VOUCHER_TAG + canonical({"channel_id": channel_id, "amount": amount, "domain": domain})


def message_bytes(message: dict) -> bytes:
    return MESSAGE_TAG + canonical(message)


def party_path(index: int) -> str:
    return PARTY_PATH.format(index=index)


def channel_path(index: int, n: int) -> str:
    return CHANNEL_PATH.format(index=index, n=n)


def integer(value: Any, what: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidAmount(f"{what} must be an integer >= {minimum}, got {value!r}")
    return value


def text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty string, got {value!r}")
    return value


class Parties(AddressBook):
    """The trade parties of this controller's sockets (socket id -> derivation index in `accounts`): the address
    of each socket's party key, and the socket behind a party."""

    def __init__(self, wallet: Wallet, accounts: Mapping[str, int]):
        if not isinstance(accounts, Mapping) or not accounts:
            raise ValueError("accounts must map socket ids to derivation indexes")
        self.wallet = wallet
        self._index = account_indexes(accounts)
        super().__init__({socket_id: parse_address(wallet.address(party_path(index)), "party address")
                          for socket_id, index in self._index.items()}, key=normalise_address)
        self._public_key = {socket_id: wallet.public_key(party_path(index)) for socket_id, index in self._index.items()}

    def party_for(self, socket_id: str) -> str:
        return self.address_for(socket_id)

    def socket_for(self, party: str) -> str | None:
        try:
            return self.socket_at(party)
        except ValueError:
            return None

    def holds(self, party: str) -> bool:
        """This controller holds the party's key."""
        return self.socket_for(party) is not None

    def index(self, socket_id: str) -> int:
        self.party_for(socket_id)
        return self._index[socket_id]

    def public_key(self, socket_id: str) -> str:
        return self._public_key[socket_id]

    def sign(self, socket_id: str, data: bytes) -> str:
        return self.wallet.sign(party_path(self.index(socket_id)), data)

    def check_balance(self, party: str, amount: int) -> None:
        balance = self.wallet.balance(party)
        if balance < amount:
            raise InsufficientFunds(f"{party} holds {balance} nanos, {amount} needed (plus gas)")


class Envelopes:
    """Signed messages: made for this controller's parties, verified from any party, each accepted once."""

    def __init__(self, parties: Parties, store: TradeStore, clock: Clock):
        self.parties = parties
        self.wallet = parties.wallet
        self.store = store
        self.clock = clock
        self._network: str | None = None

    @property
    def network(self) -> str:
        """The node's chain identifier, which every message and voucher is bound to."""
        if self._network is None:
            self._network = self.wallet.network()
        return self._network

    def voucher_domain(self) -> str:
        """What vouchers are bound to besides their channel: the network (a channel id is its own address)."""
        return f"iota:{self.network}"

    def channel_domain(self, channel_id: str) -> str:
        """What messages about one channel are bound to."""
        return f"iota:{self.network}:{channel_id}"

    def sign(self, socket_id: str, kind: str, domain: str, fields: dict) -> dict:
        """A signed envelope for `kind` (format in the module docstring), acting as `socket_id`."""
        message = {**fields, "kind": kind, "network": self.network, "domain": domain,
                   "party": self.parties.party_for(socket_id), "at": int(self.clock.now()),
                   "nonce": secrets.token_hex(16)}
        return {"message": message, "public_key": self.parties.public_key(socket_id),
                "signature": self.parties.sign(socket_id, message_bytes(message))}

    @staticmethod
    def open(envelope: Any, kind: str) -> dict:
        """The message, unverified (to find which domain it claims); bad shapes are ValueError."""
        if not isinstance(envelope, dict):
            raise ValueError("a signed message is an object with message, public_key and signature")
        message = envelope.get("message")
        if not isinstance(message, dict):
            raise ValueError("a signed message needs a 'message' object")
        if message.get("kind") != kind:
            raise NotAuthorised(f"message of kind {message.get('kind')!r} sent as {kind!r}")
        return message

    def verify(self, envelope: dict, kind: str, domain: str) -> dict:
        """The message, once every check of the module docstring holds; its nonce is then spent."""
        message = self.open(envelope, kind)
        public_key, signature = envelope.get("public_key"), envelope.get("signature")
        if not isinstance(public_key, str) or not isinstance(signature, str):
            raise NotAuthorised("a signed message needs public_key and signature strings")
        if message.get("network") != self.network:
            raise NotAuthorised(f"message signed for network {message.get('network')!r}, this is {self.network!r}")
        if message.get("domain") != domain:
            raise NotAuthorised(f"message signed for {message.get('domain')!r}, not {domain!r}")
        party = parse_address(message.get("party"), "party")
        try:
            signer = normalise_address(self.wallet.address_of(public_key))
        except (ValueError, PaygError):
            raise NotAuthorised("the message's public key is not an Ed25519 key") from None
        if signer != party:
            raise NotAuthorised(f"the message's public key belongs to {signer}, not to the party {party}")
        try:
            valid = self.wallet.verify(public_key, message_bytes(message), signature)
        except (ValueError, PaygError):
            valid = False
        if not valid:
            raise NotAuthorised(f"{kind}: the signature does not match the message and the party {party}")
        at, nonce = message.get("at"), message.get("nonce")
        if isinstance(at, bool) or not isinstance(at, int) or not isinstance(nonce, str) or not 16 <= len(nonce) <= 128:
            raise NotAuthorised(f"{kind}: a signed message needs an integer 'at' and a nonce")
        now = int(self.clock.now())
        if abs(now - at) > MAX_SKEW_S:
            raise NotAuthorised(f"{kind}: signed at {at}, {now - at:+d} s from now: too old or from the future")
        with self.store.lock, self.store.transaction():
            self.store.execute("DELETE FROM nonces WHERE at < ?", (now - 2 * MAX_SKEW_S,))
            try:
                self.store.execute("INSERT INTO nonces (party, nonce, at) VALUES (?, ?, ?)", (party, nonce, at))
            except sqlite3.IntegrityError:
                raise NotAuthorised(f"{kind}: this message (nonce {nonce}) was already received") from None
        message["party"] = party
        return message
