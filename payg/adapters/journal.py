"""SqliteJournal: every socket's account, append-only, crash-safe.

One SQLite file in WAL mode with synchronous=NORMAL: a commit is synced at the
next checkpoint, except those that are money or a person's decision, synced at
once (journal_writer.py `durable`). Entries are never updated or deleted
(triggers refuse it). Credits carry an idempotency key under a UNIQUE
constraint, so a deposit seen twice is booked once. A metering tick is one
transaction: the entries it appends and the billing states it writes (last
billed counter value, carry, and the usage not yet closed into an entry) commit
together, so a crash at any moment leaves either all of a tick or none of it.

Usage is closed into one `usage` entry per socket per `usage_entry_s` of
consumption (a row per tick would fill an SD card); until then it is
`pending` in the socket's state. The balance is the sum of the entries minus
that pending usage. A state the loop keeps (`keep_state`, between its writes
every `persist_interval_s`) is held here in memory and written by the next
transaction that writes anything; every reader (balance, meter_state, totals,
recomputed_balance, history) sees the held state, so the balance moves with the
usage, never backwards or by leaps. A crash loses the held states: the
restarted loop bills the meter's counter from the last written one.

The tables and their versions are in journal_schema.py; opening upgrades an older journal.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path

from payg.adapters import journal_history
from payg.adapters.journal_schema import JOURNAL
from payg.adapters.journal_writer import ALARM_KINDS, CHANNEL_COLUMNS, ENTRY_COLUMNS, JournalWriter, entry_of, rate_of
from payg.adapters.sqlite import connect, lazy_transaction, sync_wal, transaction
from payg.domain.accounts import CREDIT_KINDS, Entry
from payg.domain.billing import Baseline, MeterState
from payg.domain.codes import CodeCounts
from payg.domain.history import Bucket
from payg.domain.market import ChannelRow


class SqliteJournal:
    def __init__(self, path: str | Path, *, outbox: bool = False, notify: bool = False):
        self.path = Path(path)
        self.outbox = outbox  # events and credits also queued in the outbox table, for MQTT
        self.notify = notify  # and those people are told about, for the notifications ([notify])
        self._lock = threading.RLock()
        # an older journal is upgraded, a newer one refused
        self._conn = connect(self.path, migrations=JOURNAL, synchronous="NORMAL")
        self._held: dict[str, MeterState] = {}  # billing states kept, not written yet (newer than their rows)
        self._balances: dict[str, int] = self._load_balances()
        # debt set aside by repayment plans, read every tick: kept in memory like the balances
        self._deferred: dict[str, int] = dict(self._conn.execute("SELECT socket_id, deferred_units FROM debt_plans"))
        # cursors as committed, each read from the file once (the deposit watcher reads its own every poll);
        # only this process writes them while it runs (`payg cursor --set` needs the controller stopped)
        self._cursors: dict[str, str | None] = {}

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
            joined = self._conn.in_transaction  # inside another transaction: its end decides what is committed
            try:
                with lazy_transaction(self._conn) as tx:
                    writer = JournalWriter(tx, self.outbox, self.notify)
                    yield writer
                    wrote = tx.begun and not joined
                    if wrote:
                        writer.write_held(self._held)
            finally:
                if joined:
                    for name in writer.cursors:
                        self._cursors.pop(name, None)
            if wrote and writer.durable:
                sync_wal(self.path)
            if wrote:
                self._held.clear()
            else:
                for socket_id in writer.saved:
                    self._held.pop(socket_id, None)
                self._held.update(writer.kept)
            if not joined:
                self._cursors.update(writer.cursors)
            self._deferred.update(writer.deferred)
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
            return int(total) - self._pending(socket_id)

    def _pending(self, socket_id: str) -> int:
        held = self._held.get(socket_id)
        return held.pending_units if held is not None else self._stored_pending(socket_id)

    def _stored_pending(self, socket_id: str) -> int:
        row = self._conn.execute("SELECT pending_units FROM meter_state WHERE socket_id = ?", (socket_id,)).fetchone()
        return int(row[0]) if row else 0

    def meter_state(self, socket_id: str) -> MeterState | None:
        """The socket's billing state as of the loop's last tick (held in memory, or as written)."""
        with self._lock:
            held = self._held.get(socket_id)
            if held is not None:
                return held
            row = self._conn.execute(
                "SELECT counter_wh, read_at, carry, pending_units, pending_wh, pending_since, pending_band,"
                " pending_rate, pending_vat FROM meter_state WHERE socket_id = ?", (socket_id,)).fetchone()
        if row is None:
            return None
        counter, read_at, carry, pending_units, pending_wh, pending_since, band, rate, vat = row
        return MeterState(Baseline(Fraction(counter), read_at, Fraction(carry)), int(pending_units),
                          Fraction(pending_wh), pending_since, rate_of(band, rate, vat))

    def cursor(self, name: str) -> str | None:
        with self._lock:
            if name in self._cursors and not self._conn.in_transaction:
                return self._cursors[name]
            row = self._conn.execute("SELECT value FROM cursors WHERE name = ?", (name,)).fetchone()
            value = row[0] if row else None
            if not self._conn.in_transaction:  # inside one it may be a write not committed yet
                self._cursors[name] = value
            return value

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
        with self._lock, transaction(self._conn):
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
                chosen = explicit.get(socket_id)
                index = chosen if chosen is not None else next(i for i in range(len(taken) + 1) if i not in taken)
                taken[index] = socket_id
                known[socket_id] = index
                self._conn.execute("INSERT INTO ledger_accounts (socket_id, account_index, assigned_at)"
                                   " VALUES (?, ?, ?)", (socket_id, index, at))
        return {socket_id: known[socket_id] for socket_id in socket_ids}

    def channels(self, direction: str | None = None, state: str | None = None) -> list[ChannelRow]:
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

    def channel(self, domain: str, channel_id: str) -> ChannelRow | None:
        with self._lock:
            row = self._conn.execute(f"SELECT {CHANNEL_COLUMNS} FROM channels WHERE domain = ? AND channel_id = ?",
                                     (domain, channel_id)).fetchone()
        return None if row is None else ChannelRow.from_row(row)

    def code_counts(self, socket_id: str) -> CodeCounts:
        with self._lock:
            row = self._conn.execute("SELECT last_count, used_counts FROM code_counters WHERE socket_id = ?",
                                     (socket_id,)).fetchone()
        if row is None:
            return CodeCounts()
        return CodeCounts(row[0], tuple(int(c) for c in row[1].split(",") if c))

    def codes_issued(self, socket_id: str) -> int:
        with self._lock:
            row = self._conn.execute("SELECT issued_count FROM code_counters WHERE socket_id = ?",
                                     (socket_id,)).fetchone()
        return 0 if row is None else row[0]

    def code_request(self, socket_id: str, request_id: str) -> tuple[int, int, int] | None:
        """(after_count, units, count) of the code a request id made for a socket, or None."""
        with self._lock:
            row = self._conn.execute("SELECT after_count, units, count FROM code_requests WHERE socket_id = ?"
                                     " AND request_id = ?", (socket_id, request_id)).fetchone()
        return None if row is None else (row[0], row[1], row[2])

    def emergency_owed(self, socket_id: str) -> tuple[int, int]:
        with self._lock:
            owed, taken = self._conn.execute(
                "SELECT COALESCE(SUM(amount), 0), COUNT(CASE WHEN kind = 'emergency' THEN 1 END) FROM entries"
                " WHERE socket_id = ? AND kind IN ('emergency', 'emergency_repaid')", (socket_id,)).fetchone()
        return int(owed), int(taken)

    def deferred_debt(self, socket_id: str) -> int:
        with self._lock:
            return self._deferred.get(socket_id, 0)

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
        return [entry_of(r) for r in rows]

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
                yield entry_of(r)
            last = rows[-1][0]

    def ever_credited(self, socket_id: str) -> bool:
        """Whether anyone ever paid for the socket: a deposit, a credit (manual or a code) or energy sold to it.
        Emergency credit is a loan, not a payment."""
        with self._lock:
            row = self._conn.execute("SELECT 1 FROM entries WHERE socket_id = ? AND kind IN ('deposit', 'credit',"
                                     " 'trade_in') LIMIT 1", (socket_id,)).fetchone()
        return row is not None

    def entries_between(self, socket_id: str, start: float, end: float) -> list[Entry]:
        """The socket's entries booked at `start` <= at < `end`, in the order booked (found by `entries_at`)."""
        with self._lock:
            rows = self._conn.execute(f"SELECT {ENTRY_COLUMNS} FROM entries INDEXED BY entries_at WHERE at >= ?"
                                      " AND at < ? AND socket_id = ? ORDER BY id", (start, end, socket_id)).fetchall()
        return [entry_of(r) for r in rows]

    def sum_before(self, socket_id: str, at: float) -> int:
        """The sum of the socket's entries booked before `at` (no pending usage taken off)."""
        with self._lock:
            (total,) = self._conn.execute("SELECT COALESCE(SUM(amount), 0) FROM entries WHERE socket_id = ?"
                                          " AND at < ?", (socket_id, at)).fetchone()
        return int(total)

    def credits_through(self, socket_id: str, limit: int, through_id: int | None = None) -> list[tuple[Entry, int]]:
        """The socket's credits with ids up to `through_id`, newest first, each with the sum of the socket's entries
        up to and including it (one pass over the socket's entries)."""
        kinds = ", ".join(f"'{k}'" for k in CREDIT_KINDS)
        with self._lock:
            rows = self._conn.execute(
                f"SELECT * FROM (SELECT {ENTRY_COLUMNS}, SUM(amount) OVER (ORDER BY id) FROM entries"
                f" WHERE socket_id = ? AND id <= ?) WHERE kind IN ({kinds}) ORDER BY id DESC LIMIT ?",
                (socket_id, through_id if through_id is not None else 2**63 - 1, limit)).fetchall()
        return [(entry_of(r[:-1]), int(r[-1])) for r in rows]

    def history(self, socket_id: str, start: float, step_s: int, count: int) -> tuple[int, list[Bucket], float | None]:
        """The socket's entries from `start` in buckets, for the charts (journal_history.py `buckets`)."""
        with self._lock:
            # the entries' sum: the balance and the pending usage (held or written)
            entries_total = self._balances.get(socket_id, 0) + self._pending(socket_id)
            return journal_history.buckets(self._conn, socket_id, start, step_s, count, entries_total)

    def entry_by_key(self, idem_key: str) -> Entry | None:
        with self._lock:
            row = self._conn.execute(f"SELECT {ENTRY_COLUMNS} FROM entries WHERE idem_key = ?", (idem_key,)).fetchone()
        return None if row is None else entry_of(row)

    def entries_after(self, after_id: int, limit: int = 1000) -> list[Entry]:
        """Every socket's entries with an id above `after_id`, oldest first."""
        with self._lock:
            rows = self._conn.execute(f"SELECT {ENTRY_COLUMNS} FROM entries WHERE id > ? ORDER BY id LIMIT ?",
                                      (after_id, limit)).fetchall()
        return [entry_of(r) for r in rows]

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
            pending = self._pending(socket_id)
        return {"credits": int(credits), "debits": int(debits), "pending": pending}

    def integrity_ok(self) -> bool:
        with self._lock:
            return self._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
