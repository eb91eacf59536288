"""IotaLedger: deposits on the live IOTA network (the Move-based one) through iota-sdk 3.x GraphQL.

Addresses. Each socket has its own Ed25519 key, derived from the landlord's
BIP-39 mnemonic along the path IOTA wallets use for account i (SLIP-10, every
level hardened, IOTA coin type 4218):

    m/44'/4218'/{i}'/0'/0'        i = the socket's index in `accounts`

so importing the mnemonic in an IOTA wallet shows socket i as account i and its
funds can be moved from there. This is not what `Ed25519PrivateKey.from_mnemonic(
phrase, i)` derives: iota-sdk 3.0.0b1 puts its index last (m/44'/4218'/0'/0'/{i}',
address i of account 0); the two agree only for i = 0. The mnemonic is used to
derive the addresses in the constructor and is not kept; keys are not kept
either (receiving needs no signature).

Payment URI. No payment-request URI scheme for the current IOTA network could be
verified (the old `iota:` deep links belonged to the Stardust network that was
shut down), so the QR code carries the bare 0x address, which wallet send
screens scan. The amount cannot travel with it; the page shows it in words.

Deposits. A deposit is a successful transaction, included in a checkpoint
(checkpoint finality: it cannot be reverted), whose balance change for a socket's
address in the configured coin type is positive; its amount is that change in
nanos (1 IOTA = 10**9 nanos). A transaction paying two sockets gives two deposits,
`{digest}:{address}` each. The cursor is the last checkpoint scanned. Each call
reads the head checkpoint, then lists, for each socket address, the transactions
that sent it something in checkpoints (cursor, head] with

    transactionBlocks(first, after, filter: {recvAddress, afterCheckpoint, beforeCheckpoint})

following every page of them and of their balance changes. One address per
request (no GraphQL aliases): each request stays within the node's per-query
limits (maxQueryNodes, maxOutputNodes) however many sockets there are; the
requests for different addresses run concurrently. A fresh controller (cursor
None) starts after `start_checkpoint` if given, else at the head: payments made
before that are not scanned. A node whose available range no longer reaches back
to the cursor is reported, not skipped over.

Why polling. The GraphQL subscription `transactions(startAfter, filter:
SubscriptionTransactionFilter)` filters only by kind, signing address or Move
function (the SDK's SubscriptionTransactionFilter has the same three fields), not
by recipient, and the SDK serves subscriptions on devnet and localnet only. So
deposits are found by polling `transactionBlocks`, one query per address per poll.

Threads. iota-sdk is asyncio-based; each IotaLedger runs its requests on its own
event loop in its own thread (started on first use), so the synchronous methods
can be called from any thread, including one that runs an event loop itself.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import threading
import unicodedata
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlparse

import iota_sdk

from ledgers.common import AddressBook, payment_units
from payg.errors import LedgerUnavailable
from payg.ports import Deposit

log = logging.getLogger("payg.ledgers.iota")

NANOS_PER_IOTA = 10**9
DERIVATION_PATH = "m/44'/4218'/{index}'/0'/0'"
MAX_INDEX = 2**31 - 1  # hardened child numbers
CONCURRENT_REQUESTS = 4

HEAD_QUERY = """query PaygHead {
  checkpoint { sequenceNumber }
  availableRange { first { sequenceNumber } }
}"""

BALANCE_CHANGES = """pageInfo { hasNextPage endCursor }
        nodes { owner { address } coinType { repr } amount }"""

DEPOSITS_QUERY = """query PaygDeposits($first: Int!, $after: String, $filter: TransactionBlockFilter!, $changes: Int!) {
  transactionBlocks(first: $first, after: $after, filter: $filter) {
    pageInfo { hasNextPage endCursor }
    nodes {
      digest
      effects {
        status
        timestamp
        checkpoint { sequenceNumber }
        balanceChanges(first: $changes) {
        BALANCE_CHANGES
        }
      }
    }
  }
}""".replace("BALANCE_CHANGES", BALANCE_CHANGES)

BALANCE_CHANGES_QUERY = """query PaygBalanceChanges($digest: String!, $first: Int!, $after: String) {
  transactionBlock(digest: $digest) {
    effects {
      balanceChanges(first: $first, after: $after) {
        BALANCE_CHANGES
      }
    }
  }
}""".replace("BALANCE_CHANGES", BALANCE_CHANGES)

_ADDRESS_IN_TYPE = re.compile(r"0x([0-9a-fA-F]{1,64})(?=::)")
_COIN_TYPE = re.compile(r"0x[0-9a-fA-F]{1,64}::[A-Za-z_][A-Za-z0-9_]*::[A-Za-z_][A-Za-z0-9_]*(<.+>)?")


# What a failed request raises: the SDK's error type, and uniffi's for an unexpected failure in the binding.
_SDK_ERRORS = (iota_sdk.SdkFfiError, iota_sdk.InternalError)


class _BadAnswer(Exception):
    """The node answered, but not with what the schema promises."""


def derivation_path(index: int) -> str:
    return DERIVATION_PATH.format(index=index)


def normalise_address(address: str) -> str:
    """0x + 64 lowercase hex digits (nodes may omit leading zeros on input; we never do)."""
    if not isinstance(address, str) or not re.fullmatch(r"0x[0-9a-fA-F]{1,64}", address):
        raise ValueError(f"not an IOTA address: {address!r}")
    return "0x" + address[2:].lower().rjust(64, "0")


def normalise_coin_type(coin_type: str) -> str:
    """`0x2::iota::IOTA` and `0x000…0002::iota::IOTA` are the same type: compare the long form."""
    return _ADDRESS_IN_TYPE.sub(lambda m: "0x" + m.group(1).lower().rjust(64, "0"), coin_type.strip())


def _positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what} must be a positive integer, got {value!r}")
    return value


class IotaLedger(AddressBook):
    """DepositSource over an IOTA GraphQL node.

    accounts: socket id -> derivation index (the wallet account number). token_value: nanos per
    payg token. page_size: items per GraphQL page, at most the node's serviceConfig.maxPageSize
    (50 on the usual configuration). max_checkpoints_per_poll: scan at most this many checkpoints per
    call (catching up after a long outage in steps). request_timeout_s bounds each HTTP request.
    """

    name = "iota"

    def __init__(self, graphql_url: str, *, mnemonic: str, accounts: Mapping[str, int], token_value: int,
                 start_checkpoint: int | None = None, coin_type: str = "0x2::iota::IOTA",
                 request_timeout_s: float = 10.0, page_size: int = 50,
                 max_checkpoints_per_poll: int | None = None):
        parsed = urlparse(graphql_url) if isinstance(graphql_url, str) else None
        if parsed is None or parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"graphql_url must be an http:// or https:// URL of an IOTA GraphQL node, got {graphql_url!r}")
        self._url = graphql_url
        # Errors name the node; credentials in the URL stay out of them (and out of logs).
        self.url = graphql_url if not (parsed.username or parsed.password) else \
            parsed._replace(netloc="***@" + parsed.netloc.rpartition("@")[2]).geturl()
        self.units_per_token = _positive_int(token_value, "token_value (nanos per token)")
        self.page_size = _positive_int(page_size, "page_size")
        if isinstance(request_timeout_s, bool) or not isinstance(request_timeout_s, (int, float)) \
                or not math.isfinite(request_timeout_s) or request_timeout_s <= 0:
            raise ValueError(f"request_timeout_s must be a positive number of seconds, got {request_timeout_s!r}")
        self.request_timeout_s = float(request_timeout_s)
        if start_checkpoint is not None and (isinstance(start_checkpoint, bool) or not isinstance(start_checkpoint, int)
                                             or start_checkpoint < 0):
            raise ValueError(f"start_checkpoint must be a checkpoint sequence number (an integer >= 0) or None, "
                             f"got {start_checkpoint!r}")
        self.start_checkpoint = start_checkpoint
        self.max_checkpoints_per_poll = (None if max_checkpoints_per_poll is None
                                         else _positive_int(max_checkpoints_per_poll, "max_checkpoints_per_poll"))
        if not isinstance(coin_type, str) or not _COIN_TYPE.fullmatch(coin_type.strip()):
            raise ValueError(f"coin_type must be a Move type such as 0x2::iota::IOTA, got {coin_type!r}")
        self.coin_type = normalise_coin_type(coin_type)
        super().__init__(self._derive_addresses(mnemonic, accounts))
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._client: Any = None
        self._closed = False

    @staticmethod
    def _derive_addresses(mnemonic: str, accounts: Mapping[str, int]) -> dict[str, str]:
        if not isinstance(mnemonic, str) or not mnemonic.strip():
            raise ValueError("mnemonic is empty: give the landlord's BIP-39 recovery phrase (12 to 24 words)")
        # Wallets accept any spacing and case; the SDK wants single spaces and lowercase.
        phrase = " ".join(unicodedata.normalize("NFKD", mnemonic).lower().split())
        if not isinstance(accounts, Mapping):
            raise TypeError("accounts must map socket ids to derivation indexes")
        seen: dict[int, str] = {}
        addresses = {}
        for socket_id, index in accounts.items():
            if not isinstance(socket_id, str) or not socket_id:
                raise ValueError(f"socket id must be a non-empty string, got {socket_id!r}")
            if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index <= MAX_INDEX:
                raise ValueError(f"socket {socket_id!r}: derivation index must be an integer from 0 to {MAX_INDEX}, "
                                 f"got {index!r}")
            if index in seen:
                raise ValueError(f"sockets {seen[index]!r} and {socket_id!r} have the same derivation index {index}: "
                                 "they would share one address")
            seen[index] = socket_id
            try:
                key = iota_sdk.Ed25519PrivateKey.from_mnemonic_with_path(phrase, derivation_path(index))
            except iota_sdk.SdkFfiError as exc:
                # The SDK's message names the problem (word count, unknown word position, checksum), never a word.
                raise ValueError(f"mnemonic is not a valid BIP-39 recovery phrase: {exc}") from None
            addresses[socket_id] = normalise_address(key.public_key().derive_address().to_hex())
        return addresses

    def __repr__(self) -> str:
        return f"IotaLedger({self.url!r}, sockets={sorted(self.socket_ids())!r})"

    def payment_amount_units(self, amount_tokens: int) -> int:
        """Nanos to pay for `amount_tokens` tokens."""
        return payment_units(amount_tokens, self.units_per_token)

    def payment_uri(self, socket_id: str, amount: int | None) -> str:
        """The bare address (see the module docstring); the amount is checked but not encoded."""
        address = self.address_for(socket_id)
        if amount is not None:
            self.payment_amount_units(amount)
        return address

    def deposits_since(self, cursor: str | None) -> tuple[list[Deposit], str | None]:
        if cursor is not None:
            try:
                after = int(cursor)
            except ValueError:
                raise LedgerUnavailable(f"IOTA deposit cursor {cursor!r} is not a checkpoint sequence number") from None
            if after < 0:
                raise LedgerUnavailable(f"IOTA deposit cursor {cursor!r} is not a checkpoint sequence number")
        else:
            after = None
        with self._lock:
            if self._closed:
                raise LedgerUnavailable(f"IOTA node {self.url}: this ledger has been closed")
            loop = self._start_loop()
            future = asyncio.run_coroutine_threadsafe(self._deposits_since(after), loop)
            return future.result()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            loop, thread = self._loop, self._thread
            self._loop = self._thread = self._client = None
        if loop is not None:
            loop.call_soon_threadsafe(loop.stop)
            if thread is not None:
                thread.join(timeout=5)
            if not loop.is_running():
                loop.close()

    def _start_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name=f"iota-ledger {self.url}", daemon=True)
            thread.start()
            self._loop, self._thread = loop, thread
        return self._loop

    async def _deposits_since(self, after: int | None) -> tuple[list[Deposit], str | None]:
        try:
            head, first_available = await self._head()
            if after is None:
                after = head if self.start_checkpoint is None else self.start_checkpoint
            if head <= after:
                if head < after:
                    log.warning("IOTA node %s is at checkpoint %d, behind the cursor %d: waiting for it",
                                self.url, head, after)
                return [], str(after)
            if first_available is not None and after + 1 < first_available:
                raise LedgerUnavailable(
                    f"IOTA node {self.url} keeps checkpoints from {first_available} only; deposits after checkpoint "
                    f"{after} cannot be read from it (use a node that keeps them, or move the cursor on purpose)")
            upper = head if self.max_checkpoints_per_poll is None else min(head, after + self.max_checkpoints_per_poll)
            transactions = await self._transactions(after, upper)
            deposits = []
            for tx in transactions:
                deposits.extend(self._deposits_of(tx))
            return deposits, str(upper)
        except _BadAnswer as exc:
            raise LedgerUnavailable(f"IOTA node {self.url} answered badly: {exc}") from None

    async def _query(self, query: str, variables: dict | None = None) -> dict:
        if self._client is None:
            try:
                self._client = iota_sdk.GraphQlClient(self._url)
            except _SDK_ERRORS as exc:
                raise LedgerUnavailable(f"IOTA node {self.url}: {self._cause(exc)}") from None
        request = iota_sdk.Query(query_string=query, variables=None if variables is None else json.dumps(variables))
        try:
            text = await asyncio.wait_for(self._client.run_query(request), self.request_timeout_s)
        except TimeoutError:
            raise LedgerUnavailable(f"IOTA node {self.url}: no answer within {self.request_timeout_s:g} s") from None
        except _SDK_ERRORS as exc:
            raise LedgerUnavailable(f"IOTA node {self.url}: {self._cause(exc)}") from None
        try:
            data = json.loads(text)
        except (TypeError, ValueError):
            raise _BadAnswer(f"data is not JSON: {str(text)[:200]!r}") from None
        if not isinstance(data, dict):
            raise _BadAnswer(f"data is not an object: {str(text)[:200]!r}")
        return data

    def _cause(self, exc: Exception) -> str:
        return str(exc).replace(self._url.rstrip("/"), self.url.rstrip("/"))

    async def _head(self) -> tuple[int, int | None]:
        data = await self._query(HEAD_QUERY)
        head = _uint(_path(data, "checkpoint", "sequenceNumber"), "checkpoint.sequenceNumber")
        first = _get(data, "availableRange")
        first_cp = _get(first, "first") if first is not None else None
        first_available = (_uint(_path(first_cp, "sequenceNumber"), "availableRange.first.sequenceNumber")
                           if first_cp is not None else None)
        return head, first_available

    async def _transactions(self, after: int, upper: int) -> list[dict]:
        """Every transaction that sent something to a socket address in checkpoints (after, upper], oldest first."""
        limit = asyncio.Semaphore(CONCURRENT_REQUESTS)

        async def listed(address: str) -> list[dict]:
            async with limit:
                return await self._transactions_to(address, after, upper)

        tasks = []
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(listed(a)) for a in self.addresses()]
        except BaseExceptionGroup as group_error:
            # One failure cancels the other requests; report the first cause.
            first = group_error.exceptions[0]
            while isinstance(first, BaseExceptionGroup):
                first = first.exceptions[0]
            raise first from None
        by_digest: dict[str, dict] = {}
        for task in tasks:
            for tx in task.result():
                by_digest.setdefault(tx["digest"], tx)
        # Within a checkpoint: the node's order, for the first socket whose list holds the transaction.
        return sorted(by_digest.values(), key=lambda tx: tx["checkpoint"])

    async def _transactions_to(self, address: str, after: int, upper: int) -> list[dict]:
        found = []
        cursor = None
        while True:
            variables = {"first": self.page_size, "after": cursor, "changes": self.page_size,
                         "filter": {"recvAddress": address, "afterCheckpoint": after, "beforeCheckpoint": upper + 1}}
            data = await self._query(DEPOSITS_QUERY, variables)
            connection = _path(data, "transactionBlocks")
            for node in _list(connection, "nodes"):
                found.append(await self._transaction(node, after, upper))
            more, cursor = _page_info(connection, cursor)
            if not more:
                return found

    async def _transaction(self, node: dict, after: int, upper: int) -> dict:
        digest = _path(node, "digest")
        if not isinstance(digest, str) or not digest:
            raise _BadAnswer(f"transaction without a digest: {node!r}"[:300])
        effects = _path(node, "effects")
        checkpoint = _uint(_path(effects, "checkpoint", "sequenceNumber"), f"{digest}: checkpoint")
        if not after < checkpoint <= upper:
            raise _BadAnswer(f"transaction {digest} is in checkpoint {checkpoint}, "
                             f"outside the range ({after}, {upper}] that was asked for")
        status = _get(effects, "status")
        if status not in ("SUCCESS", "FAILURE"):
            raise _BadAnswer(f"transaction {digest}: status {status!r}")
        changes = _path(effects, "balanceChanges")
        balance_changes = list(_list(changes, "nodes"))
        more, cursor = _page_info(changes, None)
        while more:
            data = await self._query(BALANCE_CHANGES_QUERY, {"digest": digest, "first": self.page_size,
                                                             "after": cursor})
            changes = _path(data, "transactionBlock", "effects", "balanceChanges")
            balance_changes.extend(_list(changes, "nodes"))
            more, cursor = _page_info(changes, cursor)
        return {"digest": digest, "status": status, "checkpoint": checkpoint,
                "timestamp": _get(effects, "timestamp"), "balance_changes": balance_changes}

    def _deposits_of(self, tx: dict) -> list[Deposit]:
        if tx["status"] != "SUCCESS":
            return []  # a failed transaction moved nothing but its sender's gas
        digest = tx["digest"]
        received: dict[str, int] = {}
        for change in tx["balance_changes"]:
            # Strict on purpose: a null here could hide a payment, so it stops the poll instead.
            owner = _path(change, "owner", "address")
            coin = _path(change, "coinType", "repr")
            try:
                address = normalise_address(owner)
            except ValueError:
                raise _BadAnswer(f"transaction {digest}: balance change owner {owner!r}") from None
            if self.socket_at(address) is None or not isinstance(coin, str) \
                    or normalise_coin_type(coin) != self.coin_type:
                continue
            received[address] = received.get(address, 0) + _bigint(_get(change, "amount"), digest)
        credited = [(address, amount) for address, amount in received.items() if amount > 0]
        if not credited:
            return []
        at = _timestamp(tx["timestamp"], digest)
        return [Deposit(f"{digest}:{address}", self.socket_at(address), amount, at)
                for address, amount in credited]


def _get(obj: Any, key: str) -> Any:
    if not isinstance(obj, dict):
        raise _BadAnswer(f"expected an object holding {key!r}, got {obj!r}"[:300])
    return obj.get(key)


def _path(obj: Any, *keys: str) -> Any:
    for key in keys:
        obj = _get(obj, key)
        if obj is None:
            raise _BadAnswer(f"{'.'.join(keys)} is missing (null)")
    return obj


def _list(obj: Any, key: str) -> list:
    value = _get(obj, key)
    if not isinstance(value, list):
        raise _BadAnswer(f"{key} is not a list: {value!r}"[:300])
    return value


def _page_info(connection: Any, previous_cursor: str | None) -> tuple[bool, str | None]:
    info = _path(connection, "pageInfo")
    more = _get(info, "hasNextPage")
    cursor = _get(info, "endCursor")
    if more is True:
        if not isinstance(cursor, str) or cursor == previous_cursor:
            raise _BadAnswer(f"pageInfo says there is a next page but gives no new endCursor: {info!r}"[:300])
        return True, cursor
    if more is False:
        return False, cursor
    raise _BadAnswer(f"pageInfo.hasNextPage is {more!r}")


def _uint(value: Any, what: str) -> int:
    # UInt53 is a JSON number; accept a decimal string too.
    if isinstance(value, bool):
        raise _BadAnswer(f"{what} is {value!r}")
    if isinstance(value, str) and value.isdigit():
        return int(value)
    if isinstance(value, int) and value >= 0:
        return value
    raise _BadAnswer(f"{what} is not a sequence number: {value!r}")


def _bigint(value: Any, digest: str) -> int:
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]+", value):
        return int(value)
    raise _BadAnswer(f"transaction {digest}: balance change amount {value!r} is not a BigInt")


def _timestamp(value: Any, digest: str) -> float:
    try:
        return datetime.fromisoformat(value).timestamp()
    except (TypeError, ValueError):
        raise _BadAnswer(f"transaction {digest}: timestamp {value!r} is not an ISO-8601 date") from None
