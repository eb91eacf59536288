"""Billing from a cumulative energy counter, exactly.

Each healthy reading debits the counter's delta since the last billed reading
at the tariff; whatever falls below one ledger unit is carried to the next
debit, so billed units equal tariff x metered Wh over any period, to within
the carry (< 1 unit) that is still owed.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

from payg.domain.tariff import WHOLE, Rate, TariffSchedule

ZERO = Fraction(0)  # Fractions are immutable: one zero serves every reading that bills nothing
Anomaly = Literal["counter_reset", "implausible_jump"]  # the counter went backwards, or further than it could


@dataclass(frozen=True)
class MeterReading:
    """One fresh reading. energy_wh is the meter's cumulative counter, exact (int or Fraction)."""

    energy_wh: int | Fraction
    power_w: float
    voltage_v: float
    current_a: float
    at: float
    # Smallest step the energy counter can show (1 Wh for a PZEM-004T); the
    # cut-off predictor uses it to bound the energy hidden below the last step.
    resolution_wh: Fraction = Fraction(1)


@dataclass(frozen=True)
class Baseline:
    """The last billed counter value of a socket and what is still owed below one unit."""

    counter_wh: Fraction
    at: float
    carry: Fraction = Fraction(0)


@dataclass(frozen=True)
class MeterState:
    """A socket's billing state as persisted: its baseline and the usage not yet closed into an entry, all of it
    at one rate (`pending_rate`; None only when nothing is pending, or for a state kept before rates were)."""

    baseline: Baseline
    pending_units: int = 0
    pending_wh: Fraction = Fraction(0)
    pending_since: float | None = None
    pending_rate: Rate | None = None


@dataclass(frozen=True)
class CounterAnomaly:
    kind: Anomaly
    from_wh: Fraction
    to_wh: Fraction
    unbilled_wh: Fraction  # energy the jump claims and that is not billed (0 for a reset)


@dataclass(frozen=True)
class CounterStep:
    """What one reading means for billing."""

    billable_wh: Fraction  # energy to bill now (0 when nothing is billable)
    new_counter_wh: Fraction | None  # baseline to store, None when the reading is held as suspect
    anomaly: CounterAnomaly | None = None  # set when the baseline was restarted
    suspect: Anomaly | None = None  # set while a reading disagrees with the baseline


class CounterTracker:
    """Turns successive counter readings into billable energy.

    A reading that disagrees with the baseline (lower, or more energy than the
    socket's maximum power could deliver since the last billed reading) is not
    billed. It is held as suspect until `confirmations` readings in a row agree
    with one another: then the baseline restarts at the first of them (a meter
    reset or replacement) and the energy they show among themselves is billed,
    so a confirmed reset loses nothing it can know about and a one-off glitch
    (a corrupt frame) bills nothing at all.
    """

    def __init__(self, max_power_w: float, confirmations: int = 3, slack_wh: Fraction = Fraction(2)):
        self.max_power_w = max_power_w
        self.confirmations = confirmations
        # Resolution steps (a counter that ticks just after a reading) and
        # clock jitter must not look implausible.
        self.slack_wh = slack_wh
        self._suspects: list[tuple[Fraction, float]] = []
        self._suspect_kind: Anomaly | None = None

    def plausible(self, delta_wh: Fraction, elapsed_s: float) -> bool:
        """delta_wh <= max_power_w x elapsed_s / 3600 + slack_wh, compared exactly in integers (the floats'
        exact ratios): the same answer as with Fractions, without making any on every reading."""
        if delta_wh.numerator < 0:
            return False
        pn, pd = self.max_power_w.as_integer_ratio()
        en, ed = max(elapsed_s, 0.0).as_integer_ratio()
        sn, sd = self.slack_wh.numerator, self.slack_wh.denominator
        scale = pd * ed * 3600
        return delta_wh.numerator * scale * sd <= (pn * en * sd + sn * scale) * delta_wh.denominator

    @property
    def suspect(self) -> Anomaly | None:
        return self._suspect_kind

    def step(self, baseline: Baseline | None, counter_wh: Fraction, at: float) -> CounterStep:
        if baseline is None:
            self._clear()
            return CounterStep(ZERO, counter_wh)
        # an unchanged counter (an idle socket, most readings) spares the subtraction
        delta = ZERO if counter_wh == baseline.counter_wh else counter_wh - baseline.counter_wh
        if self.plausible(delta, at - baseline.at):
            self._clear()
            return CounterStep(delta, counter_wh)
        if self._suspects:
            prev_wh, prev_at = self._suspects[-1]
            if not self.plausible(counter_wh - prev_wh, at - prev_at):
                self._suspects = []
        self._suspects.append((counter_wh, at))
        kind: Anomaly = "counter_reset" if counter_wh < baseline.counter_wh else "implausible_jump"
        if len(self._suspects) < self.confirmations:
            self._suspect_kind = kind
            return CounterStep(Fraction(0), None, suspect=kind)
        first_wh, first_at = self._suspects[0]
        self._clear()
        if first_wh < baseline.counter_wh:
            # A reset restarts the counter at 0: what it shows since is billable, if it could have
            # been drawn since the last billed reading. Otherwise (a replacement meter that starts
            # elsewhere) the series starts the new baseline.
            origin = Fraction(0) if self.plausible(first_wh, first_at - baseline.at) else first_wh
            anomaly = CounterAnomaly("counter_reset", baseline.counter_wh, origin, Fraction(0))
        else:
            origin = first_wh
            anomaly = CounterAnomaly("implausible_jump", baseline.counter_wh, first_wh,
                                     first_wh - baseline.counter_wh)
        return CounterStep(counter_wh - origin, counter_wh, anomaly=anomaly)

    def _clear(self) -> None:
        self._suspects = []
        self._suspect_kind = None


@dataclass(frozen=True)
class Usage:
    """Consumption closed into one journal entry: its cost in ledger units, the energy it was for, and the rate
    it was billed at (None: a state kept before rates were, closed as it was)."""

    units: int
    energy_wh: Fraction
    rate: Rate | None = None


@dataclass(frozen=True)
class BillStep:
    """What one reading does to a socket's billing state."""

    state: MeterState | None        # the new state; None: the reading is held as suspect and changes nothing
    write: bool                     # the state must be persisted (an idle socket's time moves in memory only)
    usages: tuple[Usage, ...] = ()  # usage to close into entries now (one per rate)
    anomaly: CounterAnomaly | None = None  # the baseline restarted (a confirmed reset or jump)
    suspect: Anomaly | None = None  # the reading disagrees with the baseline and is held


def close_usage(state: MeterState) -> tuple[MeterState, Usage]:
    """The state with its pending usage closed, and that usage."""
    return (MeterState(state.baseline, 0, Fraction(0), None),
            Usage(state.pending_units, state.pending_wh, state.pending_rate))


def entry_due(since: float | None, now: float, usage_entry_s: float, lead_s: float) -> bool:
    """Pending usage that began at `since` closes into an entry at the last tick of its period: the periods are
    `usage_entry_s` long, aligned on multiples of it in epoch time (on quarter hours, every time zone's midnight
    is on one), and the tick `now` is the last when the next, `lead_s` later, would fall in a later period. Every
    socket closes in the same tick, so their entries share one commit, and an entry's time falls in the period
    of the energy it holds. `0`: every tick."""
    if since is None:
        return False
    if usage_entry_s <= 0:
        return True
    return (now + lead_s) // usage_entry_s > since // usage_entry_s


def bill(tracker: CounterTracker, tariff: TariffSchedule, old: MeterState | None, counter_wh: Fraction, at: float,
         now: float, usage_entry_s: float, flush_all: bool = False, lead_s: float = 0.0) -> BillStep:
    """Bill one counter reading taken at `at`: the delta since the baseline at the rates in force over the time
    between the two readings (split by time at each rate change: the power is taken as even in between), the
    sub-unit carry kept across rates. Pending usage is all at one rate: a new rate closes it into an entry, as
    does the end of its `usage_entry_s` period (`entry_due`; `lead_s`: the time to the next tick), or
    `flush_all`."""
    step = tracker.step(old.baseline if old else None, counter_wh, at)
    if step.new_counter_wh is None:
        return BillStep(None, False, suspect=step.suspect)
    flush_due = old is not None and bool(old.pending_wh) and (
        flush_all or entry_due(old.pending_since, now, usage_entry_s, lead_s))
    if old is not None and step.anomaly is None and step.billable_wh == 0 and not flush_due:
        # Nothing changed: keep the baseline's time fresh in memory only (an idle socket writes nothing, which
        # spares an SD card), except at shutdown (`flush_all`): the next start then spreads what the counter
        # shows from this reading's time, at the rates of that interval, not from the last change hours before.
        base = old.baseline
        return BillStep(MeterState(Baseline(base.counter_wh, at, base.carry), old.pending_units, old.pending_wh,
                                   old.pending_since, old.pending_rate), flush_all)
    carry = old.baseline.carry if old else ZERO
    units = old.pending_units if old else 0
    energy = old.pending_wh if old else ZERO
    since = old.pending_since if old else None
    rate = old.pending_rate if old else None
    usages: list[Usage] = []
    if step.billable_wh:
        start = old.baseline.at if old is not None and step.anomaly is None else at
        for share, piece_rate in tariff.split(start, at):
            if energy and piece_rate is not rate and piece_rate != rate:
                usages.append(Usage(units, energy, rate))
                units, energy, since = 0, ZERO, None
            rate = piece_rate
            wh = step.billable_wh if share is WHOLE else step.billable_wh * share
            owed = carry + wh * piece_rate.units_per_wh
            debit = owed.numerator // owed.denominator
            carry = owed - debit
            units += debit
            energy += wh
    if since is None and energy:
        since = now
    if not energy:
        rate = None
    new = MeterState(Baseline(step.new_counter_wh, at, carry), units, energy, since, rate)
    if energy and (flush_all or entry_due(since, now, usage_entry_s, lead_s)):
        new, usage = close_usage(new)
        usages.append(usage)
    return BillStep(new, True, tuple(usages), step.anomaly)


class HiddenEnergyEstimator:
    """Bounds the energy a socket has drawn beyond its meter's last counter step.

    A whole-Wh counter hides up to 1 Wh: relying on it alone would let up to
    1 Wh through after the credit ran out. The estimator keeps an interval
    [lo, hi] for the true cumulative energy, advances it with the measured
    power while the relay is closed, and narrows it with every counter value
    (true energy lies in [counter, counter + resolution)). With a steady load
    the interval shrinks to a small fraction of a Wh within minutes.
    """

    def __init__(self, max_power_w: float, power_tolerance: float = 0.01):
        self.max_power_w = max_power_w
        self.power_tolerance = power_tolerance
        self.lo = 0.0
        self.hi = 0.0
        self.at: float | None = None
        self.power_w = 0.0
        self.power_known = True
        self.counter_wh = 0.0
        self.resolution_wh = 1.0

    def reset(self, counter_wh: float, resolution_wh: float, at: float) -> None:
        self.lo, self.hi = counter_wh, counter_wh + resolution_wh
        self.counter_wh, self.resolution_wh, self.at = counter_wh, resolution_wh, at

    def _advance(self, at: float) -> None:
        if self.at is None:
            return
        dt_h = max(at - self.at, 0.0) / 3600.0
        if self.power_known:
            step = self.power_w * dt_h
            self.lo += step * (1 - self.power_tolerance)
            self.hi += step * (1 + self.power_tolerance)
        else:
            # Just switched on, no reading yet: anything up to the maximum.
            self.hi += self.max_power_w * dt_h
        self.at = at

    def observe(self, counter_wh: float, power_w: float, resolution_wh: float, at: float) -> None:
        if self.at is None:
            self.reset(counter_wh, resolution_wh, at)
        else:
            self._advance(at)
            lo = max(self.lo, counter_wh)
            hi = min(self.hi, counter_wh + resolution_wh)
            if lo > hi:  # the model was wrong (load changed hard): start afresh from the counter
                lo, hi = counter_wh, counter_wh + resolution_wh
            self.lo, self.hi = lo, hi
            self.counter_wh, self.resolution_wh = counter_wh, resolution_wh
        self.power_w = max(power_w, 0.0)
        self.power_known = True

    def relay_switched(self, closed: bool, at: float) -> None:
        self._advance(at)
        if closed:
            self.power_known = False
        else:
            self.power_w = 0.0
            self.power_known = True

    def hidden_wh(self, at: float) -> float:
        """Estimated energy drawn beyond the last counter value, at time `at`."""
        if self.at is None:
            return 0.0
        dt_h = max(at - self.at, 0.0) / 3600.0
        mid = (self.lo + self.hi) / 2 + (self.power_w * dt_h if self.power_known else 0.0)
        return max(mid - self.counter_wh, 0.0)

    def uncertainty_wh(self) -> float:
        return max(self.hi - self.lo, 0.0)
