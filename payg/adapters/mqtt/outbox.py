"""The events outbox: rows the journal writes in the same transaction as the event or credit they
report (payg/adapters/journal_writer.py), read and deleted here once the broker acknowledged them.

Rows whose uid starts with `notify:` are the notifications' (payg/adapters/apprise_notify.py), not the broker's:
they are neither read nor counted here.

Its own connection to the journal's file: WAL readers never wait for the tick's writer, and a
delivered batch is deleted in one short statement.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path

from payg.adapters.journal_writer import NOTIFY_PREFIX
from payg.adapters.sqlite import connect

MQTT_ROWS = f"uid NOT LIKE '{NOTIFY_PREFIX}%'"  # the notifications' rows share the table


@dataclass(frozen=True)
class OutboxRow:
    id: int
    uid: str
    socket_id: str
    at: float
    kind: str
    body: dict


class Outbox:
    def __init__(self, journal_path: Path):
        self._conn = connect(journal_path)
        self._lock = threading.Lock()
        self._closed = False

    def after(self, row_id: int, limit: int) -> list[OutboxRow]:
        with self._lock:
            rows = self._conn.execute("SELECT id, uid, socket_id, at, kind, body FROM outbox WHERE id > ?"
                                      f" AND {MQTT_ROWS} ORDER BY id LIMIT ?", (row_id, limit)).fetchall()
        return [OutboxRow(i, uid, s, at, kind, json.loads(body)) for i, uid, s, at, kind, body in rows]

    def delivered(self, row_ids: list[int]) -> None:
        if not row_ids:
            return
        with self._lock:
            for start in range(0, len(row_ids), 500):  # one statement, one commit, per 500
                chunk = row_ids[start:start + 500]
                self._conn.execute(f"DELETE FROM outbox WHERE id IN ({','.join('?' * len(chunk))})", chunk)

    def pending(self) -> int | None:
        """Rows not yet acknowledged; None once closed (a scrape during the shutdown)."""
        with self._lock:
            if self._closed:
                return None
            return self._conn.execute(f"SELECT COUNT(*) FROM outbox WHERE {MQTT_ROWS}").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._conn.close()
