"""The fleet archive's database side (fleet_archive.py holds the buffering and the writer thread): the URL,
connecting to SQLite or PostgreSQL, the schema migrations (yoyo, from payg/adapters/fleet_migrations), one batch
written in one transaction, and the reads.

The SQL is written once, with "?" placeholders, for both databases; PostgreSQL's driver gets "%s" instead.
psycopg and yoyo are imported when used: a hub on SQLite needs no psycopg.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

MIGRATIONS = "package:payg.adapters:fleet_migrations"
CHUNK = 1000  # rows per executemany
BATCH_IDS_KEPT_S = 7 * 86400  # a lost commit answer is retried within minutes; a week is plenty

EventRow = tuple[str, str, int | None, str | None, str, float, str, int | None, str]


class ArchiveError(Exception):
    """The fleet history cannot be used: a bad URL, or a database that cannot answer a read."""


@dataclass(frozen=True)
class Target:
    backend: str        # "sqlite" or "postgresql"
    url: str            # as the user wrote it
    yoyo_url: str

    @property
    def sqlite_path(self) -> str:
        return self.url[len("sqlite:///"):]


def parse_url(url: str) -> Target:
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):]
        if not path.startswith("/") or path == "/":
            raise ArchiveError(f"the fleet history URL {url!r} needs an absolute file path: "
                               "sqlite:////abs/path/hub-history.sqlite (four slashes)")
        return Target("sqlite", url, url)
    if url.startswith("postgresql://"):
        # yoyo's plain "postgresql" scheme is its psycopg2 backend; psycopg 3 is "postgresql+psycopg"
        return Target("postgresql", url, "postgresql+psycopg://" + url[len("postgresql://"):])
    scheme = url.split(":", 1)[0] if ":" in url else url
    raise ArchiveError(f"the fleet history URL must start with sqlite:/// or postgresql://, not {scheme!r} "
                       "(sqlite:////abs/path/hub-history.sqlite or postgresql://user@host:port/dbname)")


def migrate(target: Target) -> list[str]:
    """Apply the migrations this database lacks, under yoyo's lock; the ids applied (none when up to date)."""
    from yoyo import get_backend, read_migrations  # type: ignore[import-untyped]

    backend = get_backend(target.yoyo_url)
    try:
        migrations = read_migrations(MIGRATIONS)
        if not migrations:
            raise ArchiveError(f"no migrations found at {MIGRATIONS} (is the package installed whole?)")
        with backend.lock():
            todo = backend.to_apply(migrations)
            backend.apply_migrations(todo)
        return [m.id for m in todo]
    finally:
        backend.connection.close()


class Db:
    """One connection, in autocommit; `transaction()` groups statements."""

    def __init__(self, target: Target):
        self.backend = target.backend
        self.conn: Any
        if target.backend == "sqlite":
            self.conn = sqlite3.connect(target.sqlite_path, timeout=10, isolation_level=None,
                                        check_same_thread=False)
            self.conn.execute("PRAGMA journal_mode=WAL")  # the web's reads do not wait for the writer
            self.conn.execute("PRAGMA synchronous=NORMAL")
        else:
            import psycopg

            # keepalives and tcp_user_timeout: a database host that vanishes fails a write in about
            # 30 s instead of leaving the writer blocked on a dead socket
            self.conn = psycopg.connect(target.url, autocommit=True, connect_timeout=5, keepalives=1,
                                        keepalives_idle=10, keepalives_interval=5, keepalives_count=3,
                                        tcp_user_timeout=30_000)

    def close(self) -> None:
        try:
            self.conn.close()
        except Exception:  # a broken connection may fail to close; it is dropped either way
            pass

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.backend == "postgresql" else sql

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        cur = self.conn.cursor()
        cur.execute(self._sql(sql), tuple(params))
        return cur

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        changed = 0
        for i in range(0, len(rows), CHUNK):
            cur = self.conn.cursor()
            cur.executemany(self._sql(sql), [tuple(r) for r in rows[i:i + CHUNK]])
            changed += max(cur.rowcount, 0)
        return changed

    @contextmanager
    def transaction(self) -> Iterator[None]:
        if self.backend == "postgresql":
            with self.conn.transaction():
                yield
            return
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def ping(self) -> None:
        self.execute("SELECT 1").fetchall()


@contextmanager
def connected(target: Target) -> Iterator[Db]:
    try:
        db = Db(target)
    except Exception as exc:
        raise ArchiveError(f"the fleet history database ({target.backend}) is unavailable: {exc}") from exc
    try:
        yield db
    except ArchiveError:
        raise
    except Exception as exc:
        raise ArchiveError(f"the fleet history database ({target.backend}) failed: {exc}") from exc
    finally:
        db.close()


@dataclass(frozen=True)
class DayRow:
    """One socket-day's aggregate as written: energy in mWh, its bridge from the stored counter already added."""

    controller: str
    socket: str
    day: str
    energy_mwh: int
    closing_balance: int | None
    currency: str | None
    balance_at: float | None
    last_at: float | None
    last_counter_wh: float | None


INSERT_EVENT = """INSERT INTO hub_events (id, controller, seq, socket, kind, at, day, amount, body)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING"""

# The stored row and the new aggregate merged: energy added; balance and currency from the later state;
# the latest time and counter kept.
UPSERT_DAY = """INSERT INTO hub_socket_days
(controller, socket, day, energy_mwh, closing_balance, currency, balance_at, last_at, last_counter_wh)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (controller, socket, day) DO UPDATE SET
energy_mwh = hub_socket_days.energy_mwh + excluded.energy_mwh,
closing_balance = CASE WHEN excluded.balance_at IS NOT NULL AND (hub_socket_days.balance_at IS NULL
    OR excluded.balance_at >= hub_socket_days.balance_at) THEN excluded.closing_balance
    ELSE hub_socket_days.closing_balance END,
currency = CASE WHEN excluded.balance_at IS NOT NULL AND (hub_socket_days.balance_at IS NULL
    OR excluded.balance_at >= hub_socket_days.balance_at) THEN excluded.currency
    ELSE hub_socket_days.currency END,
balance_at = CASE WHEN excluded.balance_at IS NOT NULL AND (hub_socket_days.balance_at IS NULL
    OR excluded.balance_at >= hub_socket_days.balance_at) THEN excluded.balance_at
    ELSE hub_socket_days.balance_at END,
last_at = CASE WHEN hub_socket_days.last_at IS NULL OR excluded.last_at > hub_socket_days.last_at
    THEN excluded.last_at ELSE hub_socket_days.last_at END,
last_counter_wh = COALESCE(excluded.last_counter_wh, hub_socket_days.last_counter_wh)"""

# A day's top-ups are recounted from the stored events, so an event stored once is counted once, whatever
# redeliveries and retries came before.
ENSURE_DAY = """INSERT INTO hub_socket_days (controller, socket, day, last_at) VALUES (?, ?, ?, ?)
ON CONFLICT (controller, socket, day) DO UPDATE SET
last_at = CASE WHEN hub_socket_days.last_at IS NULL OR excluded.last_at > hub_socket_days.last_at
    THEN excluded.last_at ELSE hub_socket_days.last_at END"""
RECOUNT_TOPUPS = """UPDATE hub_socket_days SET topups = (SELECT COALESCE(SUM(e.amount), 0) FROM hub_events e
WHERE e.controller = ? AND e.socket = ? AND e.day = ? AND e.kind = 'credited' AND e.amount IS NOT NULL)
WHERE controller = ? AND socket = ? AND day = ?"""


def write_batch(db: Db, batch_id: str, now: float, events: Sequence[EventRow], days: Iterable[DayRow]) -> int | None:
    """One transaction: the events (a known id ignored), the day rows merged, the top-ups of the days that got a
    credited event recounted. The events newly stored; None when this batch id was committed before (a retry
    whose first commit's answer was lost), in which case nothing is applied again."""
    with db.transaction():
        if db.execute("INSERT INTO hub_archive_batches (id, at) VALUES (?, ?) ON CONFLICT (id) DO NOTHING",
                      (batch_id, now)).rowcount == 0:
            return None
        stored = db.executemany(INSERT_EVENT, events)
        db.executemany(UPSERT_DAY, [(d.controller, d.socket, d.day, d.energy_mwh, d.closing_balance, d.currency,
                                     d.balance_at, d.last_at, d.last_counter_wh) for d in days])
        credited: dict[tuple[str, str, str], float] = {}
        for e in events:
            if e[4] == "credited" and e[3] is not None:
                key = (e[1], e[3], e[6])
                credited[key] = max(credited.get(key, e[5]), e[5])
        keys = sorted(credited)
        db.executemany(ENSURE_DAY, [(*k, credited[k]) for k in keys])
        db.executemany(RECOUNT_TOPUPS, [(*k, *k) for k in keys])
        db.execute("DELETE FROM hub_archive_batches WHERE at < ?", (now - BATCH_IDS_KEPT_S,))
    return stored


def last_counters(db: Db) -> dict[tuple[str, str], float]:
    """Each socket's meter counter as last stored (its latest day that has one)."""
    rows = db.execute("""SELECT d.controller, d.socket, d.last_counter_wh FROM hub_socket_days d
JOIN (SELECT controller, socket, MAX(day) AS day FROM hub_socket_days WHERE last_counter_wh IS NOT NULL
      GROUP BY controller, socket) m ON d.controller = m.controller AND d.socket = m.socket AND d.day = m.day
""").fetchall()
    return {(c, s): float(v) for c, s, v in rows}


def wh(mwh: int) -> int:
    return (int(mwh) + 500) // 1000  # to the nearest Wh, half up


def socket_days(db: Db, controller: str, socket: str, first: str, last: str) -> list[tuple[str, int, int,
                                                                                            int | None, str | None]]:
    rows = db.execute("""SELECT day, energy_mwh, topups, closing_balance, currency FROM hub_socket_days
WHERE controller = ? AND socket = ? AND day >= ? AND day <= ? ORDER BY day""", (controller, socket, first, last))
    return [(d, wh(e), int(t), None if b is None else int(b), c) for d, e, t, b, c in rows.fetchall()]


def fleet_days(db: Db, first: str, last: str) -> list[tuple[str, int, int, int]]:
    rows = db.execute("""SELECT day, COUNT(*), SUM(energy_mwh), SUM(topups) FROM hub_socket_days
WHERE day >= ? AND day <= ? GROUP BY day ORDER BY day""", (first, last))
    return [(d, int(n), wh(e), int(t)) for d, n, e, t in rows.fetchall()]
