"""What EthereumLedger, EthereumTrade and the deployment share about their JSON-RPC node.

The connection (HTTP or HTTPS, one requests session, web3's retries off), the chain-id check, and one
translation of the node's failures into LedgerUnavailable. Messages name the endpoint without its path
or credentials, which often carry a provider's API key.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import urlsplit

import requests
from eth_typing import ChecksumAddress, HexStr
from web3 import HTTPProvider, Web3
from web3.exceptions import Web3Exception, Web3RPCError

from payg.errors import LedgerUnavailable, PaygError

ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
# How nodes word a transaction that its sender cannot pay for (geth, erigon, eth-tester, providers).
REFUSED_FOR_FUNDS = re.compile(r"insufficient funds|cannot afford|exceeds (the )?balance", re.IGNORECASE)


class WrongChain(LedgerUnavailable):
    """The node serves another chain than the one configured: nothing is read from it or sent to it."""

    def __init__(self, endpoint: str, served: int, configured: int):
        self.served = served
        self.configured = configured
        super().__init__(f"Ethereum node {endpoint} serves chain id {served}, but chain id {configured} is"
                         " configured: wrong node or wrong chain_id; nothing is read from it or sent to it")


def http_web3(rpc_url: str, timeout_s: float) -> tuple[Web3, requests.Session]:
    """Web3 on `rpc_url` with its own HTTP session (the caller closes it) and web3's retries off.

    Every poll is a retry already, and a poll must not block for several timeouts while the relays wait.
    """
    if not isinstance(rpc_url, str) or urlsplit(rpc_url).scheme not in ("http", "https"):
        raise ValueError(f"rpc_url must be an http:// or https:// URL, got {redacted(str(rpc_url))!r}")
    if not isinstance(timeout_s, (int, float)) or isinstance(timeout_s, bool) or timeout_s <= 0:
        raise ValueError(f"timeout_s must be a positive number of seconds, got {timeout_s!r}")
    session = requests.Session()
    provider = HTTPProvider(rpc_url, request_kwargs={"timeout": timeout_s}, session=session,
                            exception_retry_configuration=None)
    return Web3(provider), session


class OverHttp:
    """What EthereumLedger and EthereumTrade share as clients of a node: built as `cls(w3, endpoint=..., **settings)`,
    `connect` gives them a Web3 over HTTP with a session of their own, which `_close_session` releases."""

    _session: requests.Session | None = None

    if TYPE_CHECKING:  # the constructor every subclass has (each declares its own settings)
        def __init__(self, w3: Web3, *, endpoint: str, **settings: Any) -> None: ...

    @classmethod
    def connect(cls, rpc_url: str, *, timeout_s: float = 10.0, **kwargs: Any) -> Self:
        """One on the JSON-RPC endpoint at `rpc_url` (HTTP or HTTPS), web3's retries off; the session is
        closed if the constructor refuses."""
        w3, session = http_web3(rpc_url, timeout_s)
        try:
            obj = cls(w3, endpoint=rpc_url, **kwargs)
        except BaseException:
            session.close()
            raise
        obj._session = session
        return obj

    def _close_session(self) -> None:
        if self._session is not None:
            self._session.close()


class Node:
    """One endpoint as payg talks to it: the chain id checked once, failures as LedgerUnavailable."""

    def __init__(self, w3: Web3, chain_id: int, endpoint: str = ""):
        self.w3 = w3
        self.chain_id = chain_id
        self.endpoint = redacted(endpoint or str(getattr(w3.provider, "endpoint_uri", "") or "")) or "(unnamed)"
        self._chain_checked = False

    def check_chain_id(self) -> None:
        if self._chain_checked:
            return
        served = self.w3.eth.chain_id
        if served != self.chain_id:
            raise WrongChain(self.endpoint, served, self.chain_id)
        self._chain_checked = True

    @contextmanager
    def errors(self) -> Iterator[None]:
        """payg's own errors pass; the node's and the library's become LedgerUnavailable."""
        try:
            yield
        except PaygError:
            raise
        except (requests.RequestException, Web3Exception, OSError, ValueError) as exc:
            raise self.unavailable(cause(exc)) from exc

    def unavailable(self, detail: str) -> LedgerUnavailable:
        return LedgerUnavailable(f"Ethereum node {self.endpoint}: {detail}")


def cause(exc: BaseException) -> str:
    """What went wrong with the node, in a few words, with no URL path in it."""
    if isinstance(exc, requests.Timeout):
        return "no answer in time (timeout)"
    if isinstance(exc, requests.ConnectionError):
        reason = re.search(r"\[Errno [^\]]+\][^\"')]*", str(exc))
        return f"cannot connect ({reason.group(0).strip() if reason else type(exc).__name__})"
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return f"HTTP {exc.response.status_code} {exc.response.reason}"
    if isinstance(exc, Web3RPCError):
        return scrub(f"the node answered an error: {rpc_message(exc)}")
    # Library messages may quote the URL, and a provider's URL may carry an API key.
    return scrub(f"{type(exc).__name__}: {exc}")


def rpc_message(exc: Web3RPCError) -> str:
    """The node's own error message from a JSON-RPC error reply."""
    error = (exc.rpc_response or {}).get("error")
    detail = error.get("message") if isinstance(error, dict) else None
    return str(detail or exc.message)


def redacted(url: str) -> str:
    """scheme://host:port of an endpoint; a path or credentials (often an API key) are not shown."""
    if not url:
        return ""
    parts = urlsplit(url)
    if not parts.scheme or not parts.hostname:
        return url
    host = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
    if ":" in parts.hostname:
        host = f"[{parts.hostname}]" + ("" if parts.port is None else f":{parts.port}")
    shown = f"{parts.scheme}://{host}"
    return shown + "/…" if parts.path.strip("/") or parts.query else shown


def scrub(text: str) -> str:
    """`text` with the path of every URL in it cut."""
    return re.sub(r"(https?://[^/\s'\"]+)/[^\s'\"]*", r"\1/…", text)


def as_hex(value: Any) -> HexStr:
    """A hash as 0x-prefixed lower-case hex, from HexBytes, bytes or a hex string."""
    if isinstance(value, (bytes, bytearray)):
        return HexStr("0x" + bytes(value).hex())
    text = str(value).lower()
    return HexStr(text if text.startswith("0x") else "0x" + text)


def require_int(key: str, value: object, *, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{key} must be an integer >= {minimum}, got {value!r}")


def contract_address(what: str, address: object) -> ChecksumAddress:
    """A configured contract's address, checksummed; ValueError naming `what` if it is malformed or mistyped."""
    if not isinstance(address, str) or not ADDRESS.fullmatch(address):
        raise ValueError(f"{what} must be the contract's 0x address (40 hex digits), got {address!r}")
    digits = address[2:]
    if digits != digits.lower() and digits != digits.upper() and not Web3.is_checksum_address(address):
        raise ValueError(f"{what} {address!r}: its mixed-case checksum is wrong (a mistyped address?): copy it again")
    return Web3.to_checksum_address(address)
