"""A socket's state as the metering loop keeps it (mutable, the loop's own), and the frozen snapshot of it the core
hands outward."""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Literal

from payg.domain.billing import Anomaly, CounterTracker, HiddenEnergyEstimator, MeterReading, MeterState
from payg.domain.money import tokens_shown

# What the meter field says: healthy, no healthy reading within the grace, or an alarm.
MeterStatus = Literal["ok", "offline", "counter_reset", "implausible_jump", "relay_bypass"]
OverrideMode = Literal["off"]  # the landlord holds the socket off (None: the balance decides)


def override_mode(value: str | None) -> OverrideMode | None:
    """An override as stored or asked for; ValueError for anything but "off" and None."""
    if value is None:
        return None
    if value != "off":
        raise ValueError("override is 'off' or None")
    return "off"


@dataclass
class SocketState:
    id: str
    name: str
    max_power_w: float = 3680.0
    counter_confirmations: int = 3
    state: MeterState | None = None          # billing state, as persisted
    reading: MeterReading | None = None      # the last fresh reading
    healthy_at: float | None = None          # when the last healthy reading was taken
    error: str | None = None                 # why this tick has no reading
    suspect: Anomaly | None = None           # the counter disagrees with the baseline
    relay_closed: bool = False
    relay_error: str | None = None
    cut_at: float | None = None              # predicted moment the credit runs out
    exhausted_at_balance: int | None = None  # set by a cut for lack of credit; cleared by a new credit
    override: OverrideMode | None = None
    off_since: float | None = None           # when the relay was last opened
    bypass: bool = False                     # power measured while the relay has been open for relay_check_s
    credit_off_at: float | None = None       # off for lack of credit since then (payg/services/notices.py)
    warn_level: int = 0                      # low-credit thresholds crossed (0: none)
    warn_balance: int | None = None          # the balance when the level was last looked at
    warn_below_h: float | None = None        # the lowest threshold crossed, for the pages
    paid: bool = True                        # ever credited (a deposit, a credit, a code, a trade); False: vacant
    tracker: CounterTracker = field(init=False)
    estimator: HiddenEnergyEstimator = field(init=False)

    def __post_init__(self) -> None:
        self.tracker = CounterTracker(self.max_power_w, self.counter_confirmations)
        self.estimator = HiddenEnergyEstimator(self.max_power_w)

    def healthy(self, now: float, grace_s: float) -> bool:
        return self.healthy_at is not None and now - self.healthy_at <= grace_s

    def meter_status(self, now: float, grace_s: float) -> MeterStatus:
        if self.suspect is not None:
            return self.suspect
        if not self.healthy(now, grace_s):
            return "offline"
        if self.bypass:
            return "relay_bypass"
        return "ok"

    def relay_switched(self, closed: bool, now: float) -> None:
        """Record a relay command that succeeded."""
        self.relay_error = None
        if closed != self.relay_closed:
            self.estimator.relay_switched(closed, now)
        if not closed and (self.relay_closed or self.off_since is None):
            self.off_since = now
        elif closed:
            self.off_since = None
        self.relay_closed = closed


def credit_used_up(cut_for_credit: bool, balance: int) -> bool:
    """`credit_exhausted` as the API and the pages show it: the relay was cut for lack of credit with part
    of a token still on the balance (kept for after a top-up), so it stays off until a new credit although
    the balance is positive. The relay's mark (`exhausted_at_balance`) is also set for a socket that is
    simply out of credit (never paid, or paid and used up to 0): that is no more than its balance says."""
    return cut_for_credit and balance > 0


@dataclass(frozen=True)
class Balance:
    """The balance a socket may use (the journal's plus debt set aside by a plan, payg/domain/debt.py) and what it
    owes, in journal units and in tokens."""

    units: int
    tokens: int | float
    debt: int
    debt_tokens: int | float

    @classmethod
    def of(cls, balance: int, units_per_token: int, deferred: int = 0) -> Balance:
        usable = balance + deferred
        owed = deferred + (-usable if usable < 0 else 0)
        return cls(usable, tokens_shown(usable, units_per_token), owed, tokens_shown(owed, units_per_token))


@dataclass(frozen=True)
class SocketSnapshot:
    """A socket's state as the core hands it outward (the API, the pages, MQTT, `payg status`): frozen, made by
    `snapshot`. payg/serialize.py turns it into the JSON API's keys."""

    id: str
    name: str
    balance: Balance
    relay_on: bool
    reading: MeterReading | None        # None while this tick has no reading (never an old one)
    reading_at: float | None            # when the last reading was taken, fresh or not
    meter: MeterStatus
    meter_error: str | None
    relay_error: str | None
    override: OverrideMode | None
    credit_exhausted: bool              # cut for lack of credit with part of a token left (credit_used_up)
    pending_wh: Fraction                # billed since the last usage entry closed
    credit_warning_h: float | None      # the credit lasts less than this many hours at the present power
    updated_at: float
    vacant: bool = False                # never paid for: off because nobody has topped it up yet, not flagged


def snapshot(s: SocketState, balance: int, units_per_token: int, now: float, grace_s: float,
             deferred: int = 0) -> SocketSnapshot:
    """The socket's state for the API, the pages and `payg status`."""
    return SocketSnapshot(
        id=s.id, name=s.name, balance=Balance.of(balance, units_per_token, deferred), relay_on=s.relay_closed,
        reading=s.reading if s.error is None else None, reading_at=s.reading.at if s.reading else None,
        meter=s.meter_status(now, grace_s), meter_error=s.error, relay_error=s.relay_error, override=s.override,
        # cut for lack of credit: a part of a Wh the meter has not counted yet is kept until a top-up
        credit_exhausted=credit_used_up(s.exhausted_at_balance is not None, balance + deferred),
        pending_wh=s.state.pending_wh if s.state else Fraction(0), credit_warning_h=s.warn_below_h, updated_at=now,
        vacant=not s.paid)
