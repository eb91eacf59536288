"""What EthereumTrade's market and channel operations share: the socket keys, the two contracts and
the transactions sent to them.

Keys. Each socket trades with its own key, derived from the controller's BIP-39 mnemonic at
m/44'/60'/0'/1/<index> (branch 1): never the socket's top-up address m/44'/60'/0'/0/<index>, so trade
money is never mistaken for a tenant's deposit. Unlike EthereumLedger, this class signs: it keeps the
socket keys (not the phrase) in memory.

Transactions. Every operation is checked first with eth_estimateGas, which runs it against the chain's
state without spending anything: a refusal raises the specific payg error (the contracts' revert
strings are mapped to error classes) and no gas is paid. Then it is signed, sent and its receipt
awaited (one block). Should it still revert on chain (the state changed in between), the revert is
replayed with eth_call and mapped the same way; the gas of a reverted transaction is spent.
A node that cannot be reached or answers badly raises LedgerUnavailable (the endpoint is named
without its path, which often carries an API key).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from web3 import Web3
from web3.exceptions import ContractLogicError, Web3RPCError

from ledgers.ethereum.abi import CHANNELS_ABI, MARKET_ABI, refusal
from ledgers.ethereum.keys import derive_trade_keys
from ledgers.ethereum.node import (
    ADDRESS,
    REFUSED_FOR_FUNDS,
    Node,
    OverHttp,
    as_hex,
    contract_address,
    require_int,
    rpc_message,
    scrub,
)
from payg.errors import InsufficientFunds, TradeRefused, UnknownSocket


class TradeClient(OverHttp):
    """The keys, contracts and transactions of EthereumTrade (its operations are in channels.py and trade.py)."""

    name = "ethereum"

    def __init__(self, w3: Web3, *, chain_id: int, mnemonic: str, accounts: Mapping[str, int], market: str,
                 channels: str, endpoint: str = "", receipt_timeout_s: float = 120.0,
                 priority_fee_wei: int | None = None, gas_margin_percent: int = 25, voucher_cache_s: float = 1.0,
                 monotonic: Callable[[], float] = time.monotonic):
        """Builds without contacting the node. `priority_fee_wei`: the tip per gas (None: the node's suggestion).
        `voucher_cache_s`: how long a voucher check reuses the latest block it read (channels.py says why that is
        safe); `monotonic` is the clock it measures that by. `EthereumTrade.connect(rpc_url, timeout_s=...,
        **these)` builds it on an HTTP endpoint."""
        require_int("chain_id", chain_id, minimum=1)
        if isinstance(voucher_cache_s, bool) or not isinstance(voucher_cache_s, (int, float)) \
                or not 0 <= voucher_cache_s <= 60:
            raise ValueError(f"voucher_cache_s is a number of seconds from 0 to 60, got {voucher_cache_s!r}")
        require_int("gas_margin_percent", gas_margin_percent, minimum=0)
        if priority_fee_wei is not None:
            require_int("priority_fee_wei", priority_fee_wei, minimum=0)
        self.w3 = w3
        self.chain_id = chain_id
        self.market_address = contract_address("market", market)
        self.channels_address = contract_address("channels", channels)
        self._node = Node(w3, chain_id, endpoint)
        self.endpoint = self._node.endpoint
        self.receipt_timeout_s = receipt_timeout_s
        self.priority_fee_wei = priority_fee_wei
        self.gas_margin_percent = gas_margin_percent
        self.voucher_cache_s = float(voucher_cache_s)
        self._monotonic = monotonic
        self._head: tuple[int, bytes, int, float] | None = None  # the latest block read: number, hash, time, read at
        self._voucher_cache: dict[tuple[int, bytes, str], Any] = {}  # (block number, hash, channel) -> Channel
        self._cache_lock = threading.Lock()
        self.preflight = True  # False only in tests that send what the contracts must refuse on chain
        self._keys = derive_trade_keys(mnemonic, accounts)
        self._sockets = {account.address.lower(): socket_id for socket_id, account in self._keys.items()}
        self._market = w3.eth.contract(address=self.market_address, abi=MARKET_ABI)
        self._channels = w3.eth.contract(address=self.channels_address, abi=CHANNELS_ABI)
        self._lock = threading.RLock()
        self._immutables: dict[str, Any] = {}
        self._adverts: dict[int, tuple[str, int, int, int]] = {}  # id -> (producer, energy, min price, posted at)
        self._settled_upto = 0  # every advert up to this id has nothing left (sold out or returned)
        self._parties: dict[int, tuple[str, str]] = {}  # channel id -> (sender, recipient)

    def disconnect(self) -> None:
        """Closes the HTTP session (`close` is the channel operation)."""
        self._close_session()

    shutdown = disconnect  # the name every trade backend releases its resources by

    def party_for(self, socket_id: str) -> str:
        return self._account(socket_id).address

    def socket_of(self, party: str) -> str | None:
        return self._sockets.get(str(party).lower())

    def now(self) -> int:
        with self._node.errors():
            self._node.check_chain_id()
            return int(self.w3.eth.get_block("latest")["timestamp"])

    def domain(self) -> str:
        return f"ethereum:{self.chain_id}:{self.channels_address}"

    def _immutable(self, name: str, contract: Any = None) -> Any:
        contract = contract if contract is not None else self._market
        key = f"{contract.address}:{name}"
        if key not in self._immutables:
            self._immutables[key] = getattr(contract.functions, name)().call()
        return self._immutables[key]

    def _next_block_time(self) -> int:
        """The earliest time a transaction sent now can be mined at: one second after the latest block."""
        return int(self.w3.eth.get_block("latest")["timestamp"]) + 1

    def _block_time(self, receipt: Any) -> int:
        with self._node.errors():
            return int(self.w3.eth.get_block(receipt["blockNumber"])["timestamp"])

    def _account(self, socket: Any) -> Any:
        if not isinstance(socket, str):
            return socket  # already an account
        try:
            return self._keys[socket]
        except KeyError:
            raise UnknownSocket(socket) from None

    def _transact(self, socket: Any, call: Any, value: int = 0) -> Any:
        """Pre-flight (estimate), sign, send and wait for one call; the receipt. Refusals raise the payg error."""
        account = self._account(socket)
        with self._lock, self._node.errors():
            self._node.check_chain_id()
            balance = self.w3.eth.get_balance(account.address)
            if balance < value:
                raise InsufficientFunds(f"{account.address} holds {balance} wei, {value} wei needed (plus gas)")
            tx: dict[str, Any] = {"from": account.address, "value": value}
            if self.preflight:
                gas = self._refusal_or(lambda: call.estimate_gas({**tx, "gasPrice": 0}))
                gas = gas + gas * self.gas_margin_percent // 100
            else:
                gas = 1_000_000
            base_fee = int(self.w3.eth.get_block("latest").get("baseFeePerGas", 0) or 0)
            tip = self.priority_fee_wei if self.priority_fee_wei is not None else int(self.w3.eth.max_priority_fee)
            max_fee = 2 * base_fee + tip
            if self.preflight and balance < value + gas * max_fee:
                raise InsufficientFunds(f"{account.address} holds {balance} wei: {value} wei and up to"
                                        f" {gas * max_fee} wei of gas needed")
            built = call.build_transaction({
                **tx, "nonce": self.w3.eth.get_transaction_count(account.address, "pending"),
                "chainId": self.chain_id, "gas": gas, "maxFeePerGas": max_fee, "maxPriorityFeePerGas": tip})
            signed = account.sign_transaction(built)
            tx_hash = self._refusal_or(lambda: self.w3.eth.send_raw_transaction(signed.raw_transaction))
            receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=self.receipt_timeout_s,
                                                               poll_latency=0.1)
            self._head = None  # our own transaction is in a newer block: the next voucher check reads it
            if receipt["status"] != 1:
                # The state changed between the estimate and the block: find out why by replaying it.
                self._refusal_or(lambda: call.call(tx, block_identifier=receipt["blockNumber"]))
                raise TradeRefused(f"transaction {as_hex(tx_hash)} reverted on chain (it passes now: the state"
                                   " changed in between); nothing moved but its gas")
            return receipt

    def _refusal_or(self, action: Callable[[], Any]) -> Any:
        """Runs `action`; a contract revert or a node refusing for funds becomes the payg error."""
        try:
            return action()
        except ContractLogicError as exc:
            raise _refusal(exc) from None
        except Web3RPCError as exc:
            message = rpc_message(exc)
            if REFUSED_FOR_FUNDS.search(message):
                raise InsufficientFunds(f"the node refused the transaction: {scrub(_plain(message))}") from None
            raise


def _refusal(exc: ContractLogicError) -> Exception:
    message = str(exc.message or exc)
    reason = message.split("execution reverted:", 1)[-1].strip().strip("'\"")
    return refusal(reason) or TradeRefused(f"refused by the contract: {scrub(reason) or 'reverted without a reason'}")


def _plain(message: str) -> str:
    return re.sub(r"b'[^']*'", "the sender", message)


def party_address(party: object) -> str:
    if not isinstance(party, str) or not ADDRESS.fullmatch(party):
        raise ValueError(f"a party is a 0x Ethereum address (40 hex digits), got {party!r}")
    if int(party, 16) == 0:
        raise ValueError("the zero address is nobody's party")
    return Web3.to_checksum_address(party)


def id_number(value: object, error: type[Exception], what: str) -> int:
    text = str(value)
    if not text.isdigit() or len(text) > 78:
        raise error(f"no {what} {value!r}: {what} ids here are decimal numbers")
    return int(text)
