"""Keeps, per socket, the notices of payg/domain/notices.py: low-credit crossings and the times off for lack
of credit, each written once to the journal as an event (later issues send these over MQTT).

What a restart must not repeat is read back at the start: whether the socket is off for lack of
credit (its last credit_off or credit_on event) with the relay's mark at that cut (the cursor
`credit-off-mark:<socket>`, written with the credit_off event and again whenever usage billed after
the cut lowers the mark: a socket cut ahead with part of a token left stays off after a restart, as it
would have without one, and any new credit switches it on again), and its low-credit level (the
cursor `low-credit:<socket>`, written with the event that changed it).
"""

from __future__ import annotations

from payg.domain.accounts import EventKind
from payg.domain.notices import NoticeSettings, hours_left, next_level, warning_level
from payg.domain.socket import SocketState
from payg.ports.journal import NoticeJournal

OFF_KINDS: tuple[EventKind, ...] = ("credit_off", "credit_on")


def _duration(seconds: float) -> str:
    hours, rest = divmod(int(seconds), 3600)
    return f"{hours} h {rest // 60} min" if hours else f"{rest // 60} min"


class TenantNotices:
    def __init__(self, journal: NoticeJournal, settings: NoticeSettings):
        self.journal, self.settings = journal, settings
        self._marks: dict[str, int | None] = {}  # the relay's mark as the journal holds it, per socket off for credit

    def load(self, s: SocketState) -> None:
        last = next((e for e in self.journal.events(s.id, 200) if e["kind"] in OFF_KINDS), None)
        s.credit_off_at = last["at"] if last is not None and last["kind"] == "credit_off" else None
        mark = self.journal.cursor(f"credit-off-mark:{s.id}") if s.credit_off_at is not None else None
        s.exhausted_at_balance = self._marks[s.id] = int(mark) if mark else None
        s.warn_level = int(self.journal.cursor(f"low-credit:{s.id}") or 0)
        s.warn_balance = self.journal.balance(s.id)

    def observe(self, s: SocketState, *, off_for_credit: bool, balance: int, available_units: float,
                units_per_wh: float, power_w: float | None, now: float) -> None:
        notes: list[tuple[EventKind, str]] = []
        if off_for_credit and s.credit_off_at is None:
            notes.append(("credit_off", "off for lack of credit"))
            s.credit_off_at = now
        elif not off_for_credit and s.credit_off_at is not None:
            notes.append(("credit_on", f"on again after {_duration(now - s.credit_off_at)} off for lack of credit"))
            s.credit_off_at = None
        level = s.warn_level
        thresholds = self.settings.warn_for(s.id)
        if thresholds:
            credited = s.warn_balance is not None and balance > s.warn_balance
            s.warn_balance = balance
            # only a socket that is on warns: one off for lack of credit has its own record
            computed = warning_level(hours_left(available_units, power_w, units_per_wh), thresholds) \
                if s.relay_closed else (0 if credited else s.warn_level)
            level = next_level(s.warn_level, computed, credited)
            for k in range(s.warn_level + 1, level + 1):
                notes.append(("low_credit", f"less than {thresholds[k - 1]:g} h of credit left at "
                                            f"{power_w or 0:.0f} W"))
        s.warn_below_h = thresholds[level - 1] if level else None
        mark = s.exhausted_at_balance if s.credit_off_at is not None else None
        new_mark = mark is not None and mark != self._marks.get(s.id)
        if not notes and level == s.warn_level and not new_mark:
            return
        with self.journal.transaction() as tx:
            for kind, detail in notes:
                tx.event(s.id, kind, detail, now)
            if new_mark:
                tx.set_cursor(f"credit-off-mark:{s.id}", str(mark))
            if level != s.warn_level:
                tx.set_cursor(f"low-credit:{s.id}", str(level))
        s.warn_level = level
        self._marks[s.id] = mark
