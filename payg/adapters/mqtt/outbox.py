"""The events outbox: rows the journal writes in the same transaction as the event or credit they
report (payg/adapters/journal_writer.py), each with its seq (1, 2, 3, ... per controller, no gaps, never
reused: the journal's cursor `outbox-seq` keeps the last one given). A row is marked delivered once the broker
acknowledged it, and kept for the retention, so that it can be replayed; `prune` then deletes it.

Rows whose uid starts with `notify:` are the notifications' (payg/adapters/apprise_notify.py), not the broker's:
they have no seq and are neither read nor counted here.

The rows kept are always a run of seqs without holes: `prune` deletes only delivered rows below the oldest row
it keeps, so `oldest_seq()` to `last_seq()` are all there.

Its own connection to the journal's file: WAL readers never wait for the tick's writer, and a
delivered batch is marked in one short statement.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path

from payg.adapters.journal_schema import SEQ_CURSOR
from payg.adapters.sqlite import connect, transaction

COLUMNS = "id, uid, socket_id, at, kind, body, seq"
MQTT_ROWS = "seq IS NOT NULL"  # the notifications' rows share the table, without a seq
UNDELIVERED = f"{MQTT_ROWS} AND delivered_at IS NULL"  # the partial index outbox_undelivered


@dataclass(frozen=True)
class OutboxRow:
    id: int
    uid: str
    socket_id: str
    at: float
    kind: str
    body: dict
    seq: int


class Outbox:
    def __init__(self, journal_path: Path):
        self._conn = connect(journal_path)
        self._lock = threading.Lock()
        self._closed = False

    def _rows(self, where: str, params: tuple) -> list[OutboxRow]:
        with self._lock:
            rows = self._conn.execute(f"SELECT {COLUMNS} FROM outbox WHERE {where} ORDER BY seq LIMIT ?",
                                      params).fetchall()
        return [OutboxRow(i, uid, s, at, kind, json.loads(body), seq) for i, uid, s, at, kind, body, seq in rows]

    def after(self, seq: int, limit: int) -> list[OutboxRow]:
        """The rows not yet delivered after this seq, in seq order."""
        return self._rows(f"{UNDELIVERED} AND seq > ?", (seq, limit))

    def replay(self, from_seq: int, limit: int) -> list[OutboxRow]:
        """The rows kept from this seq on, delivered or not, in seq order."""
        return self._rows(f"{MQTT_ROWS} AND seq >= ?", (from_seq, limit))

    def count(self, from_seq: int, to_seq: int) -> int:
        """How many rows are kept from one seq to another, both included."""
        with self._lock:
            return int(self._conn.execute(f"SELECT COUNT(*) FROM outbox WHERE {MQTT_ROWS} AND seq BETWEEN ? AND ?",
                                          (from_seq, to_seq)).fetchone()[0])

    def oldest_seq(self) -> int | None:
        """The oldest seq still kept; None when no row is."""
        with self._lock:
            return self._conn.execute(f"SELECT MIN(seq) FROM outbox WHERE {MQTT_ROWS}").fetchone()[0]

    def last_seq(self) -> int:
        """The last seq given (0 before the first event), kept or pruned."""
        with self._lock:
            row = self._conn.execute("SELECT MAX(COALESCE((SELECT CAST(value AS INTEGER) FROM cursors WHERE name ="
                                     f" ?), 0), COALESCE((SELECT MAX(seq) FROM outbox WHERE {MQTT_ROWS}), 0))",
                                     (SEQ_CURSOR,)).fetchone()
            return int(row[0])

    def delivered(self, row_ids: list[int], at: float) -> None:
        """The broker acknowledged these rows (by id) at this time."""
        if not row_ids:
            return
        with self._lock:
            for start in range(0, len(row_ids), 500):  # one statement, one commit, per 500
                chunk = row_ids[start:start + 500]
                self._conn.execute(f"UPDATE outbox SET delivered_at = ? WHERE id IN ({','.join('?' * len(chunk))})"
                                   " AND delivered_at IS NULL", (at, *chunk))

    def prune(self, before: float) -> int:
        """Delete the rows delivered before this time, up to the oldest row that stays (delivered later, or not
        yet): the kept seqs stay a run without holes. Returns how many were deleted."""
        with self._lock, transaction(self._conn):
            (keep,) = self._conn.execute(f"SELECT MIN(seq) FROM outbox WHERE {MQTT_ROWS} AND (delivered_at IS NULL"
                                         " OR delivered_at >= ?)", (before,)).fetchone()
            below = "" if keep is None else " AND seq < ?"
            return self._conn.execute(f"DELETE FROM outbox WHERE {MQTT_ROWS} AND delivered_at IS NOT NULL{below}",
                                      () if keep is None else (keep,)).rowcount

    def pending(self) -> int | None:
        """Rows not yet acknowledged; None once closed (a scrape during the shutdown)."""
        with self._lock:
            if self._closed:
                return None
            return self._conn.execute(f"SELECT COUNT(*) FROM outbox WHERE {UNDELIVERED}").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._conn.close()
