"""The one way payg opens a SQLite file, writes a transaction, and upgrades a file's schema.

Every file (the journal, the mock ledger, the IOTA trade store) is opened in WAL mode, and
readers never block the writer. With synchronous=FULL (the default) each commit syncs the WAL: a
committed transaction survives a power cut. The journal opens with NORMAL, which syncs only at a
checkpoint (a commit survives a crash of the process, not always a power cut: it is still atomic),
and syncs the commits that must survive one with `sync_wal` (see payg/adapters/journal_writer.py).
Connections are shared between threads (check_same_thread off) and
each owner serialises its own use with a lock.

A file whose schema is a `Migrations` keeps its version in `PRAGMA user_version`: step n
makes version n from version n - 1 (step 1 makes the first layout from nothing).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from payg.errors import PaygError

Step = tuple[str, ...] | Callable[[sqlite3.Connection], None]  # statements run in order, or a function


class SchemaRefused(PaygError):
    """A file's schema is newer than this code, or a layout it never made: the file was not written."""


@dataclass(frozen=True)
class Migrations:
    """A file's schema as its numbered steps. A step that changes nothing PRAGMA table_info, index_list
    or the trigger names can see must be safe to run again on a file that had it (see `identify`)."""

    name: str  # what the file is, for errors
    steps: tuple[Step, ...]

    @property
    def latest(self) -> int:
        return len(self.steps)


def connect(path: str | Path, *, schema: str | None = None, migrations: Migrations | None = None,
            synchronous: Literal["FULL", "NORMAL"] = "FULL") -> sqlite3.Connection:
    """Open (or create) `path` in autocommit mode with payg's PRAGMAs; then run `schema`, or bring the
    file to the latest version of `migrations` (SchemaRefused, the file untouched, if it cannot)."""
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30)
    try:
        if migrations is not None:  # before the PRAGMAs: a file refused is not even switched to WAL
            _refuse_newer(conn, migrations, path)
            if not version(conn):
                identify(conn, migrations, path)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={synchronous}")
        conn.execute("PRAGMA foreign_keys=ON")
        if schema is not None:
            conn.executescript(schema)
        if migrations is not None:
            upgrade(conn, migrations, path)
    except BaseException:
        conn.close()
        raise
    return conn


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT, ROLLBACK on any error; inside another transaction it joins that one."""
    if conn.in_transaction:
        yield conn
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def sync_wal(path: str | Path) -> None:
    """Sync what is committed to a WAL-mode file opened with synchronous=NORMAL: one fsync of its -wal file
    (SQLite refuses to change the level inside a transaction, and fsync applies to the file, whichever
    descriptor asks)."""
    try:
        fd = os.open(f"{path}-wal", os.O_RDONLY)
    except FileNotFoundError:  # checkpointed and removed: the commit is in the database file
        fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LazyTransaction:
    """A transaction that begins (BEGIN IMMEDIATE) at its first statement. The loop opens one every tick and
    most ticks write nothing: those now take no write lock and cost no BEGIN and COMMIT."""

    def __init__(self, conn: sqlite3.Connection, begun: bool = False):
        self._conn = conn
        self.begun = begun

    def execute(self, sql: str, params: Sequence[object] = ()) -> sqlite3.Cursor:
        if not self.begun:
            self._conn.execute("BEGIN IMMEDIATE")
            self.begun = True
        return self._conn.execute(sql, params)


@contextmanager
def lazy_transaction(conn: sqlite3.Connection) -> Iterator[LazyTransaction]:
    """`transaction` begun only when a statement runs in it; inside another transaction it joins that one."""
    if conn.in_transaction:
        yield LazyTransaction(conn, begun=True)
        return
    tx = LazyTransaction(conn)
    try:
        yield tx
    except BaseException:
        if tx.begun:
            conn.execute("ROLLBACK")
        raise
    if tx.begun:
        conn.execute("COMMIT")


def version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def upgrade(conn: sqlite3.Connection, migrations: Migrations, path: str | Path = "") -> int:
    """Run the steps after the file's version, in order, and set the new version, all in one transaction:
    a crash or a failing step leaves the file at its old version, as it was. A file of version 0 that has
    tables (made before versions were kept) is first given the version its shape says. Returns the version."""
    if version(conn) == migrations.latest:  # the usual open: no write lock taken
        return migrations.latest
    with transaction(conn):
        _refuse_newer(conn, migrations, path)
        stamped = version(conn)
        for step in migrations.steps[stamped or identify(conn, migrations, path):]:
            _run(conn, step)
        if stamped != migrations.latest:
            conn.execute(f"PRAGMA user_version = {migrations.latest:d}")
    return migrations.latest


def identify(conn: sqlite3.Connection, migrations: Migrations, path: str | Path = "") -> int:
    """The version of a file that does not say: the lowest whose shape (tables, their columns, indexes and
    triggers) it has, 0 for an empty file; SchemaRefused if no version of `migrations` had that shape."""
    found = shape(conn)
    if not found:
        return 0
    made = sqlite3.connect(":memory:", isolation_level=None)
    try:
        for n, step in enumerate(migrations.steps, start=1):
            _run(made, step)
            if shape(made) == found:
                return n
    finally:
        made.close()
    raise SchemaRefused(f"{path}: not a {migrations.name} layout any version of payg made (its tables:"
                        f" {', '.join(sorted(found))}); nothing was changed")


def shape(conn: sqlite3.Connection) -> dict[str, tuple[object, ...]]:
    """Each table's columns (name, type, not null, default, key), indexes (name, unique) and triggers."""
    out: dict[str, tuple[object, ...]] = {}
    names = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
    for (table,) in names.fetchall():
        columns = tuple(tuple(r[1:]) for r in conn.execute(f"PRAGMA table_info('{table}')"))
        indexes = tuple(sorted((r[1], r[2]) for r in conn.execute(f"PRAGMA index_list('{table}')")))
        triggers = tuple(sorted(r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ?", (table,))))
        out[table] = (columns, indexes, triggers)
    return out


def _refuse_newer(conn: sqlite3.Connection, migrations: Migrations, path: str | Path) -> None:
    found = version(conn)
    if found > migrations.latest:
        raise SchemaRefused(f"{path}: {migrations.name} schema version {found} is newer than this payg's"
                            f" ({migrations.latest}): a later payg wrote it; run that one, or restore a backup"
                            " made before the upgrade. Nothing was changed")


def _run(conn: sqlite3.Connection, step: Step) -> None:
    if callable(step):
        step(conn)
        return
    for statement in step:
        conn.execute(statement)
