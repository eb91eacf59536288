"""Ether moved to a socket by a contract (an internal call: a Safe wallet, an exchange's batch withdrawal) in
ether mode, with a real Vyper contract on the in-process EVM.

What matters: such ether is never credited (no transaction names the socket as its recipient), yet the balance
check sees it and hands it over as an `unexplained` Deposit, which the watcher books as an alarm the landlord view
shows; ether the address itself sends (a landlord sweeping it, gas included) and plain deposits are explained, so
they raise nothing.
"""

from __future__ import annotations

import pytest

pytest.importorskip("eth_tester")

from eth_account import Account  # noqa: E402

from payg.adapters.clocks import ManualClock  # noqa: E402
from payg.adapters.journal import SqliteJournal  # noqa: E402
from payg.services.deposits import DepositWatcher  # noqa: E402
from tests.support.ledger_beds_ethereum import TEST_MNEMONIC, EthereumBed  # noqa: E402

SOCKETS = {"kitchen": 0, "hall": 1}


@pytest.fixture
def bed():
    bed = EthereumBed()
    yield bed
    bed.close()


def forward(bed, to: str, wei: int) -> None:
    """`wei` to `to` through the forwarder contract: an internal call, no transaction's value to `to`."""
    forwarder = bed.__dict__.setdefault("forwarder", bed.node.deploy("forwarder"))
    with bed.node.lock:
        tx = forwarder.functions.forward(to).transact({"from": bed.node.accounts[1], "value": wei, "gas": 100_000})
        assert bed.node.w3.eth.get_transaction_receipt(tx)["status"] == 1


def send_from_socket(bed, index: int, to: str, wei: int) -> int:
    """The socket's own key (the landlord's wallet) sends `wei` from its address; the fee it paid."""
    Account.enable_unaudited_hdwallet_features()
    account = Account.from_mnemonic(TEST_MNEMONIC, account_path=f"m/44'/60'/0'/0/{index}")
    w3 = bed.node.w3
    with bed.node.lock:
        base = int(w3.eth.get_block("latest")["baseFeePerGas"])
        signed = account.sign_transaction({
            "to": to, "value": wei, "gas": 21_000, "maxFeePerGas": 2 * base + 10**9, "maxPriorityFeePerGas": 10**9,
            "nonce": w3.eth.get_transaction_count(account.address), "chainId": bed.node.chain_id})
        receipt = w3.eth.get_transaction_receipt(w3.eth.send_raw_transaction(signed.raw_transaction))
    assert receipt["status"] == 1
    return receipt["gasUsed"] * receipt["effectiveGasPrice"]


def test_ether_forwarded_by_a_contract_is_not_credited_but_reported_as_unexplained(bed):
    ledger = bed.open(SOCKETS)
    kitchen = ledger.address_for("kitchen")
    forward(bed, kitchen, 5 * 10**12)
    bed.pay(ledger.address_for("hall"), 2 * 10**12)  # a plain transfer in the same range is credited
    bed.finalize()
    deposits, cursor = ledger.deposits_since(None)
    assert [(d.socket_id, d.amount, d.unexplained) for d in deposits] == [("hall", 2 * 10**12, False),
                                                                         ("kitchen", 5 * 10**12, True)]
    assert cursor is not None
    bed.pay(ledger.address_for("hall"), 10**12)
    bed.finalize()
    deposits, _ = ledger.deposits_since(cursor)
    assert [(d.socket_id, d.amount, d.unexplained) for d in deposits] == [("hall", 10**12, False)]


def test_what_an_address_sends_itself_gas_included_is_explained(bed):
    ledger = bed.open(SOCKETS)
    kitchen = ledger.address_for("kitchen")
    bed.pay(kitchen, 3 * 10**15)
    bed.finalize()
    deposits, cursor = ledger.deposits_since(None)
    assert [(d.amount, d.unexplained) for d in deposits] == [(3 * 10**15, False)]
    fee = send_from_socket(bed, 0, bed.node.accounts[2], 10**15)  # the landlord collects
    assert fee > 0
    forward(bed, kitchen, 7)  # and 7 wei arrive through the contract in the same range
    bed.finalize()
    deposits, _ = ledger.deposits_since(cursor)
    assert [(d.socket_id, d.amount, d.unexplained) for d in deposits] == [("kitchen", 7, True)]


def test_a_restarted_controller_reads_the_earlier_balances_once_then_checks_from_there(bed):
    ledger = bed.open(SOCKETS)
    bed.pay(ledger.address_for("hall"), 10**12)
    bed.finalize()
    _, cursor = ledger.deposits_since(None)
    restarted = bed.open(SOCKETS)  # a new process: no balances in memory
    forward(bed, restarted.address_for("hall"), 11)
    bed.finalize()
    bed.node.requests.clear()
    deposits, _ = restarted.deposits_since(cursor)
    assert [(d.socket_id, d.amount, d.unexplained) for d in deposits] == [("hall", 11, True)]
    assert bed.node.requests.count("eth_getBalance") == 2 * len(SOCKETS), "now and before, one batch each"


def test_unexplained_ether_is_an_alarm_in_the_journal_never_a_credit(bed, tmp_path):
    ledger = bed.open(SOCKETS)
    forward(bed, ledger.address_for("kitchen"), 5 * 10**12)
    bed.finalize()
    journal = SqliteJournal(tmp_path / "journal.sqlite")
    try:
        DepositWatcher(ledger, journal, ManualClock(1_000)).poll()
        assert journal.balance("kitchen") == 0
        alarms = journal.open_alarms()
        assert set(alarms) == {"kitchen"}
        count, _, detail = alarms["kitchen"]
        assert count == 1 and detail.startswith("unexplained funds: 5000000000000 ethereum units")
    finally:
        journal.close()


def test_without_check_balances_nothing_is_read_or_reported(bed):
    ledger = bed.open(SOCKETS, check_balances=False)
    forward(bed, ledger.address_for("kitchen"), 5 * 10**12)
    bed.finalize()
    bed.node.requests.clear()
    deposits, _ = ledger.deposits_since(None)
    assert deposits == [] and "eth_getBalance" not in bed.node.requests
