"""What IotaLedger and IotaWallet share: one IOTA GraphQL node reached through iota-sdk 3.x, its answers read
strictly, and the keys of a BIP-39 mnemonic.

Threads. iota-sdk is asyncio-based; an IotaNode runs the SDK's calls on its own event loop in its own thread
(started on first use), so the synchronous methods of the ledger and the wallet can be called from any
thread, including one that runs an event loop itself.

Answers. The parsers stop at anything the GraphQL schema does not promise (_BadAnswer, reported as
LedgerUnavailable by IotaNode.run): a null or a value of the wrong type could hide a payment.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import math
import re
import threading
import unicodedata
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlparse

import iota_sdk

from payg.errors import LedgerUnavailable

MAX_INDEX = 2**31 - 1  # hardened child numbers

# What a failed request raises: the SDK's error type, and uniffi's for an unexpected failure in the binding.
SDK_ERRORS = (iota_sdk.SdkFfiError, iota_sdk.InternalError)

_ADDRESS_IN_TYPE = re.compile(r"0x([0-9a-fA-F]{1,64})(?=::)")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class _BadAnswer(Exception):
    """The node answered, but not with what the schema promises."""


def seconds(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
    return float(value)


class IotaNode:
    """An IOTA GraphQL node, through the SDK's client on a private event loop.

    `what` ("ledger", "wallet") names the owner in the thread's name and in errors."""

    def __init__(self, graphql_url: str, *, request_timeout_s: float, what: str):
        parsed = urlparse(graphql_url) if isinstance(graphql_url, str) else None
        if parsed is None or parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError("graphql_url must be an http:// or https:// URL of an IOTA GraphQL node, "
                             f"got {graphql_url!r}")
        self._url = graphql_url
        # Errors name the node; credentials in the URL stay out of them (and out of logs).
        self.url = graphql_url if not (parsed.username or parsed.password) else \
            parsed._replace(netloc="***@" + parsed.netloc.rpartition("@")[2]).geturl()
        self.request_timeout_s = seconds(request_timeout_s, "request_timeout_s")
        self.what = what
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._client: Any = None
        self._closed = False

    def run(self, coroutine):
        """Run `coroutine` on the node's loop and wait for its result; callable from any thread."""
        with self._lock:
            if self._closed:
                coroutine.close()
                raise LedgerUnavailable(f"IOTA node {self.url}: this {self.what} has been closed")
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name=f"iota-{self.what} {self.url}", daemon=True)
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
                        raise LedgerUnavailable(f"IOTA node {self.url}: the {self.what} was closed during the call; "
                                                "a transaction it had submitted may still become final") from None
        except _BadAnswer as exc:
            raise LedgerUnavailable(f"IOTA node {self.url} answered badly: {exc}") from None

    def close(self) -> None:
        with self._lock:
            self._closed = True
            loop, thread = self._loop, self._thread
            self._loop = self._thread = self._client = None
        if loop is not None:
            def shut_down():
                for task in asyncio.all_tasks(loop):  # a call waiting for the node (or a checkpoint) ends here
                    task.cancel()
                loop.call_soon(loop.stop)

            loop.call_soon_threadsafe(shut_down)
            if thread is not None:
                thread.join(timeout=5)
            if not loop.is_running():
                loop.close()

    def client(self):
        """The SDK's GraphQL client (made on first use, on the node's loop)."""
        if self._client is None:
            try:
                self._client = iota_sdk.GraphQlClient(self._url)
            except SDK_ERRORS as exc:
                raise LedgerUnavailable(f"IOTA node {self.url}: {self._cause(exc)}") from None
        return self._client

    async def call(self, awaitable):
        """An SDK call, bounded by request_timeout_s, its failures as LedgerUnavailable."""
        try:
            return await asyncio.wait_for(awaitable, self.request_timeout_s)
        except TimeoutError:
            raise LedgerUnavailable(f"IOTA node {self.url}: no answer within {self.request_timeout_s:g} s") from None
        except SDK_ERRORS as exc:
            raise LedgerUnavailable(f"IOTA node {self.url}: {self._cause(exc)}") from None

    async def query(self, query: str, variables: dict | None = None) -> dict:
        request = iota_sdk.Query(query_string=query, variables=None if variables is None else json.dumps(variables))
        text = await self.call(self.client().run_query(request))
        try:
            data = json.loads(text)
        except (TypeError, ValueError):
            raise _BadAnswer(f"data is not JSON: {str(text)[:200]!r}") from None
        if not isinstance(data, dict):
            raise _BadAnswer(f"data is not an object: {str(text)[:200]!r}")
        return data

    def _cause(self, exc: Exception) -> str:
        return str(exc).replace(self._url.rstrip("/"), self.url.rstrip("/"))


def normalise_phrase(mnemonic: str, whose: str = "a") -> str:
    """The phrase as the SDK wants it: wallets accept any spacing and case, the SDK single spaces and lowercase."""
    if not isinstance(mnemonic, str) or not mnemonic.strip():
        raise ValueError(f"mnemonic is empty: give {whose} BIP-39 recovery phrase (12 to 24 words)")
    return " ".join(unicodedata.normalize("NFKD", mnemonic).lower().split())


def private_key(phrase: str, path: str):
    try:
        return iota_sdk.Ed25519PrivateKey.from_mnemonic_with_path(phrase, path)
    except iota_sdk.SdkFfiError as exc:
        # The SDK's message names the problem (word count, unknown word position, checksum), never a word.
        raise ValueError(f"mnemonic is not a valid BIP-39 recovery phrase: {exc}") from None


def account_indexes(accounts: Mapping[str, int]) -> dict[str, int]:
    """socket id -> derivation index (the wallet account number), each index a hardened child number used once."""
    if not isinstance(accounts, Mapping):
        raise TypeError("accounts must map socket ids to derivation indexes")
    seen: dict[int, str] = {}
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
    return dict(accounts)


def normalise_address(address: str) -> str:
    """0x + 64 lowercase hex digits (nodes may omit leading zeros on input; we never do)."""
    if not isinstance(address, str) or not re.fullmatch(r"0x[0-9a-fA-F]{1,64}", address):
        raise ValueError(f"not an IOTA address: {address!r}")
    return "0x" + address[2:].lower().rjust(64, "0")


def parse_address(value: Any, what: str) -> str:
    """normalise_address, its error naming what the value is."""
    try:
        return normalise_address(value)
    except ValueError:
        raise ValueError(f"{what} is not an IOTA address (0x + up to 64 hex digits): {value!r}") from None


def normalise_coin_type(coin_type: str) -> str:
    """`0x2::iota::IOTA` and `0x000…0002::iota::IOTA` are the same type: compare the long form."""
    return _ADDRESS_IN_TYPE.sub(lambda m: "0x" + m.group(1).lower().rjust(64, "0"), coin_type.strip())


IOTA_COIN = normalise_coin_type("0x2::iota::IOTA")


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


def _status(effects: Any, digest: str) -> str:
    status = _get(effects, "status")
    if status not in ("SUCCESS", "FAILURE"):
        raise _BadAnswer(f"transaction {digest}: status {status!r}")
    return status


def _owner(change: Any, digest: str) -> str:
    """The address a balance change belongs to. Strict on purpose: a null here could hide a payment."""
    owner = _path(change, "owner", "address")
    try:
        return normalise_address(owner)
    except ValueError:
        raise _BadAnswer(f"transaction {digest}: balance change owner {owner!r}") from None


def _uint(value: Any, what: str) -> int:
    # UInt53 is a JSON number; accept a decimal string too.
    if isinstance(value, bool):
        raise _BadAnswer(f"{what} is {value!r}")
    if isinstance(value, str) and value.isdigit():
        return int(value)
    if isinstance(value, int) and value >= 0:
        return value
    raise _BadAnswer(f"{what} is not a sequence number: {value!r}")


def _bigint(value: Any, what: str) -> int:
    # BigInt is a JSON string of decimal digits.
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]+", value):
        return int(value)
    raise _BadAnswer(f"{what} is not a BigInt: {value!r}")


def _datetime(value: Any, digest: str) -> datetime:
    try:
        return datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise _BadAnswer(f"transaction {digest}: timestamp {value!r} is not an ISO-8601 date") from None


def _timestamp(value: Any, digest: str) -> float:
    return _datetime(value, digest).timestamp()


def _timestamp_ms(value: Any, digest: str) -> int:
    moment = _datetime(value, digest)
    if moment.tzinfo is None:
        raise _BadAnswer(f"transaction {digest}: timestamp {value!r} has no time zone")
    return (moment - _EPOCH) // timedelta(milliseconds=1)  # exact: no float rounding
