"""IotaBed: the conformance bed for IotaLedger, over a fake IOTA GraphQL node in its own process."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from ledgers.iota import IotaLedger
from payg.ports import DepositSource
from tests.support import ROOT
from tests.support.ledger_beds import LedgerBed

# The public BIP-39 test vector: every wallet library's tests know it. Test-only; never fund it.
TEST_MNEMONIC = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about"
INITIAL_CHECKPOINT = 1000
TOKEN_VALUE = 10**6  # nanos per token: 1 IOTA buys 1000 tokens
GAS_NANOS = 1_995_880  # about what a plain IOTA transfer pays in gas
PAYER = "0x" + hashlib.sha256(b"payg test payer").hexdigest()
FAKE_NODE = Path(__file__).resolve().parent / "fake_iota_node.py"


class FakeIotaNode:
    """The fake node process (tests/support/fake_iota_node.py): start, stop, restart with its chain kept, control."""

    def __init__(self, workdir: Path, initial_checkpoint: int = INITIAL_CHECKPOINT):
        self.workdir = workdir
        self.state = workdir / "fake-iota-node.json"
        self.log = workdir / "fake-iota-node.log"
        self.initial_checkpoint = initial_checkpoint
        self.port = 0  # the first start picks a free port; restarts keep it
        self.proc: subprocess.Popen | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with open(self.log, "a") as log:
            # Run as a script (-P: its folder is not put on sys.path), not with -m: importing it as
            # tests.support.fake_iota_node first runs tests/support/__init__.py, and pytest with it.
            self.proc = subprocess.Popen(
                [sys.executable, "-P", str(FAKE_NODE), "--port", str(self.port),
                 "--initial-checkpoint", str(self.initial_checkpoint), "--state", str(self.state)],
                cwd=str(ROOT), stdout=subprocess.PIPE, stderr=log, text=True)
        line = self.proc.stdout.readline()  # "PORT <n>" once it listens
        if not line.startswith("PORT "):
            self.proc.kill()
            self.proc.wait()
            tail = self.log.read_text()[-2000:]
            raise RuntimeError(f"fake IOTA node did not start: {line!r}; see {self.log}: {tail}")
        self.port = int(line.split()[1])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None:
            self.proc.stdout.close()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        for _ in range(100):  # the port may linger a moment after the process is gone
            try:
                self.start()
                return
            except RuntimeError:
                time.sleep(0.05)
        self.start()

    def control(self, path: str, body: dict | None = None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.url}/_fake/{path}", data=data,
                                         headers={"content-type": "application/json"},
                                         method="GET" if body is None else "POST")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"fake node {path}: {exc.code} {exc.read().decode()}") from None

    def add_transaction(self, sender: str, balance_changes: list[dict], status: str = "SUCCESS", **extra) -> str:
        return self.control("transactions", {"sender": sender, "status": status,
                                             "balance_changes": balance_changes, **extra})["digest"]

    def checkpoint(self, timestamp_ms: int | None = None) -> dict:
        return self.control("checkpoint", {} if timestamp_ms is None else {"timestamp_ms": timestamp_ms})

    def faucet(self, address: str, amount: int, coins: int = 1) -> dict:
        """Mint `amount` nanos to `address` as `coins` coin objects: {"digest", "coins": [object ids]}."""
        return self.control("faucet", {"address": address, "amount": amount, "coins": coins})

    def auto_checkpoint(self, enabled: bool) -> None:
        """True (the default): executed transactions are checkpointed at once; False: they wait for checkpoint()."""
        self.control("auto_checkpoint", {"enabled": enabled})

    def set_time(self, timestamp_ms: int | None = None, advance_ms: int | None = None) -> int:
        """Set or advance the ledger clock that stamps the next checkpoints; returns it (ms)."""
        body = {"timestamp_ms": timestamp_ms} if timestamp_ms is not None else {"advance_ms": advance_ms}
        return self.control("time", body)["timestamp_ms"]

    def set_gas_price(self, price: int) -> None:
        self.control("gas_price", {"price": price})

    def coins(self, address: str) -> list[dict]:
        """The live coin objects of an address: id, owner, balance, version, digest."""
        return self.control(f"coins?address={address}")["coins"]

    def head(self) -> int:
        """The latest checkpoint's sequence number (asked over GraphQL, so it shows in requests())."""
        query = json.dumps({"query": "{ checkpoint { sequenceNumber } }"}).encode()
        request = urllib.request.Request(self.url, data=query,
                                         headers={"content-type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())["data"]["checkpoint"]["sequenceNumber"]

    def fail(self, mode: str, match: str | None = None) -> None:
        self.control("fail", {"mode": mode, "match": match})

    def requests(self) -> list[dict]:
        return self.control("requests")["requests"]

    def clear_requests(self) -> None:
        self.control("requests/clear", {})


class IotaBed(LedgerBed):
    name = "iota"
    units_per_token = TOKEN_VALUE

    def __init__(self, tmp_path: Path, node: FakeIotaNode | None = None):
        """On `node` if given (emptied by its owner, who also stops it), else on a node of its own."""
        self.node = node or FakeIotaNode(tmp_path)
        self._own_node = node is None
        self._opened: list[IotaLedger] = []

    def open(self, accounts: dict[str, int]) -> DepositSource:
        # start_checkpoint: the chain as it was when the addresses were handed out, so every payment the
        # tests make is scanned from a fresh cursor (a real deployment sets it the same way).
        ledger = IotaLedger(self.node.url, mnemonic=TEST_MNEMONIC, accounts=accounts, token_value=TOKEN_VALUE,
                            start_checkpoint=INITIAL_CHECKPOINT, request_timeout_s=2.0)
        self._opened.append(ledger)
        return ledger

    def pay(self, address: str, units: int) -> None:
        self.node.add_transaction(PAYER, [{"owner": PAYER, "amount": -(units + GAS_NANOS)},
                                          {"owner": address, "amount": units}])

    def pay_many(self, payments: list[tuple[str, int]]) -> None:
        # Executed one after the other; the next finalize() puts them all in one checkpoint.
        for address, units in payments:
            self.pay(address, units)

    def finalize(self) -> None:
        self.node.checkpoint()

    def foreign_address(self) -> str:
        return "0x" + hashlib.sha256(b"nobody's socket").hexdigest()

    def break_node(self) -> None:
        self.node.fail("503")

    def heal_node(self) -> None:
        self.node.fail("none")

    def close(self) -> None:
        for ledger in self._opened:
            ledger.close()
        if self._own_node:
            self.node.stop()
