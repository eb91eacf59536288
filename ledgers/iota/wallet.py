"""IotaWallet: keys, signatures and real IOTA transfers through iota-sdk 3.x, for peer trade and channels.

Keys. Every key is derived from one BIP-39 mnemonic along a full SLIP-10 path given by the caller
(every level hardened, e.g. "m/44'/4218'/0'/1'/0'"), with the SDK's `Ed25519PrivateKey.from_mnemonic_with_path`.
The normalised phrase is kept in memory for the wallet's life (a key is derived, and cached, on first use).
An address is the SDK's `derive_address()` of the public key (BLAKE2b-256 of flag 0x00 || public key).

Messages. `sign` is a raw Ed25519 signature (RFC 8032) over the bytes given: the caller domain-separates
them (IOTA's own personal-message intent is not applied). `verify` checks with the SDK's Ed25519VerifyingKey,
after the strictness checks of ledgers/iota/ed25519.py.

Transfers. `send` pays outputs from a key's address in one transaction, `sweep` empties an address, each
returning once its transaction is final; how, with what gas budget and what happens on an ambiguous failure is
in ledgers/iota/transfers.py.

Concurrency. Sends from one address are serialised (each consumes the address's coin objects at known
versions); different addresses and other calls run concurrently.

Threads. Like IotaLedger's, the wallet's SDK calls run on its own IotaNode (ledgers/iota/sdk.py), a private
event loop in its own thread; the public methods are synchronous and thread-safe.
"""

from __future__ import annotations

import threading
from typing import Any

import iota_sdk

import ledgers.iota.ed25519 as ed25519
from ledgers.iota.sdk import (
    SDK_ERRORS,
    IotaNode,
    normalise_address,
    normalise_phrase,
    parse_address,
    private_key,
    seconds,
)
from ledgers.iota.transfers import TransactionNotFound, Transfers
from payg.errors import InvalidAmount

MAX_OUTPUTS = 500  # well under the protocol's limits on commands and pure inputs
MAX_U64 = 2**64 - 1


class IotaWallet:
    """Keys from one mnemonic, and transfers from their addresses, over an IOTA GraphQL node."""

    def __init__(self, graphql_url: str, *, mnemonic: str, request_timeout_s: float = 10.0,
                 finality_timeout_s: float = 60.0):
        self._node = IotaNode(graphql_url, request_timeout_s=request_timeout_s, what="wallet")
        self.url = self._node.url
        self.request_timeout_s = self._node.request_timeout_s
        self.finality_timeout_s = seconds(finality_timeout_s, "finality_timeout_s")
        self._transfers = Transfers(self._node, self.finality_timeout_s)
        self._phrase = normalise_phrase(mnemonic)
        private_key(self._phrase, "m/44'/4218'/0'/0'/0'")  # fail now on a bad phrase
        self._keys: dict[str, Any] = {}
        self._keys_lock = threading.Lock()
        self._lock = threading.Lock()
        self._send_locks: dict[str, threading.Lock] = {}
        self._chain: str | None = None

    def __repr__(self) -> str:
        return f"IotaWallet({self.url!r})"

    def _key(self, path: str):
        if not isinstance(path, str) or not path.startswith("m/"):
            raise ValueError(f"derivation path must look like m/44'/4218'/0'/0'/0', got {path!r}")
        with self._keys_lock:
            key = self._keys.get(path)
            if key is None:
                try:
                    key = iota_sdk.Ed25519PrivateKey.from_mnemonic_with_path(self._phrase, path)
                except SDK_ERRORS as exc:
                    raise ValueError(f"derivation path {path!r}: {exc}") from None
                self._keys[path] = key
            return key

    def address(self, path: str) -> str:
        return normalise_address(self._key(path).public_key().derive_address().to_hex())

    def public_key(self, path: str) -> str:
        return self._key(path).public_key().to_bytes().hex()

    def sign(self, path: str, message: bytes) -> str:
        if not isinstance(message, (bytes, bytearray)):
            raise TypeError("message must be bytes")
        return self._key(path).try_sign(bytes(message)).to_bytes().hex()

    @staticmethod
    def verify(public_key_hex: str, message: bytes, signature_hex: str) -> bool:
        try:
            if not isinstance(message, (bytes, bytearray)):
                return False
            public = bytes.fromhex(public_key_hex)
            signature = bytes.fromhex(signature_hex)
            if not ed25519.strict(public, signature):
                return False
            key = iota_sdk.Ed25519VerifyingKey(iota_sdk.Ed25519PublicKey.from_bytes(public))
            key.verify(bytes(message), iota_sdk.Ed25519Signature.from_bytes(signature))
            return True
        except (TypeError, ValueError, AttributeError, *SDK_ERRORS):  # bad input fails, never raises
            return False

    @staticmethod
    def address_of(public_key_hex: str) -> str:
        try:
            public = bytes.fromhex(public_key_hex)
            if len(public) != 32:
                raise ValueError
            key = iota_sdk.Ed25519PublicKey.from_bytes(public)
        except (TypeError, ValueError, *SDK_ERRORS):
            raise ValueError(f"not an Ed25519 public key (64 hex digits): {public_key_hex!r}") from None
        return normalise_address(key.derive_address().to_hex())

    def network(self) -> str:
        if self._chain is None:
            self._chain = self._node.run(self._transfers.chain())
        return self._chain

    def balance(self, address: str) -> int:
        address = parse_address(address, "address")
        return self._node.run(self._transfers.balance(address))

    def balances(self, addresses: list[str]) -> tuple[int, dict[str, int]]:
        """(checkpoint, {address: balance}) for every address, in one request per 50 (transfers.balances)."""
        checked = [parse_address(a, "address") for a in addresses]
        return self._node.run(self._transfers.balances(checked))

    def gas_price(self) -> int:
        return self._node.run(self._transfers.gas_price())

    def send(self, path: str, outputs: list[tuple[str, int]]) -> str:
        checked = self._outputs(outputs)
        sender = self.address(path)
        with self._sender_lock(sender):
            return self._node.run(self._transfers.send(self._key(path), sender, checked))

    def sweep(self, path: str, to: str) -> tuple[str, int]:
        to = parse_address(to, "recipient")
        sender = self.address(path)
        with self._sender_lock(sender):
            digest = self._node.run(self._transfers.sweep(self._key(path), sender, to))
        facts = self.transaction(digest)
        return digest, facts["changes"].get(to, 0) if to != sender else -facts["changes"].get(sender, 0)

    def transaction(self, digest: str) -> dict:
        if not isinstance(digest, str):
            raise TransactionNotFound(f"not a transaction digest: {digest!r}")
        try:
            iota_sdk.TransactionDigest.from_base58(digest)
        except SDK_ERRORS:
            raise TransactionNotFound(f"not a transaction digest: {digest!r}") from None
        return self._node.run(self._transfers.transaction(digest))

    def gas_fee(self, digest: str) -> int | None:
        return self.transaction(digest)["gas_fee"]

    def close(self) -> None:
        self._node.close()

    def _sender_lock(self, sender: str) -> threading.Lock:
        with self._lock:
            return self._send_locks.setdefault(sender, threading.Lock())

    @staticmethod
    def _outputs(outputs: Any) -> list[tuple[str, int]]:
        if not isinstance(outputs, (list, tuple)) or not outputs:
            raise InvalidAmount("a transfer needs at least one (address, nanos) output")
        if len(outputs) > MAX_OUTPUTS:
            raise InvalidAmount(f"at most {MAX_OUTPUTS} outputs in one transaction, got {len(outputs)}")
        checked = []
        for output in outputs:
            if not isinstance(output, (list, tuple)) or len(output) != 2:
                raise InvalidAmount(f"an output is an (address, nanos) pair, got {output!r}")
            address, amount = output
            if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount <= MAX_U64:
                raise InvalidAmount(f"amount must be a positive integer number of nanos, got {amount!r}")
            checked.append((parse_address(address, "recipient"), amount))
        if sum(amount for _, amount in checked) > MAX_U64:
            raise InvalidAmount("the outputs add up to more than a coin can hold (2**64 - 1 nanos)")
        return checked
