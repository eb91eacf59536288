"""Ether moved to a socket by a contract (an internal call: a Safe wallet, an exchange's batch withdrawal)
is NOT credited in ether mode, as ledgers/ethereum/deposits.py documents: the ether is at the address
(the landlord's wallet holds it and can refund or credit by hand), the journal never hears of it. This pins
that behaviour, with a real Vyper contract on the in-process EVM, until contract deposits are credited."""

from __future__ import annotations

import pytest

pytest.importorskip("eth_tester")

from tests.support.ledger_beds_ethereum import EthereumBed  # noqa: E402


@pytest.fixture
def bed():
    bed = EthereumBed()
    yield bed
    bed.close()


def test_ether_forwarded_by_a_contract_reaches_the_address_but_is_not_credited(bed):
    ledger = bed.open({"kitchen": 0, "hall": 1})
    forwarder = bed.node.deploy("forwarder")
    kitchen = ledger.address_for("kitchen")
    with bed.node.lock:
        tx = forwarder.functions.forward(kitchen).transact({"from": bed.node.accounts[1], "value": 5 * 10**12,
                                                            "gas": 100_000})
        assert bed.node.w3.eth.get_transaction_receipt(tx)["status"] == 1
    bed.pay(ledger.address_for("hall"), 2 * 10**12)  # a plain transfer in the same range is credited
    bed.finalize()
    deposits, cursor = ledger.deposits_since(None)
    assert [(d.socket_id, d.amount) for d in deposits] == [("hall", 2 * 10**12)]
    assert cursor is not None
    with bed.node.lock:
        assert bed.node.w3.eth.get_balance(kitchen) == 5 * 10**12  # on the address, unexplained by the journal
