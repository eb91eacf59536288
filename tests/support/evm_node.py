"""A real EVM for the tests, served over JSON-RPC on 127.0.0.1 like a node.

eth-tester with py-evm runs the chain in this process; a small HTTP server in
a background thread answers JSON-RPC on a free port, so the Ethereum ledger is
exercised through web3's HTTPProvider exactly as in production. The tests
drive the chain from the inside (payments, mining, snapshots) while the server
may be stopped and started again on the same port to simulate an outage.

What the wire carries is what a node sends, not what eth-tester returns
in-process: quantities as hex strings, byte strings as 0x data, camelCase keys,
and `logIndex` numbered per block (eth-tester numbers it per transaction).
"""

from __future__ import annotations

import functools
import json
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_tester import EthereumTester, PyEVMBackend
from eth_tester.exceptions import TransactionFailed
from web3 import EthereumTesterProvider, Web3
from web3.contract import Contract

from ledgers.ethereum.contracts import compile_source
from tests.support import free_port

CONTRACTS = Path(__file__).resolve().parent / "contracts"
LOGS_RANGE_ERROR = -32005  # what several providers answer for too wide a log query


class _NodeServer(ThreadingHTTPServer):
    """A client that hung up before its answer (a test's ledger stopped, a timeout on purpose) is the client's
    business, as on a real node: no traceback on the test run's standard error."""

    def handle_error(self, request, client_address) -> None:
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


@functools.cache
def compiled(name: str) -> tuple[list[dict], str]:
    """ABI and deployment bytecode of tests/support/contracts/<name>.vy, compiled once per test session."""
    return compile_source((CONTRACTS / f"{name}.vy").read_text(), f"{name}.vy")


# eth-tester leaves the transactions inside a block and a few other fields in its own
# snake_case; a node sends the JSON-RPC names.
_TRANSACTION_KEYS = {
    "block_hash": "blockHash", "block_number": "blockNumber", "transaction_index": "transactionIndex",
    "chain_id": "chainId", "gas_price": "gasPrice", "max_fee_per_gas": "maxFeePerGas",
    "max_priority_fee_per_gas": "maxPriorityFeePerGas", "access_list": "accessList",
    "authorization_list": "authorizationList", "blob_versioned_hashes": "blobVersionedHashes",
    "max_fee_per_blob_gas": "maxFeePerBlobGas", "y_parity": "yParity", "data": "input",
}
_NESTED_KEYS = {"y_parity": "yParity", "chain_id": "chainId", "storage_keys": "storageKeys"}
# The requests whose missing "from" eth-tester fills in with its first account.
_DEFAULT_FROM = ("eth_call", "eth_estimateGas", "eth_createAccessList")


def _wire(value: Any, key: str = "") -> Any:
    """A result as a node puts it on the wire."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        if key == "logsBloom":
            return "0x" + value.to_bytes(256, "big").hex()
        return hex(value)
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return {_NESTED_KEYS.get(k, k): _wire(v, k) for k, v in value.items() if k != "state_root"}
    if isinstance(value, (list, tuple)):
        if key == "transactions":
            return [_wire({_TRANSACTION_KEYS.get(k, k): v for k, v in tx.items()}) if isinstance(tx, dict)
                    else _wire(tx) for tx in value]
        return [_wire(v) for v in value]
    raise TypeError(f"cannot put {type(value).__name__} on the wire: {value!r}")


def _handler_for(node: EvmNode) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        # HTTP/1.0: one request per connection, so stop() leaves no kept-alive socket answering.
        def do_POST(self) -> None:
            request = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if node.stall_s:
                node._released.wait(node.stall_s)
            if node.http_status is not None:
                self._answer(node.http_status, b"the node is not answering JSON-RPC right now", "text/plain")
                return
            try:
                self._answer(200, json.dumps(node.handle(json.loads(request))).encode())
            except (ValueError, TypeError, KeyError) as exc:
                error = {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": f"parse error: {exc}"}}
                self._answer(400, json.dumps(error).encode())

        def _answer(self, status: int, body: bytes, content_type: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@dataclass
class Token:
    """A deployed test ERC-20 and its deployer (every node account holds the same supply)."""

    contract: Contract
    owner: str

    @property
    def address(self) -> str:
        return self.contract.address


class EvmNode:
    """An eth-tester chain behind a JSON-RPC HTTP server on 127.0.0.1."""

    ACCOUNTS = 64  # funded at genesis; transactions that share a block need distinct senders

    def __init__(self, genesis_parameters: dict | None = None, vm_configuration: tuple | None = None) -> None:
        genesis = PyEVMBackend.generate_genesis_state(num_accounts=self.ACCOUNTS)
        self.tester = EthereumTester(PyEVMBackend(genesis_parameters=genesis_parameters, genesis_state=genesis,
                                                  vm_configuration=vm_configuration))
        provider = EthereumTesterProvider(self.tester)
        self._raw = Web3(provider, middleware=[])
        self._raw_request = provider.request_func(self._raw, self._raw.middleware_onion)
        self.w3 = Web3(provider)  # in-process client for the tests' own transactions
        # A call or estimate without "from" is run from the first account, as eth-tester's own guess does; said
        # here because its guess lists and checksums all the accounts on every such request, which was most of
        # the time the suites spent on this chain.
        self._default_from = self.w3.eth.accounts[0]
        self.w3.eth.default_account = self._default_from
        self.lock = threading.RLock()
        self.port = free_port()
        self.logs_range_limit: int | None = None
        self.stall_s = 0.0
        self.http_status: int | None = None
        self._released = threading.Event()
        self.requests: list[str] = []  # every JSON-RPC method the server was asked, in order
        self.refused_log_ranges: list[tuple[int, int]] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.chain_id: int = self.w3.eth.chain_id
        self.accounts: list[str] = list(self.w3.eth.accounts)  # each funded with a million ether

    @property
    def rpc_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


    def start(self) -> None:
        """Serve JSON-RPC (again) on the same port."""
        if self._server is not None:
            return
        self._released.clear()
        server = _NodeServer(("127.0.0.1", self.port), _handler_for(self))
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, args=(0.02,), name=f"evm-node-{self.port}",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop answering: connections to the port are refused until start()."""
        if self._server is None:
            return
        self._released.set()  # requests held by stall() give up
        self._server.shutdown()
        self._server.server_close()
        assert self._thread is not None
        self._thread.join(timeout=5)
        self._server = self._thread = None

    def stall(self, seconds: float) -> None:
        """Hold every request `seconds` before answering it (0: answer at once), like an overloaded node."""
        self.stall_s = seconds

    def answer_http_status(self, status: int | None) -> None:
        """Answer every request with this HTTP status and no JSON-RPC (None: answer normally)."""
        self.http_status = status

    def limit_log_range(self, blocks: int | None) -> None:
        """Answer a JSON-RPC error to eth_getLogs over more than `blocks` blocks (None: no limit)."""
        self.logs_range_limit = blocks

    def handle(self, payload: Any) -> Any:
        if isinstance(payload, list):
            return [self._handle_one(p) for p in payload]
        return self._handle_one(payload)

    def _handle_one(self, request: dict) -> dict:
        request_id = request.get("id")
        method = request["method"]
        params = request.get("params") or []
        with self.lock:
            self.requests.append(method)
            try:
                if method == "eth_getLogs" and self.logs_range_limit is not None:
                    refused = self._refuse_log_range(params[0])
                    if refused:
                        return {"jsonrpc": "2.0", "id": request_id, "error": refused}
                if method in _DEFAULT_FROM and params and isinstance(params[0], dict) and "from" not in params[0]:
                    params = [{**params[0], "from": self._default_from}, *params[1:]]
                if method in ("eth_getBlockByNumber", "eth_getBlockByHash") and params[1:2] == [True]:
                    response = self._full_block(method, params)
                else:
                    response = self._raw_request(method, params)
                if "error" not in response:
                    result = self._per_block_log_index(method, response["result"])
                    response = {"result": _wire(result)}
            except TransactionFailed as exc:
                response = {"error": {"code": 3, "message": str(exc)}}
            except Exception as exc:  # the node answers every request, like a node would
                response = {"error": {"code": -32000, "message": f"{type(exc).__name__}: {exc}"}}
        answer = {k: v for k, v in response.items() if k in ("result", "error")}
        return {"jsonrpc": "2.0", "id": request_id, **answer}

    def _full_block(self, method: str, params: list) -> dict:
        """A block with its transactions, fetched one by one: eth-tester's own full block fails its
        output validation when the block holds an EIP-7702 (type 4) transaction."""
        response = self._raw_request(method, [params[0], False])
        block = response.get("result")
        if isinstance(block, dict):
            transactions = [self.tester.get_transaction_by_hash(h) for h in block["transactions"]]
            response = {**response, "result": {**block, "transactions": transactions}}
        return response

    def _refuse_log_range(self, log_filter: dict) -> dict | None:
        first = self._block_param(log_filter.get("fromBlock", "latest"))
        last = self._block_param(log_filter.get("toBlock", "latest"))
        assert self.logs_range_limit is not None
        if last - first + 1 <= self.logs_range_limit:
            return None
        self.refused_log_ranges.append((first, last))
        return {"code": LOGS_RANGE_ERROR,
                "message": f"block range too wide: {last - first + 1} blocks, at most {self.logs_range_limit}"}

    def _block_param(self, value: str) -> int:
        if value in ("latest", "safe", "finalized", "pending"):
            return self.tester.get_block_by_number("latest")["number"]
        if value == "earliest":
            return 0
        return int(value, 16)

    def _per_block_log_index(self, method: str, result: Any) -> Any:
        """Renumber logIndex per block, as real nodes do."""
        if method == "eth_getLogs" and isinstance(result, (list, tuple)):
            return [self._renumbered(entry) for entry in result]
        if method == "eth_getTransactionReceipt" and isinstance(result, dict):
            return {**result, "logs": [self._renumbered(entry) for entry in result["logs"]]}
        return result

    def _renumbered(self, entry: dict) -> dict:
        block = self.tester.get_block_by_hash(entry["blockHash"])
        before = 0
        for tx_hash in block["transactions"][: entry["transactionIndex"]]:
            before += len(self.tester.get_transaction_receipt(tx_hash)["logs"])
        return {**entry, "logIndex": before + entry["logIndex"]}


    @property
    def block_number(self) -> int:
        with self.lock:
            return self.w3.eth.block_number

    def block_hash(self, number: int) -> str:
        with self.lock:
            return self.w3.eth.get_block(number)["hash"].to_0x_hex()

    def mine(self, blocks: int = 1) -> None:
        with self.lock:
            self.tester.mine_blocks(blocks)

    def send_value(self, to: str, wei: int, sender: str | None = None) -> str:
        """One value transfer, mined in a block of its own; returns the transaction hash."""
        with self.lock:
            tx = {"from": sender or self.accounts[0], "to": to, "value": wei, "gas": 100_000}
            return self.w3.eth.send_transaction(tx).to_0x_hex()

    def in_one_block(self, send: Callable[[], Iterable[Any]]) -> list[Any]:
        """Run `send` (which sends transactions) and mine everything it sent into one block."""
        with self.lock:
            self.tester.disable_auto_mine_transactions()
            try:
                sent = list(send())
                self.tester.mine_blocks(1)
            finally:
                # Not enable_auto_mine_transactions(): that mines one more block.
                self.tester.auto_mine_transactions = True
            return sent

    def payers(self, count: int) -> list[str]:
        """`count` distinct funded accounts. Transactions that share a block need different senders:
        with auto-mining off, eth-tester checks each one against the last mined state."""
        if count > len(self.accounts):
            raise ValueError(f"at most {len(self.accounts)} transactions fit in one block here, asked for {count}")
        return self.accounts[:count]

    def send_values(self, payments: list[tuple[str, int]]) -> list[str]:
        """Several value transfers in one block, from different senders, as unrelated payers would."""
        senders = self.payers(len(payments))

        def send() -> Iterable[str]:
            for sender, (to, wei) in zip(senders, payments, strict=True):
                yield self.w3.eth.send_transaction({"from": sender, "to": to, "value": wei, "gas": 21_000}).to_0x_hex()
        return self.in_one_block(send)

    def receipt(self, tx_hash: str) -> Any:
        with self.lock:
            return self.w3.eth.get_transaction_receipt(tx_hash)

    def snapshot(self) -> int:
        with self.lock:
            return self.tester.take_snapshot()

    def revert(self, snapshot_id: int) -> None:
        """Go back to a snapshot: the blocks mined since leave the chain (a reorganisation)."""
        with self.lock:
            self.tester.revert_to_snapshot(snapshot_id)

    def deploy(self, name: str, *args: Any, sender: str | None = None) -> Contract:
        abi, bytecode = compiled(name)
        with self.lock:
            factory = self.w3.eth.contract(abi=abi, bytecode=bytecode)
            # An explicit gas limit spares the estimate, which runs the constructor a second time.
            tx_hash = factory.constructor(*args).transact({"from": sender or self.accounts[0], "gas": 10_000_000})
            address = self.w3.eth.get_transaction_receipt(tx_hash)["contractAddress"]
            return self.w3.eth.contract(address=address, abi=abi)

    def deploy_token(self, decimals: int = 6, supply: int = 10**30, owner: str | None = None) -> Token:
        owner = owner or self.accounts[0]
        # Every account holds `supply`, so that token_transfers needs no set-up transactions.
        holders = [a for a in self.accounts if a != owner]
        contract = self.deploy("test_token", "payg test token", "PTT", decimals, supply, holders, sender=owner)
        return Token(contract, owner)

    def token_transfer(self, token: Token, to: str, units: int, *, gas: int | None = None) -> str:
        """token.transfer from the supply holder; with `gas` set, a failing call is mined (status 0), without, it
        raises TransactionFailed. Sent with a gas limit either way: web3's estimate ran the transfer a dozen times."""
        with self.lock:
            tx_hash = token.contract.functions.transfer(to, units).transact(
                {"from": token.owner, "gas": gas or 100_000}).to_0x_hex()
            if gas is None and self.w3.eth.get_transaction_receipt(tx_hash)["status"] != 1:
                raise TransactionFailed(f"the token transfer {tx_hash} failed")
            return tx_hash

    def token_transfers(self, token: Token, payments: list[tuple[str, int]]) -> list[str]:
        """Several token transfers in one block, from different holders."""
        senders = self.payers(len(payments))

        def send() -> Iterable[str]:
            for sender, (to, units) in zip(senders, payments, strict=True):
                yield token.contract.functions.transfer(to, units).transact(
                    {"from": sender, "gas": 100_000}).to_0x_hex()
        return self.in_one_block(send)

    def delegate_code(self, private_key: bytes, target: str) -> str:
        """EIP-7702: make the account of `private_key` run `target`'s code; sent by a funded account."""
        with self.lock:
            account = Account.from_key(private_key)
            nonce = self.w3.eth.get_transaction_count(account.address)
            auth = account.sign_authorization({"chainId": self.chain_id, "address": target, "nonce": nonce})
            return self.w3.eth.send_transaction({
                "from": self.accounts[0], "to": self.accounts[0], "value": 0, "gas": 200_000,
                "authorizationList": [auth],
            }).to_0x_hex()
