"""Landlord sessions in a small SQLite file of the data directory (the SessionStore port).

A file of its own, not the journal: sessions are not money, they are written on every login
and now and then while the landlord works, and they may be thrown away (deleting the file
logs everybody out). Only the SHA-256 of each cookie's token is kept.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from payg.adapters.sqlite import Migrations, connect, transaction
from payg.ports import LandlordSession

FILE = "web-sessions.sqlite"
SESSIONS = Migrations("web sessions", (  # versions as in payg/adapters/sqlite.py; 1 is 96ddc8c's
    ("""CREATE TABLE sessions (
    key        TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    seen_at    REAL NOT NULL,
    password   TEXT NOT NULL,
    csrf       TEXT NOT NULL
)""",),
))


class SqliteSessionStore:
    def __init__(self, path: Path):
        fresh = not path.exists()
        self._conn = connect(path, migrations=SESSIONS)
        if fresh:
            os.chmod(path, 0o600)
        self._lock = threading.Lock()

    def add(self, session: LandlordSession) -> None:
        s = session
        with self._lock, transaction(self._conn) as c:
            c.execute("INSERT OR REPLACE INTO sessions VALUES (?, ?, ?, ?, ?)",
                      (s.key, s.created_at, s.seen_at, s.password, s.csrf))

    def get(self, key: str) -> LandlordSession | None:
        with self._lock:
            row = self._conn.execute("SELECT key, created_at, seen_at, password, csrf FROM sessions WHERE key = ?",
                                     (key,)).fetchone()
        return LandlordSession(*row) if row else None

    def seen(self, key: str, at: float) -> None:
        with self._lock, transaction(self._conn) as c:
            c.execute("UPDATE sessions SET seen_at = MAX(seen_at, ?) WHERE key = ?", (at, key))

    def remove(self, key: str) -> bool:
        with self._lock, transaction(self._conn) as c:
            return c.execute("DELETE FROM sessions WHERE key = ?", (key,)).rowcount > 0

    def remove_all(self) -> int:
        with self._lock, transaction(self._conn) as c:
            return c.execute("DELETE FROM sessions").rowcount

    def remove_stale(self, seen_before: float, created_before: float) -> int:
        with self._lock, transaction(self._conn) as c:
            return c.execute("DELETE FROM sessions WHERE seen_at < ? OR created_at < ?",
                             (seen_before, created_before)).rowcount

    def close(self) -> None:
        with self._lock:
            self._conn.close()
