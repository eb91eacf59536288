"""The IOTA trade store: what one controller's IotaTrade keeps in its SQLite file.

The market host's roles, adverts, reservations and purchases; the channels this controller sends or receives;
the buys paid but not yet acknowledged; the nonces of the signed messages received; the counters that keep
every channel address and advert id unique (committed before they are used, so never reused after a crash).
"""

from __future__ import annotations

import sqlite3
import threading
from contextlib import AbstractContextManager
from pathlib import Path

from payg.adapters.sqlite import connect, transaction

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS roles (
    party TEXT PRIMARY KEY, role TEXT NOT NULL, granted_by TEXT NOT NULL, at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS adverts (
    advert_id TEXT PRIMARY KEY, producer TEXT NOT NULL, energy_wh INTEGER NOT NULL,
    sold_wh INTEGER NOT NULL DEFAULT 0, returned_wh INTEGER NOT NULL DEFAULT 0,
    min_price_per_wh INTEGER NOT NULL, posted_at INTEGER NOT NULL, returned INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS reservations (
    reservation_id TEXT PRIMARY KEY, advert_id TEXT NOT NULL, consumer TEXT NOT NULL, producer TEXT NOT NULL,
    regulator TEXT NOT NULL, energy_wh INTEGER NOT NULL, price_per_wh INTEGER NOT NULL,
    producer_amount INTEGER NOT NULL, tax_amount INTEGER NOT NULL, created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL, state TEXT NOT NULL, purchase_id TEXT);
CREATE TABLE IF NOT EXISTS purchases (
    purchase_id TEXT PRIMARY KEY, reservation_id TEXT NOT NULL UNIQUE, advert_id TEXT NOT NULL,
    consumer TEXT NOT NULL, producer TEXT NOT NULL, energy_wh INTEGER NOT NULL, price_per_wh INTEGER NOT NULL,
    producer_amount INTEGER NOT NULL, tax_amount INTEGER NOT NULL, regulator TEXT NOT NULL, at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS nonces (party TEXT NOT NULL, nonce TEXT NOT NULL, at INTEGER NOT NULL,
    PRIMARY KEY (party, nonce));
CREATE TABLE IF NOT EXISTS channels (
    channel_id TEXT PRIMARY KEY, sender TEXT NOT NULL, recipient TEXT NOT NULL, sender_public_key TEXT NOT NULL,
    escrow INTEGER NOT NULL, expires_at INTEGER NOT NULL, state TEXT NOT NULL, paid INTEGER NOT NULL DEFAULT 0,
    socket TEXT, n INTEGER, opened_at INTEGER NOT NULL, announced INTEGER NOT NULL DEFAULT 1,
    last_amount INTEGER NOT NULL DEFAULT 0, last_signature TEXT, broken INTEGER NOT NULL DEFAULT 0,
    digests TEXT NOT NULL DEFAULT '[]');
CREATE TABLE IF NOT EXISTS pending_buys (
    reservation_id TEXT PRIMARY KEY, socket TEXT NOT NULL, digest TEXT NOT NULL, at INTEGER NOT NULL);
"""


class TradeStore:
    """The store's connection, and the one lock every part of an IotaTrade holds while it reads and writes it
    (re-entrant: a handler that holds it verifies a message, which records the message's nonce)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.db = connect(self.path, schema=SCHEMA)
        self.db.row_factory = sqlite3.Row
        self.lock = threading.RLock()

    def transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT; inside another transaction it joins that one."""
        return transaction(self.db)

    def execute(self, sql: str, parameters: tuple = ()) -> sqlite3.Cursor:
        return self.db.execute(sql, parameters)

    def meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def next(self, name: str) -> int:
        """The next value of a persisted counter (call inside a transaction)."""
        row = self.db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        value = row[0] if row else 0
        self.db.execute("INSERT OR REPLACE INTO counters (name, value) VALUES (?, ?)", (name, value + 1))
        return value

    def close(self) -> None:
        with self.lock:
            self.db.close()
