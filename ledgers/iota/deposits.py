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
`{digest}:{address}` each. The cursor is the last checkpoint scanned.

One scan per poll, whatever the number of sockets. Each call reads the head
checkpoint (PaygHead), then lists every transaction of checkpoints (cursor, head]
once, with its balance changes, and matches the changes against the sockets'
addresses locally:

    transactionBlocks(first, after, filter: {afterCheckpoint, beforeCheckpoint})

So a poll after a new checkpoint costs 2 requests + 1 per further page of
transactions (`page_size` of them a page) + 1 per further page of one
transaction's balance changes, for 3 sockets or 500; with no new checkpoint, 1.
The cost follows the network's traffic in the new checkpoints, not the sockets.

Why not one filtered query per address, or aliases. The filter takes one
`recvAddress`; batching addresses as GraphQL aliases is bounded by the service's
limits below: one aliased `transactionBlocks` selection with its balance changes
is 21 input nodes, so maxQueryNodes = 300 allows 14 addresses a query
(500 sockets would still be 36 requests), and maxOutputNodes bounds first x
changes per alias as well. A checkpoint scan is one small query (about 20 input
nodes, depth 7, ~450 bytes, estimated output 50 + 50 x 7 + 50 x 4 + 50 x 50 x 5
= 13,100 nodes at page size 50) far inside every limit.

The service's limits (iotaledger/iota, crates/iota-graphql-rpc/src/config.rs,
`impl Default for Limits`, snapshot 0ca0076 of 2024-12-20; checked by
src/extensions/query_limits_checker.rs; a service publishes its own in
`serviceConfig`): maxQueryDepth 20, maxQueryNodes 300 (input nodes: every field
and fragment spread), maxOutputNodes 100,000 (estimated: each field times the
`first` of the connections above it), maxQueryPayloadSize 5,000 bytes (of the
query text), defaultPageSize 20, maxPageSize 50, maxTransactionIds 1,000,
requestTimeoutMs 40,000. The project's Helm chart for its own services
(nre/helm/graphql/files/config/graphql.toml) sets maxQueryDepth 15,
maxQueryNodes 500, maxPageSize 10, defaultPageSize 5 and requestTimeoutMs
15,000: a service run so needs `page_size` 10 or less (the `[ledger]` key
`transactions_per_page`). MAX_PAGE_SIZE and QUERY_LIMITS below hold the
strictest of the two; tests/support/fake_iota_node.py enforces them.

A fresh controller (cursor None) starts after `start_checkpoint` if given, else
at the head: payments made before that are not scanned. A node whose available
range no longer reaches back to the cursor is reported, not skipped over.

Why polling. The GraphQL subscription `transactions(startAfter, filter:
SubscriptionTransactionFilter)` filters only by kind, signing address or Move
function (the SDK's SubscriptionTransactionFilter has the same three fields), not
by recipient, and the SDK serves subscriptions on devnet and localnet only. So
deposits are found by polling `transactionBlocks`.

Threads. Each IotaLedger runs its requests on its own IotaNode (ledgers/iota/sdk.py):
its own event loop in its own thread, so deposits_since can be called from any thread.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

from ledgers.common import AddressBook, payment_units
from ledgers.iota.sdk import (
    IotaNode,
    _BadAnswer,
    _bigint,
    _get,
    _list,
    _owner,
    _page_info,
    _path,
    _status,
    _timestamp,
    _uint,
    account_indexes,
    normalise_address,
    normalise_coin_type,
    normalise_phrase,
    private_key,
)
from payg.errors import ConfigError, LedgerUnavailable
from payg.ports import Deposit

log = logging.getLogger("payg.ledgers.iota")

NANOS_PER_IOTA = 10**9
MAX_NANOS = 2**64 - 1  # a Move coin's value is a u64
DERIVATION_PATH = "m/44'/4218'/{index}'/0'/0'"
# The IOTA GraphQL service's limits (see the module docstring for the sources): the strictest of the
# code's defaults and the project's deployed configuration.
MAX_PAGE_SIZE = 50
QUERY_LIMITS = {"max_query_depth": 15, "max_query_nodes": 300, "max_output_nodes": 100_000,
                "max_query_payload_size": 5_000, "max_page_size": MAX_PAGE_SIZE}

HEAD_QUERY = """query PaygHead {
  chainIdentifier
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

_COIN_TYPE = re.compile(r"0x[0-9a-fA-F]{1,64}::[A-Za-z_][A-Za-z0-9_]*::[A-Za-z_][A-Za-z0-9_]*(<.+>)?")


_CHAIN_ID = re.compile(r"[0-9A-Za-z]{1,64}")


class NetworkMismatch(ConfigError):
    """The GraphQL service is on another network than the one the deposit cursor was read from (a testnet
    cursor on mainnet): crediting from it would book payments that were never made to this controller, or
    skip real ones. A configuration error, so that a controller stops at once (exit 2) instead of polling."""

    def __init__(self, url: str, cursor_chain: str, node_chain: str, checkpoint: int | None):
        super().__init__(url, "ledger.graphql_url", f"the IOTA network of the deposit cursor (chain {cursor_chain})")
        self.cursor_chain, self.node_chain = cursor_chain, node_chain
        Exception.__init__(self, (
            f"the IOTA GraphQL service {url} is on chain {node_chain}, but the deposit cursor (checkpoint "
            f"{checkpoint}) was read from chain {cursor_chain}: nothing is credited from another network. Point "
            f"[ledger] graphql_url back at chain {cursor_chain}'s service, or, to move to chain {node_chain} on "
            f"purpose, stop the controller and run `payg cursor --set <checkpoint>@{node_chain}` (payments made "
            f"before that checkpoint on the new network are not credited; see `payg cursor`)"))


def parse_cursor(cursor: str | None) -> tuple[int | None, str | None]:
    """A deposit cursor: `<checkpoint>@<chain identifier>`; a bare `<checkpoint>` is an older controller's
    (before the cursor named its network), bound to the service's network at the next poll, once."""
    if cursor is None:
        return None, None
    number, _, chain = cursor.partition("@")
    if not number.isdigit() or not number.isascii() or ("@" in cursor and not _CHAIN_ID.fullmatch(chain)):
        raise LedgerUnavailable(f"IOTA deposit cursor {cursor!r} is not a checkpoint sequence number "
                                f"(optionally @ the chain identifier)")
    return int(number), chain or None


def derivation_path(index: int) -> str:
    return DERIVATION_PATH.format(index=index)


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
        self._node = IotaNode(graphql_url, request_timeout_s=request_timeout_s, what="ledger")
        self.url = self._node.url
        self.request_timeout_s = self._node.request_timeout_s
        self.units_per_token = _positive_int(token_value, "token_value (nanos per token)")
        self.page_size = _positive_int(page_size, "page_size")
        if self.page_size > MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be at most {MAX_PAGE_SIZE} (the IOTA GraphQL service's maxPageSize), "
                             f"got {page_size!r}")
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

    @staticmethod
    def _derive_addresses(mnemonic: str, accounts: Mapping[str, int]) -> dict[str, str]:
        phrase = normalise_phrase(mnemonic, "the landlord's")
        return {socket_id: normalise_address(private_key(phrase, derivation_path(index))
                                             .public_key().derive_address().to_hex())
                for socket_id, index in account_indexes(accounts).items()}

    def __repr__(self) -> str:
        return f"IotaLedger({self.url!r}, sockets={sorted(self.socket_ids())!r})"

    def payment_amount_units(self, amount_tokens: int) -> int:
        """Nanos to pay for `amount_tokens` tokens."""
        return payment_units(amount_tokens, self.units_per_token, max_units=MAX_NANOS)

    def payment_uri(self, socket_id: str, amount: int | None) -> str:
        """The bare address (see the module docstring); the amount is checked but not encoded."""
        address = self.address_for(socket_id)
        if amount is not None:
            self.payment_amount_units(amount)
        return address

    def deposits_since(self, cursor: str | None) -> tuple[list[Deposit], str | None]:
        after, chain = parse_cursor(cursor)
        return self._node.run(self._deposits_since(after, chain))

    def close(self) -> None:
        self._node.close()

    async def _deposits_since(self, after: int | None, chain: str | None) -> tuple[list[Deposit], str | None]:
        head, first_available, network = await self._head()
        if chain is not None and chain != network:
            raise NetworkMismatch(self.url, chain, network, after)
        if chain is None and after is not None:
            log.warning("IOTA deposit cursor %d holds no network yet: bound once to chain %s of %s (the network "
                        "it was read from is taken to be this one)", after, network, self.url)
        if after is None:
            after = head if self.start_checkpoint is None else self.start_checkpoint
        if head <= after:
            if head < after:
                log.warning("IOTA node %s is at checkpoint %d, behind the cursor %d: waiting for it",
                            self.url, head, after)
            return [], f"{after}@{network}"
        if first_available is not None and after + 1 < first_available:
            raise LedgerUnavailable(
                f"IOTA node {self.url} keeps checkpoints from {first_available} only; deposits after checkpoint "
                f"{after} cannot be read from it (use a node that keeps them, or move the cursor on purpose)")
        upper = head if self.max_checkpoints_per_poll is None else min(head, after + self.max_checkpoints_per_poll)
        transactions = await self._transactions(after, upper)
        deposits = []
        for tx in transactions:
            deposits.extend(self._deposits_of(tx))
        return deposits, f"{upper}@{network}"

    async def _head(self) -> tuple[int, int | None, str]:
        data = await self._node.query(HEAD_QUERY)
        head = _uint(_path(data, "checkpoint", "sequenceNumber"), "checkpoint.sequenceNumber")
        first = _get(data, "availableRange")
        first_cp = _get(first, "first") if first is not None else None
        first_available = (_uint(_path(first_cp, "sequenceNumber"), "availableRange.first.sequenceNumber")
                           if first_cp is not None else None)
        network = _get(data, "chainIdentifier")
        if not isinstance(network, str) or not _CHAIN_ID.fullmatch(network):
            raise _BadAnswer(f"chainIdentifier {network!r} is not a chain identifier")
        return head, first_available, network

    async def _transactions(self, after: int, upper: int) -> list[dict]:
        """Every transaction in checkpoints (after, upper], oldest first: one scan, pages followed."""
        found = []
        cursor = None
        while True:
            variables = {"first": self.page_size, "after": cursor, "changes": self.page_size,
                         "filter": {"afterCheckpoint": after, "beforeCheckpoint": upper + 1}}
            data = await self._node.query(DEPOSITS_QUERY, variables)
            connection = _path(data, "transactionBlocks")
            for node in _list(connection, "nodes"):
                tx = await self._transaction(node, after, upper)
                if self._may_credit(tx):
                    found.append(tx)
            more, cursor = _page_info(connection, cursor)
            if not more:
                return sorted(found, key=lambda tx: tx["checkpoint"])  # stable: the node's order within one

    def _may_credit(self, tx: dict) -> bool:
        """Whether a scanned transaction touches a socket's address at all; most of the network's do not."""
        return any(self.socket_at(address) is not None
                   for address in (self._change_owner(c, tx["digest"]) for c in tx["balance_changes"])
                   if address is not None)

    @staticmethod
    def _change_owner(change: Any, digest: str) -> str | None:
        """The owner's address, None when the change has no owner address (it cannot be a socket's: a scan
        reads the whole network's transactions, and one odd change elsewhere must not stop every poll);
        a malformed address still stops the poll."""
        owner = _get(change, "owner") if isinstance(change, dict) else None
        if owner is None or (isinstance(owner, dict) and owner.get("address") is None):
            return None
        return _owner(change, digest)

    async def _transaction(self, node: dict, after: int, upper: int) -> dict:
        digest = _path(node, "digest")
        if not isinstance(digest, str) or not digest:
            raise _BadAnswer(f"transaction without a digest: {node!r}"[:300])
        effects = _path(node, "effects")
        checkpoint = _uint(_path(effects, "checkpoint", "sequenceNumber"), f"{digest}: checkpoint")
        if not after < checkpoint <= upper:
            raise _BadAnswer(f"transaction {digest} is in checkpoint {checkpoint}, "
                             f"outside the range ({after}, {upper}] that was asked for")
        status = _status(effects, digest)
        changes = _path(effects, "balanceChanges")
        balance_changes = list(_list(changes, "nodes"))
        more, cursor = _page_info(changes, None)
        while more:
            data = await self._node.query(BALANCE_CHANGES_QUERY, {"digest": digest, "first": self.page_size,
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
        received: dict[tuple[str, str], int] = {}  # (address, its socket): units
        for change in tx["balance_changes"]:
            # Strict on purpose: a null here could hide a payment, so it stops the poll instead.
            address = self._change_owner(change, digest)
            if address is None:
                continue
            socket_id = self.socket_at(address)
            coin = _path(change, "coinType", "repr")
            if socket_id is None or not isinstance(coin, str) or normalise_coin_type(coin) != self.coin_type:
                continue
            amount = _bigint(_get(change, "amount"), f"transaction {digest}: balance change amount")
            received[address, socket_id] = received.get((address, socket_id), 0) + amount
        credited = [(address, socket_id, amount) for (address, socket_id), amount in received.items() if amount > 0]
        if not credited:
            return []
        at = _timestamp(tx["timestamp"], digest)
        return [Deposit(f"{digest}:{address}", socket_id, amount, at) for address, socket_id, amount in credited]

