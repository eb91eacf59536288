"""The market and channel contracts, and EthereumTrade over them.

Part 1 talks to the contracts directly, with raw transactions from eth-tester accounts that carry an
explicit gas limit (so nothing is estimated first and every transaction really executes): it shows
that the contracts enforce every rule on their own, whatever a client sends. Part 2 tests what
EthereumTrade adds: pre-flight refusals that cost nothing, reverts mapped to payg errors, off-chain
voucher checks, keys, and node failures. Part 3: compilation and the paris build on a paris VM.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from eth.vm.forks import ParisVM
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_tester import EthereumTester, PyEVMBackend
from eth_tester.exceptions import TransactionFailed
from eth_utils import keccak
from vyper.compiler import compile_code
from vyper.compiler.settings import Settings
from web3 import EthereumTesterProvider, Web3
from web3.exceptions import ContractLogicError
from web3.logs import DISCARD

from ledgers.ethereum import (
    CHANNELS_ABI,
    MARKET_ABI,
    REVERTS,
    SECP256K1_N,
    EthereumLedger,
    EthereumTrade,
    deploy_contracts,
    voucher_typed_data,
)
from ledgers.ethereum.contracts import CONTRACTS_DIR, compile_contract
from payg.domain.market import Voucher, price_per_wh, tax_on
from payg.errors import (
    AboveEscrow,
    AdvertNotExpired,
    BadSignature,
    CapacityExceeded,
    ChannelClosed,
    ChannelExpired,
    ChannelNotExpired,
    ExpiryNotExtended,
    InsufficientFunds,
    InvalidAmount,
    LedgerUnavailable,
    NotAuthorised,
    NotEnoughEnergy,
    PriceAboveLimit,
    RoleConflict,
    UnknownAdvert,
    UnknownChannel,
    UnknownSocket,
    WrongChannel,
    WrongDomain,
)
from tests.support import ROOT
from tests.support.evm_node import EvmNode
from tests.support.ledger_beds_ethereum import TEST_MNEMONIC
from tests.support.trade_beds_ethereum import trade_key, travel

HOUR = 3600
PRICE = 10**9
CAPACITY = 1_000
TAX_BPS = 500
REGULATOR, PRODUCER, CONSUMER = 1, 2, 3


class Chain:
    """A market and a channel manager deployed by accounts[0] (the owner); roles granted as named."""

    def __init__(self, node: EvmNode, evm_version: str = "prague"):
        self.node = node
        self.w3 = node.w3
        a = node.accounts
        self.owner, self.reg, self.reg2, self.prod, self.prod2, self.cons, self.cons2, self.out = a[:8]
        self.keys = {Web3.to_checksum_address(k.public_key.to_checksum_address()): bytes(k.to_bytes())
                     for k in node.tester.backend.account_keys}
        self.market = self.deploy("market", CAPACITY, TAX_BPS, evm_version=evm_version)
        self.channels = self.deploy("channels", evm_version=evm_version)
        self.send(self.market.functions.grant(self.reg, REGULATOR), self.owner)
        self.send(self.market.functions.grant(self.reg2, REGULATOR), self.owner)
        for party, role in ((self.prod, PRODUCER), (self.prod2, PRODUCER), (self.cons, CONSUMER),
                            (self.cons2, CONSUMER)):
            self.send(self.market.functions.grant(party, role), self.reg)

    def deploy(self, name: str, *args, evm_version: str = "prague", sender: str | None = None):
        abi, bytecode = compile_contract(name, evm_version)
        tx_hash = self.w3.eth.contract(abi=abi, bytecode=bytecode).constructor(*args).transact(
            {"from": sender or self.owner, "gas": 5_000_000})
        receipt = self.w3.eth.get_transaction_receipt(tx_hash)
        assert receipt["status"] == 1
        return self.w3.eth.contract(address=receipt["contractAddress"], abi=abi)

    def send(self, call, sender: str, value: int = 0):
        """Sent with a gas limit, so it runs on chain even if it must fail; the receipt of a success."""
        tx_hash = call.transact({"from": sender, "value": value, "gas": 1_000_000})
        receipt = self.w3.eth.get_transaction_receipt(tx_hash)
        assert receipt["status"] == 1
        return receipt

    def refused(self, reason: str, call, sender: str, value: int = 0) -> None:
        """The call reverts with `reason` (asked of the pending block), and sent anyway it fails on chain."""
        with pytest.raises((TransactionFailed, ContractLogicError)) as info:
            call.call({"from": sender, "value": value}, block_identifier="pending")
        assert reason in str(info.value), f"expected the revert {reason!r}, got {info.value}"
        tx_hash = call.transact({"from": sender, "value": value, "gas": 1_000_000})
        assert self.w3.eth.get_transaction_receipt(tx_hash)["status"] == 0

    def at(self, t: int) -> None:
        """The next transaction is mined at time t exactly."""
        self.node.tester.time_travel(t)

    def block_time(self, receipt) -> int:
        return self.w3.eth.get_block(receipt["blockNumber"])["timestamp"]

    def post(self, energy: int = 100, price: int = PRICE, producer: str | None = None, sweep=()) -> tuple[int, int]:
        receipt = self.send(self.market.functions.postAdvert(energy, price, list(sweep)), producer or self.prod)
        event = self.market.events.AdvertPosted().process_receipt(receipt, errors=DISCARD)[0]["args"]
        return event["advert_id"], event["posted_at"]

    def buy(self, advert_id: int, energy: int, price: int, consumer: str | None = None, extra: int = 0):
        cost = energy * price
        return self.send(self.market.functions.buy(advert_id, energy, price), consumer or self.cons,
                         cost + tax_on(cost, TAX_BPS) + extra)

    def state(self) -> tuple:
        m = self.market.functions
        return (m.advertisedWh().call(), m.lastAdvertId().call(),
                tuple(m.owed(p).call() for p in (self.owner, self.reg, self.reg2, self.prod, self.cons)),
                self.w3.eth.get_balance(self.market.address), self.channels.functions.lastChannelId().call(),
                self.w3.eth.get_balance(self.channels.address))

    # vouchers
    def voucher(self, channel_id: int, amount: int, signer: str | None = None, *, chain_id: int | None = None,
                contract: str | None = None) -> bytes:
        message = voucher_typed_data(chain_id or self.node.chain_id, contract or self.channels.address,
                                     channel_id, amount)
        return bytes(Account.sign_typed_data(self.keys[signer or self.cons], full_message=message).signature)

    def open(self, escrow: int = 10**12, expiry_in: int = 600, sender: str | None = None,
             recipient: str | None = None) -> tuple[int, int]:
        expiry = self.w3.eth.get_block("latest")["timestamp"] + expiry_in
        receipt = self.send(self.channels.functions.open(recipient or self.prod, expiry), sender or self.cons, escrow)
        opened = self.channels.events.ChannelOpened().process_receipt(receipt, errors=DISCARD)[0]
        return opened["args"]["channel_id"], expiry

    def channel(self, channel_id: int, sender: str | None = None, recipient: str | None = None) -> tuple:
        return self.channels.functions.channel(channel_id, sender or self.cons, recipient or self.prod).call()


@pytest.fixture(scope="module")
def shared_chain():
    return Chain(EvmNode())


@pytest.fixture
def chain(shared_chain):
    snapshot = shared_chain.node.snapshot()
    yield shared_chain
    shared_chain.node.revert(snapshot)


def test_roles_owner_regulators_producers_consumers(chain):
    m = chain.market.functions
    assert m.owner().call() == chain.owner
    assert [m.roleOf(p).call() for p in (chain.owner, chain.reg, chain.prod, chain.cons, chain.out)] == [0, 1, 2, 3, 0]
    assert m.admittedBy(chain.prod).call() == chain.reg
    chain.refused("not authorised", m.grant(chain.out, REGULATOR), chain.reg)       # only the owner
    chain.refused("not authorised", m.grant(chain.out, PRODUCER), chain.owner)      # the owner is no regulator
    chain.refused("not authorised", m.grant(chain.out, CONSUMER), chain.prod)
    chain.refused("role conflict", m.grant(chain.cons, PRODUCER), chain.reg)        # never both
    chain.refused("role conflict", m.grant(chain.prod, PRODUCER), chain.reg2)       # already held
    chain.refused("role conflict", m.grant(chain.owner, CONSUMER), chain.reg)       # the owner holds none
    chain.refused("role conflict", m.grant(chain.reg2, CONSUMER), chain.reg)
    chain.refused("invalid role", m.grant(chain.out, 4), chain.reg)
    chain.refused("invalid party", m.grant("0x" + "00" * 20, CONSUMER), chain.reg)
    chain.refused("not authorised", m.revoke(chain.reg), chain.reg2)
    chain.refused("not authorised", m.revoke(chain.prod), chain.cons)
    chain.refused("not authorised", m.revoke(chain.prod), chain.owner)              # regulators remove producers
    chain.refused("no role", m.revoke(chain.out), chain.reg)
    chain.send(m.revoke(chain.cons), chain.reg2)                                    # any regulator
    chain.send(m.grant(chain.cons, PRODUCER), chain.reg2)                           # a new role once revoked
    assert m.roleOf(chain.cons).call() == PRODUCER and m.admittedBy(chain.cons).call() == chain.reg2
    chain.send(m.revoke(chain.reg), chain.owner)
    chain.refused("not authorised", m.grant(chain.out, CONSUMER), chain.reg)        # no longer a regulator


def test_constructor_bounds():
    chain_node = EvmNode()
    abi, bytecode = compile_contract("market")
    factory = chain_node.w3.eth.contract(abi=abi, bytecode=bytecode)
    for capacity, tax in ((999, 0), (1_000_001, 0), (1_000, 10_001)):
        receipt = chain_node.w3.eth.get_transaction_receipt(
            factory.constructor(capacity, tax).transact({"from": chain_node.accounts[0], "gas": 5_000_000}))
        assert receipt["status"] == 0
    for capacity, tax in ((1_000, 0), (1_000_000, 10_000)):
        receipt = chain_node.w3.eth.get_transaction_receipt(
            factory.constructor(capacity, tax).transact({"from": chain_node.accounts[0], "gas": 5_000_000}))
        assert receipt["status"] == 1


def test_post_advert_producer_only_with_sequential_ids_and_capacity(chain):
    m = chain.market.functions
    chain.refused("not authorised", m.postAdvert(10, PRICE, []), chain.cons)
    chain.refused("not authorised", m.postAdvert(10, PRICE, []), chain.reg)
    chain.refused("invalid amount", m.postAdvert(0, PRICE, []), chain.prod)
    chain.refused("invalid amount", m.postAdvert(10, 0, []), chain.prod)
    chain.refused("invalid amount", m.postAdvert(10, 2**128, []), chain.prod)
    assert chain.post(600)[0] == 1
    assert chain.post(400, producer=chain.prod2)[0] == 2
    before = chain.state()
    chain.refused("capacity exceeded", m.postAdvert(1, PRICE, []), chain.prod)
    assert chain.state() == before
    # Energy sold leaves the grid's advertised total.
    chain.buy(1, 10, PRICE)
    assert m.advertisedWh().call() == 990
    assert chain.post(10)[0] == 3
    assert m.advert(1).call() == [chain.prod, 600, 590, PRICE, m.advert(1).call()[4]]
    assert m.advert(99).call()[0] == "0x" + "00" * 20


def test_price_steps_every_full_hour_and_expiry_at_three_hours(chain):
    advert_id, posted = chain.post(100)
    for offset, expected in ((1, PRICE), (HOUR - 1, PRICE), (HOUR, PRICE * 110 // 100),
                             (2 * HOUR + 59 * 60, PRICE * 120 // 100), (3 * HOUR - 1, PRICE * 120 // 100)):
        if offset > 1:
            chain.at(posted + offset)
        receipt = chain.buy(advert_id, 1, expected)
        assert chain.block_time(receipt) == posted + offset  # the first buy is in the next block
        bought = chain.market.events.Bought().process_receipt(receipt, errors=DISCARD)[0]["args"]
        assert bought["price_per_wh"] == expected == price_per_wh(PRICE, posted, posted + offset)
        assert bought["tax_amount"] == tax_on(expected, TAX_BPS)
    chain.at(posted + 3 * HOUR)
    before = chain.state()
    chain.refused("advert expired", chain.market.functions.buy(advert_id, 1, 10 * PRICE), chain.cons, 10 * PRICE)
    assert chain.state() == before


def test_buy_pays_exactly_the_producer_and_the_tax_into_owed(chain):
    m = chain.market.functions
    advert_id, _ = chain.post(100)
    cost = 10 * PRICE
    tax = tax_on(cost, TAX_BPS)
    before = chain.state()
    chain.refused("insufficient payment", m.buy(advert_id, 10, PRICE), chain.cons, cost + tax - 1)
    chain.refused("price above limit", m.buy(advert_id, 10, PRICE - 1), chain.cons, cost + tax)
    chain.refused("not enough energy", m.buy(advert_id, 101, PRICE), chain.cons, 101 * PRICE * 2)
    chain.refused("invalid amount", m.buy(advert_id, 0, PRICE), chain.cons, 0)
    chain.refused("unknown advert", m.buy(7, 1, PRICE), chain.cons, 2 * PRICE)
    chain.refused("not authorised", m.buy(advert_id, 1, PRICE), chain.prod2, 2 * PRICE)   # a producer
    chain.refused("not authorised", m.buy(advert_id, 1, PRICE), chain.out, 2 * PRICE)
    assert chain.state() == before
    receipt = chain.buy(advert_id, 10, PRICE)
    bought = chain.market.events.Bought().process_receipt(receipt, errors=DISCARD)[0]["args"]
    assert (bought["producer_amount"], bought["tax_amount"], bought["regulator"]) == (cost, tax, chain.reg)
    assert m.owed(chain.prod).call() == cost and m.owed(chain.reg).call() == tax
    assert chain.w3.eth.get_balance(chain.market.address) == cost + tax
    # Paying more is allowed: the excess is the buyer's to withdraw.
    chain.buy(advert_id, 1, PRICE, extra=7)
    assert m.owed(chain.cons).call() == 7
    assert m.advert(advert_id).call()[2] == 89


def test_tax_goes_to_the_owner_once_the_admitting_regulator_is_gone(chain):
    m = chain.market.functions
    advert_id, _ = chain.post(100)
    chain.send(m.revoke(chain.reg), chain.owner)
    receipt = chain.buy(advert_id, 10, PRICE)
    assert chain.market.events.Bought().process_receipt(receipt, errors=DISCARD)[0]["args"]["regulator"] == chain.owner
    assert m.owed(chain.owner).call() == tax_on(10 * PRICE, TAX_BPS) and m.owed(chain.reg).call() == 0


def test_expired_energy_returns_and_frees_capacity(chain):
    m = chain.market.functions
    first, posted = chain.post(600)
    chain.buy(first, 100, PRICE)
    chain.post(400, producer=chain.prod2)
    chain.refused("capacity exceeded", m.postAdvert(101, PRICE, []), chain.prod)
    chain.refused("advert not expired", m.expire(first), chain.out)
    chain.refused("unknown advert", m.expire(42), chain.out)
    chain.at(posted + 3 * HOUR)
    # Listing an expired advert when posting returns its energy in the same transaction; unexpired or
    # unknown ids in the list are skipped.
    advert_id, _ = chain.post(500, sweep=[first, 2, 42, first])
    assert m.advert(first).call()[2] == 0 and m.advertisedWh().call() == 900
    assert m.expire(first).call({"from": chain.out}) == 0
    chain.refused("capacity exceeded", m.postAdvert(101, PRICE, []), chain.prod)  # nothing else listed
    chain.at(chain.w3.eth.get_block("latest")["timestamp"] + 3 * HOUR)
    receipt = chain.send(m.expire(2), chain.out)   # anyone
    assert chain.market.events.AdvertReturned().process_receipt(receipt, errors=DISCARD)[0]["args"]["energy_wh"] == 400
    assert m.advertisedWh().call() == 500


def test_withdraw_pays_the_caller_once(chain):
    m = chain.market.functions
    advert_id, _ = chain.post(100)
    chain.buy(advert_id, 10, PRICE)
    before = chain.w3.eth.get_balance(chain.prod)
    receipt = chain.send(m.withdraw(), chain.prod)
    fee = receipt["gasUsed"] * receipt["effectiveGasPrice"]
    assert chain.w3.eth.get_balance(chain.prod) == before + 10 * PRICE - fee
    assert m.owed(chain.prod).call() == 0 and m.withdraw().call({"from": chain.prod}) == 0
    assert m.withdraw().call({"from": chain.out}) == 0


def refusing_account(chain: Chain, funds: int = 10**18) -> Account:
    """An account that can send transactions but whose code (EIP-7702) refuses every payment to it."""
    account = Account.create()
    chain.node.send_value(account.address, funds)
    refuser = chain.node.deploy("refuse_value")
    chain.node.delegate_code(bytes(account.key), refuser.address)
    return account


def send_as(chain: Chain, account, call, value: int = 0):
    tx = call.build_transaction({"from": account.address, "value": value, "gas": 1_000_000,
                                 "nonce": chain.w3.eth.get_transaction_count(account.address)})
    receipt = chain.w3.eth.wait_for_transaction_receipt(
        chain.w3.eth.send_raw_transaction(account.sign_transaction(tx).raw_transaction))
    assert receipt["status"] == 1
    return receipt


def test_a_recipient_refusing_ether_cannot_block_a_buy(chain):
    producer = refusing_account(chain)
    assert chain.node.receipt(chain.node.send_value(producer.address, 1))["status"] == 0  # it refuses payments
    chain.send(chain.market.functions.grant(producer.address, PRODUCER), chain.reg)
    receipt = send_as(chain, producer, chain.market.functions.postAdvert(50, PRICE, []))
    advert_id = chain.market.events.AdvertPosted().process_receipt(receipt, errors=DISCARD)[0]["args"]["advert_id"]
    chain.buy(advert_id, 5, PRICE)
    assert chain.market.functions.owed(producer.address).call() == 5 * PRICE


def test_channel_ids_are_sequential_and_never_reused(chain):
    c = chain.channels.functions
    assert c.lastChannelId().call() == 0
    first, expiry = chain.open(10**12)
    assert first == 1 and chain.channel(1) == [1, 10**12, 0, expiry]
    chain.send(c.close(1, chain.cons, 10, chain.voucher(1, 10)), chain.prod)
    second, _ = chain.open(10**12)
    assert second == 2 and chain.channel(1)[0] == 2
    chain.refused("unknown channel", c.topUp(3, chain.prod, expiry), chain.cons)
    chain.refused("unknown channel", c.close(0, chain.cons, 1, chain.voucher(0, 1)), chain.prod)


def test_open_refuses_nonsense(chain):
    c = chain.channels.functions
    expiry = chain.w3.eth.get_block("latest")["timestamp"] + 600
    chain.refused("invalid amount", c.open(chain.prod, expiry), chain.cons, 0)
    chain.refused("invalid recipient", c.open(chain.cons, expiry), chain.cons, 1)
    chain.refused("invalid recipient", c.open("0x" + "00" * 20, expiry), chain.cons, 1)
    chain.refused("channel expired", c.open(chain.prod, expiry - 600), chain.cons, 1)
    chain.refused("invalid expiry", c.open(chain.prod, 2**40), chain.cons, 1)


def test_top_up_sender_only_and_only_extends(chain):
    c = chain.channels.functions
    channel_id, expiry = chain.open(1000)
    chain.refused("not authorised", c.topUp(channel_id, chain.prod, expiry), chain.out, 5)
    chain.refused("not authorised", c.topUp(channel_id, chain.cons, expiry), chain.prod, 5)  # the recipient
    chain.refused("expiry not extended", c.topUp(channel_id, chain.prod, expiry - 1), chain.cons, 5)
    chain.send(c.topUp(channel_id, chain.prod, expiry), chain.cons, 500)
    chain.send(c.topUp(channel_id, chain.prod, expiry + 100), chain.cons, 0)
    assert chain.channel(channel_id) == [1, 1500, 0, expiry + 100]
    chain.at(expiry + 100)
    chain.refused("channel expired", c.topUp(channel_id, chain.prod, expiry + 1000), chain.cons, 5)


def test_close_recipient_only_before_expiry_with_the_senders_voucher(chain):
    c = chain.channels.functions
    channel_id, expiry = chain.open(1000)
    voucher = chain.voucher(channel_id, 400)
    before = chain.state()
    chain.refused("not authorised", c.close(channel_id, chain.cons, 400, voucher), chain.out)
    chain.refused("not authorised", c.close(channel_id, chain.prod, 400, voucher), chain.cons)  # the sender
    chain.refused("above escrow", c.close(channel_id, chain.cons, 1001, chain.voucher(channel_id, 1001)), chain.prod)
    chain.refused("bad signature", c.close(channel_id, chain.cons, 401, voucher), chain.prod)   # another amount
    chain.refused("bad signature", c.close(channel_id, chain.cons, 400, chain.voucher(channel_id + 1, 400)),
                  chain.prod)                                                                    # another channel
    chain.refused("bad signature", c.close(channel_id, chain.cons, 400, chain.voucher(channel_id, 400, chain.prod)),
                  chain.prod)                                                                    # not the sender
    assert chain.state() == before
    sender_before, recipient_before = chain.w3.eth.get_balance(chain.cons), chain.w3.eth.get_balance(chain.prod)
    receipt = chain.send(c.close(channel_id, chain.cons, 400, voucher), chain.prod)
    fee = receipt["gasUsed"] * receipt["effectiveGasPrice"]
    assert chain.w3.eth.get_balance(chain.prod) == recipient_before + 400 - fee
    assert chain.w3.eth.get_balance(chain.cons) == sender_before + 600
    assert chain.channel(channel_id) == [2, 1000, 400, expiry]
    # Replaying the voucher, or any later one, is refused: the channel is closed for good.
    chain.refused("channel closed", c.close(channel_id, chain.cons, 400, voucher), chain.prod)
    chain.refused("channel closed", c.close(channel_id, chain.cons, 500, chain.voucher(channel_id, 500)), chain.prod)
    chain.refused("channel closed", c.topUp(channel_id, chain.prod, expiry), chain.cons, 1)
    chain.at(expiry)
    chain.refused("channel closed", c.reclaim(channel_id, chain.prod), chain.cons)


def test_close_at_the_expiry_is_too_late(chain):
    channel_id, expiry = chain.open(1000)
    chain.at(expiry - 1)
    chain.send(chain.channels.functions.close(channel_id, chain.cons, 1, chain.voucher(channel_id, 1)), chain.prod)
    other, expiry = chain.open(1000)
    chain.at(expiry)
    chain.refused("channel expired", chain.channels.functions.close(other, chain.cons, 1, chain.voucher(other, 1)),
                  chain.prod)


def malleated(signature: bytes) -> bytes:
    """The other valid signature of the same message: (r, n - s, v flipped)."""
    s = int.from_bytes(signature[32:64], "big")
    return signature[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - signature[64]])


def test_malleated_malformed_and_foreign_signatures_are_refused(chain):
    c = chain.channels.functions
    channel_id, _ = chain.open(1000)
    voucher = chain.voucher(channel_id, 100)
    high_s = malleated(voucher)
    # The high-s twin does recover to the sender with a plain ecrecover; the contract refuses it anyway.
    message = encode_typed_data(full_message=voucher_typed_data(chain.node.chain_id, chain.channels.address,
                                                                channel_id, 100))
    assert Account.recover_message(message, vrs=(high_s[64], int.from_bytes(high_s[:32], "big"),
                                                 int.from_bytes(high_s[32:64], "big"))) == chain.cons
    assert c.voucherSigner(channel_id, 100, high_s).call() == "0x" + "00" * 20
    bad = {
        "high s": high_s,
        "v 0": voucher[:64] + bytes([voucher[64] - 27]),
        "v 29": voucher[:64] + b"\x1d",
        "r 0 (recovers to the zero address)": bytes(32) + voucher[32:],
        "r off the curve": (2**256 - 1).to_bytes(32, "big") + voucher[32:],
        "64 bytes": voucher[:64],
        "other chain id": chain.voucher(channel_id, 100, chain_id=chain.node.chain_id + 1),
        "other contract": chain.voucher(channel_id, 100, contract=chain.market.address),
    }
    for what, signature in bad.items():
        assert c.voucherSigner(channel_id, 100, signature).call() != chain.cons, what
        chain.refused("bad signature", c.close(channel_id, chain.cons, 100, signature), chain.prod)
    assert c.voucherSigner(channel_id, 100, voucher).call() == chain.cons
    chain.send(c.close(channel_id, chain.cons, 100, voucher), chain.prod)


def test_domain_separator_is_eip712(chain):
    domain = {"name": "payg channels", "version": "1", "chainId": chain.node.chain_id,
              "verifyingContract": chain.channels.address}
    full = voucher_typed_data(chain.node.chain_id, chain.channels.address, 1, 1)
    assert encode_typed_data(full_message=full).header == chain.channels.functions.DOMAIN_SEPARATOR().call()
    assert domain == full["domain"]


def test_reclaim_sender_only_after_expiry(chain):
    c = chain.channels.functions
    channel_id, expiry = chain.open(1000)
    chain.refused("not authorised", c.reclaim(channel_id, chain.prod), chain.prod)
    chain.refused("not authorised", c.reclaim(channel_id, chain.cons), chain.prod)
    chain.at(expiry - 1)
    chain.refused("channel not expired", c.reclaim(channel_id, chain.prod), chain.cons)
    before = chain.w3.eth.get_balance(chain.cons)
    receipt = chain.send(c.reclaim(channel_id, chain.prod), chain.cons)
    assert chain.block_time(receipt) == expiry
    assert chain.w3.eth.get_balance(chain.cons) == before + 1000 - receipt["gasUsed"] * receipt["effectiveGasPrice"]
    assert chain.channel(channel_id) == [3, 1000, 0, expiry]
    chain.refused("channel closed", c.reclaim(channel_id, chain.prod), chain.cons)
    chain.refused("channel closed", c.close(channel_id, chain.cons, 1, chain.voucher(channel_id, 1)), chain.prod)


def test_a_sender_refusing_ether_cannot_block_the_close(chain):
    sender = refusing_account(chain)
    expiry = chain.w3.eth.get_block("latest")["timestamp"] + 600
    receipt = send_as(chain, sender, chain.channels.functions.open(chain.prod, expiry), 1000)
    channel_id = chain.channels.events.ChannelOpened().process_receipt(receipt, errors=DISCARD)[0]["args"]["channel_id"]
    message = voucher_typed_data(chain.node.chain_id, chain.channels.address, channel_id, 300)
    signature = bytes(Account.sign_typed_data(bytes(sender.key), full_message=message).signature)
    receipt = chain.send(chain.channels.functions.close(channel_id, sender.address, 300, signature), chain.prod)
    assert chain.channels.events.ChannelClosed().process_receipt(receipt, errors=DISCARD)[0]["args"]["refunded"] == 700
    assert chain.channels.functions.owed(sender.address).call() == 700


REENTRANT = """
# pragma version ~=0.4.3
interface Market:
    def postAdvert(energy_wh: uint256, min_price_per_wh: uint256, sweep: DynArray[uint256, 32]) -> uint256: nonpayable
    def withdraw() -> uint256: nonpayable

market: public(address)
attacks: public(uint256)

@deploy
def __init__(market: address):
    self.market = market

@external
def post():
    extcall Market(self.market).postAdvert(10, 1000000000, [])

@external
def attack():
    extcall Market(self.market).withdraw()

@external
@payable
def __default__():
    self.attacks += 1
    extcall Market(self.market).withdraw()
"""


def test_withdraw_cannot_be_reentered(chain):
    out = compile_code(REENTRANT, output_formats=["abi", "bytecode"])
    factory = chain.w3.eth.contract(abi=out["abi"], bytecode=out["bytecode"])
    attacker = chain.w3.eth.contract(
        address=chain.w3.eth.get_transaction_receipt(factory.constructor(chain.market.address).transact(
            {"from": chain.out, "gas": 2_000_000}))["contractAddress"], abi=out["abi"])
    chain.send(chain.market.functions.grant(attacker.address, PRODUCER), chain.reg)
    chain.send(attacker.functions.post(), chain.out)
    chain.buy(1, 10, PRICE)
    before = chain.state()
    tx_hash = attacker.functions.attack().transact({"from": chain.out, "gas": 1_000_000})
    assert chain.w3.eth.get_transaction_receipt(tx_hash)["status"] == 0
    assert chain.state() == before and chain.market.functions.owed(attacker.address).call() == 10 * PRICE


def test_every_revert_string_maps_to_a_payg_error():
    reasons = set()
    for name in ("market", "channels"):
        reasons |= set(re.findall(r'assert [^\n]*, "([^"]+)"', (CONTRACTS_DIR / f"{name}.vy").read_text()))
    assert reasons and reasons <= set(REVERTS), reasons - set(REVERTS)


def test_the_abi_the_client_uses_is_the_compiled_one():
    for name, used in (("market", MARKET_ABI), ("channels", CHANNELS_ABI)):
        compiled, _ = compile_contract(name)
        for entry in used:
            match = [c for c in compiled if c.get("name") == entry["name"] and c["type"] == entry["type"]]
            assert match, f"{name}: {entry['name']} is not in the contract"
            assert [i["type"] for i in match[0]["inputs"]] == [i["type"] for i in entry["inputs"]], entry["name"]
            if entry["type"] == "event":
                assert [i["indexed"] for i in match[0]["inputs"]] == [i["indexed"] for i in entry["inputs"]]
            else:
                assert [o["type"] for o in match[0]["outputs"]] == [o["type"] for o in entry["outputs"]]
                assert match[0]["stateMutability"] == entry["stateMutability"], entry["name"]


def test_compile_contract_validates_and_caches():
    with pytest.raises(ValueError, match="unknown contract 'token'"):
        compile_contract("token")
    with pytest.raises(ValueError, match="unsupported EVM version 'london'"):
        compile_contract("market", "london")
    assert compile_contract("market") == compile_contract("market", "prague")
    for version in ("cancun", "shanghai"):
        abi, bytecode = compile_contract("channels", version)
        assert bytecode.startswith("0x") and abi == compile_contract("channels")[0]


@pytest.mark.parametrize("name", ["market", "channels"])
def test_paris_bytecode_has_no_push0(name):
    source = (CONTRACTS_DIR / f"{name}.vy").read_text()
    for version, expected in (("paris", False), ("prague", True)):
        out = compile_code(source, output_formats=["opcodes", "opcodes_runtime", "bytecode"],
                           settings=Settings(evm_version=version))
        assert out["bytecode"] == compile_contract(name, version)[1]
        assert (" PUSH0 " in f" {out['opcodes']} {out['opcodes_runtime']} ") is expected, version


def test_the_paris_build_runs_on_a_paris_vm_and_the_prague_build_does_not():
    tester = EthereumTester(PyEVMBackend(vm_configuration=((0, ParisVM),)))
    w3 = Web3(EthereumTesterProvider(tester))
    deployer = w3.eth.accounts[0]
    abi, prague = compile_contract("channels", "prague")
    with pytest.raises((TransactionFailed, ContractLogicError, Exception)):
        receipt = w3.eth.get_transaction_receipt(w3.eth.contract(abi=abi, bytecode=prague).constructor().transact(
            {"from": deployer, "gas": 5_000_000}))
        assert receipt["status"] == 1
    # The whole flow with the paris build, including the storage reentrancy lock.
    node = EvmNode()
    node.tester = tester
    node.w3 = w3
    node.accounts = list(w3.eth.accounts)
    node.chain_id = w3.eth.chain_id
    chain = Chain(node, evm_version="paris")
    advert_id, _ = chain.post(100)
    chain.buy(advert_id, 10, PRICE)
    chain.send(chain.market.functions.withdraw(), chain.prod)
    channel_id, expiry = chain.open(1000)
    chain.send(chain.channels.functions.topUp(channel_id, chain.prod, expiry + 10), chain.cons, 10)
    chain.send(chain.channels.functions.close(channel_id, chain.cons, 10, chain.voucher(channel_id, 10)), chain.prod)
    other, expiry = chain.open(1000)
    chain.at(expiry)
    chain.send(chain.channels.functions.reclaim(other, chain.prod), chain.cons)
    assert chain.channel(channel_id)[0] == 2 and chain.channel(other)[0] == 3


SOCKETS = {"owner": 0, "reg": 1, "prod": 2, "cons": 3, "out": 4}


@pytest.fixture(scope="module")
def fee_node():
    node = EvmNode()  # base fee and tips as eth-tester sets them: every transaction costs gas
    node.start()
    yield node
    node.stop()


@pytest.fixture
def trade(fee_node):
    node = fee_node
    snapshot = node.snapshot()
    for index in SOCKETS.values():
        node.send_value(Account.from_key(trade_key(index)).address, 10**18)
    with node.lock:
        market, channels = deploy_contracts(node.w3, trade_key(0), capacity_wh=CAPACITY, tax_bps=TAX_BPS)
    trade = EthereumTrade.connect(node.rpc_url, timeout_s=2.0, chain_id=node.chain_id, mnemonic=TEST_MNEMONIC,
                                  accounts=SOCKETS, market=market, channels=channels)
    trade.node = node  # for the tests
    trade.grant("owner", trade.party_for("reg"), "regulator")
    trade.grant("reg", trade.party_for("prod"), "producer")
    trade.grant("reg", trade.party_for("cons"), "consumer")
    yield trade
    trade.disconnect()
    node.start()
    node.stall(0)
    node.answer_http_status(None)
    node.revert(snapshot)


def nonce_and_balance(trade: EthereumTrade, socket_id: str) -> tuple[int, int]:
    w3 = trade.node.w3
    with trade.node.lock:
        party = trade.party_for(socket_id)
        return w3.eth.get_transaction_count(party), w3.eth.get_balance(party)


def test_trade_keys_are_on_branch_one_not_the_top_up_addresses(trade):
    ledger = EthereumLedger(Web3(), chain_id=1, mnemonic=TEST_MNEMONIC, accounts={"cons": 3}, confirmations=1)
    Account.enable_unaudited_hdwallet_features()
    assert trade.party_for("cons") == Account.from_mnemonic(TEST_MNEMONIC, account_path="m/44'/60'/0'/1/3").address
    assert trade.party_for("cons") != ledger.address_for("cons")
    assert trade.socket_of(trade.party_for("cons").lower()) == "cons"
    with pytest.raises(UnknownSocket):
        trade.party_for("nobody")
    assert trade.domain() == f"ethereum:{trade.node.chain_id}:{trade.channels_address}"
    assert trade.market().domain == f"ethereum:{trade.node.chain_id}:{trade.market_address}"


def test_refusals_are_found_before_sending_and_cost_nothing(trade):
    advert = trade.post_advert("prod", 100, PRICE)
    checks = [
        (NotAuthorised, lambda: trade.post_advert("cons", 10, PRICE)),
        (NotAuthorised, lambda: trade.grant("prod", trade.party_for("out"), "consumer")),
        (RoleConflict, lambda: trade.grant("reg", trade.party_for("prod"), "consumer")),
        (RoleConflict, lambda: trade.revoke("reg", trade.party_for("out"))),
        (CapacityExceeded, lambda: trade.post_advert("prod", CAPACITY, PRICE)),
        (NotEnoughEnergy, lambda: trade.buy("cons", advert.advert_id, 101)),
        (PriceAboveLimit, lambda: trade.buy("cons", advert.advert_id, 1, max_price_per_wh=PRICE - 1)),
        (UnknownAdvert, lambda: trade.buy("cons", "77", 1)),
        (UnknownAdvert, lambda: trade.advert("x1")),
        (NotAuthorised, lambda: trade.buy("out", advert.advert_id, 1)),
        (AdvertNotExpired, lambda: trade.expire(advert.advert_id)),
        (InvalidAmount, lambda: trade.buy("cons", advert.advert_id, 0)),
        (UnknownChannel, lambda: trade.channel("5")),
    ]
    for error, action in checks:
        before = [nonce_and_balance(trade, s) for s in SOCKETS]
        with pytest.raises(error):
            action()
        assert [nonce_and_balance(trade, s) for s in SOCKETS] == before, error.__name__


def test_insufficient_funds_for_the_value_or_the_gas(trade):
    trade.grant("reg", trade.party_for("out"), "consumer")
    balance = nonce_and_balance(trade, "out")[1]
    assert balance == 10**18
    dear = trade.post_advert("prod", 100, 10**16)
    before = nonce_and_balance(trade, "out")
    with pytest.raises(InsufficientFunds):
        trade.buy("out", dear.advert_id, 100)            # 1.05 ether for 1 ether held
    # Enough for the price and the tax, one wei too little for the gas: refused before sending too.
    price = balance * 10_000 // (10_000 + TAX_BPS)
    exact = trade.post_advert("prod", 1, price)
    with pytest.raises(InsufficientFunds, match="gas"):
        trade.buy("out", exact.advert_id, 1)
    assert nonce_and_balance(trade, "out") == before


def test_a_revert_on_chain_maps_to_the_same_error(trade):
    trade.preflight = False  # behave like a client whose estimate was right a block ago
    nonce, balance = nonce_and_balance(trade, "cons")
    with pytest.raises(NotAuthorised):
        trade.post_advert("cons", 1, PRICE)
    after = nonce_and_balance(trade, "cons")
    assert after[0] == nonce + 1 and after[1] < balance  # sent, mined, reverted: its gas is spent
    with pytest.raises(RoleConflict):
        trade.grant("reg", trade.party_for("cons"), "producer")
    assert nonce_and_balance(trade, "reg")[0] > 0
    trade.preflight = True


def test_buy_and_withdraw_through_the_client(trade):
    advert = trade.post_advert("prod", 100, PRICE)
    purchase = trade.buy("cons", advert.advert_id, 10, max_price_per_wh=PRICE)
    assert (purchase.energy_wh, purchase.price_per_wh, purchase.producer_amount, purchase.tax_amount) == (
        10, PRICE, 10 * PRICE, tax_on(10 * PRICE, TAX_BPS))
    assert purchase.regulator == trade.party_for("reg") and purchase.producer == trade.party_for("prod")
    assert trade.advert(advert.advert_id).remaining_wh == 90
    assert [a.advert_id for a in trade.adverts()] == [advert.advert_id]
    assert trade.withdraw("prod") == 10 * PRICE
    assert trade.withdraw("prod") == 0
    assert trade.withdraw("reg") == tax_on(10 * PRICE, TAX_BPS)


def test_expired_adverts_are_returned_when_the_capacity_needs_it(trade):
    first = trade.post_advert("prod", 700, PRICE)
    with pytest.raises(CapacityExceeded):
        trade.post_advert("prod", 301, PRICE)
    with trade.node.lock:
        travel(trade.node, first.posted_at + 3 * HOUR)
    assert trade.market().advertised_wh == 0 and trade.adverts() == []
    second = trade.post_advert("prod", 1000, PRICE)
    assert trade.advert(first.advert_id).remaining_wh == 0
    assert trade.market().advertised_wh == 1000
    with trade.node.lock:
        travel(trade.node, second.posted_at + 3 * HOUR)
    assert trade.expire(second.advert_id) == 1000 and trade.expire(second.advert_id) == 0


def test_vouchers_checked_off_chain(trade):
    now = trade.now()
    channel = trade.open_channel("cons", trade.party_for("prod"), 1000, now + 600)
    cid = channel.channel_id
    voucher = trade.sign_voucher("cons", cid, 400)
    assert voucher.domain == trade.domain() and len(bytes.fromhex(voucher.signature[2:])) == 65
    assert trade.check_voucher(voucher, cid) == channel
    raw = bytes.fromhex(voucher.signature[2:])
    forged = trade.sign_voucher("out", cid, 400)
    refusals = [
        (WrongChannel, voucher, "2"),
        (WrongDomain, Voucher(cid, 400, f"ethereum:{trade.chain_id + 1}:{trade.channels_address}", voucher.signature),
         cid),
        (BadSignature, forged, cid),
        (BadSignature, Voucher(cid, 400, voucher.domain, "0x" + malleated(raw).hex()), cid),
        (BadSignature, Voucher(cid, 400, voucher.domain, "0x" + raw[:64].hex()), cid),
        (BadSignature, Voucher(cid, 400, voucher.domain, "0xzz"), cid),
        (BadSignature, Voucher(cid, 401, voucher.domain, voucher.signature), cid),
        (AboveEscrow, trade.sign_voucher("cons", cid, 1001), cid),
        (UnknownChannel, trade.sign_voucher("cons", "9", 1), "9"),
    ]
    for error, bad, presented in refusals:
        with pytest.raises(error):
            trade.check_voucher(bad, presented)
        if error not in (UnknownChannel, AboveEscrow):
            with pytest.raises(error):
                trade.close("prod", presented, bad)
    with pytest.raises(NotAuthorised):
        trade.close("out", cid, voucher)
    with pytest.raises(ExpiryNotExtended):
        trade.top_up("cons", cid, 10, channel.expires_at - 1)
    with pytest.raises(NotAuthorised):
        trade.top_up("prod", cid, 10, channel.expires_at)
    with pytest.raises(ChannelNotExpired):
        trade.reclaim("cons", cid)
    closed = trade.close("prod", cid, voucher)
    assert (closed.state, closed.paid) == ("closed", 400)
    with pytest.raises(ChannelClosed):
        trade.check_voucher(voucher, cid)
    with pytest.raises(ChannelClosed):
        trade.close("prod", cid, voucher)
    later = trade.open_channel("cons", trade.party_for("prod"), 1000, trade.now() + 60)
    assert later.channel_id == str(int(cid) + 1)
    with trade.node.lock:
        travel(trade.node, later.expires_at)
    with pytest.raises(ChannelExpired):
        trade.check_voucher(trade.sign_voucher("cons", later.channel_id, 1), later.channel_id)
    with pytest.raises(ChannelExpired):
        trade.close("prod", later.channel_id, trade.sign_voucher("cons", later.channel_id, 1))
    assert trade.reclaim("cons", later.channel_id).state == "reclaimed"


def test_a_node_that_is_down_slow_or_broken_is_ledger_unavailable(trade):
    node = trade.node
    keyed = EthereumTrade.connect(node.rpc_url + "/v3/secret-api-key", timeout_s=0.5, chain_id=node.chain_id,
                                  mnemonic=TEST_MNEMONIC, accounts=SOCKETS, market=trade.market_address,
                                  channels=trade.channels_address)
    try:
        assert keyed.now() > 0
        node.stop()
        for action in (keyed.now, keyed.market, lambda: keyed.post_advert("prod", 1, PRICE),
                       lambda: keyed.channel("1"), lambda: keyed.withdraw("prod")):
            with pytest.raises(LedgerUnavailable) as info:
                action()
            assert "secret-api-key" not in str(info.value) and "cannot connect" in str(info.value)
        node.start()
        node.answer_http_status(502)
        with pytest.raises(LedgerUnavailable, match="HTTP 502"):
            keyed.buy("cons", "1", 1)
        node.answer_http_status(None)
        node.stall(2.0)
        with pytest.raises(LedgerUnavailable, match="timeout"):
            keyed.now()
        node.stall(0)
    finally:
        keyed.disconnect()
    wrong = EthereumTrade.connect(node.rpc_url, chain_id=node.chain_id + 1, mnemonic=TEST_MNEMONIC, accounts=SOCKETS,
                                  market=trade.market_address, channels=trade.channels_address)
    with pytest.raises(LedgerUnavailable, match="chain id"):
        wrong.market()
    wrong.disconnect()


def test_construction_is_validated_without_the_node():
    base = dict(chain_id=1, mnemonic=TEST_MNEMONIC, accounts={"a": 0}, market="0x" + "11" * 20,
                channels="0x" + "22" * 20)
    EthereumTrade(Web3(), **base)
    for bad in ({"mnemonic": "not a phrase"}, {"accounts": {}}, {"accounts": {"a": 0, "b": 0}},
                {"market": "0x12"}, {"chain_id": 0}, {"accounts": {"a": -1}}):
        with pytest.raises(ValueError) as info:
            EthereumTrade(Web3(), **{**base, **bad})
        assert "test test" not in str(info.value)
    with pytest.raises(ValueError):
        EthereumTrade.connect("ws://127.0.0.1:1", **base)


def test_the_contracts_are_where_the_package_finds_them():
    assert {p.name for p in Path(CONTRACTS_DIR).glob("*.vy")} >= {"market.vy", "channels.vy"}
    assert keccak(text="Voucher(uint256 channelId,uint256 amount)")  # the type the contract hashes



SHARED_COMPILE = """import json, sys
if sys.argv[2] == "no-compiler":
    sys.modules["vyper"] = None  # this process cannot compile: what it gets comes from the cache
from ledgers.ethereum.contracts import compile_source
abi, bytecode = compile_source(sys.argv[1], "tiny.vy")
print(json.dumps([abi, bytecode]))"""


def test_a_contract_compiled_by_one_process_is_read_by_the_others_from_the_shared_cache(tmp_path):
    source = "@external\ndef answer() -> uint256:\n    return 42\n"
    env = dict(os.environ, PAYG_CONTRACT_CACHE=str(tmp_path / "cache"))

    def run(*modes: str) -> list:
        runs = [subprocess.Popen([sys.executable, "-c", SHARED_COMPILE, source, mode], cwd=ROOT, env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for mode in modes]
        return [run.communicate(timeout=120) for run in runs]

    [(_, refused)] = run("no-compiler")
    assert "needs the `vyper` package" in refused  # nothing kept yet, and no compiler
    direct = compile_code(source, output_formats=["abi", "bytecode"])
    first = run("compiler")
    others = run("no-compiler", "no-compiler")
    assert [json.loads(out) for out, _ in first + others] == [[direct["abi"], direct["bytecode"]]] * 3
    assert sorted(p.suffix for p in (tmp_path / "cache").iterdir()) == [".json", ".lock"]
