"""The one way payg opens a SQLite file, and the one way it writes a transaction.

Every file (the journal, the mock ledger, the IOTA trade store) is opened in WAL mode
with synchronous=FULL: a committed transaction survives a power cut, and readers never
block the writer. Connections are shared between threads (check_same_thread off) and
each owner serialises its own use with a lock.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def connect(path: str | Path, *, schema: str | None = None) -> sqlite3.Connection:
    """Open (or create) `path` in autocommit mode with payg's PRAGMAs, and run `schema` once opened."""
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        if schema is not None:
            conn.executescript(schema)
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
