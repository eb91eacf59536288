"""Ledger units to tokens at the deposit, with the remainder carried; ledger account indices kept."""

import sqlite3

import pytest

from payg.adapters.clocks import ManualClock
from payg.adapters.journal import SqliteJournal
from payg.errors import LedgerReorganised
from payg.services.deposits import DepositWatcher
from tests.fakes import FakeDepositSource

NANOS = 1_000_000  # units per token in these tests


@pytest.fixture
def journal(tmp_path):
    j = SqliteJournal(tmp_path / "journal.sqlite")
    yield j
    j.close()


def watcher_for(journal, source):
    return DepositWatcher(source, journal, ManualClock(1000.0))


def test_units_become_whole_tokens_and_the_remainder_waits_for_the_next_deposit(journal):
    source = FakeDepositSource(units_per_token=NANOS)
    watcher = watcher_for(journal, source)
    source.add("d1", "a", 2_500_000)  # 2.5 tokens
    assert watcher.poll().credited == ("a",)
    assert journal.balance("a") == 2 and journal.deposit_carry("fake", "a") == 500_000
    source.add("d2", "a", 600_000)  # 0.5 carried + 0.6 = 1.1 tokens
    watcher.poll()
    assert journal.balance("a") == 3 and journal.deposit_carry("fake", "a") == 100_000
    source.add("d3", "a", 50_000)  # not a token yet: recorded, carried, nothing credited
    result = watcher.poll()
    assert result.credited == () and result.carried == 1
    assert journal.balance("a") == 3 and journal.deposit_carry("fake", "a") == 150_000
    assert journal.received_deposit("fake:d3") == {"socket": "a", "at": 1000.0, "units": 50_000, "tokens": 0}
    # Over any sequence, tokens x units_per_token + carry equals the units received, exactly.
    assert journal.balance("a") * NANOS + journal.deposit_carry("fake", "a") == 2_500_000 + 600_000 + 50_000


def test_a_redelivered_small_deposit_does_not_grow_the_carry(journal):
    source = FakeDepositSource(units_per_token=NANOS)
    watcher = watcher_for(journal, source)
    source.add("tiny", "a", 400_000)
    watcher.poll()
    source.redeliver = True
    assert watcher.poll().duplicates == 1
    assert watcher_for(journal, source).poll().duplicates == 1  # a restarted watcher too
    assert journal.deposit_carry("fake", "a") == 400_000 and journal.balance("a") == 0


def test_carries_are_per_socket_and_per_source(journal):
    one, two = FakeDepositSource(NANOS), FakeDepositSource(NANOS)
    two.name = "other"
    one.add("x", "a", 700_000)
    one.add("y", "b", 700_000)
    two.add("x", "a", 700_000)
    watcher_for(journal, one).poll()
    watcher_for(journal, two).poll()
    assert [journal.balance(s) for s in ("a", "b")] == [0, 0]
    assert journal.deposit_carry("fake", "a") == journal.deposit_carry("other", "a") == 700_000


def test_wei_amounts_beyond_64_bits_are_booked(journal):
    wei_per_token = 10**12
    source = FakeDepositSource(units_per_token=wei_per_token)
    source.add("whale", "a", 25 * 10**18 + 7)  # 25 ETH does not fit SQLite's INTEGER
    watcher_for(journal, source).poll()
    assert journal.balance("a") == 25_000_000
    assert journal.deposit_carry("fake", "a") == 7
    assert journal.received_deposit("fake:whale")["units"] == 25 * 10**18 + 7


def test_a_deposit_too_big_for_the_journal_is_an_alarm_and_the_next_ones_are_credited(journal):
    source = FakeDepositSource(units_per_token=1)  # token_value = 1 wei: 5 ETH would be 5e18 tokens
    source.add("whale", "a", 5 * 10**18)
    source.add("next", "a", 40)
    source.add("other", "b", 7)
    watcher = watcher_for(journal, source)
    assert watcher.poll().credited == ("a", "b")
    assert (journal.balance("a"), journal.balance("b")) == (40, 7)
    assert journal.received_deposit("fake:whale") == {"socket": "a", "at": 1000.0, "units": 5 * 10**18, "tokens": 0}
    count, _, detail = journal.open_alarms()["a"]
    assert count == 1 and "uncreditable deposit: deposit whale of 5000000000000000000 units not credited" in detail
    assert journal.cursor("deposits:fake") is not None
    source.redeliver = True
    assert watcher.poll().credited == ()
    assert journal.open_alarms()["a"][0] == 1, "delivered again: no second alarm"


def test_a_failure_inside_the_booking_leaves_no_half_deposit(journal, monkeypatch):
    source = FakeDepositSource(units_per_token=NANOS)
    source.add("ok", "a", 3 * NANOS)
    source.add("bad", "a", 0)  # not a deposit: the whole poll is refused
    with pytest.raises(ValueError):
        watcher_for(journal, source).poll()
    assert journal.balance("a") == 0 and journal.received_deposit("fake:ok") is None
    assert journal.cursor("deposits:fake") is None


def test_a_reorganisation_alarm_is_the_watcher_status(journal):
    class Reorganised(FakeDepositSource):
        def deposits_since(self, cursor):
            raise LedgerReorganised("block 7 is no longer on the chain")

    watcher = watcher_for(journal, Reorganised())
    with pytest.raises(LedgerReorganised):
        watcher.poll()
    assert watcher.status == "alarm" and "block 7" in watcher.last_error


def test_ledger_accounts_are_assigned_once_and_never_reused(journal):
    assert journal.ledger_accounts(["a", "b", "c"], {}, 1.0) == {"a": 0, "b": 1, "c": 2}
    # Reordered configuration: same indices.
    assert journal.ledger_accounts(["c", "a", "b"], {}, 2.0) == {"c": 2, "a": 0, "b": 1}
    # b removed, d added: d does not inherit b's address.
    assert journal.ledger_accounts(["a", "c", "d"], {}, 3.0) == {"a": 0, "c": 2, "d": 3}
    # Explicit index for a new socket.
    assert journal.ledger_accounts(["a", "e"], {"e": 10}, 4.0) == {"a": 0, "e": 10}
    assert journal.ledger_accounts(["f"], {}, 5.0) == {"f": 4}


def test_ledger_account_conflicts_are_refused_and_change_nothing(journal):
    journal.ledger_accounts(["a", "b"], {}, 1.0)
    with pytest.raises(ValueError, match="'a' has had ledger account 0"):
        journal.ledger_accounts(["a"], {"a": 5}, 2.0)
    with pytest.raises(ValueError, match="already belongs to socket 'b'"):
        journal.ledger_accounts(["c"], {"c": 1}, 2.0)
    assert journal.ledger_accounts(["c"], {}, 3.0) == {"c": 2}


def test_ledger_accounts_survive_a_reopen(tmp_path):
    path = tmp_path / "j.sqlite"
    j = SqliteJournal(path)
    j.ledger_accounts(["x", "y"], {"y": 7}, 1.0)
    j.close()
    j = SqliteJournal(path)
    try:
        assert j.ledger_accounts(["y", "x"], {}, 2.0) == {"y": 7, "x": 0}
    finally:
        j.close()
    rows = sqlite3.connect(path).execute("SELECT COUNT(*) FROM ledger_accounts").fetchone()
    assert rows == (2,)
