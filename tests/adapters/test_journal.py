import sqlite3
from fractions import Fraction

import pytest

from payg.adapters.journal import SqliteJournal
from payg.domain.billing import Baseline, MeterState


@pytest.fixture
def journal(tmp_path):
    j = SqliteJournal(tmp_path / "journal.sqlite")
    yield j
    j.close()


def test_the_file_is_wal_with_normal_sync(journal):
    conn = journal._conn
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL: credits are synced by the journal


def test_balance_is_the_sum_of_entries_and_survives_reopening(tmp_path, journal):
    with journal.transaction() as tx:
        assert tx.credit("k", 10, "deposit", "mock:1", 1.0)
        assert tx.debit("k", 3, "usage", 2.0, energy_wh=Fraction(3))
        assert tx.credit("other", 5, "deposit", "mock:2", 1.0)
    assert journal.balance("k") == 7 == journal.recomputed_balance("k")
    journal.close()
    again = SqliteJournal(tmp_path / "journal.sqlite")
    assert again.balance("k") == 7 and again.balance("other") == 5
    again.close()


def test_a_credit_key_books_once(journal):
    with journal.transaction() as tx:
        assert tx.credit("k", 10, "deposit", "mock:1", 1.0)
    with journal.transaction() as tx:
        assert not tx.credit("k", 10, "deposit", "mock:1", 2.0)
    assert journal.balance("k") == 10
    assert len(journal.entries("k")) == 1


def test_credits_need_a_key_and_a_positive_integer(journal):
    with pytest.raises(ValueError):
        with journal.transaction() as tx:
            tx.credit("k", 0, "deposit", "x", 1.0)
    with pytest.raises(ValueError):
        with journal.transaction() as tx:
            tx.credit("k", 1.5, "deposit", "x", 1.0)
    with pytest.raises(sqlite3.IntegrityError):
        with journal.transaction():
            journal._conn.execute("INSERT INTO entries (socket_id, at, kind, amount) VALUES ('k', 1, 'deposit', 5)")
    assert journal.balance("k") == 0


def test_entries_cannot_be_changed_or_deleted(journal):
    with journal.transaction() as tx:
        tx.credit("k", 10, "deposit", "mock:1", 1.0)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        journal._conn.execute("UPDATE entries SET amount = 1000")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        journal._conn.execute("DELETE FROM entries")


def test_a_failed_transaction_leaves_nothing_behind(journal):
    with pytest.raises(RuntimeError):
        with journal.transaction() as tx:
            tx.credit("k", 10, "deposit", "mock:1", 1.0)
            tx.set_cursor("deposits:mock", "7")
            raise RuntimeError("crash inside the tick")
    assert journal.balance("k") == 0 == journal.recomputed_balance("k")
    assert journal.cursor("deposits:mock") is None


def test_pending_usage_counts_in_the_balance_until_it_is_closed(journal):
    with journal.transaction() as tx:
        tx.credit("k", 100, "deposit", "mock:1", 1.0)
        state = MeterState(Baseline(Fraction(12), 5.0, Fraction(1, 3)), 12, Fraction(12), 4.0)
        tx.save_state("k", state, 0)
    assert journal.balance("k") == 88 == journal.recomputed_balance("k")
    assert journal.meter_state("k") == state
    with journal.transaction() as tx:
        tx.debit("k", 12, "usage", 6.0, energy_wh=Fraction(12))
        tx.save_state("k", MeterState(state.baseline), 12)
    assert journal.balance("k") == 88 == journal.recomputed_balance("k")
    assert journal.totals("k") == {"credits": 100, "debits": 12, "pending": 0}


def test_entries_page_newest_first(journal):
    with journal.transaction() as tx:
        for i in range(7):
            tx.credit("k", 1, "deposit", f"mock:{i}", float(i))
    first = journal.entries("k", limit=3)
    second = journal.entries("k", limit=3, before_id=first[-1].id)
    assert [e.idem_key for e in first] == ["mock:6", "mock:5", "mock:4"]
    assert [e.idem_key for e in second] == ["mock:3", "mock:2", "mock:1"]
    assert [e.idem_key for e in journal.all_entries("k")] == [f"mock:{i}" for i in range(7)]
