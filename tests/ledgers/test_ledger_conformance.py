"""One deposit suite, every backend: the mock ledger, Ethereum (native value and an ERC-20 token on
a real in-process EVM served over JSON-RPC) and IOTA (a fake GraphQL node in its own process).

Each test drives a bed (tests/support/ledger_beds*.py): it pays into addresses, makes payments final,
breaks and heals the node, and opens fresh ledger objects the way a restarted controller does.
"""

from __future__ import annotations

import re
from fractions import Fraction

import pytest

from payg.adapters.clocks import ManualClock
from payg.adapters.journal import SqliteJournal
from payg.errors import LedgerUnavailable, UnknownSocket
from payg.services.deposits import DepositWatcher
from tests.support.ledger_beds import LedgerBed, MockBed
from tests.support.rigs import Rig

BACKENDS = ["mock", "ethereum", "ethereum-erc20", "iota"]
ACCOUNTS = {"a": 0, "b": 1, "c": 2}
ADDRESS_FORMS = {
    "mock": r"mock1[0-9a-f]{40}",
    "ethereum": r"0x[0-9a-fA-F]{40}",
    "ethereum-erc20": r"0x[0-9a-fA-F]{40}",
    "iota": r"0x[0-9a-f]{64}",
}


def make_bed(name: str, tmp_path, request) -> LedgerBed:
    if name == "mock":
        return MockBed(tmp_path)
    if name.startswith("ethereum"):
        from tests.support.ledger_beds_ethereum import EthereumBed

        return EthereumBed(erc20=name == "ethereum-erc20")
    from tests.support.ledger_beds_iota import IotaBed

    # The module's fake node process, emptied for the test (tests/ledgers/conftest.py), not a new one each time.
    return IotaBed(tmp_path, request.getfixturevalue("node"))


@pytest.fixture(params=BACKENDS)
def bed(request, tmp_path):
    b = make_bed(request.param, tmp_path, request)
    yield b
    b.close()


def drain(ledger, cursor, max_calls: int = 50):
    """Everything the ledger has after `cursor`, following the cursor until it stops moving."""
    found = []
    for _ in range(max_calls):
        deposits, new_cursor = ledger.deposits_since(cursor)
        found.extend(deposits)
        if not deposits and new_cursor == cursor:
            return found, cursor
        cursor = new_cursor
    raise AssertionError(f"the cursor kept moving after {max_calls} calls")


def start(ledger):
    """A first call, as a newly installed controller makes it: nothing yet, and a cursor."""
    deposits, cursor = drain(ledger, None)
    assert deposits == []
    return cursor


def units(bed: LedgerBed, tokens: int, extra: int = 0) -> int:
    return tokens * bed.units_per_token + extra


def test_addresses_are_well_formed_distinct_and_stable_across_restarts(bed, request):
    first = bed.open(ACCOUNTS)
    addresses = {s: first.address_for(s) for s in ACCOUNTS}
    form = ADDRESS_FORMS[request.node.callspec.params["bed"]]
    assert all(re.fullmatch(form, a) for a in addresses.values()), addresses
    assert len(set(addresses.values())) == len(ACCOUNTS)
    first.close()
    # A restart with the sockets listed in another order: every socket keeps its address.
    again = bed.open(dict(reversed(list(ACCOUNTS.items()))))
    assert {s: again.address_for(s) for s in ACCOUNTS} == addresses
    with pytest.raises(UnknownSocket):
        again.address_for("nobody")
    assert addresses["a"].lower() in again.payment_uri("a", None).lower()
    assert again.units_per_token == bed.units_per_token


def test_a_payment_becomes_exactly_one_deposit_of_the_right_amount(bed):
    ledger = bed.open(ACCOUNTS)
    cursor = start(ledger)
    paid = units(bed, 5, extra=3)
    bed.pay(ledger.address_for("b"), paid)
    bed.finalize()
    deposits, cursor = drain(ledger, cursor)
    assert [(d.socket_id, d.amount) for d in deposits] == [("b", paid)]
    assert isinstance(deposits[0].amount, int) and deposits[0].deposit_id
    assert drain(ledger, cursor)[0] == []


def test_a_deposit_is_never_returned_twice_across_restarts_and_cursors(bed):
    ledger = bed.open(ACCOUNTS)
    cursor = start(ledger)
    bed.pay(ledger.address_for("a"), units(bed, 2))
    bed.finalize()
    deposits, cursor = drain(ledger, cursor)
    assert len(deposits) == 1
    ledger.close()
    restarted = bed.open(ACCOUNTS)
    assert drain(restarted, cursor)[0] == []
    bed.pay(restarted.address_for("a"), units(bed, 3))
    bed.finalize()
    later, _ = drain(restarted, cursor)
    assert [d.amount for d in later] == [units(bed, 3)]
    assert later[0].deposit_id != deposits[0].deposit_id


def test_redelivery_after_a_lost_cursor_is_booked_once(bed, tmp_path):
    """A crash between reading the ledger and committing the cursor re-reads the same deposits;
    the journal's idempotency keys book them once."""
    ledger = bed.open(ACCOUNTS)
    initial = start(ledger)
    journal = SqliteJournal(tmp_path / "journal.sqlite")
    try:
        with journal.transaction() as tx:
            tx.set_cursor(f"deposits:{ledger.name}", initial)
        paid = units(bed, 7, extra=1)
        tokens, carry = divmod(paid, bed.units_per_token)
        bed.pay(ledger.address_for("c"), paid)
        bed.finalize()
        watcher = DepositWatcher(ledger, journal, ManualClock(1.0))
        for _ in range(5):
            watcher.poll()
        assert journal.balance("c") == tokens and journal.deposit_carry(ledger.name, "c") == carry
        with journal.transaction() as tx:  # the cursor is lost: back to where it started
            tx.set_cursor(f"deposits:{ledger.name}", initial)
        again = DepositWatcher(bed.open(ACCOUNTS), journal, ManualClock(2.0))
        duplicates = sum(again.poll().duplicates for _ in range(5))
        assert duplicates == 1
        assert journal.balance("c") == tokens and journal.deposit_carry(ledger.name, "c") == carry
    finally:
        journal.close()


def test_payments_that_are_not_final_are_not_returned_and_not_skipped(bed):
    ledger = bed.open(ACCOUNTS)
    cursor = start(ledger)
    bed.pay(ledger.address_for("a"), units(bed, 4))
    deposits, cursor = drain(ledger, cursor)
    assert deposits == []
    bed.finalize()
    deposits, _ = drain(ledger, cursor)
    assert [(d.socket_id, d.amount) for d in deposits] == [("a", units(bed, 4))]


def test_payments_to_other_addresses_are_ignored(bed):
    ledger = bed.open(ACCOUNTS)
    cursor = start(ledger)
    bed.pay(bed.foreign_address(), units(bed, 50))
    bed.pay(ledger.address_for("a"), units(bed, 1))
    bed.finalize()
    deposits, _ = drain(ledger, cursor)
    assert [(d.socket_id, d.amount) for d in deposits] == [("a", units(bed, 1))]


def test_many_payments_in_one_block_or_checkpoint_are_all_found(bed):
    ledger = bed.open(ACCOUNTS)
    cursor = start(ledger)
    a, b, c = (ledger.address_for(s) for s in "abc")
    payments = [(a, units(bed, 1)), (b, units(bed, 2)), (a, units(bed, 3)), (bed.foreign_address(), units(bed, 9)),
                (c, units(bed, 4, extra=5)), (b, units(bed, 6))]
    bed.pay_many(payments)
    bed.finalize()
    deposits, _ = drain(ledger, cursor)
    by_socket: dict[str, list[int]] = {}
    for d in deposits:
        by_socket.setdefault(d.socket_id, []).append(d.amount)
    assert {s: sorted(v) for s, v in by_socket.items()} == {
        "a": [units(bed, 1), units(bed, 3)], "b": [units(bed, 2), units(bed, 6)], "c": [units(bed, 4, extra=5)]}
    assert len({d.deposit_id for d in deposits}) == 5


def test_a_failing_node_is_a_clear_error_metering_goes_on_and_nothing_is_lost(bed, tmp_path):
    ledger = bed.open({"a": 0})
    rig = Rig(tmp_path, ids=("a",), source=ledger)
    rig.loop.run_for(3)  # the first polls set the starting cursor
    bed.pay(ledger.address_for("a"), units(bed, 10))
    bed.finalize()
    rig.meters["a"].power_w = 1000.0
    rig.loop.run_for(3)
    assert rig.balance() == 10 and rig.relays["a"].closed

    bed.break_node()
    with pytest.raises(LedgerUnavailable) as failure:
        ledger.deposits_since(rig.journal.cursor(f"deposits:{ledger.name}"))
    assert str(failure.value).strip()
    bed.pay(ledger.address_for("a"), units(bed, 5))  # paid while the controller cannot see the ledger
    bed.finalize()
    errors_before = rig.site.ledger_errors
    for _ in range(4):  # metering and billing go on while deposits cannot be read
        rig.meters["a"].energy_wh += 1
        rig.loop.run_for(1)
    assert rig.site.ledger_errors > errors_before
    assert rig.watcher.status == "unavailable" and rig.watcher.last_error
    assert rig.balance() == 6 and rig.relays["a"].closed

    bed.heal_node()
    rig.loop.run_for(3)
    assert rig.watcher.status == "ok"
    assert rig.balance() == 11
    totals = rig.journal.totals("a")
    assert totals["credits"] == 15 and totals["debits"] + totals["pending"] == 4
    assert Fraction(rig.meters["a"].energy_wh) == 4
    rig.metering.shutdown()
    rig.journal.close()
