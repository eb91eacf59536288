"""The IOTA trade bed (tests/support/trade_beds.py): one IotaTrade hosting the market for every socket, its
IotaWallet talking to the fake IOTA node (tests/support/fake_iota_node.py) that executes real signed transfers."""

from __future__ import annotations

import json
import urllib.request

from ledgers.iota import IotaTrade, IotaWallet
from payg.adapters.clocks import ManualClock
from payg.adapters.peer_link import HttpPeerLink
from tests.support.ledger_beds_iota import TEST_MNEMONIC, FakeIotaNode
from tests.support.trade_beds import SOCKETS

START = 1_800_000_000
ACCOUNTS = {socket_id: index for index, socket_id in enumerate(SOCKETS)}

SENT_QUERY = """query BedSent($first: Int!, $after: String, $filter: TransactionBlockFilter!) {
  transactionBlocks(first: $first, after: $after, filter: $filter) {
    pageInfo { hasNextPage endCursor }
    nodes { digest }
  }
}"""


class OtherNetworkWallet(IotaWallet):
    """The same keys, on a node that says it is another network (for WrongDomain)."""

    def network(self) -> str:
        return "0ther-network"


def sent_by(node_url: str, address: str) -> list[str]:
    """Digests of the checkpointed transactions `address` sent, from the node's index."""
    digests, after = [], None
    while True:
        body = json.dumps({"query": SENT_QUERY, "variables": {"first": 50, "after": after,
                                                              "filter": {"sentAddress": address}}}).encode()
        request = urllib.request.Request(node_url, data=body, headers={"content-type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            connection = json.loads(response.read())["data"]["transactionBlocks"]
        digests += [node["digest"] for node in connection["nodes"]]
        if not connection["pageInfo"]["hasNextPage"]:
            return digests
        after = connection["pageInfo"]["endCursor"]


class IotaTradeBed:
    name = "iota"
    price = 2_000_000           # nanos per Wh: 100 Wh cost 0.2 IOTA, twice the fee allowance
    fee_allowance = 100_000_000  # 0.1 IOTA: gas budgets are reserved per transaction, about 2M nanos is paid

    def __init__(self, tmp_path, *, capacity_wh: int, tax_bps: int, node: FakeIotaNode | None = None):
        self.tmp_path = tmp_path
        self.node = node or FakeIotaNode(tmp_path)  # a node given is emptied and stopped by its owner
        self._own_node = node is None
        self.clock = ManualClock(START)
        self.node.control("time", {"timestamp_ms": START * 1000})
        self.wallet = IotaWallet(self.node.url, mnemonic=TEST_MNEMONIC, request_timeout_s=5, finality_timeout_s=10)
        self.trade = IotaTrade(self.wallet, accounts=ACCOUNTS, store_path=tmp_path / "iota-trade.sqlite",
                               clock=self.clock, peer_link=HttpPeerLink())
        self.trade.create_market("owner", capacity_wh, tax_bps)
        self.channels = self.trade
        self._gas: dict[str, int] = {}
        self._others: list[tuple[IotaWallet, IotaTrade]] = []

    def fund(self, socket_id: str, amount: int) -> None:
        self.node.control("faucet", {"address": self.trade.party_for(socket_id),
                                     "amount": amount + self.fee_allowance})

    def gas_paid_by(self, address: str) -> int:
        total = 0
        for digest in sent_by(self.node.url, address):
            if digest not in self._gas:
                self._gas[digest] = self.wallet.transaction(digest)["gas_fee"] or 0
            total += self._gas[digest]
        return total

    def funds(self, party: str) -> int:
        """Balance + gas it paid (from its party address and its channels' addresses) + the gas reserve
        still sitting in its open channels (the escrow itself is the recipient's to claim until expiry)."""
        total = self.wallet.balance(party) + self.gas_paid_by(party)
        for channel in self.trade.channels():
            if channel.sender != party:
                continue
            total += self.gas_paid_by(channel.address)
            if channel.state == "open":
                total += self.wallet.balance(channel.address) - channel.escrow
        return total

    def travel_to(self, t: int) -> None:
        self.clock.set(t)
        self.node.control("time", {"timestamp_ms": int(t) * 1000})

    def other_domain(self) -> IotaTrade:
        wallet = OtherNetworkWallet(self.node.url, mnemonic=TEST_MNEMONIC, request_timeout_s=5)
        other = IotaTrade(wallet, accounts=ACCOUNTS, store_path=self.tmp_path / f"other-{len(self._others)}.sqlite",
                          clock=self.clock, peer_link=HttpPeerLink())
        self._others.append((wallet, other))
        return other

    def close(self) -> None:
        self.trade.shutdown()
        self.wallet.close()
        for wallet, other in self._others:
            other.shutdown()
            wallet.close()
        if self._own_node:
            self.node.stop()


def make_bed(tmp_path, *, capacity_wh: int, tax_bps: int, node: FakeIotaNode | None = None) -> IotaTradeBed:
    return IotaTradeBed(tmp_path, capacity_wh=capacity_wh, tax_bps=tax_bps, node=node)
