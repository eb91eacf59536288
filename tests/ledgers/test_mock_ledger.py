import pytest

from ledgers.mock import MockLedger
from payg.adapters.clocks import ManualClock
from payg.errors import InvalidAmount, UnknownSocket


@pytest.fixture
def clock():
    return ManualClock()


def open_ledger(tmp_path, clock, finality_s=0.0):
    return MockLedger(tmp_path / "mock-ledger.sqlite", clock, ["a", "b"], finality_s=finality_s)


def test_addresses_are_stable_distinct_and_in_the_uri(tmp_path, clock):
    ledger = open_ledger(tmp_path, clock)
    a, b = ledger.address_for("a"), ledger.address_for("b")
    assert a != b and a.startswith("mock1")
    ledger.close()
    assert open_ledger(tmp_path, clock).address_for("a") == a
    assert ledger.payment_uri("a", None) == f"payg-mock:{a}"
    assert ledger.payment_uri("a", 25) == f"payg-mock:{a}?amount=25"
    with pytest.raises(UnknownSocket):
        ledger.address_for("zzz")


def test_payments_become_deposits_listed_once_after_a_cursor(tmp_path, clock):
    ledger = open_ledger(tmp_path, clock)
    first = ledger.pay("a", 5)
    second = ledger.pay("b", 7)
    deposits, cursor = ledger.deposits_since(None)
    assert [(d.deposit_id, d.socket_id, d.amount) for d in deposits] == [(first, "a", 5), (second, "b", 7)]
    assert ledger.deposits_since(cursor) == ([], cursor)
    third = ledger.pay("a", 1)
    deposits, _ = ledger.deposits_since(cursor)
    assert [d.deposit_id for d in deposits] == [third]


def test_payments_are_listed_only_once_final(tmp_path, clock):
    ledger = open_ledger(tmp_path, clock, finality_s=30)
    ledger.pay("a", 5)
    assert ledger.deposits_since(None) == ([], None)
    clock.advance(30)
    deposits, cursor = ledger.deposits_since(None)
    assert len(deposits) == 1 and cursor == "1"


def test_payments_to_other_addresses_are_ignored(tmp_path, clock):
    ledger = open_ledger(tmp_path, clock)
    ledger.pay_to("mock1somebodyelse", 9)
    ledger.pay("b", 2)
    deposits, cursor = ledger.deposits_since(None)
    assert [(d.socket_id, d.amount) for d in deposits] == [("b", 2)] and cursor == "2"


def test_another_process_paying_is_seen(tmp_path, clock):
    controller_side = open_ledger(tmp_path, clock)
    cli_side = open_ledger(tmp_path, clock)
    deposit_id = cli_side.pay("a", 3)
    assert [d.deposit_id for d in controller_side.deposits_since(None)[0]] == [deposit_id]


@pytest.mark.parametrize("amount", [0, -1, 1.5, True, "5", 2**62, 2**62 + 1])
def test_bad_amounts_are_refused(tmp_path, clock, amount):
    """2**62 and above: the journal would never credit it (and the deposit would stall the watcher)."""
    ledger = open_ledger(tmp_path, clock)
    with pytest.raises(InvalidAmount):
        ledger.pay("a", amount)
    assert ledger.deposits_since(None) == ([], None)
