"""Debt recovery: at most a share of each top-up repays old debt, so paying while in debt turns the power on;
and everything still adds up exactly over 100,000 ticks with friendly credit, top-ups, codes and resets."""

from __future__ import annotations

import dataclasses
import random
from datetime import datetime
from fractions import Fraction
from zoneinfo import ZoneInfo

import pytest

from payg.adapters.clocks import ManualClock
from payg.adapters.openpaygo import OpenPaygoCodec, new_key
from payg.domain.debt import debt, top_up, usable
from payg.domain.friendly import FriendlyCredit
from payg.services.codes import CodeDesk
from payg.services.deposits import DepositWatcher
from payg.services.emergency import EmergencyDesk
from tests.support.rigs import Rig

LONDON = ZoneInfo("Europe/London")


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=LONDON).timestamp()


@pytest.mark.parametrize("balance, deferred, amount, percent, expected", [
    (-100, 0, 50, 25, (88, 12)),     # 12 of 50 repays debt; 38 to use; 88 still owed
    (-88, 88, 100, 25, (63, 25)),    # usable 0, plan 88: the next top-up repays 25 more
    (-100, 0, 500, 25, (0, 100)),    # a large top-up repays it all
    (20, 0, 50, 25, (0, 0)),         # no debt: nothing to repay
    (-100, 0, 50, 100, (0, 0)),      # no plan: the balance itself repays the debt first
])
def test_a_top_up_repays_at_most_its_share_of_the_debt(balance, deferred, amount, percent, expected):
    assert top_up(balance, deferred, amount, percent) == expected
    new_deferred, _ = expected
    after = balance + amount
    # usable credit less the debt is the journal's balance, whatever the plan
    assert max(usable(after, new_deferred), 0) - debt(after, new_deferred) == after


# The night-long tests tick every 5 s (deposits are still polled every second): what they check, how a top-up is
# split between debt and credit, does not depend on the tick; the debt they build is the same energy billed, and
# the friendly period still ends at 08:00 exactly (the predicted cut-off). 36,000 ticks a night would be 7,200.
NIGHT_TICK_S = 5.0


def planned_rig(tmp_path, percent: int, when: str = "2026-12-02T22:00:00", friendly=True, tick_s=1.0) -> Rig:
    r = Rig(tmp_path, ids=("a",), clock=ManualClock(at(when)), tick_s=tick_s)
    if friendly:
        r.metering.settings = dataclasses.replace(
            r.metering.settings, friendly=FriendlyCredit(hours=((16 * 60, 8 * 60),), tz=LONDON))
    r.watcher = DepositWatcher(r.source, r.journal, r.clock, on_credit=r.metering.credits_arrived,
                               recovery_percent=percent)
    r.site.watcher = r.watcher
    r.loop.run_ticks(1)
    return r


@pytest.mark.slow
def test_paying_while_in_debt_turns_the_power_on_with_a_plan(tmp_path):
    rig = planned_rig(tmp_path, percent=25, tick_s=NIGHT_TICK_S)
    rig.deposit("a", 10)
    rig.loop.run_for(2)
    rig.draw("a", 660.0, 1000)           # about 183 Wh on friendly credit: 10 paid, some 173 owed
    rig.loop.run_until(at("2026-12-03T08:00:01"))
    assert not rig.relays["a"].closed
    owed = -rig.balance()
    assert 170 <= owed <= 180
    rig.deposit("a", 100)                # 25 of it repays debt, 75 to use at once
    rig.loop.run_for(2)
    state = rig.metering.state("a")
    assert rig.relays["a"].closed and state.balance.units == 75 and state.balance.debt == owed - 25
    assert rig.journal.deferred_debt("a") == owed - 25 and rig.balance() == 100 - owed
    assert [e["detail"][:27] for e in rig.journal.events("a") if e["kind"] == "debt_recovered"] == [
        "25 of 100 units repaid debt"]


def test_without_a_plan_a_top_up_smaller_than_the_debt_keeps_the_power_off(tmp_path):
    rig = planned_rig(tmp_path, percent=100, tick_s=NIGHT_TICK_S)
    rig.deposit("a", 10)
    rig.loop.run_for(2)
    rig.draw("a", 660.0, 1000)
    rig.loop.run_until(at("2026-12-03T08:00:01"))
    rig.deposit("a", 100)
    rig.loop.run_for(2)
    assert not rig.relays["a"].closed and rig.journal.deferred_debt("a") == 0
    assert rig.metering.state("a").balance.units == rig.balance() < 0


@pytest.mark.slow
def test_a_top_up_code_follows_the_plan_too(tmp_path):
    rig = planned_rig(tmp_path, percent=50, tick_s=NIGHT_TICK_S)
    key = new_key()
    codes = CodeDesk(rig.metering, rig.journal, OpenPaygoCodec(), {"a": key}, 10, recovery_percent=50)
    rig.deposit("a", 10)
    rig.loop.run_for(2)
    rig.draw("a", 660.0, 1000)
    rig.loop.run_until(at("2026-12-03T08:00:01"))
    owed = -rig.balance()
    codes.redeem("a", codes.issue("a", 100).code)
    assert rig.relays["a"].closed and rig.metering.state("a").balance.units == 50
    assert rig.metering.state("a").balance.debt == owed - 50


@pytest.mark.slow
def test_everything_adds_up_over_100k_ticks_with_friendly_credit_a_plan_emergency_credit_codes_and_resets(tmp_path):
    """The 100,000-tick exactness run of test_metering.py, with the protections on: nights of friendly
    credit (debt), small top-ups and codes under a 30 % plan, emergency credit, counter resets and outages."""
    rnd = random.Random(2027)
    rig = planned_rig(tmp_path, percent=30, when="2026-12-02T12:00:00")
    rig.metering.settings = dataclasses.replace(
        rig.metering.settings, friendly=FriendlyCredit(hours=((20 * 60, 6 * 60),), tz=LONDON))
    codes = CodeDesk(rig.metering, rig.journal, OpenPaygoCodec(), {"a": new_key()}, 10, recovery_percent=30)
    emergency = EmergencyDesk(rig.metering, rig.journal, tokens=15, below_tokens=5)
    taken = 0
    meter = rig.meters["a"]
    exact = Fraction(0)
    metered = segment_start = offline_until = 0
    paid = 0
    for n in range(100_000):
        if n % 20_000 == 10_000:
            metered += meter.energy_wh - segment_start
            exact, segment_start = Fraction(0), 0
            meter.energy_wh = 0
        if n % 7_919 == 500:
            offline_until = n + rnd.randint(1, 8)
        if n % 1_500 == 0:
            amount = rnd.choice([5, 20, 60])
            rig.deposit("a", amount)
            paid += amount
        if n % 4_001 == 2_000:
            paid += codes.redeem("a", codes.issue("a", 40).code).tokens
        if n % 997 == 300 and emergency.offer("a"):
            taken += emergency.take("a")
        meter.offline = n < offline_until
        meter.power_w = rnd.choice([0.0, 60.0, 800.0, 2000.0]) if rig.relays["a"].closed else 0.0
        exact += Fraction(meter.power_w) / 3600
        meter.energy_wh = int(exact)
        rig.loop.run_ticks(1)
    meter.offline = False
    rig.loop.run_ticks(2)
    rig.metering.shutdown()
    metered += meter.energy_wh - segment_start
    entries = list(rig.journal.all_entries("a"))
    usage = [e for e in entries if e.kind == "usage"]
    state = rig.journal.meter_state("a")
    assert sum(e.energy_wh for e in usage) == metered                      # billed energy = metered energy
    assert -sum(e.amount for e in usage) + state.baseline.carry == Fraction(metered)  # 1 token per Wh
    assert sum(e.amount for e in entries if e.amount > 0) == paid + taken  # every top-up booked once, in full
    repaid = -sum(e.amount for e in entries if e.kind == "emergency_repaid")
    assert taken > 0 and repaid == taken - rig.journal.emergency_owed("a")[0]   # emergency credit repaid first
    balance, deferred = rig.journal.balance("a"), rig.journal.deferred_debt("a")
    assert balance == sum(e.amount for e in entries) - state.pending_units
    view = rig.metering.state("a")
    assert max(view.balance.units, 0) - view.balance.debt == balance  # credit - debt = the journal's balance
    recovered = [e for e in rig.journal.events("a", 2000) if e["kind"] == "debt_recovered"]
    assert recovered and deferred >= 0
    assert rig.metering.ticks >= 100_000
