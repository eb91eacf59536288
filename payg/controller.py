"""The metering controller: read, bill, persist, decide relays, publish.

`tick()` is a plain method: the scheduler in app.py calls it every poll
interval, tests call it on a virtual clock. Relay policy:

- closed only while the available credit is positive, the meter is healthy
  and no override holds the socket off;
- available credit = balance - carry still owed - the estimated cost of the
  energy drawn since the meter's last counter step; when that would reach
  zero before the next tick, a predictive cut-off time is published
  (`next_cutoff()`) and `enforce_cutoffs()` opens the relay then;
- fail-safe off: at start until the first healthy reading, after
  `grace_s` without one, and at shutdown.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from fractions import Fraction

from payg.domain.billing import Baseline, CounterTracker, HiddenEnergyEstimator, Tariff
from payg.ports import Clock
from payg.errors import InvalidAmount, MeterUnavailable, RelayError, UnknownSocket
from payg.adapters.journal import SqliteJournal
from payg.domain.billing import MeterState
from payg.ports import EnergyMeter, MeterReading, Relay, StatePublisher

log = logging.getLogger("payg.controller")


@dataclass
class Socket:
    id: str
    name: str
    meter: EnergyMeter
    relay: Relay
    max_power_w: float = 3680.0
    # runtime state below
    state: MeterState | None = None
    reading: MeterReading | None = None
    healthy_at: float | None = None
    error: str | None = None
    suspect: str | None = None
    relay_closed: bool = False
    relay_error: str | None = None
    cut_at: float | None = None
    exhausted_at_balance: int | None = None  # set by a cut for lack of credit; cleared by a new credit
    override: str | None = None
    off_since: float | None = None  # when the relay was last opened
    bypass: bool = False  # power measured while the relay has been open for relay_check_s
    tracker: CounterTracker = field(init=False)
    estimator: HiddenEnergyEstimator = field(init=False)

    def __post_init__(self) -> None:
        self.tracker = CounterTracker(self.max_power_w)
        self.estimator = HiddenEnergyEstimator(self.max_power_w)


class Controller:
    def __init__(self, sockets: list[Socket], journal: SqliteJournal, clock: Clock, tariff: Tariff, *,
                 poll_interval_s: float = 1.0, grace_s: float = 10.0, usage_entry_s: float = 60.0,
                 counter_confirmations: int = 3, predictive_cutoff: bool = True,
                 relay_check_s: float = 5.0, relay_off_max_w: float = 5.0,
                 publisher: StatePublisher | None = None):
        ids = [s.id for s in sockets]
        if len(set(ids)) != len(ids):
            raise ValueError("socket ids must be unique")
        self.sockets = {s.id: s for s in sockets}
        self.journal = journal
        self.clock = clock
        self.tariff = tariff
        self.poll_interval_s = poll_interval_s
        self.grace_s = grace_s
        self.usage_entry_s = usage_entry_s
        self.predictive_cutoff = predictive_cutoff
        self.relay_check_s = relay_check_s
        self.relay_off_max_w = relay_off_max_w
        self.publisher = publisher
        self._buses: dict[str, list[Socket]] = {}
        for s in sockets:
            bus_id = getattr(s.meter, "bus_id", None)
            if bus_id is not None:
                self._buses.setdefault(bus_id, []).append(s)
        self._pool = ThreadPoolExecutor(max_workers=len(self._buses), thread_name_prefix="bus") \
            if self._buses else None
        self._in_flight: dict[str, Future] = {}
        self._lock = threading.RLock()
        self._stopped = False
        self._started = False
        self.ticks = 0
        self._states: list[dict] = []
        for s in sockets:
            s.tracker.confirmations = counter_confirmations

    # --- life cycle -------------------------------------------------------

    def start(self) -> None:
        """Load persisted state and open every relay (fail-safe until a healthy reading)."""
        with self._lock:
            overrides = self.journal.overrides()
            for s in self.sockets.values():
                s.state = self.journal.meter_state(s.id)
                s.override = overrides.get(s.id)
                self._switch(s, False, self.clock.now())
            self._started = True
            self._states = [self._state_of(s, self.clock.now()) for s in self.sockets.values()]

    def shutdown(self) -> None:
        """Open every relay, bill what the meters counted up to that moment, close the usage into entries."""
        with self._lock:
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
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        log.info("controller stopped; all relays open")

    def trip(self, reason: str) -> None:
        """Open every relay after a failure the tick could not handle; the next good tick decides again."""
        with self._lock:
            now = self.clock.now()
            for s in self.sockets.values():
                self._switch(s, False, now)
            log.error("all relays opened: %s", reason)

    @property
    def stopped(self) -> bool:
        return self._stopped

    # --- the tick -----------------------------------------------------------

    def tick(self) -> None:
        if not self._started:
            raise RuntimeError("Controller.start() must run before tick()")
        if self._stopped:
            return
        self._bill_round(flush_all=False)
        with self._lock:
            if self._stopped:
                return
            now = self.clock.now()
            for s in self.sockets.values():
                self._decide(s, now)
            self.ticks += 1
            self._publish(now)

    def _read(self, s: Socket) -> MeterReading | None:
        try:
            reading = s.meter.read()
        except MeterUnavailable as exc:
            self._unavailable(s, str(exc))
            return None
        s.error = None
        return reading

    def _read_group(self, sockets: list[Socket]) -> dict[str, MeterReading | None]:
        return {s.id: self._read(s) for s in sockets}

    def _read_all(self) -> dict[str, MeterReading | None]:
        """Every meter once. Meters on a bus are read by that bus's worker, all buses at once; a bus
        that has not answered within 80 % of a poll interval (dead meters timing out one after the
        other) leaves its sockets without a reading this tick instead of holding up every socket."""
        readings: dict[str, MeterReading | None] = {}
        submitted: dict[str, Future] = {}
        for bus_id, sockets in self._buses.items():
            previous = self._in_flight.get(bus_id)
            if previous is not None and not previous.done():
                for s in sockets:
                    self._unavailable(s, f"bus {bus_id} busy: the previous poll has not finished")
                    readings[s.id] = None
                continue
            submitted[bus_id] = self._in_flight[bus_id] = self._pool.submit(self._read_group, sockets)
        for s in self.sockets.values():
            if getattr(s.meter, "bus_id", None) is None:
                readings[s.id] = self._read(s)
        if submitted:
            wait(submitted.values(), timeout=0.8 * self.poll_interval_s)
        for bus_id, future in submitted.items():
            if future.done():
                readings.update(future.result())
            else:
                for s in self._buses[bus_id]:
                    self._unavailable(s, f"bus {bus_id} slow: no reply within {0.8 * self.poll_interval_s:.2f} s")
                    readings[s.id] = None
        return readings

    def _unavailable(self, s: Socket, why: str) -> None:
        if s.error != why:
            log.warning("meter of %s unavailable: %s", s.id, why)
        s.error = why

    def _bill_round(self, flush_all: bool) -> None:
        readings = self._read_all()
        with self._lock:
            now = self.clock.now()
            updates: list[tuple[Socket, MeterReading, MeterState, bool]] = []
            with self.journal.transaction() as tx:
                for s in self.sockets.values():
                    reading = readings[s.id]
                    if reading is None:
                        if flush_all and s.state is not None and s.state.pending_units:
                            new = self._flushed(s, s.state, now, tx)
                            tx.save_state(s.id, new, s.state.pending_units)
                            s.state = new
                        continue
                    self._check_relay(s, reading, now, tx)
                    new, healthy, dirty = self._bill(s, reading, now, tx, flush_all)
                    if dirty:
                        previous_pending = s.state.pending_units if s.state else 0
                        tx.save_state(s.id, new, previous_pending)
                    updates.append((s, reading, new, healthy))
            # Committed: only now does the in-memory state follow.
            for s, reading, new, healthy in updates:
                s.reading = reading
                if new is not None:
                    s.state = new
                if healthy:
                    s.healthy_at = reading.at
                    s.estimator.observe(float(reading.energy_wh), reading.power_w, float(reading.resolution_wh),
                                        reading.at)

    def _bill(self, s: Socket, reading: MeterReading, now: float, tx, flush_all: bool
              ) -> tuple[MeterState | None, bool, bool]:
        """(new billing state, whether the reading was healthy, whether the state must be written)."""
        counter = Fraction(reading.energy_wh)
        old = s.state
        step = s.tracker.step(old.baseline if old else None, counter, reading.at)
        s.suspect = step.suspect
        if step.new_counter_wh is None:
            return None, False, False
        flush_due = old is not None and bool(old.pending_wh) and (
            flush_all or (old.pending_since is not None and now - old.pending_since >= self.usage_entry_s))
        if old is not None and step.anomaly is None and step.billable_wh == 0 and not flush_due:
            # Nothing changed: keep the baseline's time fresh in memory only (an idle socket
            # writes nothing, which spares an SD card); a restart measures from the last change.
            return MeterState(replace(old.baseline, at=reading.at), old.pending_units, old.pending_wh,
                              old.pending_since), True, False
        if step.anomaly is not None:
            a = step.anomaly
            detail = f"counter {a.from_wh} Wh -> {a.to_wh} Wh"
            if a.kind == "implausible_jump":
                detail += f"; {a.unbilled_wh} Wh not billed"
                log.error("socket %s: implausible meter jump (%s); baseline restarted", s.id, detail)
            else:
                log.warning("socket %s: meter counter went backwards (%s); baseline restarted", s.id, detail)
            tx.event(s.id, a.kind, detail, now)
            s.estimator.reset(float(step.new_counter_wh), float(reading.resolution_wh), reading.at)
        carry = old.baseline.carry if old else Fraction(0)
        debit, carry = self.tariff.cost(step.billable_wh, carry)
        pending_units = (old.pending_units if old else 0) + debit
        pending_wh = (old.pending_wh if old else Fraction(0)) + step.billable_wh
        pending_since = old.pending_since if old else None
        if pending_since is None and pending_wh:
            pending_since = now
        new = MeterState(Baseline(step.new_counter_wh, reading.at, carry), pending_units, pending_wh, pending_since)
        due = pending_since is not None and now - pending_since >= self.usage_entry_s
        if pending_wh and (due or flush_all):
            new = self._flushed(s, new, now, tx)
        return new, True, True

    def _check_relay(self, s: Socket, reading: MeterReading, now: float, tx) -> None:
        """An open relay must stop the current: power measured a while after opening is a bypass."""
        settled = not s.relay_closed and s.off_since is not None and reading.at - s.off_since >= self.relay_check_s
        drawing = reading.power_w > self.relay_off_max_w
        if settled and drawing and not s.bypass:
            s.bypass = True
            detail = (f"{reading.power_w:.1f} W measured {reading.at - s.off_since:.0f} s after the relay was "
                      f"opened (limit {self.relay_off_max_w} W)")
            log.error("socket %s: relay bypass or stuck contact: %s", s.id, detail)
            tx.event(s.id, "relay_bypass", detail, now)
        elif s.bypass and (s.relay_closed or not drawing):
            s.bypass = False
            log.warning("socket %s: no more power through the open relay", s.id)

    @staticmethod
    def _flushed(s: Socket, state: MeterState, now: float, tx) -> MeterState:
        tx.debit(s.id, state.pending_units, "usage", now, energy_wh=state.pending_wh)
        return MeterState(state.baseline, 0, Fraction(0), None)

    # --- relay policy -------------------------------------------------------

    def healthy(self, s: Socket, now: float) -> bool:
        return s.healthy_at is not None and now - s.healthy_at <= self.grace_s

    def available_units(self, s: Socket, now: float) -> float:
        """Balance minus everything owed but not yet debited, estimated at `now`."""
        carry = s.state.baseline.carry if s.state else Fraction(0)
        hidden = s.estimator.hidden_wh(now) if self.predictive_cutoff else 0.0
        return float(self.journal.balance(s.id) - carry) - hidden * float(self.tariff.units_per_wh)

    def _decide(self, s: Socket, now: float) -> None:
        balance = self.journal.balance(s.id)
        if s.exhausted_at_balance is not None:
            # Usage billed after the cut lowers the mark; only a new credit lifts the balance above it.
            if balance > s.exhausted_at_balance:
                s.exhausted_at_balance = None
            else:
                s.exhausted_at_balance = balance
        available = self.available_units(s, now)
        if available <= 0 and s.exhausted_at_balance is None:
            s.exhausted_at_balance = balance
        want = (not self._stopped and s.override is None and self.healthy(s, now)
                and available > 0 and s.exhausted_at_balance is None)
        if not want and s.relay_closed:
            why = ("override" if s.override else "meter offline" if not self.healthy(s, now)
                   else "credit exhausted")
            log.info("socket %s off: %s", s.id, why)
        self._switch(s, want, now)
        s.cut_at = None
        if want and self.predictive_cutoff:
            power = s.reading.power_w if s.reading is not None else 0.0
            if power > 0:
                seconds_left = available / float(self.tariff.units_per_wh) / power * 3600.0
                if seconds_left < 2 * self.poll_interval_s:
                    s.cut_at = now + seconds_left

    def _switch(self, s: Socket, closed: bool, now: float) -> None:
        if closed == s.relay_closed and s.relay_error is None and self._started:
            return
        try:
            s.relay.set_closed(closed)
        except RelayError as exc:
            s.relay_error = str(exc)
            log.error("relay of %s failed: %s", s.id, exc)
            return
        s.relay_error = None
        if closed != s.relay_closed:
            s.estimator.relay_switched(closed, now)
        if not closed and (s.relay_closed or s.off_since is None):
            s.off_since = now
        elif closed:
            s.off_since = None
        s.relay_closed = closed

    def next_cutoff(self) -> float | None:
        with self._lock:
            times = [s.cut_at for s in self.sockets.values() if s.cut_at is not None]
        return min(times) if times else None

    def enforce_cutoffs(self) -> list[str]:
        """Open every relay whose predicted time to zero credit has come. Returns their ids."""
        cut = []
        with self._lock:
            now = self.clock.now()
            for s in self.sockets.values():
                if s.cut_at is not None and s.cut_at <= now:
                    s.cut_at = None
                    if s.relay_closed:
                        self._switch(s, False, now)
                        s.exhausted_at_balance = self.journal.balance(s.id)
                        cut.append(s.id)
                        log.info("socket %s off: credit exhausted (predicted)", s.id)
            if cut:
                self._publish(now)
        return cut

    def credits_arrived(self, socket_ids: set[str]) -> None:
        """A deposit (or a manual credit) was booked: re-decide those relays now, not at the next tick."""
        with self._lock:
            if self._stopped or not self._started:
                return
            now = self.clock.now()
            for socket_id in socket_ids:
                s = self.sockets.get(socket_id)
                if s is not None:
                    self._decide(s, now)
            self._publish(now)

    def set_override(self, socket_id: str, mode: str | None) -> None:
        """mode 'off' holds the relay open whatever the balance; None returns to automatic."""
        if mode not in (None, "off"):
            raise ValueError("override is 'off' or None")
        s = self.socket(socket_id)
        with self._lock:
            now = self.clock.now()
            with self.journal.transaction() as tx:
                tx.set_override(socket_id, mode, now)
                tx.event(socket_id, "override", mode or "auto", now)
            s.override = mode
            self._decide(s, now)
            self._publish(now)

    def adjust(self, socket_id: str, amount_tokens: int, reason: str, request_id: str) -> bool:
        """A manual credit (amount > 0) or debit (< 0) with a reason, booked once per request id.

        Returns False when this request id was booked before (a repeated submit). A debit may not
        take the balance below zero; a request id reused for a different adjustment is refused.
        """
        s = self.socket(socket_id)
        if not isinstance(amount_tokens, int) or isinstance(amount_tokens, bool) or amount_tokens == 0:
            raise InvalidAmount("the amount is a non-zero whole number of tokens (negative for a debit)")
        if abs(amount_tokens) > 10**12:
            raise InvalidAmount(f"{amount_tokens} tokens is beyond what a manual adjustment may book")
        reason = " ".join(reason.split())
        if not reason:
            raise InvalidAmount("a reason is required")
        units = amount_tokens * self.tariff.units_per_token
        key = f"manual:{request_id}"
        with self._lock:
            now = self.clock.now()
            earlier = self.journal.entry_by_key(key)
            if earlier is not None:
                if (earlier.socket_id, earlier.amount) != (socket_id, units):
                    raise InvalidAmount(f"request {request_id} was already used for another adjustment")
                return False
            with self.journal.transaction() as tx:
                if units > 0:
                    tx.credit(socket_id, units, "credit", key, now, memo=reason)
                else:
                    balance = self.journal.balance(socket_id)
                    if -units > balance:
                        raise InvalidAmount(f"a debit of {-amount_tokens} tokens is more than the balance "
                                            f"({balance // self.tariff.units_per_token} tokens)")
                    tx.debit(socket_id, -units, "debit", now, idem_key=key, memo=reason)
                tx.event(socket_id, "manual", f"{amount_tokens:+d} tokens: {reason}", now)
            self._decide(s, now)
            self._publish(now)
        return True

    def acknowledge_alarms(self, socket_id: str) -> int:
        """Mark a socket's open alarms as seen; returns how many there were."""
        self.socket(socket_id)
        with self._lock:
            open_alarms = self.journal.open_alarms().get(socket_id)
            if open_alarms is None:
                return 0
            count, last_id, _ = open_alarms
            with self.journal.transaction() as tx:
                tx.acknowledge_alarms(socket_id, last_id, self.clock.now())
            self._publish(self.clock.now())
        return count

    # --- state for the API ------------------------------------------------

    def socket(self, socket_id: str) -> Socket:
        try:
            return self.sockets[socket_id]
        except KeyError:
            raise UnknownSocket(socket_id) from None

    def meter_status(self, s: Socket, now: float) -> str:
        if s.suspect is not None:
            return s.suspect
        if not self.healthy(s, now):
            return "offline"
        if s.bypass:
            return "relay_bypass"
        return "ok"

    def _state_of(self, s: Socket, now: float) -> dict:
        r = s.reading if s.error is None else None
        return {
            "id": s.id,
            "name": s.name,
            **self._balance_fields(s.id),
            "relay": "on" if s.relay_closed else "off",
            "power_w": r.power_w if r else None,
            "voltage_v": r.voltage_v if r else None,
            "current_a": r.current_a if r else None,
            "energy_wh": _number(r.energy_wh) if r else None,
            "meter": self.meter_status(s, now),
            "meter_error": s.error,
            "relay_error": s.relay_error,
            "override": s.override,
            # cut for lack of credit: a part of a Wh the meter has not counted yet is kept until a top-up
            "credit_exhausted": s.exhausted_at_balance is not None,
            "pending_wh": float(s.state.pending_wh) if s.state else 0.0,
            "reading_at": s.reading.at if s.reading else None,
            "updated_at": now,
        }

    def _publish(self, now: float) -> None:
        self._states = [self._state_of(s, now) for s in self.sockets.values()]
        if self.publisher is not None:
            self.publisher.publish(self._states)

    def states(self) -> list[dict]:
        """Every socket's state as of the last tick, with the balance as of now."""
        with self._lock:
            return [dict(st, **self._balance_fields(st["id"])) for st in self._states]

    def state(self, socket_id: str) -> dict:
        self.socket(socket_id)
        return next(st for st in self.states() if st["id"] == socket_id)

    def _balance_fields(self, socket_id: str) -> dict:
        balance = self.journal.balance(socket_id)
        upt = self.tariff.units_per_token
        return {"balance": balance, "balance_tokens": balance // upt if balance % upt == 0 else balance / upt,
                "debt": -balance if balance < 0 else 0}


def _number(value: int | Fraction) -> int | float:
    if isinstance(value, Fraction):
        return int(value) if value.denominator == 1 else float(value)
    return value

