from fractions import Fraction

import pytest

from payg.domain.billing import Baseline, CounterTracker, HiddenEnergyEstimator
from payg.domain.money import Tariff


def test_cost_carries_the_remainder_below_one_unit():
    tariff = Tariff(Fraction(1, 3))
    carry = Fraction(0)
    debits = []
    for _ in range(9):
        debit, carry = tariff.cost(Fraction(1), carry)
        debits.append(debit)
    assert debits == [0, 0, 1, 0, 0, 1, 0, 0, 1]
    assert carry == 0


def test_cost_with_units_per_token_and_fractional_energy():
    tariff = Tariff(Fraction(1), units_per_token=1000)
    debit, carry = tariff.cost(Fraction("0.0015"), Fraction(0))
    assert (debit, carry) == (1, Fraction(1, 2))
    debit, carry = tariff.cost(Fraction("0.0015"), carry)
    assert (debit, carry) == (2, Fraction(0))


def test_plausible_delta_is_billed():
    tracker = CounterTracker(max_power_w=3600)
    step = tracker.step(Baseline(Fraction(100), 0.0), Fraction(101), 1.0)
    assert step.billable_wh == 1 and step.new_counter_wh == 101 and step.anomaly is None


def test_first_reading_sets_the_baseline_and_bills_nothing():
    step = CounterTracker(3600).step(None, Fraction(5000), 0.0)
    assert step.billable_wh == 0 and step.new_counter_wh == 5000


def test_a_one_off_glitch_up_bills_nothing_and_is_reported():
    tracker = CounterTracker(max_power_w=3600, confirmations=3)
    base = Baseline(Fraction(1000), 0.0)
    step = tracker.step(base, Fraction(99_999), 1.0)
    assert step.billable_wh == 0 and step.new_counter_wh is None and step.suspect == "implausible_jump"
    step = tracker.step(base, Fraction(1001), 2.0)
    assert step.billable_wh == 1 and step.new_counter_wh == 1001 and tracker.suspect is None


def test_a_one_off_glitch_down_bills_nothing_twice():
    tracker = CounterTracker(max_power_w=3600, confirmations=3)
    base = Baseline(Fraction(1000), 0.0)
    assert tracker.step(base, Fraction(0), 1.0).suspect == "counter_reset"
    step = tracker.step(base, Fraction(1001), 2.0)
    assert step.billable_wh == 1 and step.anomaly is None


def test_a_confirmed_reset_restarts_from_zero_without_credit():
    tracker = CounterTracker(max_power_w=3600, confirmations=3)
    base = Baseline(Fraction(1000), 0.0)
    assert tracker.step(base, Fraction(1), 1.0).new_counter_wh is None
    assert tracker.step(base, Fraction(2), 2.0).new_counter_wh is None
    step = tracker.step(base, Fraction(3), 3.0)
    assert step.anomaly.kind == "counter_reset"
    assert step.new_counter_wh == 3
    # The counter restarted at 0: the 3 Wh it counted since are billed, nothing is credited.
    assert step.billable_wh == 3


def test_a_replacement_meter_starting_high_is_not_billed_for_its_old_count():
    tracker = CounterTracker(max_power_w=3600, confirmations=2)
    base = Baseline(Fraction(1000), 0.0)
    tracker.step(base, Fraction(500), 1.0)
    step = tracker.step(base, Fraction(501), 2.0)
    # 500 Wh cannot have been drawn in a second: the new meter's count is its own history.
    assert step.anomaly.kind == "counter_reset" and step.billable_wh == 1 and step.new_counter_wh == 501


def test_a_confirmed_jump_raises_an_alarm_and_bills_only_what_follows():
    tracker = CounterTracker(max_power_w=3600, confirmations=3)
    base = Baseline(Fraction(1000), 0.0)
    tracker.step(base, Fraction(50_000), 1.0)
    tracker.step(base, Fraction(50_001), 2.0)
    step = tracker.step(base, Fraction(50_002), 3.0)
    assert step.anomaly.kind == "implausible_jump"
    assert step.anomaly.unbilled_wh == 49_000
    assert step.billable_wh == 2 and step.new_counter_wh == 50_002


def test_plausibility_follows_maximum_power_and_elapsed_time():
    tracker = CounterTracker(max_power_w=3600, slack_wh=Fraction(0))
    assert tracker.plausible(Fraction(3600), 3600.0)
    assert not tracker.plausible(Fraction(3601), 3600.0)
    assert not tracker.plausible(Fraction(-1), 10.0)


@pytest.mark.parametrize("power_w", [100.0, 1000.0, 2000.0])
def test_estimator_converges_on_a_steady_load(power_w):
    est = HiddenEnergyEstimator(max_power_w=3680)
    true_wh = 0.37  # the phase the meter hides
    at = 0.0
    for _ in range(1800):
        est.observe(float(int(true_wh)), power_w, 1.0, at)
        at += 1.0
        true_wh += power_w / 3600.0
    est.observe(float(int(true_wh)), power_w, 1.0, at)
    hidden_true = true_wh - int(true_wh)
    assert abs(est.hidden_wh(at) - hidden_true) < 0.06
    # 2 kW is 5/9 Wh a second: the counter's phase repeats every 9 s, so the interval cannot
    # close below 1/9 Wh; it must still be far below the counter's 1 Wh.
    assert est.uncertainty_wh() < 0.2


def test_estimator_stops_growing_when_the_relay_opens():
    est = HiddenEnergyEstimator(max_power_w=3680)
    est.observe(10.0, 1800.0, 1.0, 0.0)
    est.relay_switched(False, 1.0)
    assert est.hidden_wh(1.0) == pytest.approx(est.hidden_wh(100.0))
