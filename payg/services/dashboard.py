"""Dashboard: the figures the pages show beside the live state, kept up to date incrementally,
and the view of a socket the pages are given (`socket_view`).

Energy today and this month and top-ups this month are sums over the journal. Summing a
month of entries every second for 200 sockets would be wasteful, so the sums are built once
(at start, and again when a day begins) and then follow the journal entry by entry: each
refresh reads only the entries booked since the last one. Usage counts on the day its entry
is closed (the controller closes one per `usage_entry_s` of consumption); usage not yet
closed into an entry is added by the caller from the live state (`pending_wh`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from fractions import Fraction
from typing import Literal

from payg.domain.accounts import Entry
from payg.domain.money import Tariff, time_left_s, tokens_shown
from payg.domain.notices import LowCredit, NoticeSettings, credit_off_intervals, low_credit, off_hours
from payg.domain.socket import SocketSnapshot, credit_used_up
from payg.domain.statement import Method, method_of
from payg.domain.tariff import DAY_S, TariffSchedule
from payg.ports import Clock, Lock
from payg.ports.journal import Reports

CHUNK = 5000
LOW_TIME_S = 1800  # a page warns when less than this is left at the present power
WEEK_S = 7 * DAY_S  # how far ahead "time left" looks with a tariff that changes
OFF_EVERY_S = 60.0
PAID: tuple[Method, ...] = ("deposit", "code", "manual credit")  # what the tenant page confirms as received


@dataclass
class Figures:
    energy_today_wh: Fraction = Fraction(0)
    energy_month_wh: Fraction = Fraction(0)
    topups_month: int = 0          # deposits this month, in journal units
    last_topup_at: float | None = None
    last_topup: int | None = None  # journal units
    last_credit: Credit | None = None  # the latest payment this month (PAID)


@dataclass(frozen=True)
class Credit:
    """A payment into a socket's account: its journal entry (the receipt's number), when, how much, how."""

    id: int
    at: float
    units: int
    method: Method


@dataclass(frozen=True)
class Alarm:
    count: int
    last_event_id: int
    detail: str


class Dashboard:
    def __init__(self, journal: Reports, clock: Clock, tz: tzinfo | None = None, lock: Lock | None = None):
        self.journal = journal
        self.clock = clock
        self.tz = tz  # None: the system's local time zone
        self._lock = lock if lock is not None else nullcontext()
        self._day_start = -math.inf  # none yet: the first refresh builds the sums
        self._month_start = -math.inf
        self._last_id = 0
        self._figures: dict[str, Figures] = {}
        self._alarms: dict[str, Alarm] = {}
        # socket -> (when read, hours off for credit in 7 days, off for credit then)
        self._off: dict[str, tuple[float, float, bool]] = {}
        self._low: dict[str, LowCredit] = {}  # the pages' low-credit warning per socket, as last decided

    def period_starts(self, now: float) -> tuple[float, float]:
        """(start of today, start of this month) as epoch seconds, in the dashboard's time zone."""
        local = datetime.fromtimestamp(now, self.tz) if self.tz else datetime.fromtimestamp(now).astimezone()
        day = local.replace(hour=0, minute=0, second=0, microsecond=0)
        return day.timestamp(), day.replace(day=1).timestamp()

    def refresh(self) -> None:
        """Follow the journal up to now: new entries, new alarms, and a rebuild when a day begins."""
        with self._lock:
            day_start, month_start = self.period_starts(self.clock.now())
            if day_start != self._day_start:
                self._rebuild(day_start, month_start)
            while True:
                entries = self.journal.entries_after(self._last_id, CHUNK)
                for e in entries:
                    self._add(e)
                if len(entries) < CHUNK:
                    break
            self._alarms = {sid: Alarm(*a) for sid, a in self.journal.open_alarms().items()}

    def _rebuild(self, day_start: float, month_start: float) -> None:
        self._day_start, self._month_start = day_start, month_start
        self._figures = {}
        for socket_id, at, amount in self.journal.last_entries("deposit"):
            f = self._figures.setdefault(socket_id, Figures())
            f.last_topup_at, f.last_topup = at, amount
        self._last_id = self.journal.first_entry_id_since(month_start)

    def _add(self, e: Entry) -> None:
        self._last_id = e.id
        f = self._figures.setdefault(e.socket_id, Figures())
        method = method_of(e)
        if method is not None and method in PAID:
            f.last_credit = Credit(e.id, e.at, e.amount, method)
        if e.at < self._month_start:
            return
        if e.kind == "usage" and e.energy_wh is not None:
            f.energy_month_wh += e.energy_wh
            if e.at >= self._day_start:
                f.energy_today_wh += e.energy_wh
        elif e.kind == "deposit":
            f.topups_month += e.amount
            f.last_topup_at, f.last_topup = e.at, e.amount

    def figures(self, socket_id: str) -> Figures:
        with self._lock:
            f = self._figures.get(socket_id)
            return Figures(**vars(f)) if f is not None else Figures()

    def alarm(self, socket_id: str) -> Alarm | None:
        with self._lock:
            return self._alarms.get(socket_id)

    def low_credit(self, socket_id: str, units: int, below: bool, at: float) -> bool:
        """Whether the pages warn of low credit now (payg/domain/notices.py `low_credit`: a crossing, not a top-up
        that leaves the credit low); each socket's last decision is kept here, where every view is made."""
        with self._lock:
            decided = self._low[socket_id] = low_credit(self._low.get(socket_id), units=units, below=below, at=at)
            return decided.warned

    def off_for_credit_h(self, socket_id: str, off_now: bool = False) -> float:
        """Hours the socket was off for lack of credit in the last 7 days: read again at most once a minute, and at
        once when it goes off for lack of credit or comes back (`off_now` differs from the last read)."""
        now = self.clock.now()
        with self._lock:
            cached = self._off.get(socket_id)
            if cached is not None and now - cached[0] < OFF_EVERY_S and cached[2] == off_now:
                return cached[1]
        events = [e for e in self.journal.events(socket_id, 1000) if e["kind"] in ("credit_off", "credit_on")]
        hours = off_hours(credit_off_intervals(events), now)
        with self._lock:
            self._off[socket_id] = (now, hours, off_now)
        return hours


@dataclass(frozen=True)
class ViewSettings:
    tariff: Tariff
    low_credit_tokens: int  # a page warns at or below this balance
    flag_off_hours: float = NoticeSettings.flag_off_hours  # off for lack of credit longer than this in 7 days: flagged
    schedules: Mapping[str, TariffSchedule] = field(default_factory=dict)  # each socket's (none: `tariff`, flat)


ViewStatus = Literal["alarm", "offline", "on", "off", "vacant"]  # the landlord view's status column (vacant: never
# paid for, off because nobody has topped it up yet)


@dataclass(frozen=True)
class SocketView:
    """What a page shows of one socket: its state, with the balance it was made with, and the dashboard's figures.
    payg/serialize.py gives the pages its JSON."""

    state: SocketSnapshot
    status: ViewStatus
    credit_exhausted: bool
    energy_today_wh: float
    energy_month_wh: float
    revenue_month_tokens: int | float
    last_topup_at: float | None
    last_topup_tokens: int | float | None
    alarms: int
    alarm_detail: str | None
    energy_left_wh: float
    time_left_s: float | None
    low_credit: bool
    off_for_credit_h_7d: float
    needs_help: bool
    last_credit: Credit | None = None  # the latest payment (a page confirms a new one as it arrives)
    last_credit_tokens: int | float | None = None  # its amount in tokens


def socket_view(state: SocketSnapshot, dashboard: Dashboard, vs: ViewSettings) -> SocketView:
    """What a page shows of one socket: the metering state plus the dashboard's figures."""
    f = dashboard.figures(state.id)
    alarm = dashboard.alarm(state.id)
    relay: ViewStatus = "on" if state.relay_on else "off"
    if state.meter not in ("ok", "offline") or state.relay_error or alarm is not None:
        status: ViewStatus = "alarm"
    elif state.meter == "offline":
        status = "offline"
    else:
        status = "vacant" if state.vacant and not state.relay_on else relay
    balance = state.balance.units
    power = state.reading.power_w if state.reading else None
    schedule = vs.schedules.get(state.id)
    if schedule is None or schedule.is_flat:
        energy_left_wh = vs.tariff.energy_wh(balance)
        time_left = time_left_s(energy_left_wh, power) if state.relay_on else None
    else:  # the rates ahead and the standing charges at local midnights, for up to a week
        now = state.updated_at
        per_wh = schedule.segment_at(now).rate.units_per_wh  # the energy left at the rate of the moment
        energy_left_wh = float(max(balance, 0) / per_wh) if per_wh else 0.0
        time_left = schedule.time_to_spend(balance, power, now, WEEK_S) if state.relay_on else None
    pending = state.pending_wh
    upt = vs.tariff.units_per_token
    out = balance <= 0 or state.credit_exhausted  # out of credit is always said
    off_h = dashboard.off_for_credit_h(state.id, off_now=out and not state.relay_on and not state.vacant)
    below = (balance <= vs.low_credit_tokens * upt or (time_left is not None and time_left < LOW_TIME_S)
             or state.credit_warning_h is not None)
    return SocketView(
        state=state,
        status=status,
        # the snapshot's rule (payg/domain/socket.py), so that a view made of any state says what the API says
        credit_exhausted=credit_used_up(state.credit_exhausted, balance),
        energy_today_wh=round(float(f.energy_today_wh + pending), 3),
        energy_month_wh=round(float(f.energy_month_wh + pending), 3),
        revenue_month_tokens=tokens_shown(f.topups_month, upt),
        last_topup_at=f.last_topup_at,
        last_topup_tokens=tokens_shown(f.last_topup, upt) if f.last_topup is not None else None,
        alarms=alarm.count if alarm else 0,
        alarm_detail=alarm.detail if alarm else None,
        energy_left_wh=round(energy_left_wh, 3),
        time_left_s=round(time_left, 1) if time_left is not None else None,
        low_credit=dashboard.low_credit(state.id, balance, below, state.updated_at) or out,
        off_for_credit_h_7d=round(off_h, 1),
        needs_help=off_h > vs.flag_off_hours and not state.vacant,
        last_credit=f.last_credit,
        last_credit_tokens=tokens_shown(f.last_credit.units, upt) if f.last_credit is not None else None,
    )
