"""The relay policy: from a socket's state, its credit and the clock to a decision, with its reason.

The relay is closed only while the available credit is positive, the meter is healthy and no
override holds the socket off. Available credit = balance - the carry still owed - the cost of
the energy estimated to have been drawn since the meter's last counter step. When that credit
would run out before the next tick, the decision carries a predictive cut-off time.

During a friendly-credit period (payg/domain/friendly.py) a socket that is on when its credit
runs out stays on, its usage billed as debt, until the period ends.

A socket cut for lack of credit stays off (`exhausted_at_balance` marks the balance at the
cut) until a new credit lifts the balance above that mark: part of a Wh the meter has not
counted yet must not switch it on again for a moment.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Final, Literal

from payg.domain.money import time_left_s
from payg.domain.socket import OverrideMode

RelayReason = Literal["override", "meter offline", "credit exhausted", "stopped"]  # why a relay is off
OVERRIDE: Final = "override"
OFFLINE: Final = "meter offline"
EXHAUSTED: Final = "credit exhausted"
STOPPED: Final = "stopped"


@dataclass(frozen=True)
class Credit:
    """What a socket may still use: its balance and what it owes that the journal does not show yet."""

    balance: int             # ledger units, as journaled
    carry: Fraction          # owed below one unit, not yet debited
    hidden_units: float      # the estimated cost of energy drawn beyond the last counter step

    @property
    def available(self) -> float:
        return float(self.balance - self.carry) - self.hidden_units


@dataclass(frozen=True)
class RelayDecision:
    closed: bool
    reason: RelayReason | None         # why it is off (None when on)
    exhausted_at_balance: int | None   # the mark a cut for lack of credit leaves (see the module doc)
    cut_at: float | None = None        # the predicted moment the credit runs out, within two ticks
    friendly: bool = False             # on although out of credit: a friendly-credit period


def decide(credit: Credit, *, healthy: bool, override: OverrideMode | None, stopped: bool,
           exhausted_at_balance: int | None, power_w: float | None, units_per_wh: Fraction, now: float,
           poll_interval_s: float, predictive: bool, relay_on: bool = False,
           friendly_end: Callable[[float], float | None] | None = None,
           spend: Callable[[float, float | None, float, float], float | None] | None = None) -> RelayDecision:
    """`friendly_end(t)`: when the friendly-credit period around `t` ends, None outside one
    (payg/domain/friendly.py); a socket on when its credit runs out stays on until then. `spend(units, power_w,
    now, horizon_s)`: the seconds `units` last at that power with the rates and standing charges ahead, None
    beyond `horizon_s` (payg/domain/tariff.py `time_to_spend`); no `spend`: at `units_per_wh` throughout."""
    exhausted = exhausted_at_balance
    if exhausted is not None:
        # Usage billed after the cut lowers the mark; only a new credit lifts the balance above it.
        exhausted = None if credit.balance > exhausted else credit.balance
    available = credit.available
    friendly_until = friendly_end(now) if friendly_end is not None and relay_on and exhausted is None else None
    if available <= 0 and exhausted is None and friendly_until is None:
        exhausted = credit.balance
    reason: RelayReason | None
    if stopped:
        reason = STOPPED
    elif override is not None:
        reason = OVERRIDE
    elif not healthy:
        reason = OFFLINE
    elif exhausted is not None or (available <= 0 and friendly_until is None):
        reason = EXHAUSTED
    else:
        reason = None
    if reason is not None:
        return RelayDecision(False, reason, exhausted)
    # on friendly credit: off when the period ends, if no credit came by then
    if friendly_until is not None and available <= 0:
        return RelayDecision(True, None, None, friendly_until if friendly_until - now < 2 * poll_interval_s else None,
                             friendly=True)
    cut_at = None
    if predictive:
        # only a cut within two ticks is scheduled: the forecast need not look further
        seconds_left = (spend(available, power_w, now, 2 * poll_interval_s) if spend is not None
                        else time_left_s(available / float(units_per_wh), power_w))
        if seconds_left is not None:
            runs_out = now + seconds_left
            # run out inside a friendly period: the cut waits for its end
            until = friendly_end(runs_out) if friendly_end is not None else None
            at = runs_out if until is None else until
            if at - now < 2 * poll_interval_s:
                cut_at = at
    return RelayDecision(True, None, exhausted, cut_at)


@dataclass(frozen=True)
class BypassCheck:
    bypass: bool             # power flows through an open relay
    alarm: str | None = None  # set once, when a bypass is first seen: the event's detail


def check_bypass(*, relay_closed: bool, off_since: float | None, reading_at: float, power_w: float,
                 bypass: bool, relay_check_s: float, relay_off_max_w: float) -> BypassCheck:
    """An open relay must stop the current: power measured `relay_check_s` after opening is a bypass
    (or a stuck contact)."""
    off_for = reading_at - off_since if not relay_closed and off_since is not None else None
    settled = off_for is not None and off_for >= relay_check_s
    drawing = power_w > relay_off_max_w
    if settled and drawing and not bypass:
        return BypassCheck(True, f"{power_w:.1f} W measured {off_for:.0f} s after the relay was "
                                 f"opened (limit {relay_off_max_w} W)")
    if bypass and (relay_closed or not drawing):
        return BypassCheck(False)
    return BypassCheck(bypass)
