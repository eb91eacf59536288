"""What the controller recorded for one socket, as the landlord's socket page reads it: its journal, filtered by
kind and time and read a page at a time, newest first, and its events (alarms marked open until acknowledged).

The journal's entries of a socket are read newest first by id (`Reports.entries`, the `entries_socket` index), a
batch at a time, and filtered here: a socket's usage entries far outnumber the rest, so a filter on a rare kind may
read many entries for a few rows. One page reads at most `MAX_SCANNED` of them and says where to go on from.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from payg.domain.accounts import ALARM_KINDS, CREDIT_KINDS, DEBIT_KINDS, Entry
from payg.domain.codes import in_words
from payg.ports.journal import Reports

ENTRY_KINDS: tuple[str, ...] = CREDIT_KINDS + DEBIT_KINDS
NOT_USAGE = "not-usage"   # the kind filter's "everything but energy use": usage is most of a journal
CODE_EVENTS = frozenset({"code", "code_issued"})
PAGE_ENTRIES = 50
BATCH = 500
MAX_SCANNED = 20_000
MAX_EVENTS = 100


def kinds_of(choice: str) -> frozenset[str] | None:
    """The entry kinds a filter's choice stands for (None: every kind); ValueError for a choice that is none."""
    if choice in ("", "all"):
        return None
    if choice == NOT_USAGE:
        return frozenset(ENTRY_KINDS) - {"usage"}
    if choice in ENTRY_KINDS:
        return frozenset({choice})
    raise ValueError(f"kind must be one of: all, {NOT_USAGE}, {', '.join(ENTRY_KINDS)}")


@dataclass(frozen=True)
class JournalQuery:
    kinds: frozenset[str] | None = None   # None: every kind
    start: float | None = None            # entries booked at or after
    end: float | None = None              # entries booked before
    before_id: int | None = None          # the page after this one ends before this entry id
    limit: int = PAGE_ENTRIES

    def matches(self, e: Entry) -> bool:
        return ((self.kinds is None or e.kind in self.kinds) and (self.start is None or e.at >= self.start)
                and (self.end is None or e.at < self.end))


@dataclass(frozen=True)
class JournalPage:
    entries: tuple[Entry, ...]
    older: int | None   # the `before_id` of the next (older) page; None: none is left
    scanned_out: bool   # the page stopped at MAX_SCANNED entries read, not at its limit


@dataclass(frozen=True)
class EventRow:
    id: int
    at: float
    kind: str
    detail: str
    alarm: bool
    open: bool   # an alarm not yet acknowledged


def readable(e: Entry) -> Entry:
    """A code's credit with its memo in a person's words (payg/domain/codes.py `in_words`)."""
    if e.idem_key is not None and e.idem_key.startswith("code:"):
        return dataclasses.replace(e, memo=in_words(e.memo))
    return e


class SocketRecords:
    def __init__(self, journal: Reports):
        self.journal = journal

    def journal_page(self, socket_id: str, q: JournalQuery) -> JournalPage:
        """Up to `q.limit` of the socket's entries that match `q`, newest first."""
        before = q.before_id
        if q.end is not None:  # straight to the entries booked before the end, ids being in time order
            at_end = self.journal.first_entry_id_since(q.end) + 1
            before = at_end if before is None else min(before, at_end)
        found: list[Entry] = []
        scanned = 0
        while True:
            batch = self.journal.entries(socket_id, BATCH, before)
            for e in batch:
                if q.start is not None and e.at < q.start:
                    return JournalPage(tuple(found), None, False)
                before = e.id
                if q.matches(e):
                    found.append(readable(e))
                    if len(found) >= q.limit:
                        return JournalPage(tuple(found), e.id, False)
            scanned += len(batch)
            if len(batch) < BATCH:
                return JournalPage(tuple(found), None, False)
            if scanned >= MAX_SCANNED:
                return JournalPage(tuple(found), before, True)

    def entries(self, socket_id: str, q: JournalQuery) -> Iterator[Entry]:
        """Every entry of the socket that matches `q`, oldest first (a CSV file of them), streamed."""
        for e in self.journal.all_entries(socket_id):
            if q.end is not None and e.at >= q.end:
                return
            if q.matches(e):
                yield e

    def events(self, socket_id: str, limit: int = MAX_EVENTS) -> list[EventRow]:
        """The socket's latest events, newest first; an alarm after the last acknowledgement is open."""
        seen = int(self.journal.cursor(f"alarms-seen:{socket_id}") or 0)
        rows: list[dict[str, Any]] = self.journal.events(socket_id, limit)
        return [EventRow(r["id"], r["at"], r["kind"], in_words(r["detail"]) if r["kind"] in CODE_EVENTS
                         else r["detail"], r["kind"] in ALARM_KINDS, r["kind"] in ALARM_KINDS and r["id"] > seen)
                for r in rows]
