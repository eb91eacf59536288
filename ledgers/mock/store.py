"""The mock ledger's SQLite file, shared by MockLedger (payments) and MockTrade (market and channels).

One connection per object, used under its own lock; every sqlite3 error becomes LedgerUnavailable,
as a real ledger's node failure would.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from payg.adapters.sqlite import connect, transaction
from payg.errors import LedgerUnavailable


class MockFile:
    def __init__(self, path: str | Path, schema: str):
        self.path = Path(path)
        self._lock = threading.Lock()
        with self._errors():
            self._conn = connect(self.path, schema=schema)

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise LedgerUnavailable(f"mock ledger {self.path}: {exc}") from exc

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, under the lock: everything in it commits, or nothing does."""
        with self._lock, self._errors(), transaction(self._conn) as conn:
            yield conn

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self._lock, self._errors():
            return self._conn.execute(sql, params).fetchall()

    def close(self) -> None:
        with self._lock:
            self._conn.close()
