"""IotaWallet: keys, signatures and real IOTA transfers through iota-sdk 3.x, for peer trade and channels.

Keys. Every key is derived from one BIP-39 mnemonic along a full SLIP-10 path given by the caller
(every level hardened, e.g. "m/44'/4218'/0'/1'/0'"), with the SDK's `Ed25519PrivateKey.from_mnemonic_with_path`.
The normalised phrase is kept in memory for the wallet's life (a key is derived, and cached, on first use).
An address is the SDK's `derive_address()` of the public key (BLAKE2b-256 of flag 0x00 || public key).

Messages. `sign` is a raw Ed25519 signature (RFC 8032) over the bytes given: the caller domain-separates
them (IOTA's own personal-message intent is not applied). `verify` checks with the SDK's Ed25519VerifyingKey.

Transfers. `send` builds ONE programmable transaction with the SDK's offline `TransactionBuilder`:
`pay_iota` (SplitCoins from the gas coin, one TransferObjects per output), the sender's coins as gas payment
(largest first, at most 256; the node smashes them into the first), the epoch's reference gas price read from
the node, and a fixed budget (`gas_budget`). The SDK signs it (`Ed25519PrivateKey.sign_transaction`: the
intent message of the transaction's BCS) and submits it with `GraphQlClient.execute_transaction`
(Mutation.executeTransactionBlock). The sender pays the gas from the same coins. `send` then polls
`transactionBlock(digest) { effects { checkpoint } }` until the transaction is in a checkpoint (final: it can
no longer be reverted) and returns its digest. `sweep` sends the whole gas coin (TransferObjects of the gas
coin itself): everything at the address minus the gas actually charged.

Gas budget. A budget is reserved (not spent) before execution and must be covered by the gas coins on top of
the amounts sent, so `send` refuses (InsufficientFunds, before anything is sent) when
balance < sum(outputs) + budget. The budget is

    reference gas price * 10,000 gas units  +  2,000,000 nanos per coin object written

(outputs + the sender's change coin). A plain IOTA transfer costs about 1,000 units of computation (the lowest
bucket) and about 988,000 nanos of storage per coin object written, rebated when the object is consumed, so
this leaves a wide margin. What was actually paid is `transaction(digest)["gas_fee"]`
(computation + storage - storage rebate, which can be negative when many coins are merged).

Concurrency. Sends from one address are serialised (each consumes the address's coin objects at known
versions); different addresses and other calls run concurrently. Two wallets (or processes) spending from
the same address at once may make one send fail with LedgerUnavailable (its coins were consumed); a retry
builds from the new coins. After an ambiguous failure (timeout, connection lost after the request left),
`send` asks the node whether the transaction exists before reporting; if it does, it waits for it as usual.
Both a lost answer and a late one leave the coins consumed at most once: a rebuilt transaction would use
different coin versions, so a caller that retries only after LedgerUnavailable should first look the digest
up (exceptions from send carry it as `.digest` when the transaction was built).

Threads. Like ledgers/iota.py, the SDK's async calls run on a private event loop in its own thread; the public
methods are synchronous and thread-safe.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import json
import math
import threading
import time
import unicodedata
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlparse

import iota_sdk

from ledgers.iota.deposits import _BadAnswer, _get, _uint, normalise_address, normalise_coin_type
from payg.errors import InsufficientFunds, InvalidAmount, LedgerUnavailable, PaygError

IOTA_COIN = normalise_coin_type("0x2::iota::IOTA")
BUDGET_GAS_UNITS = 10_000           # computation allowance, in gas units at the reference gas price
BUDGET_PER_OBJECT = 2_000_000       # storage allowance per coin object written, nanos
MAX_GAS_BUDGET = 50 * 10**9         # the protocol's maximum budget (50 IOTA)
MAX_GAS_OBJECTS = 256               # the protocol's maximum number of gas payment coins
MAX_OUTPUTS = 500                   # well under the protocol's limits on commands and pure inputs
MAX_U64 = 2**64 - 1
PAGE_SIZE = 50
POLL_INITIAL_S = 0.05
POLL_MAX_S = 0.5

_SDK_ERRORS = (iota_sdk.SdkFfiError, iota_sdk.InternalError)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

COINS_QUERY = """query PaygCoins($address: IotaAddress!, $first: Int!, $after: String) {
  address(address: $address) {
    coins(first: $first, after: $after) {
      pageInfo { hasNextPage endCursor }
      nodes { address version digest coinBalance }
    }
  }
}"""

BALANCE_QUERY = """query PaygBalance($address: IotaAddress!) {
  address(address: $address) { balance { totalBalance } }
}"""

GAS_PRICE_QUERY = """query PaygGasPrice { epoch { referenceGasPrice } }"""

CHAIN_QUERY = """query PaygChain { chainIdentifier }"""

CHECKPOINT_QUERY = """query PaygTransactionCheckpoint($digest: String!) {
  transactionBlock(digest: $digest) { effects { checkpoint { sequenceNumber } } }
}"""

TRANSACTION_QUERY = """query PaygTransaction($digest: String!, $first: Int!, $after: String) {
  transactionBlock(digest: $digest) {
    digest
    sender { address }
    effects {
      status
      errors
      timestamp
      checkpoint { sequenceNumber }
      gasEffects { gasSummary { computationCost storageCost storageRebate nonRefundableStorageFee } }
      balanceChanges(first: $first, after: $after) {
        pageInfo { hasNextPage endCursor }
        nodes { owner { address } coinType { repr } amount }
      }
    }
  }
}"""


# Ed25519 strictness. The SDK's verifier follows the cofactorless equation without the "strict" checks, and
# accepts for instance an all-zero public key with an all-zero signature for every message. verify() therefore
# refuses, before asking the SDK, what RFC 8032 / verify_strict refuse: a non-canonical point encoding,
# a public key or R of small order (the 8-torsion, which makes signatures forgeable or malleable), and s >= L.
_P = 2**255 - 19
_L = 2**252 + 27742317777372353535851937790883648493
_D = -121665 * pow(121666, _P - 2, _P) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)


def _decode_point(raw: bytes) -> tuple[int, int] | None:
    """The affine Edwards25519 point (x, y) of a canonical 32-byte encoding, or None."""
    y = int.from_bytes(raw, "little")
    sign, y = y >> 255, y & ((1 << 255) - 1)
    if y >= _P:
        return None
    u, v = (y * y - 1) % _P, (_D * y * y + 1) % _P
    # x = sqrt(u / v) with one exponentiation: x = u v^3 (u v^7)^((p - 5) / 8), then fix the root of -1
    x = u * pow(v, 3, _P) * pow(u * pow(v, 7, _P), (_P - 5) // 8, _P) % _P
    if (v * x * x - u) % _P:
        x = x * _SQRT_M1 % _P
        if (v * x * x - u) % _P:
            return None
    if x == 0 and sign:
        return None
    if x & 1 != sign:
        x = _P - x
    return x, y


@functools.lru_cache(maxsize=1024)
def _strong_point(raw: bytes) -> bool:
    """A canonical encoding of a point outside the small-order subgroup ([8]P is not the identity).
    (Cached: the same public keys come back with every voucher.)"""
    point = _decode_point(raw)
    if point is None:
        return False
    x, y, z = point[0], point[1], 1
    for _ in range(3):  # projective doubling on -x^2 + y^2 = 1 + d x^2 y^2
        b, c, d = (x + y) ** 2 % _P, x * x % _P, y * y % _P
        f = (d - c) % _P
        j = (f - 2 * z * z) % _P
        x, y, z = (b - c - d) * j % _P, f * (-c - d) % _P, f * j % _P
    return not (x == 0 and (y - z) % _P == 0)


class TransactionNotFound(PaygError):
    """The node knows no transaction with that digest (or the digest is not one)."""


class TransferFailed(LedgerUnavailable):
    """The transaction was executed and checkpointed but failed: nothing moved except the gas it paid."""

    def __init__(self, message: str, digest: str, gas_fee: int | None):
        super().__init__(message)
        self.digest = digest
        self.gas_fee = gas_fee


def gas_budget(objects_written: int, gas_price: int) -> int:
    """The budget `send` reserves for a transaction writing `objects_written` coin objects (see the module doc)."""
    return min(MAX_GAS_BUDGET, gas_price * BUDGET_GAS_UNITS + BUDGET_PER_OBJECT * objects_written)


def _normalise_phrase(mnemonic: str) -> str:
    if not isinstance(mnemonic, str) or not mnemonic.strip():
        raise ValueError("mnemonic is empty: give a BIP-39 recovery phrase (12 to 24 words)")
    return " ".join(unicodedata.normalize("NFKD", mnemonic).lower().split())


def _address(value: Any, what: str) -> str:
    try:
        return normalise_address(value)
    except ValueError:
        raise ValueError(f"{what} is not an IOTA address (0x + up to 64 hex digits): {value!r}") from None


class IotaWallet:
    """Keys from one mnemonic, and transfers from their addresses, over an IOTA GraphQL node."""

    def __init__(self, graphql_url: str, *, mnemonic: str, request_timeout_s: float = 10.0,
                 finality_timeout_s: float = 60.0):
        parsed = urlparse(graphql_url) if isinstance(graphql_url, str) else None
        if parsed is None or parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"graphql_url must be an http:// or https:// URL of an IOTA GraphQL node, got {graphql_url!r}")
        self._url = graphql_url
        self.url = graphql_url if not (parsed.username or parsed.password) else \
            parsed._replace(netloc="***@" + parsed.netloc.rpartition("@")[2]).geturl()
        for name, value in (("request_timeout_s", request_timeout_s), ("finality_timeout_s", finality_timeout_s)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
        self.request_timeout_s = float(request_timeout_s)
        self.finality_timeout_s = float(finality_timeout_s)
        self._phrase = _normalise_phrase(mnemonic)
        # Fail now on a bad phrase (the SDK names the problem, never a word).
        self._keys: dict[str, Any] = {}
        self._keys_lock = threading.Lock()
        try:
            iota_sdk.Ed25519PrivateKey.from_mnemonic_with_path(self._phrase, "m/44'/4218'/0'/0'/0'")
        except iota_sdk.SdkFfiError as exc:
            raise ValueError(f"mnemonic is not a valid BIP-39 recovery phrase: {exc}") from None
        self._lock = threading.Lock()
        self._send_locks: dict[str, threading.Lock] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._client: Any = None
        self._closed = False
        self._chain: str | None = None

    def __repr__(self) -> str:
        return f"IotaWallet({self.url!r})"

    # --- keys and signatures (local, no node) ---

    def _key(self, path: str):
        if not isinstance(path, str) or not path.startswith("m/"):
            raise ValueError(f"derivation path must look like m/44'/4218'/0'/0'/0', got {path!r}")
        with self._keys_lock:
            key = self._keys.get(path)
            if key is None:
                try:
                    key = iota_sdk.Ed25519PrivateKey.from_mnemonic_with_path(self._phrase, path)
                except _SDK_ERRORS as exc:
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
            if len(public) != 32 or len(signature) != 64:
                return False
            if int.from_bytes(signature[32:], "little") >= _L or not _strong_point(public) \
                    or not _strong_point(signature[:32]):
                return False
            key = iota_sdk.Ed25519VerifyingKey(iota_sdk.Ed25519PublicKey.from_bytes(public))
            key.verify(bytes(message), iota_sdk.Ed25519Signature.from_bytes(signature))
            return True
        except (TypeError, ValueError, AttributeError, *_SDK_ERRORS):  # bad input fails, never raises
            return False

    @staticmethod
    def address_of(public_key_hex: str) -> str:
        try:
            public = bytes.fromhex(public_key_hex)
            if len(public) != 32:
                raise ValueError
            key = iota_sdk.Ed25519PublicKey.from_bytes(public)
        except (TypeError, ValueError, *_SDK_ERRORS):
            raise ValueError(f"not an Ed25519 public key (64 hex digits): {public_key_hex!r}") from None
        return normalise_address(key.derive_address().to_hex())

    # --- node ---

    def network(self) -> str:
        if self._chain is None:
            data = self._run(self._query(CHAIN_QUERY))
            chain = data.get("chainIdentifier")
            if not isinstance(chain, str) or not chain:
                raise LedgerUnavailable(f"IOTA node {self.url} answered badly: chainIdentifier {chain!r}")
            self._chain = chain
        return self._chain

    def balance(self, address: str) -> int:
        address = _address(address, "address")
        return self._run(self._balance(address))

    def gas_price(self) -> int:
        return self._run(self._gas_price())

    def send(self, path: str, outputs: list[tuple[str, int]]) -> str:
        checked = self._outputs(outputs)
        sender = self.address(path)
        with self._sender_lock(sender):
            return self._run(self._send(path, sender, checked))

    def sweep(self, path: str, to: str) -> tuple[str, int]:
        to = _address(to, "recipient")
        sender = self.address(path)
        with self._sender_lock(sender):
            digest = self._run(self._sweep(path, sender, to))
        facts = self.transaction(digest)
        return digest, facts["changes"].get(to, 0) if to != sender else -facts["changes"].get(sender, 0)

    def transaction(self, digest: str) -> dict:
        if not isinstance(digest, str):
            raise TransactionNotFound(f"not a transaction digest: {digest!r}")
        try:
            iota_sdk.TransactionDigest.from_base58(digest)
        except _SDK_ERRORS:
            raise TransactionNotFound(f"not a transaction digest: {digest!r}") from None
        return self._run(self._transaction(digest))

    def gas_fee(self, digest: str) -> int | None:
        return self.transaction(digest)["gas_fee"]

    def close(self) -> None:
        with self._lock:
            self._closed = True
            loop, thread = self._loop, self._thread
            self._loop = self._thread = self._client = None
        if loop is not None:
            def shut_down():
                for task in asyncio.all_tasks(loop):  # a send waiting for its checkpoint ends here
                    task.cancel()
                loop.call_soon(loop.stop)

            loop.call_soon_threadsafe(shut_down)
            if thread is not None:
                thread.join(timeout=5)
            if not loop.is_running():
                loop.close()

    # --- internals ---

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
            checked.append((_address(address, "recipient"), amount))
        if sum(amount for _, amount in checked) > MAX_U64:
            raise InvalidAmount("the outputs add up to more than a coin can hold (2**64 - 1 nanos)")
        return checked

    def _run(self, coroutine):
        with self._lock:
            if self._closed:
                coroutine.close()
                raise LedgerUnavailable(f"IOTA node {self.url}: this wallet has been closed")
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name=f"iota-wallet {self.url}", daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
            future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            while True:
                try:
                    return future.result(timeout=0.2)
                except concurrent.futures.TimeoutError:
                    if self._closed:  # close() stopped the loop: this call would never finish
                        future.cancel()
                        raise LedgerUnavailable(f"IOTA node {self.url}: the wallet was closed during the call; "
                                                "a transfer it was making may still become final") from None
        except _BadAnswer as exc:
            raise LedgerUnavailable(f"IOTA node {self.url} answered badly: {exc}") from None

    def _cause(self, exc: Exception) -> str:
        return str(exc).replace(self._url.rstrip("/"), self.url.rstrip("/"))

    def _sdk_client(self):
        if self._client is None:
            try:
                self._client = iota_sdk.GraphQlClient(self._url)
            except _SDK_ERRORS as exc:
                raise LedgerUnavailable(f"IOTA node {self.url}: {self._cause(exc)}") from None
        return self._client

    async def _call(self, awaitable):
        try:
            return await asyncio.wait_for(awaitable, self.request_timeout_s)
        except TimeoutError:
            raise LedgerUnavailable(f"IOTA node {self.url}: no answer within {self.request_timeout_s:g} s") from None
        except _SDK_ERRORS as exc:
            raise LedgerUnavailable(f"IOTA node {self.url}: {self._cause(exc)}") from None

    async def _query(self, query: str, variables: dict | None = None) -> dict:
        client = self._sdk_client()
        request = iota_sdk.Query(query_string=query, variables=None if variables is None else json.dumps(variables))
        text = await self._call(client.run_query(request))
        try:
            data = json.loads(text)
        except (TypeError, ValueError):
            raise _BadAnswer(f"data is not JSON: {str(text)[:200]!r}") from None
        if not isinstance(data, dict):
            raise _BadAnswer(f"data is not an object: {str(text)[:200]!r}")
        return data

    async def _balance(self, address: str) -> int:
        data = await self._query(BALANCE_QUERY, {"address": address})
        holder = data.get("address")
        balance = holder.get("balance") if isinstance(holder, dict) else None
        if balance is None:
            return 0
        return _bigint(_get(balance, "totalBalance"), "balance.totalBalance")

    async def _gas_price(self) -> int:
        data = await self._query(GAS_PRICE_QUERY)
        price = _bigint(_get(_get(data, "epoch"), "referenceGasPrice"), "epoch.referenceGasPrice")
        if price < 1:
            raise _BadAnswer(f"reference gas price {price}")
        return price

    async def _coins(self, address: str) -> list[tuple[int, Any]]:
        """(balance, ObjectReference) of every IOTA coin at the address, largest first."""
        coins = []
        cursor = None
        while True:
            data = await self._query(COINS_QUERY, {"address": address, "first": PAGE_SIZE, "after": cursor})
            holder = data.get("address")
            if holder is None:
                return []
            connection = _get(holder, "coins")
            nodes = _get(connection, "nodes")
            if not isinstance(nodes, list):
                raise _BadAnswer(f"coins.nodes is not a list: {nodes!r}"[:300])
            for node in nodes:
                try:
                    reference = iota_sdk.ObjectReference(
                        object_id=iota_sdk.ObjectId.from_hex(normalise_address(_get(node, "address"))),
                        version=iota_sdk.Version.from_u64(_uint(_get(node, "version"), "coin version")),
                        digest=iota_sdk.ObjectDigest.from_base58(_get(node, "digest")))
                except (ValueError, TypeError, *_SDK_ERRORS):
                    raise _BadAnswer(f"coin {node!r}"[:300]) from None
                coins.append((_bigint(_get(node, "coinBalance"), "coinBalance"), reference))
            info = _get(connection, "pageInfo")
            if _get(info, "hasNextPage") is not True:
                break
            next_cursor = _get(info, "endCursor")
            if not isinstance(next_cursor, str) or next_cursor == cursor:
                raise _BadAnswer(f"coins: pageInfo says there is a next page but gives no new endCursor: {info!r}")
            cursor = next_cursor
        coins.sort(key=lambda coin: -coin[0])
        return coins

    async def _gas_payment(self, sender: str, needed_beyond_budget: int, objects_written: int):
        price = await self._gas_price()
        budget = gas_budget(objects_written, price)
        coins = (await self._coins(sender))[:MAX_GAS_OBJECTS]
        total = sum(balance for balance, _ in coins)
        if total < needed_beyond_budget + budget:
            raise InsufficientFunds(
                f"{sender} holds {total} nanos usable in one transaction; it needs {needed_beyond_budget} "
                f"+ a gas budget of {budget} nanos at {price} nanos per gas unit")
        return price, budget, coins, total

    async def _send(self, path: str, sender: str, outputs: list[tuple[str, int]]) -> str:
        amount = sum(n for _, n in outputs)
        price, budget, coins, _total = await self._gas_payment(sender, amount, len(outputs) + 1)
        builder = iota_sdk.TransactionBuilder(iota_sdk.Address.from_hex(sender)).pay_iota(
            [iota_sdk.Payment(recipient=iota_sdk.Address.from_hex(address), amount=iota_sdk.PtbArgument.u64(n))
             for address, n in outputs])
        return await self._execute(path, builder, [ref for _, ref in coins], price, budget)

    async def _sweep(self, path: str, sender: str, to: str) -> str:
        price, budget, coins, _total = await self._gas_payment(sender, 0, 1)
        builder = iota_sdk.TransactionBuilder(iota_sdk.Address.from_hex(sender)).transfer_objects(
            iota_sdk.Address.from_hex(to), [iota_sdk.PtbArgument.gas()])
        return await self._execute(path, builder, [ref for _, ref in coins], price, budget)

    async def _execute(self, path: str, builder, gas_refs: list, price: int, budget: int) -> str:
        try:
            transaction = builder.gas(gas_refs).gas_price(price).gas_budget(budget).finish()
        except _SDK_ERRORS as exc:
            raise LedgerUnavailable(f"could not build the transaction: {exc}") from None
        signature = self._key(path).sign_transaction(transaction)
        digest = transaction.digest().to_base58()
        try:
            try:
                effects = await self._call(self._sdk_client().execute_transaction([signature], transaction))
            except LedgerUnavailable:
                # The request may have reached the node: if the transaction exists, it is ours to wait for.
                if not await self._known(digest):
                    raise
                effects = None
            checkpoint = await self._wait_for_checkpoint(digest)
            failed = (not effects.as_v1().status().is_success() if effects is not None
                      else not (await self._transaction(digest))["success"])
            if failed:
                facts = await self._transaction(digest)
                raise TransferFailed(f"transaction {digest} (checkpoint {checkpoint}) failed on chain: "
                                     f"{facts['error']}; it paid {facts['gas_fee']} nanos of gas and moved nothing else",
                                     digest, facts["gas_fee"])
            return digest
        except LedgerUnavailable as exc:
            exc.digest = digest
            raise

    async def _known(self, digest: str) -> bool:
        try:
            data = await self._query(CHECKPOINT_QUERY, {"digest": digest})
        except (LedgerUnavailable, _BadAnswer):
            return False
        return data.get("transactionBlock") is not None

    async def _wait_for_checkpoint(self, digest: str) -> int:
        deadline = time.monotonic() + self.finality_timeout_s
        delay = POLL_INITIAL_S
        while True:
            data = await self._query(CHECKPOINT_QUERY, {"digest": digest})
            block = data.get("transactionBlock")
            if block is not None:
                checkpoint = _get(_get(block, "effects"), "checkpoint")
                if checkpoint is not None:
                    return _uint(_get(checkpoint, "sequenceNumber"), "checkpoint.sequenceNumber")
            left = deadline - time.monotonic()
            if left <= 0:
                state = "executed" if block is not None else "submitted"
                raise LedgerUnavailable(
                    f"IOTA node {self.url}: transaction {digest} was {state} but is not in a checkpoint after "
                    f"{self.finality_timeout_s:g} s; it may still become final: look it up before sending again")
            await asyncio.sleep(min(delay, left))
            delay = min(delay * 2, POLL_MAX_S)

    async def _transaction(self, digest: str) -> dict:
        data = await self._query(TRANSACTION_QUERY, {"digest": digest, "first": PAGE_SIZE, "after": None})
        block = data.get("transactionBlock")
        if block is None:
            raise TransactionNotFound(f"IOTA node {self.url} knows no transaction {digest}")
        effects = _get(block, "effects")
        status = _get(effects, "status")
        if status not in ("SUCCESS", "FAILURE"):
            raise _BadAnswer(f"transaction {digest}: status {status!r}")
        sender = _get(block, "sender")
        checkpoint = _get(effects, "checkpoint")
        timestamp = _get(effects, "timestamp")
        gas = _get(effects, "gasEffects")
        summary = _get(gas, "gasSummary") if gas is not None else None
        gas_fee = None
        if summary is not None:
            gas_fee = (_bigint(_get(summary, "computationCost"), "computationCost")
                       + _bigint(_get(summary, "storageCost"), "storageCost")
                       - _bigint(_get(summary, "storageRebate"), "storageRebate"))
        changes: dict[str, int] = {}
        connection = _get(effects, "balanceChanges")
        while True:
            nodes = _get(connection, "nodes")
            if not isinstance(nodes, list):
                raise _BadAnswer(f"balanceChanges.nodes is not a list: {nodes!r}"[:300])
            for change in nodes:
                coin = _get(_get(change, "coinType"), "repr")
                if not isinstance(coin, str) or normalise_coin_type(coin) != IOTA_COIN:
                    continue
                try:
                    owner = normalise_address(_get(_get(change, "owner"), "address"))
                except ValueError:
                    raise _BadAnswer(f"transaction {digest}: balance change owner {change!r}"[:300]) from None
                changes[owner] = changes.get(owner, 0) + _bigint(_get(change, "amount"), "amount")
            info = _get(connection, "pageInfo")
            if _get(info, "hasNextPage") is not True:
                break
            more = await self._query(TRANSACTION_QUERY, {"digest": digest, "first": PAGE_SIZE,
                                                         "after": _get(info, "endCursor")})
            connection = _get(_get(_get(more, "transactionBlock"), "effects"), "balanceChanges")
        ms = _timestamp_ms(timestamp, digest) if timestamp is not None else None
        return {
            "digest": digest,
            "sender": normalise_address(_get(sender, "address")) if sender is not None else None,
            "checkpoint": _uint(_get(checkpoint, "sequenceNumber"), "checkpoint") if checkpoint is not None else None,
            "timestamp": ms // 1000 if ms is not None else None,
            "timestamp_ms": ms,
            "success": status == "SUCCESS",
            "error": _get(effects, "errors"),
            "changes": {address: amount for address, amount in changes.items() if amount},
            "gas_fee": gas_fee,
        }


def _bigint(value: Any, what: str) -> int:
    if isinstance(value, str):
        try:
            return int(value, 10)
        except ValueError:
            pass
    raise _BadAnswer(f"{what} is not a BigInt: {value!r}")


def _timestamp_ms(value: Any, digest: str) -> int:
    try:
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None:
            raise ValueError("no time zone")
    except (TypeError, ValueError):
        raise _BadAnswer(f"transaction {digest}: timestamp {value!r} is not an ISO-8601 date") from None
    return (moment - _EPOCH) // timedelta(milliseconds=1)  # exact: no float rounding
