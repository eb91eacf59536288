"""A fake IOTA GraphQL node for tests, run in its own process.

    python -m tests.support.fake_iota_node [--port 0] [--initial-checkpoint N] [--state FILE]

It prints `PORT <n>` on its first stdout line once it listens on 127.0.0.1.

GraphQL (POST /) is executed by graphql-core against SCHEMA below: a hand-written
subset of the real node's schema (iotaledger/iota, crates/iota-graphql-rpc/schema.graphql)
with every type, field and argument named exactly as there, holding only what payg's
queries need. Anything else fails validation, as it would on a real node if misspelt.
Like a real indexer, `transactionBlocks` lists only transactions that are in a
checkpoint; `transactionBlock(digest)` also finds executed ones that are not yet.
Page sizes above 50 are refused (the usual serviceConfig.maxPageSize). Every query is first held to
the real service's limits as its QueryLimitsChecker applies them (iotaledger/iota,
crates/iota-graphql-rpc/src/extensions/query_limits_checker.rs), with the values of
ledgers/iota/deposits.py QUERY_LIMITS: the query text's size, its depth, its input nodes (fields and
fragment spreads) and its estimated output nodes (each field times the page sizes of the connections
above it, `first` or defaultPageSize 20). A query over one fails with the service's own message, so a
query too big for the real service fails in the tests too. `chainIdentifier` answers "fa4e1dea" unless
--chain-id or /_fake/chain_id says otherwise.

Control endpoints (JSON):
    POST /_fake/transactions  {"digest"?, "sender", "status"?, "balance_changes": [{"owner",
                              "coin_type"?, "amount"}], "recipients"?}  -> {"digest"}
                              an executed transaction, not yet in a checkpoint
    POST /_fake/checkpoint    {"timestamp_ms"?} -> {"sequenceNumber", "transactions"}
                              a new checkpoint holding every pending transaction
    POST /_fake/fail          {"mode": "none" | "503" | "hang" | "graphql-error" | "malformed" | "drop-answer",
                              "match"?}  every GraphQL request fails so (only those whose body holds `match`,
                              if given); "drop-answer" executes the request, then closes the connection
                              without answering (a reply lost on the way back)
    POST /_fake/prune         {"below": n}  checkpoints below n leave the available range
    GET  /_fake/requests      every GraphQL request received: method, path, headers, body, json
    POST /_fake/requests/clear
    POST /_fake/reset         back to an empty chain at the initial checkpoint
    POST /_fake/faucet        {"address", "amount", "coins"?: n} -> {"digest", "coins": [object ids]}
                              mint `amount` nanos to `address` as n coin objects, in a transaction from
                              FAUCET (a deposit like any other; checkpointed as executed transactions are)
    POST /_fake/auto_checkpoint {"enabled": bool}  true (the default): every executed transaction goes
                              into a new checkpoint at once; false: executed transactions wait for
                              /_fake/checkpoint (a node whose checkpoints lag)
    POST /_fake/time          {"timestamp_ms"} or {"advance_ms"}: the ledger clock that stamps new
                              checkpoints (wall-clock time until set; never goes backwards)
    POST /_fake/chain_id      {"chain_id"}: what chainIdentifier answers from now on (reset: back to --chain-id)
    POST /_fake/gas_price     {"price"}: the epoch's reference gas price (default 1000)
    GET  /_fake/coins?address=0x..   the live coin objects of an address

Transfers (Mutation.executeTransactionBlock). The fake node executes real signed transactions as
iota-sdk builds them (it imports iota_sdk to decode them): see Ledger.execute for what it checks
and what it does not.
With --state FILE the chain is kept in FILE, so a restarted node serves the same chain.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import secrets
import sys
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from graphql import FieldNode, FragmentSpreadNode, GraphQLError, build_schema, graphql_sync, parse
from graphql.language import FragmentDefinitionNode, IntValueNode, OperationDefinitionNode, VariableNode

# The service's limits (ledgers/iota/deposits.py QUERY_LIMITS says where they come from).
LIMITS = {"max_query_depth": 15, "max_query_nodes": 300, "max_output_nodes": 100_000,
          "max_query_payload_size": 5_000}
DEFAULT_CHAIN_ID = "fa4e1dea"

MAX_PAGE_SIZE = 50
DEFAULT_PAGE_SIZE = 20
IOTA_COIN = "0x0000000000000000000000000000000000000000000000000000000000000002::iota::IOTA"
B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"

# Transfers. Figures of the fake network, chosen to be close to what a plain IOTA transfer costs:
FAUCET = "0x" + hashlib.sha256(b"fake iota node faucet").hexdigest()
REFERENCE_GAS_PRICE = 1000          # nanos per gas unit (the IOTA mainnet reference price)
COMPUTATION_UNITS = 1000            # gas units a simple transfer's computation costs (the lowest bucket)
STORAGE_PER_COIN = 988_000          # storage fee of one written coin object, nanos; rebated in full when
                                    # the object is later mutated or deleted (no non-refundable part here)
MIN_BUDGET_UNITS = 1000             # a budget below price * this is refused
MAX_GAS_BUDGET = 50 * 10**9         # nanos
MAX_GAS_OBJECTS = 256
MAX_U64 = 2**64 - 1

SCHEMA_SDL = """
scalar Base64
scalar BigInt
scalar DateTime
scalar IotaAddress
scalar UInt53

enum ExecutionStatus { SUCCESS FAILURE }

enum TransactionBlockKindInput {
  SYSTEM_TX PROGRAMMABLE_TX GENESIS CONSENSUS_COMMIT_PROLOGUE_V1 RANDOMNESS_STATE_UPDATE END_OF_EPOCH_TX
}

input CheckpointId { digest: String sequenceNumber: UInt53 }

input TransactionBlockFilter {
  function: String
  kind: TransactionBlockKindInput
  afterCheckpoint: UInt53
  atCheckpoint: UInt53
  beforeCheckpoint: UInt53
  sentAddress: IotaAddress
  recvAddress: IotaAddress
  affectedAddress: IotaAddress
  inputObject: IotaAddress
  changedObject: IotaAddress
  wrappedOrDeletedObject: IotaAddress
  transactionIds: [String!]
}

type PageInfo {
  hasPreviousPage: Boolean!
  hasNextPage: Boolean!
  startCursor: String
  endCursor: String
}

type Balance { coinType: MoveType! coinObjectCount: UInt53 totalBalance: BigInt }

type Coin { address: IotaAddress! version: UInt53! digest: String coinBalance: BigInt }

type CoinConnection { pageInfo: PageInfo! nodes: [Coin!]! }

type Address {
  address: IotaAddress!
  balance(type: String): Balance
  coins(first: Int, after: String, last: Int, before: String, type: String): CoinConnection!
}

type Owner {
  address: IotaAddress!
  balance(type: String): Balance
  coins(first: Int, after: String, last: Int, before: String, type: String): CoinConnection!
}

type Epoch {
  epochId: UInt53!
  referenceGasPrice: BigInt
  startTimestamp: DateTime!
  totalCheckpoints: UInt53
  totalTransactions: UInt53
}

type GasCostSummary {
  computationCost: BigInt
  computationCostBurned: BigInt
  storageCost: BigInt
  storageRebate: BigInt
  nonRefundableStorageFee: BigInt
}

type GasEffects { gasSummary: GasCostSummary }

type ExecutionResult { errors: [String!] effects: TransactionBlockEffects! }

type Mutation { executeTransactionBlock(txBytes: String!, signatures: [String!]!): ExecutionResult! }

type MoveType { repr: String! }

type AvailableRange { first: Checkpoint last: Checkpoint }

type Checkpoint {
  digest: String!
  sequenceNumber: UInt53!
  timestamp: DateTime!
  previousCheckpointDigest: String
}

type BalanceChange { owner: Owner coinType: MoveType amount: BigInt }

type BalanceChangeConnection { pageInfo: PageInfo! nodes: [BalanceChange!]! }

type TransactionBlockEffects {
  status: ExecutionStatus
  lamportVersion: UInt53!
  errors: String
  gasEffects: GasEffects
  bcs: Base64!
  timestamp: DateTime
  checkpoint: Checkpoint
  balanceChanges(first: Int, after: String, last: Int, before: String): BalanceChangeConnection!
}

type TransactionBlock { digest: String sender: Address effects: TransactionBlockEffects }

type TransactionBlockConnection { pageInfo: PageInfo! nodes: [TransactionBlock!]! }

type Query {
  chainIdentifier: String!
  address(address: IotaAddress!): Address
  owner(address: IotaAddress!, rootVersion: UInt53): Owner
  epoch(id: UInt53): Epoch
  availableRange: AvailableRange!
  checkpoint(id: CheckpointId): Checkpoint
  transactionBlock(digest: String!): TransactionBlock
  transactionBlocks(first: Int, after: String, last: Int, before: String, filter: TransactionBlockFilter,
                    scanLimit: Int): TransactionBlockConnection!
}
"""


def normalise_address(value: str) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"0x[0-9a-fA-F]{1,64}", value):
        raise GraphQLError(f"Invalid IotaAddress: {value!r}")
    return "0x" + value[2:].lower().rjust(64, "0")


def normalise_type(repr_: str) -> str:
    return re.sub(r"0x([0-9a-fA-F]{1,64})(?=::)", lambda m: "0x" + m.group(1).lower().rjust(64, "0"), repr_)


def parse_uint53(value):
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**53:
        raise GraphQLError(f"Invalid UInt53: {value!r}")
    return value


def base58(raw: bytes) -> str:
    n = int.from_bytes(raw, "big")
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = B58[r] + out
    return "1" * (len(raw) - len(raw.lstrip(b"\0"))) + out


def iso_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def encode_cursor(kind: str, n: int) -> str:
    return base64.b64encode(json.dumps([kind, n]).encode()).decode()


def decode_cursor(kind: str, cursor: str) -> int:
    try:
        k, n = json.loads(base64.b64decode(cursor, validate=True))
        if k == kind and isinstance(n, int):
            return n
    except (ValueError, TypeError):
        pass
    raise GraphQLError(f"Invalid cursor: {cursor!r}")


class Chain:
    """The node's data: checkpoints, executed transactions and the ones waiting for a checkpoint."""

    def __init__(self, initial_checkpoint: int, state_file: str | None, chain_id: str = DEFAULT_CHAIN_ID):
        self.lock = threading.RLock()
        self.initial_chain_id = self.chain_id = chain_id
        self.initial_checkpoint = initial_checkpoint
        self.state_file = state_file
        self.fail_mode = "none"
        self.fail_match: str | None = None
        self.requests: list[dict] = []
        if state_file and os.path.exists(state_file):
            with open(state_file) as f:
                self.data = json.load(f)
            for key, value in self.fresh_transfer_state().items():
                self.data.setdefault(key, value)
        else:
            self.reset()

    @staticmethod
    def fresh_transfer_state() -> dict:
        return {
            "objects": {},  # live coin objects: id -> {"owner", "balance", "version", "digest", "prev_tx", "rebate"}
            "auto_checkpoint": True,
            "clock_ms": None,  # the ledger clock once set by /_fake/time
            "gas_price": REFERENCE_GAS_PRICE,
            "epoch": 0,
        }

    def reset(self) -> None:
        with self.lock:
            self.data = {
                "head": self.initial_checkpoint,
                "first_available": 0,
                "checkpoints": {},  # str(sequence number) -> {"timestamp_ms", "transactions"}; earlier ones are empty
                "transactions": {},  # digest -> transaction
                "pending": [],
                "next_order": 0,
                "genesis_ms": 1_750_000_000_000,
                **self.fresh_transfer_state(),
            }
            self.save()

    def save(self) -> None:
        if self.state_file:
            tmp = self.state_file + ".tmp"
            with open(tmp, "w") as f:
                json.dump(self.data, f)
            os.replace(tmp, self.state_file)

    def checkpoint(self, n: int) -> dict | None:
        d = self.data
        if not d["first_available"] <= n <= d["head"]:
            return None
        stored = d["checkpoints"].get(str(n))
        ms = stored["timestamp_ms"] if stored else d["genesis_ms"] + n * 250
        return {"sequenceNumber": n, "digest": base58(hashlib.sha256(b"checkpoint:%d" % n).digest()),
                "timestamp": iso_ms(ms),
                "previousCheckpointDigest": base58(hashlib.sha256(b"checkpoint:%d" % (n - 1)).digest()) if n else None}

    def add_transaction(self, spec: dict) -> str:
        with self.lock:
            digest = spec.get("digest") or base58(secrets.token_bytes(32))
            if digest in self.data["transactions"]:
                raise ValueError(f"transaction {digest} exists")
            changes = [{"owner": normalise_address(c["owner"]),
                        "coinType": normalise_type(c.get("coin_type", IOTA_COIN)),
                        "amount": str(int(c["amount"]))} for c in spec.get("balance_changes", [])]
            recipients = spec.get("recipients")
            if recipients is None:
                recipients = [c["owner"] for c in changes if int(c["amount"]) > 0]
            status = spec.get("status", "SUCCESS")
            if status not in ("SUCCESS", "FAILURE"):
                raise ValueError(f"status {status!r}")
            self.data["transactions"][digest] = {
                "digest": digest, "sender": normalise_address(spec["sender"]), "status": status,
                "balanceChanges": changes, "recipients": sorted({normalise_address(r) for r in recipients}),
                "checkpoint": None, "order": None,
            }
            self.data["pending"].append(digest)
            self.save()
            return digest

    def make_checkpoint(self, timestamp_ms: int | None) -> dict:
        with self.lock:
            d = self.data
            d["head"] += 1
            digests, d["pending"] = d["pending"], []
            for digest in digests:
                tx = d["transactions"][digest]
                tx["checkpoint"], tx["order"] = d["head"], d["next_order"]
                d["next_order"] += 1
            if timestamp_ms is None:
                timestamp_ms = self.now_ms()
            d["checkpoints"][str(d["head"])] = {"timestamp_ms": timestamp_ms, "transactions": digests}
            self.save()
            return {"sequenceNumber": d["head"], "transactions": digests}

    def now_ms(self) -> int:
        clock = self.data["clock_ms"]
        return clock if clock is not None else int(time.time() * 1000)

    def set_time(self, timestamp_ms: int | None = None, advance_ms: int | None = None) -> int:
        with self.lock:
            if (timestamp_ms is None) == (advance_ms is None):
                raise ValueError("give timestamp_ms or advance_ms")
            now = self.now_ms()
            new = timestamp_ms if timestamp_ms is not None else now + advance_ms
            if isinstance(new, bool) or not isinstance(new, int) or new < now:
                raise ValueError(f"the ledger clock never goes backwards: {now} -> {new!r}")
            self.data["clock_ms"] = new
            self.save()
            return new

    def executed(self, digest: str) -> None:
        """A transaction was executed: checkpoint it now, or leave it waiting (auto_checkpoint false)."""
        self.data["pending"].append(digest)
        if self.data["auto_checkpoint"]:
            self.make_checkpoint(None)
        else:
            self.save()

    def new_coin(self, owner: str, balance: int, version: int, prev_tx: str, object_id: str | None = None) -> str:
        object_id = object_id or "0x" + secrets.token_hex(32)
        self.data["objects"][object_id] = {"owner": owner, "balance": balance, "version": version,
                                           "digest": base58(secrets.token_bytes(32)), "prev_tx": prev_tx,
                                           "rebate": STORAGE_PER_COIN}
        return object_id

    def coins_of(self, address: str) -> list[tuple[str, dict]]:
        return sorted((oid, o) for oid, o in self.data["objects"].items() if o["owner"] == address)

    def faucet(self, address: str, amount: int, coins: int = 1) -> dict:
        address = normalise_address(address)
        if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount <= MAX_U64:
            raise ValueError(f"amount must be a positive u64, got {amount!r}")
        if isinstance(coins, bool) or not isinstance(coins, int) or not 0 < coins <= min(amount, 1000):
            raise ValueError(f"coins must be from 1 to min(amount, 1000), got {coins!r}")
        with self.lock:
            digest = base58(secrets.token_bytes(32))
            version = 1 + max((o["version"] for o in self.data["objects"].values()), default=0)
            parts = [amount // coins] * coins
            parts[0] += amount - sum(parts)
            ids = [self.new_coin(address, part, version, digest) for part in parts]
            self.data["transactions"][digest] = {
                "digest": digest, "sender": FAUCET, "status": "SUCCESS",
                "balanceChanges": [{"owner": address, "coinType": IOTA_COIN, "amount": str(amount)}],
                "recipients": [address], "checkpoint": None, "order": None,
            }
            self.executed(digest)
            return {"digest": digest, "coins": ids}

    def execute(self, tx_bytes: str, signatures: list[str]) -> dict:
        """Mutation.executeTransactionBlock: check a signed transaction as a validator would, run it, record it.

        Checked (a refusal is a GraphQL error and nothing happens, as on a real node): the bytes decode as an
        iota-sdk Transaction (V1, programmable); exactly one signature, a simple Ed25519 one whose public key
        derives the sender's address and which verifies over the transaction's signing digest (intent message)
        with the SDK's UserSignatureVerifier; the gas owner is the sender (no sponsors); gas price at least the
        reference price; budget within [price * 1000, 50 IOTA]; 1 to 256 distinct gas coins, each live, owned
        by the sender, at the exact version and digest given; their total covers the budget; an expiration
        epoch, if any, not passed. A transaction already executed is answered with its recorded effects.
        Executed: SplitCoins from the gas coin (or a coin split earlier) with u64 pure amounts, and
        TransferObjects of those coins or of the gas coin itself to a pure address; any other command, object
        input or argument form is refused as unsupported. Execution failures (splits above the balance left
        after the budget, a coin left unused, gas above the budget) are committed as FAILURE with gas charged,
        as on a real network.
        Not modelled: Move, shared objects, sponsors, multisig/zkLogin/passkey signatures, epochs changing,
        congestion, the exact gas schedule (computation is a flat 1000 units; storage a flat fee per coin).
        """
        import iota_sdk as sdk

        sdk_errors = (sdk.SdkFfiError, sdk.InternalError, ValueError, TypeError)
        try:
            tx = sdk.Transaction.from_bcs(base64.b64decode(tx_bytes, validate=True))
        except sdk_errors as exc:
            raise GraphQLError(f"Invalid transaction bytes: {exc}") from None
        digest = tx.digest().to_base58()
        data = json.loads(tx.to_json())["V1"]
        sender = normalise_address(data["sender"])
        if len(signatures) != 1:
            raise GraphQLError(f"Expected 1 signature for a transaction without a sponsor, got {len(signatures)}")
        try:
            signature = sdk.UserSignature.from_base64(signatures[0])
        except sdk_errors as exc:
            raise GraphQLError(f"Invalid signature encoding: {exc}") from None
        simple = signature.as_opt_simple()
        if simple is None or not simple.is_ed25519():
            raise GraphQLError("the fake node verifies simple Ed25519 signatures only")
        signer = normalise_address(simple.ed25519_public_key().derive_address().to_hex())
        if signer != sender:
            raise GraphQLError(f"Signer {signer} does not match the sender {sender}")
        try:
            sdk.UserSignatureVerifier().verify(tx.signing_digest(), signature)
        except sdk_errors as exc:
            raise GraphQLError(f"Invalid user signature: {exc}") from None

        with self.lock:
            d = self.data
            known = d["transactions"].get(digest)
            if known is not None:
                return self.execution_result(known)
            gas = data["gas_payment"]
            if normalise_address(gas["owner"]) != sender:
                raise GraphQLError("the fake node does not support sponsored transactions")
            price, budget = int(gas["price"]), int(gas["budget"])
            if price < d["gas_price"]:
                raise GraphQLError(f"Gas price {price} under reference gas price (RGP) {d['gas_price']}")
            if budget < price * MIN_BUDGET_UNITS:
                raise GraphQLError(f"Gas budget {budget} is lower than min: {price * MIN_BUDGET_UNITS}")
            if budget > MAX_GAS_BUDGET:
                raise GraphQLError(f"Gas budget {budget} is higher than max: {MAX_GAS_BUDGET}")
            expiration = data.get("expiration")
            if expiration not in (None, "None") and (
                    not isinstance(expiration, dict) or int(expiration.get("Epoch", -1)) < d["epoch"]):
                raise GraphQLError(f"Transaction expired: {expiration!r}")
            refs = gas["objects"]
            if not 1 <= len(refs) <= MAX_GAS_OBJECTS:
                raise GraphQLError(f"Expected 1 to {MAX_GAS_OBJECTS} gas payment objects, got {len(refs)}")
            gas_ids = [normalise_address(ref["object_id"]) for ref in refs]
            if len(set(gas_ids)) != len(gas_ids):
                raise GraphQLError("Duplicate gas payment objects")
            for oid, ref in zip(gas_ids, refs, strict=True):
                obj = d["objects"].get(oid)
                if obj is None:
                    raise GraphQLError(f"Could not find the referenced object {oid} at version {ref['version']}")
                if obj["owner"] != sender:
                    raise GraphQLError(f"Object {oid} is owned by {obj['owner']}, not by the sender {sender}")
                if int(ref["version"]) != obj["version"] or ref["digest"] != obj["digest"]:
                    raise GraphQLError(f"Transaction needs to be rebuilt because object {oid} version "
                                       f"{ref['version']} is unavailable for consumption, current version: "
                                       f"{obj['version']}")
            gas_total = sum(d["objects"][oid]["balance"] for oid in gas_ids)
            if gas_total < budget:
                raise GraphQLError(f"Balance of gas object {gas_total} is lower than the needed amount: {budget}")
            kind = data["kind"]
            if not isinstance(kind, dict) or "Programmable" not in kind:
                raise GraphQLError("the fake node executes programmable transactions only")
            outcome = run_programmable(kind["Programmable"], gas_total - budget)
            return self.apply(sdk, digest, sender, gas_ids, gas_total, price, budget, outcome)

    def apply(self, sdk, digest, sender, gas_ids, gas_total, price, budget, outcome) -> dict:
        d = self.data
        failure = outcome["failure"]
        created = outcome["created"] if failure is None else []
        computation = price * COMPUTATION_UNITS
        storage = STORAGE_PER_COIN * (1 + len(created))
        if failure is None and computation + storage > budget:
            failure, created = ("INSUFFICIENT_GAS", None), []
            storage = STORAGE_PER_COIN
        if computation + storage > budget:  # a budget too small even for the gas coin: charge all of it
            computation = max(0, budget - storage)
        rebate = sum(d["objects"][oid]["rebate"] for oid in gas_ids)
        net_gas = computation + storage - rebate
        spent = sum(balance for balance, _ in created)
        gas_left = gas_total - spent - net_gas
        gas_owner = (outcome["gas_to"] or sender) if failure is None else sender
        inputs = {oid: dict(d["objects"][oid]) for oid in gas_ids}
        lamport = 1 + max(o["version"] for o in inputs.values())
        # object changes: the first gas coin is mutated (it holds what is left), the others are smashed into it
        gas_id = gas_ids[0]
        for oid in gas_ids[1:]:
            del d["objects"][oid]
        self.new_coin(gas_owner, gas_left, lamport, digest, object_id=gas_id)
        created_ids = []
        for index, (balance, owner) in enumerate(created):
            oid = "0x" + hashlib.sha256(digest.encode() + b":%d" % index).hexdigest()
            self.new_coin(owner, balance, lamport, digest, object_id=oid)
            created_ids.append(oid)
        # balance changes per address, sender first
        change: dict[str, int] = {sender: -gas_total}
        change[gas_owner] = change.get(gas_owner, 0) + gas_left
        for balance, owner in created:
            change[owner] = change.get(owner, 0) + balance
        balance_changes = [{"owner": a, "coinType": IOTA_COIN, "amount": str(n)} for a, n in change.items() if n]
        recipients = sorted({gas_owner, *(owner for _, owner in created)})
        summary = {"computationCost": computation, "computationCostBurned": computation, "storageCost": storage,
                   "storageRebate": rebate, "nonRefundableStorageFee": 0}
        effects = build_effects(sdk, digest, failure, summary, lamport, d["epoch"], inputs, gas_id,
                                {oid: d["objects"][oid] for oid in [gas_id, *created_ids]},
                                sorted({o["prev_tx"] for o in inputs.values()}))
        error = None if failure is None else failure[0] if failure[1] is None else \
            f"{failure[0]} in command {failure[1]}"
        d["transactions"][digest] = {
            "digest": digest, "sender": sender, "status": "SUCCESS" if failure is None else "FAILURE",
            "balanceChanges": balance_changes, "recipients": recipients, "checkpoint": None, "order": None,
            "gas": summary, "effects_bcs": effects, "lamport": lamport, "errors": error,
        }
        self.executed(digest)
        return self.execution_result(d["transactions"][digest])

    def execution_result(self, tx: dict) -> dict:
        return {"errors": None if tx.get("errors") is None else [tx["errors"]], "effects": self.tx_node(tx)["effects"]}

    def prune(self, below: int) -> None:
        with self.lock:
            self.data["first_available"] = below
            self.save()

    def tx_node(self, tx: dict) -> dict:
        checkpoint = self.checkpoint(tx["checkpoint"]) if tx["checkpoint"] is not None else None
        errors = tx.get("errors", None if tx["status"] == "SUCCESS" else "InsufficientGas")
        return {"digest": tx["digest"], "sender": {"address": tx["sender"]},
                "effects": {"status": tx["status"], "errors": errors,
                            "timestamp": checkpoint["timestamp"] if checkpoint else None, "checkpoint": checkpoint,
                            "lamportVersion": tx.get("lamport", 0), "_tx": tx,
                            "gasEffects": {"gasSummary": tx["gas"]} if tx.get("gas") else None,
                            "_balanceChanges": tx["balanceChanges"]}}


def run_programmable(ptb: dict, available: int) -> dict:
    """Run SplitCoins/TransferObjects over the gas coin, of which `available` nanos may be spent (balance minus
    budget). Returns {"failure": None | (error name, command index), "created": [(balance, owner)], "gas_to"}.
    Raises GraphQLError for what the fake node does not execute (a real node might)."""
    inputs, commands = ptb["inputs"], ptb["commands"]
    coins: list[list] = []  # [balance, owner or None, moved]
    results: dict[int, list] = {}
    gas_to = None

    def pure(arg, size: int) -> bytes:
        if not isinstance(arg, dict) or "Input" not in arg or not 0 <= arg["Input"] < len(inputs):
            raise GraphQLError(f"the fake node takes only pure inputs here, got {arg!r}")
        value = inputs[arg["Input"]]
        if not isinstance(value, dict) or "Pure" not in value:
            raise GraphQLError(f"the fake node does not support object inputs: {value!r}")
        raw = base64.b64decode(value["Pure"])
        if len(raw) != size:
            raise GraphQLError(f"pure input {arg['Input']} has {len(raw)} bytes, expected {size}")
        return raw

    def value(arg):
        if arg == "Gas":
            return "gas"
        if isinstance(arg, dict) and "Result" in arg and len(results.get(arg["Result"], [])) == 1:
            return results[arg["Result"]][0]
        if isinstance(arg, dict) and "NestedResult" in arg:
            i, j = arg["NestedResult"]
            if 0 <= j < len(results.get(i, [])):
                return results[i][j]
        raise GraphQLError(f"the fake node cannot resolve the argument {arg!r}")

    for n, command in enumerate(commands):
        (name, body), = command.items()
        if name == "SplitCoins":
            source = value(body["coin"])
            amounts = [int.from_bytes(pure(a, 8), "little") for a in body["amounts"]]
            if source == "gas":
                if sum(amounts) > available:
                    return {"failure": ("INSUFFICIENT_COIN_BALANCE", n), "created": [], "gas_to": None}
                available -= sum(amounts)
            else:
                if coins[source][2] or sum(amounts) > coins[source][0]:
                    return {"failure": ("INSUFFICIENT_COIN_BALANCE", n), "created": [], "gas_to": None}
                coins[source][0] -= sum(amounts)
            results[n] = []
            for amount in amounts:
                coins.append([amount, None, False])
                results[n].append(len(coins) - 1)
        elif name == "TransferObjects":
            to = normalise_address("0x" + pure(body["address"], 32).hex())
            for arg in body["objects"]:
                v = value(arg)
                if v == "gas":
                    gas_to = to
                elif coins[v][2]:
                    raise GraphQLError(f"command {n}: a coin transferred twice")
                else:
                    coins[v][1], coins[v][2] = to, True
            results[n] = []
        else:
            raise GraphQLError(f"the fake node does not execute {name} commands")
    for _, owner, _moved in coins:
        if owner is None:
            return {"failure": ("UNUSED_VALUE_WITHOUT_DROP", len(commands) - 1), "created": [], "gas_to": None}
    return {"failure": None, "created": [(balance, owner) for balance, owner, _ in coins], "gas_to": gas_to}


def build_effects(sdk, digest: str, failure, summary: dict, lamport: int, epoch: int, inputs: dict, gas_id: str,
                  outputs: dict, dependencies: list[str]) -> str:
    """The transaction's effects as the SDK encodes them (TransactionEffectsV1 BCS, base64)."""
    def owner(address):
        return sdk.Owner.new_address(sdk.Address.from_hex(address))

    changed = []
    for oid in sorted(set(inputs) | set(outputs)):
        before, after = inputs.get(oid), outputs.get(oid)
        input_state = (sdk.ObjectIn.DATA(version=sdk.Version.from_u64(before["version"]),
                                         digest=sdk.ObjectDigest.from_base58(before["digest"]),
                                         owner=owner(before["owner"])) if before else sdk.ObjectIn.MISSING())
        output_state = (sdk.ObjectOut.OBJECT_WRITE(digest=sdk.ObjectDigest.from_base58(after["digest"]),
                                                   owner=owner(after["owner"])) if after else sdk.ObjectOut.MISSING())
        operation = (sdk.IdOperation.CREATED if before is None else
                     sdk.IdOperation.DELETED if after is None else sdk.IdOperation.NONE)
        changed.append(sdk.ChangedObject(object_id=sdk.ObjectId.from_hex(oid), input_state=input_state,
                                         output_state=output_state, id_operation=operation))
    if failure is None:
        status = sdk.ExecutionStatus.SUCCESS()
    else:
        error = getattr(sdk.ExecutionError, failure[0])
        status = sdk.ExecutionStatus.FAILURE(error=error(failure[1], 0) if failure[0] == "UNUSED_VALUE_WITHOUT_DROP"
                                             else error(), command=failure[1])
    gas = sdk.GasCostSummary(computation_cost=summary["computationCost"],
                             computation_cost_burned=summary["computationCostBurned"],
                             storage_cost=summary["storageCost"], storage_rebate=summary["storageRebate"],
                             non_refundable_storage_fee=summary["nonRefundableStorageFee"])
    ids = sorted(set(inputs) | set(outputs))
    effects = sdk.TransactionEffects.new_v1(sdk.TransactionEffectsV1(
        status=status, epoch=epoch, gas_cost_summary=gas, transaction_digest=sdk.TransactionDigest.from_base58(digest),
        gas_object_index=ids.index(gas_id), events_digest=None,
        dependencies=[sdk.TransactionDigest.from_base58(dep) for dep in dependencies],
        lamport_version=sdk.Version.from_u64(lamport), changed_objects=changed, unchanged_shared_objects=[],
        auxiliary_data_digest=None))
    return base64.b64encode(effects.to_bcs()).decode()


def page(items: list, first: int | None, after: str | None, kind: str, key) -> dict:
    """A forward page of items (each with a position given by key) after an opaque cursor."""
    if first is None:
        first = DEFAULT_PAGE_SIZE
    if first < 0:
        raise GraphQLError("'first' must be non-negative")
    if first > MAX_PAGE_SIZE:
        raise GraphQLError(f"Connection's page size of {first} exceeds max of {MAX_PAGE_SIZE}")
    start = decode_cursor(kind, after) if after is not None else -1
    rest = [item for item in items if key(item) > start]
    chosen = rest[:first]
    return {
        "nodes": chosen,
        "pageInfo": {
            "hasPreviousPage": after is not None and start >= 0,
            "hasNextPage": len(rest) > first,
            "startCursor": encode_cursor(kind, key(chosen[0])) if chosen else None,
            "endCursor": encode_cursor(kind, key(chosen[-1])) if chosen else None,
        },
    }


def check_limits(query: str, variables: dict | None) -> str | None:
    """The service's QueryLimitsChecker: the first limit the query breaks, in its words, or None."""
    if len(query.encode()) > LIMITS["max_query_payload_size"]:
        return f"Query payload is too large. The maximum allowed is {LIMITS['max_query_payload_size']} bytes"
    try:
        doc = parse(query)
    except GraphQLError:
        return None  # graphql-core reports the syntax error itself
    fragments = {d.name.value: d for d in doc.definitions if isinstance(d, FragmentDefinitionNode)}
    variables = variables or {}

    def children(selection) -> list:
        if isinstance(selection, FragmentSpreadNode):
            fragment = fragments.get(selection.name.value)
            return list(fragment.selection_set.selections) if fragment else []
        return list(selection.selection_set.selections) if selection.selection_set else []

    def page_size(field: FieldNode) -> int | None:
        def fields_of(selections):
            for s in selections:
                if isinstance(s, FieldNode):
                    yield s.name.value
                else:
                    yield from fields_of(children(s))
        if not field.selection_set:
            return None
        if not any(n in ("nodes", "edges") for n in fields_of(field.selection_set.selections)):
            return None
        for arg in field.arguments:
            if arg.name.value in ("first", "last"):
                if isinstance(arg.value, IntValueNode):
                    return int(arg.value.value)
                if isinstance(arg.value, VariableNode) and isinstance(variables.get(arg.value.name.value), int):
                    return variables[arg.value.name.value]
        return DEFAULT_PAGE_SIZE

    for op in (d for d in doc.definitions if isinstance(d, OperationDefinitionNode)):
        level, depth, nodes = list(op.selection_set.selections), 0, 0
        while level:
            depth += 1
            if depth > LIMITS["max_query_depth"]:
                return f"Query nesting is over {LIMITS['max_query_depth']}"
            nodes += len(level)
            if nodes > LIMITS["max_query_nodes"]:
                return f"Query has over {LIMITS['max_query_nodes']} nodes"
            level = [c for s in level for c in children(s)]
        output = 0

        def walk(selection, multiplicity: int, page: int | None) -> None:
            nonlocal output
            if not isinstance(selection, FieldNode):
                for child in children(selection):
                    walk(child, multiplicity, page)
                return
            output += multiplicity
            if selection.name.value in ("nodes", "edges") and page is not None:
                multiplicity *= page
            inner = page_size(selection)
            for child in children(selection):
                walk(child, multiplicity, inner)

        for selection in op.selection_set.selections:
            walk(selection, 1, None)
        if output > LIMITS["max_output_nodes"]:
            return f"Estimated output nodes exceeds {LIMITS['max_output_nodes']}"
    return None


def build(chain: Chain):
    schema = build_schema(SCHEMA_SDL)
    scalars = {
        "UInt53": parse_uint53,
        "IotaAddress": normalise_address,
        "BigInt": lambda v: str(int(v)),
        "DateTime": str,
        "Base64": str,
    }
    for name, coerce in scalars.items():
        # graphql-core 3.3 coerces variables and (through the default parse_literal) literals with this
        schema.type_map[name].coerce_input_value = coerce
    schema.type_map["UInt53"].coerce_output_value = int
    schema.type_map["BigInt"].coerce_output_value = lambda v: str(int(v))

    def not_implemented(what: str):
        raise GraphQLError(f"the fake node does not implement {what}")

    def resolve_checkpoint(_root, _info, id=None):
        with chain.lock:
            if id is None or (id.get("sequenceNumber") is None and id.get("digest") is None):
                return chain.checkpoint(chain.data["head"])
            if id.get("digest") is not None:
                not_implemented("checkpoint(id: {digest})")
            return chain.checkpoint(id["sequenceNumber"])

    def resolve_available_range(_root, _info):
        with chain.lock:
            return {"first": chain.checkpoint(chain.data["first_available"]),
                    "last": chain.checkpoint(chain.data["head"])}

    def resolve_transaction_block(_root, _info, digest):
        with chain.lock:
            tx = chain.data["transactions"].get(digest)
            return chain.tx_node(tx) if tx else None

    def resolve_transaction_blocks(_root, _info, first=None, after=None, last=None, before=None, filter=None,
                                   scanLimit=None):
        if last is not None or before is not None:
            not_implemented("backward pagination")
        if scanLimit is not None:
            not_implemented("scanLimit")
        filter = filter or {}
        implemented = {"afterCheckpoint", "atCheckpoint", "beforeCheckpoint", "sentAddress", "recvAddress",
                       "transactionIds"}
        for name, value in filter.items():
            if value is not None and name not in implemented:
                not_implemented(f"the {name} filter")
        with chain.lock:
            d = chain.data
            txs = [tx for tx in d["transactions"].values()
                   if tx["checkpoint"] is not None and tx["checkpoint"] >= d["first_available"]]

            def keep(tx):
                cp = tx["checkpoint"]
                if filter.get("afterCheckpoint") is not None and not cp > filter["afterCheckpoint"]:
                    return False
                if filter.get("beforeCheckpoint") is not None and not cp < filter["beforeCheckpoint"]:
                    return False
                if filter.get("atCheckpoint") is not None and cp != filter["atCheckpoint"]:
                    return False
                if filter.get("sentAddress") is not None and tx["sender"] != filter["sentAddress"]:
                    return False
                if filter.get("recvAddress") is not None and filter["recvAddress"] not in tx["recipients"]:
                    return False
                return filter.get("transactionIds") is None or tx["digest"] in filter["transactionIds"]

            chosen = sorted((tx for tx in txs if keep(tx)), key=lambda tx: tx["order"])
            result = page(chosen, first, after, "tx", key=lambda tx: tx["order"])
            result["nodes"] = [chain.tx_node(tx) for tx in result["nodes"]]
            return result

    def resolve_balance_changes(effects, _info, first=None, after=None, last=None, before=None):
        if last is not None or before is not None:
            not_implemented("backward pagination")
        indexed = list(enumerate(effects["_balanceChanges"]))
        result = page(indexed, first, after, "bc", key=lambda item: item[0])
        result["nodes"] = [{"owner": {"address": c["owner"]}, "coinType": {"repr": c["coinType"]},
                            "amount": c["amount"]} for _, c in result["nodes"]]
        return result

    def resolve_owner(_root, _info, address, rootVersion=None):
        if rootVersion is not None:
            not_implemented("rootVersion")
        return {"address": address}

    def check_coin_type(type_):
        if type_ is not None and normalise_type(type_) != IOTA_COIN:
            not_implemented("coin types other than 0x2::iota::IOTA")

    def resolve_balance(owner, _info, type=None):
        check_coin_type(type)
        with chain.lock:
            coins = chain.coins_of(owner["address"])
            return {"coinType": {"repr": IOTA_COIN}, "coinObjectCount": len(coins),
                    "totalBalance": str(sum(o["balance"] for _, o in coins))}

    def resolve_coins(owner, _info, first=None, after=None, last=None, before=None, type=None):
        if last is not None or before is not None:
            not_implemented("backward pagination")
        check_coin_type(type)
        with chain.lock:
            coins = [{"address": oid, "version": o["version"], "digest": o["digest"], "coinBalance": str(o["balance"]),
                      "_key": int(oid, 16)} for oid, o in chain.coins_of(owner["address"])]
        return page(coins, first, after, "coin", key=lambda c: c["_key"])

    def resolve_epoch(_root, _info, id=None):
        with chain.lock:
            d = chain.data
            if id is not None and id != d["epoch"]:
                return None
            return {"epochId": d["epoch"], "referenceGasPrice": str(d["gas_price"]),
                    "startTimestamp": iso_ms(d["genesis_ms"]), "totalCheckpoints": d["head"] + 1,
                    "totalTransactions": len(d["transactions"])}

    def resolve_effects_bcs(effects, _info):
        bcs = effects["_tx"].get("effects_bcs")
        if bcs is None:
            digest = effects["_tx"]["digest"]
            raise GraphQLError(f"the fake node has no effects BCS for the scripted transaction {digest}")
        return bcs

    def resolve_execute(_root, _info, txBytes, signatures):
        return chain.execute(txBytes, signatures)

    for owner_type in ("Address", "Owner"):
        schema.type_map[owner_type].fields["balance"].resolve = resolve_balance
        schema.type_map[owner_type].fields["coins"].resolve = resolve_coins
    schema.type_map["TransactionBlockEffects"].fields["bcs"].resolve = resolve_effects_bcs
    schema.type_map["Mutation"].fields["executeTransactionBlock"].resolve = resolve_execute

    query = schema.type_map["Query"].fields
    query["address"].resolve = resolve_owner
    query["owner"].resolve = resolve_owner
    query["epoch"].resolve = resolve_epoch
    query["chainIdentifier"].resolve = lambda *_: chain.chain_id
    query["availableRange"].resolve = resolve_available_range
    query["checkpoint"].resolve = resolve_checkpoint
    query["transactionBlock"].resolve = resolve_transaction_block
    query["transactionBlocks"].resolve = resolve_transaction_blocks
    schema.type_map["TransactionBlockEffects"].fields["balanceChanges"].resolve = resolve_balance_changes
    return schema


class Handler(BaseHTTPRequestHandler):
    server_version = "fake-iota-node/0"
    chain: Chain
    schema = None

    def log_message(self, *args):
        pass

    def reply(self, code: int, body: bytes | str | dict, content_type: str = "application/json") -> None:
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode()
        try:
            self.send_response(code)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("content-length") or 0))

    def do_GET(self):
        if self.path == "/_fake/requests":
            with self.chain.lock:
                self.reply(200, {"requests": list(self.chain.requests)})
        elif self.path.startswith("/_fake/coins?address="):
            try:
                address = normalise_address(self.path.partition("=")[2])
            except GraphQLError as exc:
                return self.reply(400, {"error": str(exc.message)})
            with self.chain.lock:
                self.reply(200, {"coins": [{"id": oid, **o} for oid, o in self.chain.coins_of(address)]})
        else:
            self.reply(405, {"error": "GraphQL is served by POST /"})

    def do_POST(self):
        raw = self.body()
        if self.path.startswith("/_fake/"):
            return self.control(self.path[len("/_fake/"):], raw)
        if self.path != "/":
            return self.reply(404, {"error": f"no such path {self.path}"})
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = None
        with self.chain.lock:
            self.chain.requests.append({"method": "POST", "path": self.path, "headers": dict(self.headers.items()),
                                        "body": raw.decode("utf-8", "replace"), "json": parsed})
        mode = self.chain.fail_mode
        if self.chain.fail_match is not None and self.chain.fail_match not in raw.decode("utf-8", "replace"):
            mode = "none"
        if mode == "503":
            return self.reply(503, "upstream unavailable", "text/plain")
        if mode == "hang":
            deadline = time.monotonic() + 30
            while self.chain.fail_mode == "hang" and time.monotonic() < deadline:
                time.sleep(0.02)
            self.close_connection = True
            return None
        if mode == "graphql-error":
            return self.reply(200, {"data": None, "errors": [{"message": "fake node: database unavailable"}]})
        if mode == "malformed":
            return self.reply(200, "<html>bad gateway</html>", "text/html")
        if not isinstance(parsed, dict) or not isinstance(parsed.get("query"), str):
            return self.reply(400, {"errors": [{"message": "body is not a GraphQL request"}]})
        variables = parsed.get("variables")
        over = check_limits(parsed["query"], variables if isinstance(variables, dict) else None)
        if over is not None:
            return self.reply(200, {"data": None, "errors": [{"message": over,
                                                              "extensions": {"code": "BAD_USER_INPUT"}}]})
        result = graphql_sync(self.schema, parsed["query"], variable_values=variables,
                              operation_name=parsed.get("operationName"))
        if mode == "drop-answer":
            self.close_connection = True
            return None
        out: dict = {"data": result.data}
        if result.errors:
            out["errors"] = [e.formatted for e in result.errors]
        self.reply(200, out)

    def control(self, what: str, raw: bytes):
        chain = self.chain
        try:
            args = json.loads(raw) if raw else {}
            if what == "transactions":
                return self.reply(200, {"digest": chain.add_transaction(args)})
            if what == "checkpoint":
                return self.reply(200, chain.make_checkpoint(args.get("timestamp_ms")))
            if what == "fail":
                if args.get("mode") not in ("none", "503", "hang", "graphql-error", "malformed", "drop-answer"):
                    raise ValueError(f"unknown mode {args.get('mode')!r}")
                chain.fail_mode, chain.fail_match = args["mode"], args.get("match")
                return self.reply(200, {"mode": chain.fail_mode})
            if what == "faucet":
                return self.reply(200, chain.faucet(args["address"], args["amount"], args.get("coins", 1)))
            if what == "auto_checkpoint":
                if not isinstance(args.get("enabled"), bool):
                    raise ValueError("enabled must be true or false")
                with chain.lock:
                    chain.data["auto_checkpoint"] = args["enabled"]
                    chain.save()
                return self.reply(200, {"enabled": args["enabled"]})
            if what == "time":
                return self.reply(200, {"timestamp_ms": chain.set_time(args.get("timestamp_ms"),
                                                                       args.get("advance_ms"))})
            if what == "chain_id":
                if not isinstance(args.get("chain_id"), str) or not args["chain_id"]:
                    raise ValueError("chain_id must be a non-empty string")
                chain.chain_id = args["chain_id"]
                return self.reply(200, {"chain_id": chain.chain_id})
            if what == "gas_price":
                price = args["price"]
                if isinstance(price, bool) or not isinstance(price, int) or price < 1:
                    raise ValueError(f"price must be a positive integer, got {price!r}")
                with chain.lock:
                    chain.data["gas_price"] = price
                    chain.save()
                return self.reply(200, {"price": price})
            if what == "prune":
                chain.prune(int(args["below"]))
                return self.reply(200, {})
            if what == "requests/clear":
                with chain.lock:
                    chain.requests.clear()
                return self.reply(200, {})
            if what == "reset":
                chain.reset()
                chain.fail_mode, chain.fail_match = "none", None
                chain.chain_id = chain.initial_chain_id
                with chain.lock:
                    chain.requests.clear()
                return self.reply(200, {})
        except (ValueError, KeyError, TypeError, GraphQLError) as exc:
            return self.reply(400, {"error": str(exc)})
        return self.reply(404, {"error": f"no control endpoint {what}"})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--initial-checkpoint", type=int, default=0)
    parser.add_argument("--state")
    parser.add_argument("--chain-id", default=DEFAULT_CHAIN_ID)
    args = parser.parse_args(argv)
    chain = Chain(args.initial_checkpoint, args.state, args.chain_id)
    handler = type("BoundHandler", (Handler,), {"chain": chain, "schema": build(chain)})
    server = ThreadingHTTPServer(("127.0.0.1", args.port), handler)
    server.daemon_threads = True
    print(f"PORT {server.server_address[1]}", flush=True)
    try:
        server.serve_forever(poll_interval=0.05)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
