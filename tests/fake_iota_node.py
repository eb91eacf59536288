"""A fake IOTA GraphQL node for tests, run in its own process.

    python -m tests.fake_iota_node [--port 0] [--initial-checkpoint N] [--state FILE]

It prints `PORT <n>` on its first stdout line once it listens on 127.0.0.1.

GraphQL (POST /) is executed by graphql-core against SCHEMA below: a hand-written
subset of the real node's schema (iotaledger/iota, crates/iota-graphql-rpc/schema.graphql)
with every type, field and argument named exactly as there, holding only what payg's
queries need. Anything else fails validation, as it would on a real node if misspelt.
Like a real indexer, `transactionBlocks` lists only transactions that are in a
checkpoint; `transactionBlock(digest)` also finds executed ones that are not yet.
Page sizes above 50 are refused (the usual serviceConfig.maxPageSize).

Control endpoints (JSON):
    POST /_fake/transactions  {"digest"?, "sender", "status"?, "balance_changes": [{"owner",
                              "coin_type"?, "amount"}], "recipients"?}  -> {"digest"}
                              an executed transaction, not yet in a checkpoint
    POST /_fake/checkpoint    {"timestamp_ms"?} -> {"sequenceNumber", "transactions"}
                              a new checkpoint holding every pending transaction
    POST /_fake/fail          {"mode": "none" | "503" | "hang" | "graphql-error" | "malformed", "match"?}
                              every GraphQL request fails so (only those whose body holds `match`, if given)
    POST /_fake/prune         {"below": n}  checkpoints below n leave the available range
    GET  /_fake/requests      every GraphQL request received: method, path, headers, body, json
    POST /_fake/requests/clear
    POST /_fake/reset         back to an empty chain at the initial checkpoint
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

from graphql import GraphQLError, build_schema, graphql_sync

MAX_PAGE_SIZE = 50
DEFAULT_PAGE_SIZE = 20
IOTA_COIN = "0x0000000000000000000000000000000000000000000000000000000000000002::iota::IOTA"
B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"

SCHEMA_SDL = """
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

type Address { address: IotaAddress! }

type Owner { address: IotaAddress! }

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
  errors: String
  timestamp: DateTime
  checkpoint: Checkpoint
  balanceChanges(first: Int, after: String, last: Int, before: String): BalanceChangeConnection!
}

type TransactionBlock { digest: String sender: Address effects: TransactionBlockEffects }

type TransactionBlockConnection { pageInfo: PageInfo! nodes: [TransactionBlock!]! }

type Query {
  chainIdentifier: String!
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

    def __init__(self, initial_checkpoint: int, state_file: str | None):
        self.lock = threading.RLock()
        self.initial_checkpoint = initial_checkpoint
        self.state_file = state_file
        self.fail_mode = "none"
        self.fail_match: str | None = None
        self.requests: list[dict] = []
        if state_file and os.path.exists(state_file):
            with open(state_file) as f:
                self.data = json.load(f)
        else:
            self.reset()

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
            changes = [{"owner": normalise_address(c["owner"]), "coinType": normalise_type(c.get("coin_type", IOTA_COIN)),
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
            d["checkpoints"][str(d["head"])] = {"timestamp_ms": timestamp_ms or int(time.time() * 1000),
                                                "transactions": digests}
            self.save()
            return {"sequenceNumber": d["head"], "transactions": digests}

    def prune(self, below: int) -> None:
        with self.lock:
            self.data["first_available"] = below
            self.save()

    def tx_node(self, tx: dict) -> dict:
        checkpoint = self.checkpoint(tx["checkpoint"]) if tx["checkpoint"] is not None else None
        return {"digest": tx["digest"], "sender": {"address": tx["sender"]},
                "effects": {"status": tx["status"], "errors": None if tx["status"] == "SUCCESS" else "InsufficientGas",
                            "timestamp": checkpoint["timestamp"] if checkpoint else None, "checkpoint": checkpoint,
                            "_balanceChanges": tx["balanceChanges"]}}


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


def build(chain: Chain):
    schema = build_schema(SCHEMA_SDL)
    scalars = {
        "UInt53": parse_uint53,
        "IotaAddress": normalise_address,
        "BigInt": lambda v: str(int(v)),
        "DateTime": str,
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

    query = schema.type_map["Query"].fields
    query["chainIdentifier"].resolve = lambda *_: "fa4e1dea"
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
        result = graphql_sync(self.schema, parsed["query"], variable_values=variables,
                              operation_name=parsed.get("operationName"))
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
                if args.get("mode") not in ("none", "503", "hang", "graphql-error", "malformed"):
                    raise ValueError(f"unknown mode {args.get('mode')!r}")
                chain.fail_mode, chain.fail_match = args["mode"], args.get("match")
                return self.reply(200, {"mode": chain.fail_mode})
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
    args = parser.parse_args(argv)
    chain = Chain(args.initial_checkpoint, args.state)
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
