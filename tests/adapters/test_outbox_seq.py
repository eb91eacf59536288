"""The MQTT events' seq (journal schema version 11): 1, 2, 3, ... per controller, no gaps even with the
notifications' rows in the same table or a transaction rolled back, never reused across a restart or after
every row was pruned; delivered rows kept until the retention, the kept ones a run without holes.

The migration is run on the journal version 10's code wrote (tests/fixtures/journal/v10.sqlite)."""

from __future__ import annotations

import shutil
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from payg.adapters.journal import SqliteJournal
from payg.adapters.journal_schema import SEQ_CURSOR
from payg.adapters.mqtt.outbox import Outbox

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "journal"


def outbox_rows(path: Path, columns: str = "id, uid, seq, delivered_at") -> list[tuple]:
    with closing(sqlite3.connect(path)) as db:
        return db.execute(f"SELECT {columns} FROM outbox ORDER BY id").fetchall()


def book(journal: SqliteJournal, n: int, start: int = 0) -> None:
    """n events, each with a notification's row before the next (credit_off is one people are told about)."""
    for i in range(start, start + n):
        with journal.transaction() as tx:
            tx.event("kitchen", "credit_off" if i % 2 else "relay", f"event {i}", 1_000.0 + i)


def test_version_11_numbers_the_rows_waiting_in_id_order_and_skips_the_notifications(tmp_path):
    path = tmp_path / "journal.sqlite"
    shutil.copyfile(FIXTURES / "v10.sqlite", path)
    with closing(sqlite3.connect(path)) as db, db:  # as a v10 controller left it: some delivered (deleted), a notice
        db.execute("DELETE FROM outbox WHERE id IN (1, 2)")
        for uid, kind in (("notify:a", "paid"), ("x", "relay")):
            db.execute("INSERT INTO outbox (uid, socket_id, at, kind, body) VALUES (?, 'kitchen', 1, ?, '{}')",
                       (uid, kind))
    before = outbox_rows(path, "id, uid")
    journal = SqliteJournal(path, outbox=True, notify=True)
    try:
        rows = outbox_rows(path)
        mqtt = [r for r in rows if not r[1].startswith("notify:")]
        assert [r[0] for r in rows] == [r[0] for r in before]  # nothing lost, ids kept
        assert [r[2] for r in mqtt] == list(range(1, len(mqtt) + 1)) and len(mqtt) == 8
        assert [r[2:] for r in rows if r[1].startswith("notify:")] == [(None, None)]
        assert all(r[3] is None for r in mqtt)  # not known to be delivered: sent (again) by the bridge
        assert journal._conn.execute("SELECT value FROM cursors WHERE name = ?", (SEQ_CURSOR,)).fetchone() == ("8",)
        book(journal, 2)
        assert [r[2] for r in outbox_rows(path) if not r[1].startswith("notify:")][-2:] == [9, 10]
        with pytest.raises(sqlite3.IntegrityError):  # the index keeps a seq unique
            journal._conn.execute("UPDATE outbox SET seq = 1 WHERE seq = 2")
    finally:
        journal.close()


def test_seq_has_no_gaps_with_notifications_between_and_a_transaction_rolled_back(tmp_path):
    path = tmp_path / "journal.sqlite"
    journal = SqliteJournal(path, outbox=True, notify=True)
    try:
        book(journal, 6)
        with pytest.raises(RuntimeError), journal.transaction() as tx:
            tx.event("kitchen", "relay", "rolled back", 2_000.0)
            raise RuntimeError("the tick failed")
        book(journal, 2, start=6)
        with journal.transaction() as tx:
            assert tx.credit("kitchen", 50, "deposit", "mock:1", 3_000.0)  # a payment: a notice too
        rows = outbox_rows(path)
        assert sum(r[1].startswith("notify:") for r in rows) == 5  # interleaved: the outbox ids have gaps for MQTT
        mqtt = [r for r in rows if not r[1].startswith("notify:")]
        assert [r[2] for r in mqtt] == list(range(1, 10))
        assert [r[0] for r in mqtt] != list(range(mqtt[0][0], mqtt[0][0] + 9))
    finally:
        journal.close()


def test_delivered_rows_are_kept_then_pruned_and_seq_grows_across_restarts_and_after_everything_is_pruned(
        tmp_path):
    path = tmp_path / "journal.sqlite"
    journal = SqliteJournal(path, outbox=True, notify=True)
    book(journal, 5)
    outbox = Outbox(path)
    try:
        assert (outbox.oldest_seq(), outbox.last_seq(), outbox.pending()) == (1, 5, 5)
        first = outbox.after(0, 100)
        assert [r.seq for r in first] == [1, 2, 3, 4, 5] and first[0].body == {"detail": "event 0"}
        outbox.delivered([r.id for r in first[:3]], at=10_000.0)
        assert [r.seq for r in outbox.after(0, 100)] == [4, 5] and outbox.pending() == 2
        assert [r.seq for r in outbox.after(4, 100)] == [5]
        assert [r.seq for r in outbox.replay(2, 100)] == [2, 3, 4, 5]  # delivered or not
        assert [r.seq for r in outbox.replay(2, 2)] == [2, 3] and outbox.count(2, 5) == 4
        assert outbox.prune(10_000.0) == 0  # delivered at 10,000: not before it
        outbox.delivered([first[3].id], at=20_000.0)
        outbox.delivered([first[0].id], at=30_000.0)  # a second acknowledgement keeps the first time
        assert outbox.prune(25_000.0) == 4 and outbox.oldest_seq() == 5  # seq 5 waits: kept
        journal.close()
        journal = SqliteJournal(path, outbox=True, notify=True)  # the controller restarted
        book(journal, 2, start=5)
        assert [r.seq for r in outbox.after(0, 100)] == [5, 6, 7]
        outbox.delivered([r.id for r in outbox.after(0, 100)], at=40_000.0)
        assert outbox.prune(50_000.0) == 3
        assert (outbox.oldest_seq(), outbox.last_seq(), outbox.pending(), outbox.replay(1, 10)) == (None, 7, 0, [])
        book(journal, 1, start=7)
        assert [r.seq for r in outbox.after(0, 100)] == [8] and outbox.last_seq() == 8
        journal._conn.execute("DELETE FROM cursors WHERE name = ?", (SEQ_CURSOR,))  # lost, or set by hand
        book(journal, 1, start=8)
        assert [r.seq for r in outbox.after(0, 100)] == [8, 9]  # from the highest kept, never a seq again
    finally:
        outbox.close()
        journal.close()


def test_pruning_keeps_the_kept_rows_a_run_without_holes(tmp_path):
    path = tmp_path / "journal.sqlite"
    journal = SqliteJournal(path, outbox=True)
    book(journal, 4)
    outbox = Outbox(path)
    try:
        rows = outbox.after(0, 10)
        outbox.delivered([rows[0].id, rows[2].id], at=100.0)
        outbox.delivered([rows[1].id], at=900.0)  # (a clock set back, acknowledgements out of order)
        assert outbox.prune(500.0) == 1  # seq 3 is older but follows seq 2, which stays
        assert [r.seq for r in outbox.replay(1, 10)] == [2, 3, 4]
    finally:
        outbox.close()
        journal.close()
