"""The Ethereum bed for the trade conformance suite: the market and channel contracts on a real EVM
(eth-tester + py-evm) behind JSON-RPC on 127.0.0.1, driven through EthereumTrade over HTTP.

The chain of this bed charges no gas: its base fee is 0 and EthereumTrade is told to tip 0. Every
transaction still runs, is estimated and is mined as on any chain, but a socket funded with exactly
what a buy costs can pay for it, and one funded with a wei less cannot, which is what the suite
checks. `funds` adds back the fees a party paid anyway (they are 0 here), so it would stay an
equality on a chain with fees. EthereumTrade on a chain with fees is tested in
tests/ledgers/test_ethereum_trade.py.
"""

from __future__ import annotations

import time
from pathlib import Path

from eth_abi import decode as abi_decode
from eth_account import Account
from eth_tester import PyEVMBackend
from web3.contract import Contract

from ledgers.ethereum import CHANNELS_ABI, MARKET_ABI, EthereumTrade, deploy_contracts
from tests.support.evm_node import EvmNode
from tests.support.ledger_beds_ethereum import TEST_MNEMONIC
from tests.support.trade_beds import SOCKETS

PRICE_WEI = 10**9  # per Wh: a gwei


class ZeroFeeEvmNode(EvmNode):
    """EvmNode on a chain whose base fee is 0 (and stays 0: its blocks are far below the gas target)."""

    def __init__(self, vm_configuration: tuple | None = None) -> None:
        # eth-tester's overrides do not list the base fee; py-evm takes it as a genesis header field.
        super().__init__({**PyEVMBackend.generate_genesis_params(), "base_fee_per_gas": 0}, vm_configuration)

def trade_key(index: int) -> bytes:
    Account.enable_unaudited_hdwallet_features()
    return bytes(Account.from_mnemonic(TEST_MNEMONIC, account_path=f"m/44'/60'/0'/1/{index}").key)


def travel(node: EvmNode, t: int) -> None:
    """The latest block is at time t afterwards, and the next one at t + 1 (blocks tick one second)."""
    with node.lock:
        latest = node.w3.eth.get_block("latest")["timestamp"]
        if t == latest:
            return
        if t < latest:
            raise ValueError(f"the chain is at {latest}: it cannot travel back to {t}")
        node.tester.time_travel(t + 1)  # eth-tester mines the travelling block one second before the target


class EthereumTradeBed:
    name = "ethereum"
    price = PRICE_WEI

    def __init__(self, *, capacity_wh: int, tax_bps: int, evm_version: str = "prague"):
        self.node = ZeroFeeEvmNode()
        self.node.start()
        self.accounts = {socket_id: index for index, socket_id in enumerate(SOCKETS)}
        self.capacity_wh = capacity_wh
        self.tax_bps = tax_bps
        self.evm_version = evm_version
        self.start_block = self.node.block_number
        market, channels = self._deploy()
        self._opened: list[EthereumTrade] = []
        self._travelled = 0  # seconds the chain's time jumped forward (travel_to): time that passed, for the trade
        self.trade = self._open(market, channels)
        # The bed reads the chain in-process (under the node's lock), not through the HTTP server.
        self._market = self.node.w3.eth.contract(address=market, abi=MARKET_ABI)
        self._channels = self.node.w3.eth.contract(address=channels, abi=CHANNELS_ABI)
        self.channels = self.trade
        self._fees: dict[str, int] = {}
        self._owed_calls: dict[tuple[str, str], str] = {}  # (contract, party) -> the call data of owed(party)
        self._fees_scanned_to = self.start_block

    def _deploy(self) -> tuple[str, str]:
        with self.node.lock:
            return deploy_contracts(self.node.w3, trade_key(self.accounts["owner"]), capacity_wh=self.capacity_wh,
                                    tax_bps=self.tax_bps, evm_version=self.evm_version, priority_fee_wei=0)

    def _open(self, market: str, channels: str, **settings) -> EthereumTrade:
        settings = {"monotonic": self._monotonic, **settings}
        trade = EthereumTrade.connect(self.node.rpc_url, timeout_s=10.0, chain_id=self.node.chain_id,
                                      mnemonic=TEST_MNEMONIC, accounts=self.accounts, market=market,
                                      channels=channels, priority_fee_wei=0, **settings)
        self._opened.append(trade)
        return trade

    def fund(self, socket_id: str, amount: int) -> None:
        self.node.send_value(self.trade.party_for(socket_id), amount)

    def funds(self, party: str) -> int:
        tester = self.node.tester
        with self.node.lock:
            balance = tester.get_balance(party)
            owed = self._owed(self._market, party) + self._owed(self._channels, party)
        return balance + owed + self._fees_paid(party)

    def _owed(self, contract: Contract, party: str) -> int:
        """contract.owed(party), asked of eth-tester itself: the same call as through web3's in-process client,
        without the half of its time that client spent on formatting; snapshot() asks it of every party."""
        key = (contract.address, party)
        if key not in self._owed_calls:
            self._owed_calls[key] = contract.encode_abi("owed", [party])
        answer = self.node.tester.call({"from": self.node.accounts[0], "to": contract.address,
                                        "data": self._owed_calls[key]})
        (owed,) = abi_decode(["uint256"], bytes.fromhex(answer[2:]))
        return owed

    def _fees_paid(self, party: str) -> int:
        """Every fee `party` paid for its transactions since the bed started (0 on this chain, but counted)."""
        w3 = self.node.w3
        with self.node.lock:
            head = w3.eth.block_number
            for number in range(self._fees_scanned_to + 1, head + 1):
                for tx in w3.eth.get_block(number, full_transactions=True)["transactions"]:
                    receipt = w3.eth.get_transaction_receipt(tx["hash"])
                    sender = tx["from"].lower()
                    self._fees[sender] = (self._fees.get(sender, 0)
                                          + receipt["gasUsed"] * receipt["effectiveGasPrice"])
            self._fees_scanned_to = max(self._fees_scanned_to, head)
        return self._fees.get(party.lower(), 0)

    def _monotonic(self) -> float:
        """The trade's clock: real seconds plus every jump of the chain's time, as if that time had passed (so
        what EthereumTrade caches for `voucher_cache_s` ages with the chain as it would on a real one)."""
        return time.monotonic() + self._travelled

    def travel_to(self, t: int) -> None:
        with self.node.lock:
            before = self.node.w3.eth.get_block("latest")["timestamp"]
        travel(self.node, t)
        self._travelled += max(0, t - before)

    def same_contracts(self, **settings) -> EthereumTrade:
        """Another EthereumTrade with the same keys on the same contracts (another process of the controller, say),
        built with `settings` (voucher_cache_s, monotonic)."""
        return self._open(self.trade.market_address, self.trade.channels_address, **settings)

    def other_domain(self) -> EthereumTrade:
        """The same keys on another deployment of the contracts (another verifying contract)."""
        market, channels = self._deploy()
        return self._open(market, channels)

    def close(self) -> None:
        for trade in self._opened:
            trade.disconnect()
        self.node.stop()


def make_bed(tmp_path: Path, *, capacity_wh: int, tax_bps: int) -> EthereumTradeBed:
    return EthereumTradeBed(capacity_wh=capacity_wh, tax_bps=tax_bps)
