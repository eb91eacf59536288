"""Metering: read every meter, bill, persist, decide every relay, publish.

`tick()` is what the loop (payg/services/site.py) runs every poll interval. Billing is
payg/domain/billing.py, the relay decision payg/domain/relay.py; this service reads the
meters through a MeterReader, writes each tick as ONE journal transaction and switches
the relays the decisions ask for.
The billing states are written when something happens, else once per `persist_interval_s`
(payg/services/persistence.py).

Fail-safe off: every relay is opened at start until its meter gives a healthy reading,
after `meter_offline_grace_s` without one, when a tick fails (`trip`), and at shutdown.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from contextlib import nullcontext
from dataclasses import dataclass, replace
from datetime import date, timedelta
from fractions import Fraction

from payg.domain.billing import ZERO, BillStep, MeterReading, MeterState, bill, close_usage
from payg.domain.friendly import FriendlyCredit
from payg.domain.money import Tariff
from payg.domain.notices import NoticeSettings
from payg.domain.relay import EXHAUSTED, Credit, check_bypass, decide
from payg.domain.settings import MeteringConfig
from payg.domain.socket import Balance, SocketSnapshot, SocketState, override_mode, snapshot
from payg.domain.tariff import STANDING, Rate, TariffSchedule
from payg.errors import RelayError, UnknownSocket
from payg.ports import Clock, Lock, MeterReader, Relay, StatePublisher
from payg.ports.journal import BillingTx, MeteringJournal
from payg.services.notices import TenantNotices
from payg.services.persistence import StateWrites

log = logging.getLogger("payg.controller")


def standing_cursor(socket_id: str) -> str:
    """The journal cursor naming the last local day whose standing charge is booked for a socket."""
    return f"standing:{socket_id}"


@dataclass(frozen=True)
class MeteringSettings(MeteringConfig):
    """The [controller] keys of MeteringConfig (their defaults and meanings are there), and the protections."""

    friendly: FriendlyCredit = FriendlyCredit()      # friendly-credit periods (none: off)
    friendly_off: frozenset[str] = frozenset()       # sockets that do without them
    notices: NoticeSettings = NoticeSettings()       # low-credit warnings; the record of times off for credit


class Publishers:
    """Hands every published state to each subscriber (the web's live pages, ...), in the order they came."""

    def __init__(self) -> None:
        self._subscribers: list[StatePublisher] = []

    def subscribe(self, publisher: StatePublisher) -> None:
        self._subscribers.append(publisher)

    def publish(self, states: list[SocketSnapshot]) -> None:
        for subscriber in self._subscribers:
            subscriber.publish(states)


class Metering:
    def __init__(self, sockets: list[SocketState], relays: dict[str, Relay], reader: MeterReader,
                 journal: MeteringJournal, clock: Clock, tariff: Tariff,
                 settings: MeteringSettings = MeteringSettings(), *, lock: Lock | None = None,
                 publisher: StatePublisher | None = None, schedules: Mapping[str, TariffSchedule] | None = None):
        """`schedules`: each socket's tariff schedule (payg/domain/tariff.py); none given: `tariff`'s flat rate."""
        ids = [s.id for s in sockets]
        if len(set(ids)) != len(ids):
            raise ValueError("socket ids must be unique")
        if set(relays) != set(ids):
            raise ValueError("every socket needs a relay, and every relay a socket")
        self.sockets = {s.id: s for s in sockets}
        self.relays = dict(relays)
        self.reader = reader
        self.journal = journal
        self.clock = clock
        self.tariff = tariff
        flat = TariffSchedule.flat(tariff.units_per_wh)
        self.schedules = {sid: (schedules or {}).get(sid, flat) for sid in ids}
        self._standing_through: dict[str, date | None] = {}  # the last day whose standing charge is booked
        self.settings = settings
        self.lock = lock if lock is not None else nullcontext()
        self.publisher = publisher
        self.notices = TenantNotices(journal, settings.notices)
        self.ticks = 0
        self.meter_errors = dict.fromkeys(self.sockets, 0)  # readings that failed, per socket (for /metrics)
        self._started = False
        self._stopped = False
        self._states: list[SocketSnapshot] = []
        self.writes = StateWrites(journal, settings.persist_interval_s, lambda sid: self.sockets[sid].state)

    def start(self) -> None:
        """Load the persisted state and open every relay (fail-safe until a healthy reading)."""
        with self.lock:
            overrides = self.journal.overrides()
            now = self.clock.now()
            for s in self.sockets.values():
                s.state = self.journal.meter_state(s.id)
                s.paid = self.journal.ever_credited(s.id)
                through = self.journal.cursor(standing_cursor(s.id))
                self._standing_through[s.id] = date.fromisoformat(through) if through else None
                s.override = override_mode(overrides.get(s.id))
                self.notices.load(s)
                self._switch(s, False, now)
            self._started = True
            self.writes.loaded(now)
            self._states = [self._project(s, now) for s in self.sockets.values()]

    def shutdown(self) -> None:
        """Open every relay, bill what the meters counted up to that moment, close the usage into entries."""
        with self.lock:
            if self._stopped:
                return
            self._stopped = True
            now = self.clock.now()
            for s in self.sockets.values():
                self._switch(s, False, now)
        if self._started:
            try:
                self._bill_round(flush_all=True)
            except Exception:  # the relays are open already; what the meters counted is billed at the next start
                log.exception("final billing at shutdown failed")
        log.info("controller stopped; all relays open")

    def trip(self, reason: str) -> None:
        """Open every relay after a failure the tick could not handle; the next good tick decides again."""
        with self.lock:
            now = self.clock.now()
            for s in self.sockets.values():
                self._switch(s, False, now)
            log.error("all relays opened: %s", reason)

    @property
    def stopped(self) -> bool:
        return self._stopped

    def tick(self) -> None:
        if not self._started:
            raise RuntimeError("Metering.start() must run before tick()")
        if self._stopped:
            return
        self._bill_round(flush_all=False)
        with self.lock:
            if self._stopped:
                return
            now = self.clock.now()
            for s in self.sockets.values():
                self._decide(s, now)
            self.writes.write_if_moved(now)
            self.ticks += 1
            self._publish(now)

    def _bill_round(self, flush_all: bool) -> None:
        readings = self.reader.read_all()
        with self.lock:
            now = self.clock.now()
            updates: list[tuple[SocketState, MeterReading, BillStep]] = []
            standing: list[tuple[str, date]] = []
            closed: dict[str, MeterState] = {}  # unavailable at shutdown: pending usage closed
            with self.journal.transaction() as tx:
                for s in self.sockets.values():
                    day = self._standing(s.id, now, tx)
                    if day is not None:
                        standing.append((s.id, day))
                    reading = readings.get(s.id)
                    if not isinstance(reading, MeterReading):
                        self._unavailable(s, str(reading) if reading is not None else "no reading")
                        if flush_all and s.state is not None and s.state.pending_units:
                            closed[s.id] = self._close_usage(s, s.state, now, tx)
                            tx.save_state(s.id, closed[s.id], s.state.pending_units)
                        continue
                    s.error = None
                    self._check_relay(s, reading, now, tx)
                    step = bill(s.tracker, self.schedules[s.id], s.state, Fraction(reading.energy_wh), reading.at, now,
                                self.settings.usage_entry_s, flush_all, self.settings.poll_interval_s)
                    self._book(s, step, now, tx)
                    updates.append((s, reading, step))
                write = self.writes.due(now, (step for _, _, step in updates), flush_all)
                kept = self.writes.persist(((s.id, step.state, s.state.pending_units if s.state else 0)
                                            for s, _, step in updates if step.write and step.state is not None),
                                           set(closed), write, tx)
            # Committed: only now does the in-memory state follow.
            self.writes.committed(now, write, kept)
            self._standing_through.update(standing)
            for socket_id, state in closed.items():
                self.sockets[socket_id].state = state
            for s, reading, step in updates:
                s.reading = reading
                s.suspect = step.suspect
                if step.state is not None:
                    s.state = step.state
                    s.healthy_at = reading.at
                    if step.anomaly is not None:
                        s.estimator.reset(float(step.state.baseline.counter_wh), float(reading.resolution_wh),
                                          reading.at)
                    s.estimator.observe(float(reading.energy_wh), reading.power_w, float(reading.resolution_wh),
                                        reading.at)

    def _standing(self, socket_id: str, now: float, tx: BillingTx) -> date | None:
        """Book the standing charge of each local day up to today not booked yet (a first day: today only), once
        each (its key: the socket and the day); the charge makes debt when there is no credit. Returns the last
        day booked, None when there was nothing to book."""
        schedule = self.schedules[socket_id]
        if not schedule.has_standing_charge:
            return None
        today = schedule.local_day(now)
        through = self._standing_through.get(socket_id)
        if through is not None and through >= today:
            return None
        day = today if through is None else through + timedelta(days=1)
        while day <= today:
            charge = schedule.standing(day)
            if charge.units:
                rate = Rate.of(STANDING, charge.gross_units, charge.vat_percent)
                tx.debit(socket_id, charge.units, "standing", now, idem_key=f"standing:{socket_id}:{day.isoformat()}",
                         memo=day.isoformat(), rate=rate)
            day += timedelta(days=1)
        tx.set_cursor(standing_cursor(socket_id), today.isoformat())
        return today

    def _book(self, s: SocketState, step: BillStep, now: float, tx: BillingTx) -> None:
        """A reading's anomaly event and usage entries."""
        if step.anomaly is not None:
            a = step.anomaly
            detail = f"counter {a.from_wh} Wh -> {a.to_wh} Wh"
            if a.kind == "implausible_jump":
                detail += f"; {a.unbilled_wh} Wh not billed"
                log.error("socket %s: implausible meter jump (%s); baseline restarted", s.id, detail)
            else:
                log.warning("socket %s: meter counter went backwards (%s); baseline restarted", s.id, detail)
            tx.event(s.id, a.kind, detail, now)
        for usage in step.usages:
            tx.debit(s.id, usage.units, "usage", now, energy_wh=usage.energy_wh, rate=usage.rate)

    @staticmethod
    def _close_usage(s: SocketState, state: MeterState, now: float, tx: BillingTx) -> MeterState:
        closed, usage = close_usage(state)
        tx.debit(s.id, usage.units, "usage", now, energy_wh=usage.energy_wh, rate=usage.rate)
        return closed

    def _unavailable(self, s: SocketState, why: str) -> None:
        self.meter_errors[s.id] += 1
        if s.error != why:
            log.warning("meter of %s unavailable: %s", s.id, why)
        s.error = why

    def _check_relay(self, s: SocketState, reading: MeterReading, now: float, tx: BillingTx) -> None:
        was = s.bypass
        check = check_bypass(relay_closed=s.relay_closed, off_since=s.off_since, reading_at=reading.at,
                             power_w=reading.power_w, bypass=s.bypass, relay_check_s=self.settings.relay_check_s,
                             relay_off_max_w=self.settings.relay_off_max_w)
        s.bypass = check.bypass
        if check.alarm is not None:
            log.error("socket %s: relay bypass or stuck contact: %s", s.id, check.alarm)
            tx.event(s.id, "relay_bypass", check.alarm, now)
        elif was and not check.bypass:
            log.warning("socket %s: no more power through the open relay", s.id)

    def healthy(self, s: SocketState, now: float) -> bool:
        return s.healthy(now, self.settings.meter_offline_grace_s)

    def credit_of(self, s: SocketState, now: float) -> Credit:
        """What the socket may still use at `now`: balance, carry and the energy drawn since the counter's step."""
        carry = s.state.baseline.carry if s.state else ZERO
        hidden_wh = s.estimator.hidden_wh(now) if self.settings.predictive_cutoff else 0.0
        usable = self.journal.balance(s.id) + self.journal.deferred_debt(s.id)  # a repayment plan's debt set aside
        rate = self.schedules[s.id].segment_at(now).rate
        return Credit(usable, carry, hidden_wh * float(rate.units_per_wh))

    def _decide(self, s: SocketState, now: float) -> None:
        credit = self.credit_of(s, now)
        schedule = self.schedules[s.id]
        d = decide(credit, healthy=self.healthy(s, now), override=s.override,
                   stopped=self._stopped, exhausted_at_balance=s.exhausted_at_balance,
                   power_w=s.reading.power_w if s.reading is not None else None,
                   units_per_wh=schedule.segment_at(now).rate.units_per_wh, now=now,
                   spend=None if schedule.is_flat else schedule.time_to_spend,
                   poll_interval_s=self.settings.poll_interval_s,
                   predictive=self.settings.predictive_cutoff, relay_on=s.relay_closed,
                   friendly_end=self._friendly_end if s.id not in self.settings.friendly_off else None)
        s.exhausted_at_balance = d.exhausted_at_balance
        if not d.closed and s.relay_closed:
            log.info("socket %s off: %s", s.id, d.reason)
        self._switch(s, d.closed, now)
        s.cut_at = d.cut_at
        self._notice(s, d.reason == EXHAUSTED and s.paid, credit, now)  # a vacant socket is not "off for credit"

    def _notice(self, s: SocketState, off_for_credit: bool, credit: Credit, now: float) -> None:
        if not self._stopped:
            self.notices.observe(s, off_for_credit=off_for_credit, balance=credit.balance,
                                 available_units=credit.available,
                                 units_per_wh=float(self.schedules[s.id].segment_at(now).rate.units_per_wh),
                                 power_w=s.reading.power_w if s.reading is not None else None, now=now)

    def _friendly_end(self, t: float) -> float | None:
        friendly = self.settings.friendly
        return friendly.ends_at(t) if friendly.enabled else None

    def _switch(self, s: SocketState, closed: bool, now: float) -> None:
        if closed == s.relay_closed and s.relay_error is None and self._started:
            return
        try:
            self.relays[s.id].set_closed(closed)
        except RelayError as exc:
            s.relay_error = str(exc)
            log.error("relay of %s failed: %s", s.id, exc)
            return
        if closed != s.relay_closed:
            self.writes.relay_moved = True
        s.relay_switched(closed, now)

    def next_cutoff(self) -> float | None:
        with self.lock:
            times = [s.cut_at for s in self.sockets.values() if s.cut_at is not None]
        return min(times) if times else None

    def enforce_cutoffs(self) -> list[str]:
        """Open every relay whose predicted time to zero credit has come. Returns their ids."""
        cut = []
        with self.lock:
            now = self.clock.now()
            for s in self.sockets.values():
                if s.cut_at is not None and s.cut_at <= now:
                    s.cut_at = None
                    if s.relay_closed:
                        self._switch(s, False, now)
                        s.exhausted_at_balance = self.credit_of(s, now).balance
                        cut.append(s.id)
                        log.info("socket %s off: %s (predicted)", s.id, EXHAUSTED)
                        self._notice(s, s.paid, self.credit_of(s, now), now)
            if cut:
                self.writes.write_if_moved(now)
                self._publish(now)
        return cut

    def redecide(self, socket_ids: set[str]) -> None:
        """A credit, an override or an adjustment was booked: decide those relays now, not at the next tick."""
        with self.lock:
            if self._stopped or not self._started:
                return
            now = self.clock.now()
            for socket_id in socket_ids:
                s = self.sockets.get(socket_id)
                if s is not None:
                    if not s.paid:  # a credit may be its first: vacant no more
                        s.paid = self.journal.ever_credited(socket_id)
                    self._decide(s, now)
            self.writes.write_if_moved(now)
            self._publish(now)

    credits_arrived = redecide  # what the deposit watcher and the channel book call

    def socket(self, socket_id: str) -> SocketState:
        try:
            return self.sockets[socket_id]
        except KeyError:
            raise UnknownSocket(socket_id) from None

    def _project(self, s: SocketState, now: float) -> SocketSnapshot:
        return snapshot(s, self.journal.balance(s.id), self.tariff.units_per_token, now,
                        self.settings.meter_offline_grace_s, self.journal.deferred_debt(s.id))

    def publish(self) -> None:
        with self.lock:
            self._publish(self.clock.now())

    def _publish(self, now: float) -> None:
        self._states = [self._project(s, now) for s in self.sockets.values()]
        if self.publisher is not None:
            self.publisher.publish(self._states)

    def states(self) -> list[SocketSnapshot]:
        """Every socket's state as of the last tick, with the balance as of now."""
        with self.lock:
            return [self._with_balance(st) for st in self._states]

    def state(self, socket_id: str) -> SocketSnapshot:
        self.socket(socket_id)
        with self.lock:
            return self._with_balance(next(st for st in self._states if st.id == socket_id))

    def _with_balance(self, st: SocketSnapshot) -> SocketSnapshot:
        upt = self.tariff.units_per_token
        return replace(st, balance=Balance.of(self.journal.balance(st.id), upt, self.journal.deferred_debt(st.id)))

