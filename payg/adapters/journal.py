"""SqliteJournal: every socket's account, append-only, crash-safe.

One SQLite file in WAL mode with synchronous=FULL. Entries are never updated
or deleted (triggers refuse it). Credits carry an idempotency key under a
UNIQUE constraint, so a deposit seen twice is booked once. Each metering tick
is one transaction that stores every socket's billing state (last billed
counter value, carry, and the usage not yet closed into an entry) together
with the entries it appends, so a crash at any moment leaves either all of a
tick or none of it.

Usage is closed into one `usage` entry per socket per `usage_entry_s` of
consumption (a row per tick would fill an SD card); until then it is held
as `pending` in the socket's state row, written in every tick's
transaction. The balance is the sum of the entries minus that pending usage.
"""

from __future__ import annotations

import sqlite3
import threading
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path
from typing import Iterator

from payg.domain.accounts import ALARM_KINDS, CREDIT_KINDS, DEBIT_KINDS, Entry
from payg.domain.billing import Baseline, MeterState
from payg.domain.market import ChannelRow

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS entries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    socket_id TEXT NOT NULL,
    at REAL NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN {CREDIT_KINDS + DEBIT_KINDS}),
    amount INTEGER NOT NULL,
    energy_wh TEXT,
    idem_key TEXT UNIQUE,
    memo TEXT NOT NULL DEFAULT '',
    CHECK ((kind IN {CREDIT_KINDS} AND amount > 0 AND idem_key IS NOT NULL)
           OR (kind IN {DEBIT_KINDS} AND amount <= 0))
);
CREATE INDEX IF NOT EXISTS entries_socket ON entries (socket_id, id);
CREATE INDEX IF NOT EXISTS entries_at ON entries (at);
CREATE TRIGGER IF NOT EXISTS entries_no_update BEFORE UPDATE ON entries
BEGIN SELECT RAISE(ABORT, 'the journal is append-only'); END;
CREATE TRIGGER IF NOT EXISTS entries_no_delete BEFORE DELETE ON entries
BEGIN SELECT RAISE(ABORT, 'the journal is append-only'); END;
CREATE TABLE IF NOT EXISTS meter_state (
    socket_id TEXT PRIMARY KEY,
    counter_wh TEXT NOT NULL,
    read_at REAL NOT NULL,
    carry TEXT NOT NULL,
    pending_units INTEGER NOT NULL DEFAULT 0 CHECK (pending_units >= 0),
    pending_wh TEXT NOT NULL DEFAULT '0',
    pending_since REAL
);
CREATE TABLE IF NOT EXISTS cursors (
    name TEXT PRIMARY KEY,
    value TEXT
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    socket_id TEXT NOT NULL,
    at REAL NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS events_socket ON events (socket_id, id);
CREATE TABLE IF NOT EXISTS received_deposits (
    idem_key TEXT PRIMARY KEY,
    socket_id TEXT NOT NULL,
    at REAL NOT NULL,
    units TEXT NOT NULL,
    tokens INTEGER NOT NULL CHECK (tokens >= 0)
);
CREATE TABLE IF NOT EXISTS deposit_carry (
    source TEXT NOT NULL,
    socket_id TEXT NOT NULL,
    units TEXT NOT NULL,
    PRIMARY KEY (source, socket_id)
);
CREATE TABLE IF NOT EXISTS ledger_accounts (
    socket_id TEXT PRIMARY KEY,
    account_index INTEGER NOT NULL UNIQUE CHECK (account_index >= 0),
    assigned_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS channels (
    domain TEXT NOT NULL,
    channel_id TEXT NOT NULL,
    socket_id TEXT NOT NULL,
    direction TEXT NOT NULL CHECK (direction IN ('in', 'out')),
    price_per_wh TEXT NOT NULL,
    escrow TEXT NOT NULL,
    amount TEXT NOT NULL DEFAULT '0',
    signature TEXT NOT NULL DEFAULT '',
    base_wh TEXT NOT NULL DEFAULT '0',
    lead_wh INTEGER NOT NULL DEFAULT 0,
    peer TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL DEFAULT 'open',
    opened_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (domain, channel_id)
);
CREATE TABLE IF NOT EXISTS overrides (
    socket_id TEXT PRIMARY KEY,
    mode TEXT NOT NULL CHECK (mode IN ('off')),
    at REAL NOT NULL
);
"""


CHANNEL_COLUMNS = ("domain, channel_id, socket_id, direction, price_per_wh, escrow, amount, signature, base_wh,"
                   " lead_wh, peer, state, opened_at, updated_at")


ENTRY_COLUMNS = "id, socket_id, at, kind, amount, energy_wh, idem_key, memo"


def _entry(row: tuple) -> Entry:
    entry_id, socket_id, at, kind, amount, energy_wh, idem_key, memo = row
    return Entry(entry_id, socket_id, at, kind, amount, None if energy_wh is None else Fraction(energy_wh),
                 idem_key, memo)


class JournalWriter:
    """The operations allowed inside one journal transaction."""

    def __init__(self, conn: sqlite3.Connection):
        self._conn = conn
        self.balance_changes: dict[str, int] = {}

    def _changed(self, socket_id: str, amount: int) -> None:
        self.balance_changes[socket_id] = self.balance_changes.get(socket_id, 0) + amount

    def credit(self, socket_id: str, amount: int, kind: str, idem_key: str, at: float, memo: str = "") -> bool:
        """Append a credit; False (and nothing written) if its key was booked before."""
        if kind not in CREDIT_KINDS:
            raise ValueError(f"not a credit kind: {kind}")
        if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
            raise ValueError(f"a credit is a positive integer, got {amount!r}")
        cur = self._conn.execute(
            "INSERT INTO entries (socket_id, at, kind, amount, idem_key, memo) VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (idem_key) DO NOTHING",
            (socket_id, at, kind, amount, idem_key, memo),
        )
        if cur.rowcount == 1:
            self._changed(socket_id, amount)
            return True
        return False

    def debit(self, socket_id: str, amount: int, kind: str, at: float, *, energy_wh: Fraction | None = None,
              idem_key: str | None = None, memo: str = "") -> bool:
        if kind not in DEBIT_KINDS:
            raise ValueError(f"not a debit kind: {kind}")
        if not isinstance(amount, int) or isinstance(amount, bool) or amount < 0:
            raise ValueError(f"a debit amount is a non-negative integer, got {amount!r}")
        cur = self._conn.execute(
            "INSERT INTO entries (socket_id, at, kind, amount, energy_wh, idem_key, memo) VALUES (?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (idem_key) DO NOTHING",
            (socket_id, at, kind, -amount, None if energy_wh is None else str(energy_wh), idem_key, memo),
        )
        if cur.rowcount == 1:
            self._changed(socket_id, -amount)
            return True
        return False

    def save_state(self, socket_id: str, state: MeterState, previous_pending: int) -> None:
        b = state.baseline
        self._conn.execute(
            "INSERT INTO meter_state (socket_id, counter_wh, read_at, carry, pending_units, pending_wh, pending_since)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (socket_id) DO UPDATE SET counter_wh = excluded.counter_wh,"
            " read_at = excluded.read_at, carry = excluded.carry, pending_units = excluded.pending_units,"
            " pending_wh = excluded.pending_wh, pending_since = excluded.pending_since",
            (socket_id, str(b.counter_wh), b.at, str(b.carry), state.pending_units, str(state.pending_wh),
             state.pending_since),
        )
        self._changed(socket_id, previous_pending - state.pending_units)

    def receive_deposit(self, source: str, socket_id: str, units: int, units_per_token: int, idem_key: str,
                        at: float, memo: str = "") -> int | None:
        """Book a ledger deposit of `units` ledger units as whole tokens, carrying the remainder.

        Returns the tokens credited (0 when the deposit only added to the carry), or None if the
        key was booked before (nothing is written then). The raw amount is kept in
        received_deposits; ledger units can exceed SQLite's 64-bit integers (wei), tokens cannot.
        """
        if not isinstance(units, int) or isinstance(units, bool) or units <= 0:
            raise ValueError(f"a deposit is a positive integer of ledger units, got {units!r}")
        if not isinstance(units_per_token, int) or units_per_token < 1:
            raise ValueError(f"units_per_token must be a positive integer, got {units_per_token!r}")
        row = self._conn.execute("SELECT units FROM deposit_carry WHERE source = ? AND socket_id = ?",
                                 (source, socket_id)).fetchone()
        tokens, carry = divmod((int(row[0]) if row else 0) + units, units_per_token)
        if tokens >= 2**62:
            raise ValueError(f"deposit {idem_key} of {units} units is {tokens} tokens, beyond what the journal holds")
        cur = self._conn.execute(
            "INSERT INTO received_deposits (idem_key, socket_id, at, units, tokens) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (idem_key) DO NOTHING", (idem_key, socket_id, at, str(units), tokens))
        if cur.rowcount != 1:
            return None
        self._conn.execute("INSERT INTO deposit_carry (source, socket_id, units) VALUES (?, ?, ?)"
                           " ON CONFLICT (source, socket_id) DO UPDATE SET units = excluded.units",
                           (source, socket_id, str(carry)))
        if tokens > 0 and not self.credit(socket_id, tokens, "deposit", idem_key, at, memo):
            raise sqlite3.IntegrityError(f"credit {idem_key} exists without its received deposit row")
        return tokens

    def add_channel(self, row: "ChannelRow") -> None:
        """Remember a payment channel this controller sends on ('out') or is paid on ('in')."""
        cur = self._conn.execute(
            "INSERT INTO channels (domain, channel_id, socket_id, direction, price_per_wh, escrow, base_wh, lead_wh,"
            " peer, opened_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (row.domain, row.channel_id, row.socket_id, row.direction, str(row.price_per_wh), str(row.escrow),
             str(row.base_wh), row.lead_wh, row.peer, row.opened_at, row.opened_at))
        if cur.rowcount != 1:
            raise ValueError(f"channel {row.channel_id} on {row.domain} is already known")

    def advance_channel(self, domain: str, channel_id: str, previous: int, amount: int, signature: str,
                        at: float) -> None:
        """Move a channel's latest voucher from `previous` to `amount`; refuses if another writer moved it."""
        cur = self._conn.execute(
            "UPDATE channels SET amount = ?, signature = ?, updated_at = ? WHERE domain = ? AND channel_id = ?"
            " AND amount = ? AND state = 'open'", (str(amount), signature, at, domain, channel_id, str(previous)))
        if cur.rowcount != 1:
            raise sqlite3.IntegrityError(f"channel {channel_id}: its latest voucher changed underneath")

    def set_channel_state(self, domain: str, channel_id: str, state: str, escrow: int, at: float) -> None:
        self._conn.execute("UPDATE channels SET state = ?, escrow = ?, updated_at = ? WHERE domain = ?"
                           " AND channel_id = ?", (state, str(escrow), at, domain, channel_id))

    def event(self, socket_id: str, kind: str, detail: str, at: float) -> None:
        self._conn.execute("INSERT INTO events (socket_id, at, kind, detail) VALUES (?, ?, ?, ?)",
                           (socket_id, at, kind, detail))

    def set_cursor(self, name: str, value: str | None) -> None:
        self._conn.execute("INSERT INTO cursors (name, value) VALUES (?, ?)"
                           " ON CONFLICT (name) DO UPDATE SET value = excluded.value", (name, value))

    def acknowledge_alarms(self, socket_id: str, upto_event_id: int, at: float) -> None:
        """Alarms of a socket up to this event id are seen; the acknowledgement is itself an event."""
        self.set_cursor(f"alarms-seen:{socket_id}", str(upto_event_id))
        self.event(socket_id, "alarm_ack", f"alarms up to event {upto_event_id} acknowledged", at)

    def set_override(self, socket_id: str, mode: str | None, at: float) -> None:
        if mode is None:
            self._conn.execute("DELETE FROM overrides WHERE socket_id = ?", (socket_id,))
        else:
            self._conn.execute("INSERT INTO overrides (socket_id, mode, at) VALUES (?, ?, ?)"
                               " ON CONFLICT (socket_id) DO UPDATE SET mode = excluded.mode, at = excluded.at",
                               (socket_id, mode, at))


class SqliteJournal:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False, timeout=30)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        self._conn.executescript(SCHEMA)
        self._balances: dict[str, int] = self._load_balances()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def _load_balances(self) -> dict[str, int]:
        balances: dict[str, int] = {}
        for socket_id, total in self._conn.execute("SELECT socket_id, SUM(amount) FROM entries GROUP BY socket_id"):
            balances[socket_id] = int(total)
        for socket_id, pending in self._conn.execute("SELECT socket_id, pending_units FROM meter_state"):
            balances[socket_id] = balances.get(socket_id, 0) - int(pending)
        return balances

    @contextmanager
    def transaction(self) -> Iterator[JournalWriter]:
        """One atomic unit of work; the in-memory balances follow only a committed transaction."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            writer = JournalWriter(self._conn)
            try:
                yield writer
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
            for socket_id, change in writer.balance_changes.items():
                self._balances[socket_id] = self._balances.get(socket_id, 0) + change

    def balance(self, socket_id: str) -> int:
        with self._lock:
            return self._balances.get(socket_id, 0)

    def recomputed_balance(self, socket_id: str) -> int:
        """The balance summed afresh from the file (for checks; balance() is the cached equal)."""
        with self._lock:
            (total,) = self._conn.execute("SELECT COALESCE(SUM(amount), 0) FROM entries WHERE socket_id = ?",
                                          (socket_id,)).fetchone()
            row = self._conn.execute("SELECT pending_units FROM meter_state WHERE socket_id = ?",
                                     (socket_id,)).fetchone()
            return int(total) - (int(row[0]) if row else 0)

    def meter_state(self, socket_id: str) -> MeterState | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT counter_wh, read_at, carry, pending_units, pending_wh, pending_since"
                " FROM meter_state WHERE socket_id = ?", (socket_id,)).fetchone()
        if row is None:
            return None
        counter, read_at, carry, pending_units, pending_wh, pending_since = row
        return MeterState(Baseline(Fraction(counter), read_at, Fraction(carry)), int(pending_units),
                          Fraction(pending_wh), pending_since)

    def cursor(self, name: str) -> str | None:
        with self._lock:
            row = self._conn.execute("SELECT value FROM cursors WHERE name = ?", (name,)).fetchone()
        return row[0] if row else None

    def deposit_carry(self, source: str, socket_id: str) -> int:
        """Ledger units received for a socket that do not make a whole token yet."""
        with self._lock:
            row = self._conn.execute("SELECT units FROM deposit_carry WHERE source = ? AND socket_id = ?",
                                     (source, socket_id)).fetchone()
        return int(row[0]) if row else 0

    def received_deposit(self, idem_key: str) -> dict | None:
        with self._lock:
            row = self._conn.execute("SELECT socket_id, at, units, tokens FROM received_deposits WHERE idem_key = ?",
                                     (idem_key,)).fetchone()
        return None if row is None else {"socket": row[0], "at": row[1], "units": int(row[2]), "tokens": row[3]}

    def ledger_accounts(self, socket_ids: list[str], explicit: dict[str, int], at: float) -> dict[str, int]:
        """The derivation index of each socket's ledger address, assigned once and kept.

        A socket keeps the index it was first given, so its address never changes. New sockets
        get the explicit index from the configuration, or else the lowest index never given to
        any socket (indices of removed sockets are not reused: a payment to an old address
        must not credit a new socket). Raises ValueError on a conflict.
        """
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                known = dict(self._conn.execute("SELECT socket_id, account_index FROM ledger_accounts"))
                for socket_id, index in explicit.items():
                    if socket_id in known and known[socket_id] != index:
                        raise ValueError(f"socket {socket_id!r} has had ledger account {known[socket_id]} since it"
                                         f" was first started; the configuration says {index}")
                taken = {i: s for s, i in known.items()}
                for socket_id, index in explicit.items():
                    if taken.get(index, socket_id) != socket_id:
                        raise ValueError(f"ledger account {index} of socket {socket_id!r} already belongs to"
                                         f" socket {taken[index]!r}")
                    taken[index] = socket_id
                for socket_id in socket_ids:
                    if socket_id in known:
                        continue
                    index = explicit.get(socket_id)
                    if index is None:
                        index = next(i for i in range(len(taken) + 1) if i not in taken)
                    taken[index] = socket_id
                    known[socket_id] = index
                    self._conn.execute("INSERT INTO ledger_accounts (socket_id, account_index, assigned_at)"
                                       " VALUES (?, ?, ?)", (socket_id, index, at))
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
        return {socket_id: known[socket_id] for socket_id in socket_ids}

    def channels(self, direction: str | None = None, state: str | None = None) -> list["ChannelRow"]:
        sql = f"SELECT {CHANNEL_COLUMNS} FROM channels WHERE 1 = 1"
        args: list = []
        if direction is not None:
            sql += " AND direction = ?"
            args.append(direction)
        if state is not None:
            sql += " AND state = ?"
            args.append(state)
        with self._lock:
            rows = self._conn.execute(sql + " ORDER BY opened_at, channel_id", args).fetchall()
        return [ChannelRow.from_row(r) for r in rows]

    def channel(self, domain: str, channel_id: str) -> "ChannelRow | None":
        with self._lock:
            row = self._conn.execute(f"SELECT {CHANNEL_COLUMNS} FROM channels WHERE domain = ? AND channel_id = ?",
                                     (domain, channel_id)).fetchone()
        return None if row is None else ChannelRow.from_row(row)

    def overrides(self) -> dict[str, str]:
        with self._lock:
            return dict(self._conn.execute("SELECT socket_id, mode FROM overrides"))

    def entries(self, socket_id: str, limit: int = 50, before_id: int | None = None) -> list[Entry]:
        """Newest first."""
        query = f"SELECT {ENTRY_COLUMNS} FROM entries WHERE socket_id = ?"
        params: list = [socket_id]
        if before_id is not None:
            query += " AND id < ?"
            params.append(before_id)
        query += " ORDER BY id DESC LIMIT ?"
        params.append(limit)
        with self._lock:
            rows = self._conn.execute(query, params).fetchall()
        return [_entry(r) for r in rows]

    def all_entries(self, socket_id: str) -> Iterator[Entry]:
        """Oldest first, streamed (for CSV export)."""
        last = 0
        while True:
            with self._lock:
                rows = self._conn.execute(
                    f"SELECT {ENTRY_COLUMNS} FROM entries WHERE socket_id = ? AND id > ? ORDER BY id LIMIT 500",
                    (socket_id, last)).fetchall()
            if not rows:
                return
            for r in rows:
                yield _entry(r)
            last = rows[-1][0]

    def entry_by_key(self, idem_key: str) -> Entry | None:
        with self._lock:
            row = self._conn.execute(f"SELECT {ENTRY_COLUMNS} FROM entries WHERE idem_key = ?", (idem_key,)).fetchone()
        return None if row is None else _entry(row)

    def entries_after(self, after_id: int, limit: int = 1000) -> list[Entry]:
        """Every socket's entries with an id above `after_id`, oldest first."""
        with self._lock:
            rows = self._conn.execute(f"SELECT {ENTRY_COLUMNS} FROM entries WHERE id > ? ORDER BY id LIMIT ?",
                                      (after_id, limit)).fetchall()
        return [_entry(r) for r in rows]

    def last_entries(self, kind: str) -> list[tuple[str, float, int]]:
        """Per socket, the latest entry of this kind: (socket id, at, amount)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT socket_id, at, amount FROM entries WHERE id IN"
                " (SELECT MAX(id) FROM entries WHERE kind = ? GROUP BY socket_id)", (kind,)).fetchall()
        return [(r[0], r[1], r[2]) for r in rows]

    def first_entry_id_since(self, at: float) -> int:
        """The id just before the first entry booked at or after `at` (entries are booked in time order)."""
        with self._lock:
            row = self._conn.execute("SELECT MIN(id) FROM entries WHERE at >= ?", (at,)).fetchone()
            if row[0] is not None:
                return row[0] - 1
            return self._conn.execute("SELECT COALESCE(MAX(id), 0) FROM entries").fetchone()[0]

    def open_alarms(self) -> dict[str, tuple[int, int, str]]:
        """Per socket with alarms not yet acknowledged: (how many, the latest's id, the latest's detail)."""
        kinds = ", ".join("?" * len(ALARM_KINDS))
        with self._lock:
            rows = self._conn.execute(
                f"SELECT e.socket_id, COUNT(*), MAX(e.id) FROM events e LEFT JOIN cursors c"
                f" ON c.name = 'alarms-seen:' || e.socket_id WHERE e.kind IN ({kinds})"
                f" AND e.id > COALESCE(CAST(c.value AS INTEGER), 0) GROUP BY e.socket_id", ALARM_KINDS).fetchall()
            out = {}
            for socket_id, count, last_id in rows:
                kind, detail = self._conn.execute("SELECT kind, detail FROM events WHERE id = ?",
                                                  (last_id,)).fetchone()
                out[socket_id] = (count, last_id, f"{kind.replace('_', ' ')}: {detail}")
        return out

    def events(self, socket_id: str, limit: int = 10) -> list[dict]:
        with self._lock:
            rows = self._conn.execute("SELECT id, at, kind, detail FROM events WHERE socket_id = ?"
                                      " ORDER BY id DESC LIMIT ?", (socket_id, limit)).fetchall()
        return [{"id": r[0], "at": r[1], "kind": r[2], "detail": r[3]} for r in rows]

    def totals(self, socket_id: str) -> dict[str, int]:
        """Sum of credits, sum of debits (as a positive number) and pending usage."""
        with self._lock:
            credits, debits = self._conn.execute(
                "SELECT COALESCE(SUM(CASE WHEN amount > 0 THEN amount END), 0),"
                " COALESCE(-SUM(CASE WHEN amount <= 0 THEN amount END), 0) FROM entries WHERE socket_id = ?",
                (socket_id,)).fetchone()
            row = self._conn.execute("SELECT pending_units FROM meter_state WHERE socket_id = ?",
                                     (socket_id,)).fetchone()
        return {"credits": int(credits), "debits": int(debits), "pending": int(row[0]) if row else 0}

    def integrity_ok(self) -> bool:
        with self._lock:
            return self._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
