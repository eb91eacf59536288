"""A journal made before emergency credit existed opens, keeps every entry and its id, and takes the new kinds."""

from __future__ import annotations

import sqlite3

import pytest

from payg.adapters.journal import SqliteJournal

# the entries table as payg made it before the emergency kinds (and so a real journal out there has it)
OLD_ENTRIES = """
CREATE TABLE entries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    socket_id TEXT NOT NULL,
    at REAL NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('deposit', 'credit', 'trade_in', 'usage', 'debit', 'trade_out')),
    amount INTEGER NOT NULL,
    energy_wh TEXT,
    idem_key TEXT UNIQUE,
    memo TEXT NOT NULL DEFAULT '',
    CHECK ((kind IN ('deposit', 'credit', 'trade_in') AND amount > 0 AND idem_key IS NOT NULL)
           OR (kind IN ('usage', 'debit', 'trade_out') AND amount <= 0))
);
CREATE INDEX entries_socket ON entries (socket_id, id);
CREATE INDEX entries_at ON entries (at);
CREATE TRIGGER entries_no_update BEFORE UPDATE ON entries
BEGIN SELECT RAISE(ABORT, 'the journal is append-only'); END;
CREATE TRIGGER entries_no_delete BEFORE DELETE ON entries
BEGIN SELECT RAISE(ABORT, 'the journal is append-only'); END;
INSERT INTO entries (socket_id, at, kind, amount, idem_key, memo) VALUES ('a', 1, 'deposit', 100, 'mock:1', 'first');
INSERT INTO entries (socket_id, at, kind, amount, energy_wh) VALUES ('a', 2, 'usage', -30, '30');
INSERT INTO entries (socket_id, at, kind, amount, idem_key) VALUES ('b', 3, 'credit', 5, 'manual:x');
"""


def test_an_old_journal_is_rebuilt_once_with_every_entry_and_takes_emergency_credit(tmp_path):
    path = tmp_path / "journal.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(OLD_ENTRIES)
    conn.close()
    with pytest.raises(sqlite3.IntegrityError):   # what the old table refuses
        c = sqlite3.connect(path)
        c.execute("INSERT INTO entries (socket_id, at, kind, amount, idem_key) VALUES ('a', 4, 'emergency', 5, 'e')")
    c.close()
    journal = SqliteJournal(path)
    try:
        assert journal.balance("a") == 70 and journal.balance("b") == 5
        assert [(e.id, e.kind, e.amount, e.memo) for e in journal.all_entries("a")] == [
            (1, "deposit", 100, "first"), (2, "usage", -30, "")]
        with journal.transaction() as tx:
            assert tx.credit("a", 20, "emergency", "emergency:a:1", 5.0, "emergency credit")
            tx.debit("a", 20, "emergency_repaid", 6.0, idem_key="emergency:a:1:repaid")
        assert [e.id for e in journal.all_entries("a")][-2:] == [4, 5]   # ids go on after the old ones
        assert journal.balance("a") == 70
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            journal._conn.execute("UPDATE entries SET amount = 1 WHERE id = 1")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            journal._conn.execute("DELETE FROM entries WHERE id = 1")
        names = {r[0] for r in journal._conn.execute("SELECT name FROM sqlite_master")}
        assert {"entries_socket", "entries_at", "entries_no_update", "entries_no_delete"} <= names
        assert "entries_before" not in names
    finally:
        journal.close()
    again = SqliteJournal(path)   # a second open finds nothing to do
    try:
        assert again.balance("a") == 70 and len(list(again.all_entries("a"))) == 4
    finally:
        again.close()
