"""The Journal port's promises, held by SqliteJournal and by its twin tests.fakes.FakeJournal alike."""

from __future__ import annotations

from fractions import Fraction

import pytest

from payg.adapters.journal import SqliteJournal
from payg.domain.billing import Baseline, MeterState
from tests.fakes import FakeJournal

AT = 1_700_000_000.0


@pytest.fixture(params=["sqlite", "fake"])
def journal(request, tmp_path):
    j = SqliteJournal(tmp_path / "journal.sqlite") if request.param == "sqlite" else FakeJournal()
    yield j
    if request.param == "sqlite":
        j.close()


def test_a_credit_is_booked_once_per_key(journal):
    with journal.transaction() as tx:
        assert tx.credit("a", 10, "deposit", "k1", AT, memo="first")
        assert not tx.credit("a", 10, "deposit", "k1", AT)
    with journal.transaction() as tx:
        assert not tx.credit("a", 99, "credit", "k1", AT)
    assert journal.balance("a") == 10
    assert journal.entry_by_key("k1").amount == 10 and journal.entry_by_key("k1").memo == "first"


def test_a_transaction_that_fails_writes_nothing(journal):
    with pytest.raises(RuntimeError):
        with journal.transaction() as tx:
            tx.credit("a", 10, "deposit", "k1", AT)
            tx.set_cursor("deposits:x", "7")
            raise RuntimeError("the tick failed half way")
    assert journal.balance("a") == 0 and journal.cursor("deposits:x") is None and journal.entry_by_key("k1") is None


def test_the_balance_is_the_entries_minus_the_pending_usage(journal):
    with journal.transaction() as tx:
        tx.credit("a", 100, "deposit", "k1", AT)
        tx.save_state("a", MeterState(Baseline(Fraction(5), AT), 7, Fraction(7), AT), 0)
    assert journal.balance("a") == 93
    with journal.transaction() as tx:
        tx.debit("a", 7, "usage", AT + 60, energy_wh=Fraction(7))
        tx.save_state("a", MeterState(Baseline(Fraction(5), AT + 60)), 7)
    assert journal.balance("a") == 93 and journal.meter_state("a").pending_units == 0
    assert [e.kind for e in journal.entries("a")] == ["usage", "deposit"]  # newest first
    assert [e.kind for e in journal.all_entries("a")] == ["deposit", "usage"]


def test_a_deposit_is_recorded_once_with_its_carry(journal):
    with journal.transaction() as tx:
        assert tx.deposit_carry("mock", "a") == 0
        assert tx.record_deposit("mock", "a", "mock:d1", 2_500, 2, 500, AT)
        assert tx.deposit_carry("mock", "a") == 500
        assert not tx.record_deposit("mock", "a", "mock:d1", 2_500, 2, 500, AT)
    with journal.transaction() as tx:
        assert tx.deposit_carry("mock", "a") == 500 and tx.deposit_carry("mock", "b") == 0


def test_alarms_stay_open_until_acknowledged(journal):
    with journal.transaction() as tx:
        tx.event("a", "relay_bypass", "300.0 W", AT)
        tx.event("a", "override", "off", AT)
        tx.event("a", "counter_reset", "counter 9 Wh -> 0 Wh", AT + 1)
    count, last_id, detail = journal.open_alarms()["a"]
    assert count == 2 and detail == "counter reset: counter 9 Wh -> 0 Wh"
    with journal.transaction() as tx:
        tx.acknowledge_alarms("a", last_id, AT + 2)
    assert journal.open_alarms() == {}
    assert [e["kind"] for e in journal.events("a")] == ["alarm_ack", "counter_reset", "override", "relay_bypass"]


def test_overrides_and_cursors_are_kept_and_cleared(journal):
    with journal.transaction() as tx:
        tx.set_override("a", "off", AT)
        tx.set_cursor("deposits:mock", "3")
    assert journal.overrides() == {"a": "off"} and journal.cursor("deposits:mock") == "3"
    with journal.transaction() as tx:
        tx.set_override("a", None, AT)
        tx.set_cursor("deposits:mock", "4")
    assert journal.overrides() == {} and journal.cursor("deposits:mock") == "4"


def test_entries_are_followed_by_id_and_by_time(journal):
    with journal.transaction() as tx:
        tx.credit("a", 1, "deposit", "k1", AT)
        tx.credit("b", 2, "deposit", "k2", AT + 10)
        tx.credit("a", 3, "deposit", "k3", AT + 20)
    assert [e.amount for e in journal.entries_after(0)] == [1, 2, 3]
    assert [e.amount for e in journal.entries_after(1, limit=1)] == [2]
    assert journal.first_entry_id_since(AT + 5) == 1
    assert sorted(journal.last_entries("deposit")) == [("a", AT + 20, 3), ("b", AT + 10, 2)]


def test_statements_read_a_sockets_entries_by_time_and_credits_with_the_sum_through_them(journal):
    with journal.transaction() as tx:
        tx.credit("a", 100, "deposit", "k1", AT)
        tx.credit("b", 1000, "deposit", "k2", AT + 5)
        tx.debit("a", 30, "usage", AT + 10, energy_wh=Fraction(30))
        tx.credit("a", 50, "credit", "code:a:1", AT + 20)
        tx.debit("a", 7, "debit", AT + 30, idem_key="manual:x", memo="broken plug")
        tx.credit("a", 9, "emergency", "emergency:a:1", AT + 40)
    assert [e.amount for e in journal.entries_between("a", AT + 10, AT + 30)] == [-30, 50]   # the end is left out
    assert journal.entries_between("a", AT + 41, AT + 99) == []
    assert journal.sum_before("a", AT + 10) == 100 and journal.sum_before("a", AT + 30) == 120
    assert journal.sum_before("a", AT) == 0 and journal.sum_before("b", AT + 99) == 1000
    got = [(e.kind, e.amount, after) for e, after in journal.credits_through("a", 10)]
    assert got == [("emergency", 9, 122), ("credit", 50, 120), ("deposit", 100, 100)]   # newest first
    assert [after for _, after in journal.credits_through("a", 1)] == [122]
    code = journal.entry_by_key("code:a:1")
    assert [(e.id, after) for e, after in journal.credits_through("a", 1, code.id)] == [(code.id, 120)]
    assert [after for _, after in journal.credits_through("a", 5, code.id - 1)] == [100]


def test_top_up_code_counters_are_kept_apart_per_socket_and_only_with_their_transaction(journal):
    from payg.domain.codes import CodeCounts

    assert journal.code_counts("a") == CodeCounts() and journal.codes_issued("a") == 0
    with journal.transaction() as tx:
        tx.set_codes_issued("a", 4)
        tx.set_code_counts("a", CodeCounts(12, (8, 10, 12)))
        tx.set_codes_issued("b", 2)
    assert journal.codes_issued("a") == 4 and journal.code_counts("a") == CodeCounts(12, (8, 10, 12))
    assert journal.code_counts("b") == CodeCounts() and journal.codes_issued("b") == 2
    with journal.transaction() as tx:
        tx.set_code_counts("a", CodeCounts(14, (14,)))  # issued stays as it was
    assert journal.codes_issued("a") == 4 and journal.code_counts("a") == CodeCounts(14, (14,))
    with pytest.raises(RuntimeError):
        with journal.transaction() as tx:
            tx.set_code_counts("a", CodeCounts(30, (30,)))
            raise RuntimeError("a crash before the commit")
    assert journal.code_counts("a") == CodeCounts(14, (14,))


def test_a_code_request_is_kept_once_per_socket_and_only_with_its_transaction(journal):
    assert journal.code_request("a", "req-00001") is None
    with journal.transaction() as tx:
        assert tx.record_code_request("a", "req-00001", 4, 5, 6, 100.0)
        assert not tx.record_code_request("a", "req-00001", 6, 9, 8, 101.0), "the first one stays"
        assert tx.record_code_request("b", "req-00001", 0, 1, 2, 100.0)
    assert journal.code_request("a", "req-00001") == (4, 5, 6)
    assert journal.code_request("b", "req-00001") == (0, 1, 2)
    with pytest.raises(RuntimeError):
        with journal.transaction() as tx:
            tx.record_code_request("a", "req-00002", 6, 5, 8, 102.0)
            raise RuntimeError("a crash before the commit")
    assert journal.code_request("a", "req-00002") is None


def test_deferred_debt_is_kept_per_socket_and_only_with_its_transaction(journal):
    assert journal.deferred_debt("a") == 0
    with journal.transaction() as tx:
        tx.set_deferred_debt("a", 88)
    assert journal.deferred_debt("a") == 88 and journal.deferred_debt("b") == 0
    with pytest.raises(RuntimeError):
        with journal.transaction() as tx:
            tx.set_deferred_debt("a", 10)
            raise RuntimeError("a crash before the commit")
    assert journal.deferred_debt("a") == 88
    with journal.transaction() as tx:
        tx.set_deferred_debt("a", 0)
    assert journal.deferred_debt("a") == 0


def test_deferred_debt_is_read_back_after_a_restart(tmp_path):
    j = SqliteJournal(tmp_path / "journal.sqlite")
    with j.transaction() as tx:
        tx.set_deferred_debt("a", 42)
    j.close()
    again = SqliteJournal(tmp_path / "journal.sqlite")
    try:
        assert again.deferred_debt("a") == 42 and again.deferred_debt("b") == 0
    finally:
        again.close()
