"""A socket's journal summed into buckets of time, for the charts and the tenant's history (payg/domain/history.py
makes the series). SqliteJournal.history calls it under the journal's lock.

One grouped query over the socket's entries from the window's start: the entries are booked in time order, so the
first entry at or after the start (found by the `entries_at` index) bounds them by id, and the socket's own index
(`entries_socket`) reads only them, however long the journal. The balance before the window is the socket's sum
(kept in memory by the journal) less what the query summed, not a scan of its older entries. Energy is kept as an
exact fraction in text ("7/3"); a chart's average power needs no more than a float of it.
"""

from __future__ import annotations

import sqlite3

from payg.domain.history import Bucket

ENERGY = ("CASE WHEN instr(energy_wh, '/') > 0 THEN CAST(substr(energy_wh, 1, instr(energy_wh, '/') - 1) AS REAL)"
          " / CAST(substr(energy_wh, instr(energy_wh, '/') + 1) AS REAL) ELSE CAST(energy_wh AS REAL) END")


def buckets(conn: sqlite3.Connection, socket_id: str, start: float, step_s: int, count: int,
            total: int) -> tuple[int, list[Bucket], float | None]:
    """(the sum of the socket's entries before `start`, the non-empty buckets among `count` of `step_s` from
    `start`, the time of the socket's first entry or None). `total`: the sum of all the socket's entries."""
    first = conn.execute("SELECT at FROM entries WHERE socket_id = ? ORDER BY id LIMIT 1", (socket_id,)).fetchone()
    if first is None:
        return 0, [], None
    bound = conn.execute("SELECT id FROM entries INDEXED BY entries_at WHERE at >= ? ORDER BY at, id LIMIT 1",
                         (start,)).fetchone()
    if bound is None:  # nothing booked since the start
        return total, [], first[0]
    rows = conn.execute(
        f"SELECT CAST((at - ?) / ? AS INTEGER) - (at < ?) AS b,"
        f" SUM(CASE WHEN kind = 'usage' AND energy_wh IS NOT NULL THEN {ENERGY} ELSE 0 END),"
        " -SUM(CASE WHEN kind IN ('usage', 'standing') THEN amount ELSE 0 END), SUM(amount)"
        " FROM entries INDEXED BY entries_socket WHERE socket_id = ? AND id >= ? GROUP BY b",
        (start, step_s, start, socket_id, bound[0])).fetchall()
    found = [Bucket(int(b), float(energy or 0), int(used), int(net)) for b, energy, used, net in rows]
    opening = total - sum(b.net_units for b in found if b.index >= 0)
    return opening, [b for b in found if 0 <= b.index < count], first[0]
