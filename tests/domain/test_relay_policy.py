"""The relay policy as a pure function: a socket's credit, health and override to a decision and its reason."""

from __future__ import annotations

from fractions import Fraction

import pytest

from payg.domain.relay import EXHAUSTED, OFFLINE, OVERRIDE, STOPPED, BypassCheck, Credit, check_bypass, decide

NOW = 1_700_000_000.0


def decision(balance=100, carry=Fraction(0), hidden=0.0, *, healthy=True, override=None, stopped=False,
             exhausted=None, power_w=None, units_per_wh=Fraction(1), poll_s=1.0, predictive=True):
    return decide(Credit(balance, carry, hidden), healthy=healthy, override=override, stopped=stopped,
                  exhausted_at_balance=exhausted, power_w=power_w, units_per_wh=units_per_wh, now=NOW,
                  poll_interval_s=poll_s, predictive=predictive)


def test_credit_a_healthy_meter_and_no_override_close_the_relay():
    d = decision()
    assert (d.closed, d.reason, d.exhausted_at_balance, d.cut_at) == (True, None, None, None)


@pytest.mark.parametrize("kwargs, reason", [
    ({"stopped": True}, STOPPED),
    ({"override": "off"}, OVERRIDE),
    ({"healthy": False}, OFFLINE),
    ({"balance": 0}, EXHAUSTED),
    ({"balance": -3}, EXHAUSTED),
    ({"balance": 1, "carry": Fraction(1, 2), "hidden": 0.6}, EXHAUSTED),  # owed but not yet debited
], ids=["stopped", "override", "offline", "zero", "debt", "owed"])
def test_each_reason_opens_the_relay(kwargs, reason):
    d = decision(**kwargs)
    assert not d.closed and d.reason == reason and d.cut_at is None


def test_the_reasons_come_in_order_stopped_override_offline_credit():
    assert decision(balance=0, healthy=False, override="off", stopped=True).reason == STOPPED
    assert decision(balance=0, healthy=False, override="off").reason == OVERRIDE
    assert decision(balance=0, healthy=False).reason == OFFLINE


def test_a_cut_for_lack_of_credit_holds_until_a_new_credit_lifts_the_balance_above_its_mark():
    cut = decision(balance=0)
    assert cut.exhausted_at_balance == 0
    # part of a Wh not yet counted is billed after the cut: the mark follows the balance down
    lower = decision(balance=-1, exhausted=cut.exhausted_at_balance)
    assert (lower.closed, lower.exhausted_at_balance) == (False, -1)
    # a balance that is positive but not above the mark does not switch it on for a moment
    assert not decision(balance=5, exhausted=5).closed
    topped = decision(balance=6, exhausted=5)
    assert topped.closed and topped.exhausted_at_balance is None


def test_the_predictive_cutoff_is_the_moment_the_available_credit_runs_out_within_two_ticks():
    # 1 token left at 3600 W and 1 token per Wh: one second
    d = decision(balance=1, power_w=3600.0)
    assert d.closed and d.cut_at == pytest.approx(NOW + 1.0)
    assert decision(balance=1, power_w=3600.0, predictive=False).cut_at is None
    assert decision(balance=10, power_w=3600.0).cut_at is None  # 10 s away: the ticks decide
    assert decision(balance=1, power_w=0.0).cut_at is None
    # units per Wh scale it: 2 units per Wh, 3 units left at 3600 W -> 1.5 s; 4 units -> 2 s, not within two ticks
    assert decision(balance=3, power_w=3600.0, units_per_wh=Fraction(2)).cut_at == pytest.approx(NOW + 1.5)
    assert decision(balance=4, power_w=3600.0, units_per_wh=Fraction(2)).cut_at is None


def test_a_bypass_is_power_through_a_relay_open_for_relay_check_s():
    common = dict(relay_check_s=5.0, relay_off_max_w=5.0)
    assert check_bypass(relay_closed=False, off_since=NOW, reading_at=NOW + 4.9, power_w=300, bypass=False,
                        **common) == BypassCheck(False)
    seen = check_bypass(relay_closed=False, off_since=NOW, reading_at=NOW + 5, power_w=300, bypass=False, **common)
    assert seen.bypass and "300.0 W measured 5 s after the relay was opened" in seen.alarm
    again = check_bypass(relay_closed=False, off_since=NOW, reading_at=NOW + 6, power_w=300, bypass=True, **common)
    assert again == BypassCheck(True)  # one alarm, not one per reading
    assert check_bypass(relay_closed=False, off_since=NOW, reading_at=NOW + 7, power_w=3, bypass=True,
                        **common) == BypassCheck(False)
    assert check_bypass(relay_closed=True, off_since=None, reading_at=NOW, power_w=300, bypass=False,
                        **common) == BypassCheck(False)
