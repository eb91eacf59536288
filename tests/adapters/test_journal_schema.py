"""Schema versions of the journal (and of the sessions' file): every journal an earlier payg wrote opens with its
balances and history exact; each step makes what the next version's code made; a newer file, an unknown one and a
step that fails or a process that dies mid-upgrade leave the file as it was.

The fixtures are journals the old code itself wrote (tests/fixtures/journal/make_fixtures.py)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from payg.adapters.journal import SqliteJournal
from payg.adapters.journal_schema import JOURNAL, SEQ_CURSOR
from payg.adapters.sqlite import Migrations, SchemaRefused, shape, upgrade, version
from payg.adapters.web_sessions import SESSIONS, SqliteSessionStore
from payg.domain.accounts import CREDIT_KINDS, DEBIT_KINDS

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "journal"
VERSIONS = range(1, JOURNAL.latest + 1)
# The versions whose code wrote a fixture: the newest step's is made (make_fixtures.py) once its commit is named.
FIXTURED = [n for n in VERSIONS if (FIXTURES / f"v{n}.sqlite").exists()]
SEQS = 11  # version 11 numbered the MQTT rows of the outbox (seq) and keeps the last one given (a cursor)


def copy(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    shutil.copyfile(FIXTURES / name, path)
    return path


def rows(path: Path) -> dict[str, list[tuple]]:
    """Every row of every table, in its order."""
    conn = sqlite3.connect(path)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"
                                             " AND name NOT LIKE 'sqlite_%'")]
        return {t: conn.execute(f"SELECT * FROM {t} ORDER BY rowid").fetchall() for t in tables}
    finally:
        conn.close()


def dump(path: Path) -> tuple[int, list[str]]:
    conn = sqlite3.connect(path)
    try:
        return version(conn), list(conn.iterdump())
    finally:
        conn.close()


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


UNVERSIONED = 9  # versions 1-9 were written before a journal kept its version (PRAGMA user_version)


def test_the_fixtures_are_what_each_version_wrote_before_versions_were_kept():
    assert FIXTURED == list(range(1, len(FIXTURED) + 1)) and len(FIXTURED) >= JOURNAL.latest - 1
    for n in FIXTURED:
        assert dump(FIXTURES / f"v{n}.sqlite")[0] == (0 if n <= UNVERSIONED else n)


@pytest.mark.parametrize("n", FIXTURED)
def test_a_journal_of_every_version_opens_with_its_balances_and_every_row(tmp_path, n):
    path = copy(tmp_path, f"v{n}.sqlite")
    before = rows(path)
    answered = json.loads((FIXTURES / f"v{n}.json").read_text())
    journal = SqliteJournal(path)
    try:
        assert version(journal._conn) == JOURNAL.latest
        for socket_id, old in answered.items():
            assert journal.balance(socket_id) == old["balance"] == journal.recomputed_balance(socket_id)
        last_id = before["entries"][-1][0]
        with journal.transaction() as tx:   # the newest kinds and tables take writes
            assert tx.credit("garden", 20, "emergency", f"emergency:v{n}", 9e9, "emergency credit")
            tx.debit("garden", 20, "emergency_repaid", 9e9, idem_key=f"emergency:v{n}:repaid")
            assert tx.record_code_request("kitchen", f"req-v{n}", 9, 100, 10, 9e9)
        assert [e.id for e in journal.all_entries("garden")][-2:] == [last_id + 1, last_id + 2]
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            journal._conn.execute("UPDATE entries SET amount = 1 WHERE id = 1")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            journal._conn.execute("DELETE FROM entries WHERE id = 1")
    finally:
        journal.close()
    after = rows(path)
    for table, old_rows in before.items():
        grown = after[table][:len(old_rows)] if table in ("entries", "events", "outbox") else after[table]
        if table == "code_requests":
            grown = [r for r in after[table] if not r[1].startswith("req-v")]
        if table == "cursors" and n < SEQS:  # the outbox's last seq: as many as the rows it numbered
            assert dict(grown).pop(SEQ_CURSOR) == str(len(before.get("outbox", [])))
            grown = [r for r in grown if r[0] != SEQ_CURSOR]
        if table == "outbox" and n < SEQS:  # the rows waiting numbered in id order, none delivered yet
            assert [r[len(old_rows[0]):] for r in grown] == [(i, None) for i in range(1, len(grown) + 1)]
            grown = [r[:len(old_rows[0])] for r in grown]
        if old_rows:  # a later version's new columns (NULL in old rows) come after the old ones
            width = len(old_rows[0])
            assert all(set(r[width:]) <= {None} for r in grown), table
            grown = [r[:width] for r in grown]
        assert grown == old_rows, table
    assert "entries_before" not in after


@pytest.mark.parametrize("n", [n for n in FIXTURED if n < JOURNAL.latest])
def test_each_step_makes_what_the_next_versions_code_made(tmp_path, n):
    path = copy(tmp_path, f"v{n}.sqlite")
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        assert upgrade(conn, Migrations("journal", JOURNAL.steps[:n + 1])) == n + 1
        assert shape(conn) == shape(_made_by(n + 1, tmp_path))
    finally:
        conn.close()


def _made_by(n: int, tmp_path: Path) -> sqlite3.Connection:
    """The journal version n's code wrote: its fixture, or for the newest version without one yet, a new journal."""
    if (FIXTURES / f"v{n}.sqlite").exists():
        return sqlite3.connect(FIXTURES / f"v{n}.sqlite")
    assert n == JOURNAL.latest
    SqliteJournal(tmp_path / "new.sqlite").close()
    return sqlite3.connect(tmp_path / "new.sqlite")


def test_a_new_journal_is_the_latest_version_and_takes_every_kind_the_domain_has(tmp_path):
    journal = SqliteJournal(tmp_path / "journal.sqlite")
    try:
        assert version(journal._conn) == JOURNAL.latest
        if JOURNAL.latest in FIXTURED:
            assert shape(journal._conn) == shape(sqlite3.connect(FIXTURES / f"v{JOURNAL.latest}.sqlite"))
        with journal.transaction() as tx:   # a kind added to the domain needs a step that allows it
            for i, kind in enumerate(CREDIT_KINDS):
                assert tx.credit("k", 1, kind, f"key:{i}", 1.0)
            for kind in DEBIT_KINDS:
                assert tx.debit("k", 1, kind, 2.0)
    finally:
        journal.close()


@pytest.mark.parametrize("n", [1, 6, FIXTURED[-1]])
def test_the_upgrade_runs_once(tmp_path, n):
    path = copy(tmp_path, f"v{n}.sqlite")
    SqliteJournal(path).close()
    upgraded = dump(path)
    SqliteJournal(path).close()
    assert dump(path) == upgraded
    boom = Migrations("journal", tuple(_explode for _ in JOURNAL.steps))   # no step of a current file runs
    conn = sqlite3.connect(path, isolation_level=None)
    assert upgrade(conn, boom) == JOURNAL.latest
    conn.close()


def _explode(conn: sqlite3.Connection) -> None:
    raise RuntimeError("a step that fails")


def test_a_journal_newer_than_the_code_is_refused_and_left_as_it_is(tmp_path):
    path = copy(tmp_path, f"v{FIXTURED[-1]}.sqlite")
    SqliteJournal(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {JOURNAL.latest + 1}")
    conn.commit()
    conn.close()
    before = digest(path)
    with pytest.raises(SchemaRefused, match=f"version {JOURNAL.latest + 1} is newer than this payg's"
                                            f" \\({JOURNAL.latest}\\)"):
        SqliteJournal(path)
    assert digest(path) == before
    assert not Path(f"{path}-wal").exists()


def test_a_file_of_no_known_layout_is_refused(tmp_path):
    path = tmp_path / "journal.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE entries (id INTEGER PRIMARY KEY, what TEXT)")
    conn.commit()
    conn.close()
    before = digest(path)
    with pytest.raises(SchemaRefused, match="not a journal layout"):
        SqliteJournal(path)
    assert digest(path) == before and dump(path)[0] == 0


@pytest.mark.parametrize("stamped", [False, True])
def test_a_failing_step_leaves_the_journal_at_its_old_version_as_it_was(tmp_path, stamped):
    path = copy(tmp_path, "v5.sqlite")
    conn = sqlite3.connect(path, isolation_level=None)
    if stamped:
        upgrade(conn, Migrations("journal", JOURNAL.steps[:5]))
    before = dump(path)
    failing = Migrations("journal", JOURNAL.steps[:7] + (_explode,))   # 6 and 7 (the rebuild) run, then 8 fails
    with pytest.raises(RuntimeError, match="a step that fails"):
        upgrade(conn, failing)
    assert not conn.in_transaction
    conn.close()
    assert dump(path) == before and before[0] == (5 if stamped else 0)
    journal = SqliteJournal(path)   # and the real upgrade still works from there
    try:
        assert journal.balance("kitchen") == json.loads((FIXTURES / "v5.json").read_text())["kitchen"]["balance"]
    finally:
        journal.close()


def test_a_process_killed_mid_upgrade_leaves_the_journal_as_it_was(tmp_path):
    path = copy(tmp_path, "v6.sqlite")
    before = dump(path)
    script = ("import os, sqlite3, sys\n"
              "from payg.adapters.journal_schema import JOURNAL\n"
              "from payg.adapters.sqlite import Migrations, connect\n"
              "def die(conn): os._exit(3)\n"
              "connect(sys.argv[1], migrations=Migrations('journal', JOURNAL.steps + (die,)))\n")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    died = subprocess.run([sys.executable, "-c", script, str(path)], env=env, capture_output=True, text=True)
    assert died.returncode == 3, died.stderr   # it died after the entries table was rebuilt, before the commit
    assert dump(path) == before
    journal = SqliteJournal(path)
    try:
        assert version(journal._conn) == JOURNAL.latest
        assert journal.balance("garden") == json.loads((FIXTURES / "v6.json").read_text())["garden"]["balance"]
    finally:
        journal.close()


def test_a_sessions_file_from_before_versions_keeps_its_sessions_and_a_newer_one_is_refused(tmp_path):
    path = copy(tmp_path, "sessions-v1.sqlite")
    before = rows(path)
    store = SqliteSessionStore(path)
    try:
        assert version(store._conn) == SESSIONS.latest == 1
        session = store.get("a" * 64)
        assert session is not None and (session.created_at, session.csrf) == (1_764_547_200.0, "csrf-1")
    finally:
        store.close()
    assert rows(path) == before
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 2")
    conn.commit()
    conn.close()
    with pytest.raises(SchemaRefused, match="web sessions schema version 2"):
        SqliteSessionStore(path)


def test_a_current_journal_opens_while_another_connection_writes(tmp_path):
    path = tmp_path / "journal.sqlite"
    SqliteJournal(path).close()
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")   # the controller in the middle of a tick
    try:
        journal = SqliteJournal(path)   # e.g. a CLI command: no upgrade to do, so no write lock to wait for
        journal.close()
    finally:
        writer.execute("ROLLBACK")
        writer.close()
