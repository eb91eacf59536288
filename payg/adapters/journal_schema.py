"""The journal's schema, version by version: step n makes version n (payg/adapters/sqlite.py runs them).

Each step is frozen as payg first shipped it (the commit is named); a change to the schema is a new step at
the end, never an edit of an old one. A journal made before versions were kept is recognised by its shape.
tests/fixtures/journal/ holds a journal each version's own code wrote.
"""

from __future__ import annotations

import sqlite3

from payg.adapters.sqlite import Migrations


def _entries(name: str, credit: tuple[str, ...], debit: tuple[str, ...], rates: bool = False) -> str:
    rate_columns = "band TEXT,\n    rate TEXT,\n    vat TEXT,\n    " if rates else ""
    return f"""CREATE TABLE {name} (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    socket_id TEXT NOT NULL,
    at REAL NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN {credit + debit}),
    amount INTEGER NOT NULL,
    energy_wh TEXT,
    idem_key TEXT UNIQUE,
    memo TEXT NOT NULL DEFAULT '',
    {rate_columns}CHECK ((kind IN {credit} AND amount > 0 AND idem_key IS NOT NULL)
           OR (kind IN {debit} AND amount <= 0))
)"""


APPEND_ONLY = tuple(f"CREATE TRIGGER entries_no_{action} BEFORE {action.upper()} ON entries\n"
                    "BEGIN SELECT RAISE(ABORT, 'the journal is append-only'); END" for action in ("update", "delete"))
ENTRIES_AT = "CREATE INDEX entries_at ON entries (at)"

V1 = (  # f715e95: the first journal
    _entries("entries", ("deposit", "credit", "trade_in"), ("usage", "debit", "trade_out")),
    "CREATE INDEX entries_socket ON entries (socket_id, id)",
    *APPEND_ONLY,
    """CREATE TABLE meter_state (
    socket_id TEXT PRIMARY KEY,
    counter_wh TEXT NOT NULL,
    read_at REAL NOT NULL,
    carry TEXT NOT NULL,
    pending_units INTEGER NOT NULL DEFAULT 0 CHECK (pending_units >= 0),
    pending_wh TEXT NOT NULL DEFAULT '0',
    pending_since REAL
)""",
    "CREATE TABLE cursors (name TEXT PRIMARY KEY, value TEXT)",
    """CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    socket_id TEXT NOT NULL,
    at REAL NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
)""",
    "CREATE INDEX events_socket ON events (socket_id, id)",
    "CREATE TABLE overrides (socket_id TEXT PRIMARY KEY, mode TEXT NOT NULL CHECK (mode IN ('off')), at REAL NOT NULL)",
)

V2 = (  # dabf441: deposits in ledger units, each socket's ledger account
    """CREATE TABLE received_deposits (
    idem_key TEXT PRIMARY KEY,
    socket_id TEXT NOT NULL,
    at REAL NOT NULL,
    units TEXT NOT NULL,
    tokens INTEGER NOT NULL CHECK (tokens >= 0)
)""",
    """CREATE TABLE deposit_carry (
    source TEXT NOT NULL,
    socket_id TEXT NOT NULL,
    units TEXT NOT NULL,
    PRIMARY KEY (source, socket_id)
)""",
    """CREATE TABLE ledger_accounts (
    socket_id TEXT PRIMARY KEY,
    account_index INTEGER NOT NULL UNIQUE CHECK (account_index >= 0),
    assigned_at REAL NOT NULL
)""",
)

V3 = (  # 4eff7f6: payment channels
    """CREATE TABLE channels (
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
)""",
)

V4 = (ENTRIES_AT,)  # 6f629ab: entries by time, for the pages

V5 = (  # a038827: top-up codes
    """CREATE TABLE code_counters (
    socket_id TEXT PRIMARY KEY,
    last_count INTEGER NOT NULL DEFAULT 0 CHECK (last_count >= 0),
    used_counts TEXT NOT NULL DEFAULT '',
    issued_count INTEGER NOT NULL DEFAULT 0 CHECK (issued_count >= 0)
)""",
)

V6 = (  # 73a1c4b: debt recovery plans
    "CREATE TABLE debt_plans (socket_id TEXT PRIMARY KEY,"
    " deferred_units INTEGER NOT NULL CHECK (deferred_units >= 0))",
)


def _rebuild_entries(conn: sqlite3.Connection, credit: tuple[str, ...], debit: tuple[str, ...], *,
                     rates: bool) -> None:
    """SQLite cannot change a CHECK: the entries table is made again, every row copied as it is, ids kept, its
    indexes and append-only triggers put back."""
    columns = "id, socket_id, at, kind, amount, energy_wh, idem_key, memo"
    for statement in ("DROP TRIGGER entries_no_update", "DROP TRIGGER entries_no_delete",
                      "DROP INDEX entries_socket", "DROP INDEX entries_at",
                      "ALTER TABLE entries RENAME TO entries_before",
                      _entries("entries", credit, debit, rates),
                      f"INSERT INTO entries ({columns}) SELECT {columns} FROM entries_before ORDER BY id",
                      "DROP TABLE entries_before",
                      "CREATE INDEX entries_socket ON entries (socket_id, id)", ENTRIES_AT, *APPEND_ONLY):
        conn.execute(statement)


def v7(conn: sqlite3.Connection) -> None:
    """c28be5c: emergency credit's two kinds. SQLite cannot change a CHECK, so the table is made again: every
    row copied as it is, ids kept, its indexes and append-only triggers put back. Version 6 has the same
    shape, so a journal of 7 made before versions were kept goes through this again, with the same result."""
    _rebuild_entries(conn, ("deposit", "credit", "trade_in", "emergency"),
                     ("usage", "debit", "trade_out", "emergency_repaid"), rates=False)


V8 = (  # ffea9e7: the MQTT events outbox
    """CREATE TABLE outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    uid TEXT NOT NULL UNIQUE,
    socket_id TEXT NOT NULL,
    at REAL NOT NULL,
    kind TEXT NOT NULL,
    body TEXT NOT NULL
)""",
)

V9 = (  # 030264e: which code a landlord's request made
    """CREATE TABLE code_requests (
    socket_id TEXT NOT NULL,
    request_id TEXT NOT NULL,
    after_count INTEGER NOT NULL CHECK (after_count >= 0),
    units INTEGER NOT NULL CHECK (units > 0),
    count INTEGER NOT NULL CHECK (count > 0),
    at REAL NOT NULL,
    PRIMARY KEY (socket_id, request_id)
)""",
)

def v10(conn: sqlite3.Connection) -> None:
    """a528741: money at rates. Each usage entry keeps its band, its rate (journal units per kWh, VAT in) and its VAT
    percent; a day's standing charge is an entry of its own kind (`standing`, its key once per socket and day);
    the pending usage of a meter state keeps its rate too. Older rows have no rate (NULL)."""
    _rebuild_entries(conn, ("deposit", "credit", "trade_in", "emergency"),
                     ("usage", "debit", "trade_out", "emergency_repaid", "standing"), rates=True)
    for column in ("pending_band", "pending_rate", "pending_vat"):
        conn.execute(f"ALTER TABLE meter_state ADD COLUMN {column} TEXT")


SEQ_CURSOR = "outbox-seq"  # the cursor that keeps the last seq given to an MQTT event


def v11(conn: sqlite3.Connection) -> None:
    """cbd3012: every MQTT event's seq, 1, 2, 3, ... per controller, never reused (NULL for
    the notifications' rows, uid `notify:...`), and when the broker acknowledged it (`delivered_at`, NULL until
    then): a delivered row is kept for [mqtt] event_retention_h, to be replayed. The rows waiting get their seq in
    id order; the last seq given is the cursor `outbox-seq`, so pruning every row never takes a seq back."""
    conn.execute("ALTER TABLE outbox ADD COLUMN seq INTEGER")
    conn.execute("ALTER TABLE outbox ADD COLUMN delivered_at REAL")
    waiting = [row[0] for row in conn.execute("SELECT id FROM outbox WHERE uid NOT LIKE 'notify:%' ORDER BY id")]
    conn.executemany("UPDATE outbox SET seq = ? WHERE id = ?", list(enumerate(waiting, start=1)))
    conn.execute("CREATE UNIQUE INDEX outbox_seq ON outbox (seq)")
    conn.execute("CREATE INDEX outbox_undelivered ON outbox (seq) WHERE seq IS NOT NULL AND delivered_at IS NULL")
    conn.execute("INSERT INTO cursors (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value ="
                 " excluded.value", (SEQ_CURSOR, str(len(waiting))))


JOURNAL = Migrations("journal", (V1, V2, V3, V4, V5, V6, v7, V8, V9, v10, v11))
