"""Replays: the events a `replay` command asks for again (the contract: topics.py), handed to the bridge as its
window has room.

A replay is planned when its command runs: the response says how many events follow (those kept from
max(from_seq, the oldest seq kept) to the last seq given, at most REPLAY_MAX_ROWS), and the rows are then read
from the outbox a window's room at a time, beside the new events (MqttBridge._send_events gives the new ones
at least half the room). The bridge prunes nothing while a replay is under way, so every event the response
counted is sent. Only the bridge's worker thread uses this.
"""

from __future__ import annotations

import sqlite3
from collections import deque
from dataclasses import dataclass

from payg.adapters.mqtt.outbox import Outbox, OutboxRow
from payg.adapters.mqtt.topics import REPLAY_MAX_ROWS, BadCommand, Replay, replay_response

REPLAYS_MAX = 4  # replays under way at once; one more is refused until they are sent


@dataclass
class _Job:
    next_seq: int
    left: int


class Replays:
    def __init__(self, outbox: Outbox):
        self.outbox = outbox
        self._jobs: deque[_Job] = deque()

    def __bool__(self) -> bool:
        """A replay is under way."""
        return bool(self._jobs)

    def plan(self, cmd: Replay) -> dict:
        """The command's response, its events queued; BadCommand when REPLAYS_MAX replays are under way or the
        journal cannot be read."""
        if len(self._jobs) >= REPLAYS_MAX:
            raise BadCommand(f"{REPLAYS_MAX} replays are under way: ask again once their events came",
                             cmd.request_id, cmd.command)
        try:
            oldest, last = self.outbox.oldest_seq(), self.outbox.last_seq()
            start = max(cmd.from_seq, oldest or 0)
            count = 0 if oldest is None or start > last else min(self.outbox.count(start, last), REPLAY_MAX_ROWS)
        except sqlite3.Error as exc:
            raise BadCommand(f"the controller could not read its events: {exc}", cmd.request_id, cmd.command) from exc
        if count:
            self._jobs.append(_Job(start, count))
        return replay_response(cmd.request_id, cmd.from_seq, oldest, last, count)

    def due(self, room: int) -> list[OutboxRow]:
        """The next rows of the oldest replay, at most `room`; `sent` each once the bridge handed it on."""
        if not self._jobs or room <= 0:
            return []
        job = self._jobs[0]
        rows = self.outbox.replay(job.next_seq, min(room, job.left))
        if not rows:  # gone (nothing is pruned while a replay is under way: a journal changed by hand)
            self._jobs.popleft()
        return rows

    def sent(self, row: OutboxRow) -> None:
        job = self._jobs[0]
        job.next_seq, job.left = row.seq + 1, job.left - 1
        if not job.left:
            self._jobs.popleft()
