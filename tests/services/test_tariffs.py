"""A tariff schedule in the loop: usage billed at the band of its time, a standing charge booked once per local
day (the days the controller was down too), in debt when the credit is out; the journal keeps each rate."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from fractions import Fraction

import pytest

from payg.domain.tariff import STANDARD, STANDING
from tests.support.rigs import Rig
from tests.support.tariffs import economy7, local


def rig(tmp_path, start: float, **kw) -> Rig:
    from payg.adapters.clocks import ManualClock
    return Rig(tmp_path, clock=ManualClock(start), schedule=economy7(), **kw)


def standing_days(r: Rig, socket_id="a") -> list[str]:
    return [e.memo for e in r.journal.all_entries(socket_id) if e.kind == "standing"]


def test_a_standing_charge_is_booked_once_a_local_day_and_for_the_days_the_controller_was_down(tmp_path):
    r = rig(tmp_path, local(2027, 1, 12, 23, 59))
    r.deposit("a", 1000)
    r.loop.run_for(5)
    assert standing_days(r) == ["2027-01-12"]
    assert r.balance() == 1000 - 56                                # 53.24p + 5 % VAT = 55.902p, 56p that day
    r.loop.run_for(120)                                            # past local midnight
    assert standing_days(r) == ["2027-01-12", "2027-01-13"]
    r.site.shutdown()
    r.clock.advance(3 * 86400)                                     # down for three days
    r.open()
    r.loop.run_for(3)
    assert standing_days(r) == ["2027-01-12", "2027-01-13", "2027-01-14", "2027-01-15", "2027-01-16"]
    r.restart()
    r.loop.run_for(3)
    assert len(standing_days(r)) == 5 and r.balance() == 1000 - 5 * 56
    entry = next(e for e in r.journal.all_entries("a") if e.kind == "standing")
    assert entry.rate.band == STANDING and entry.rate.units_per_kwh == Decimal("55.902") and entry.amount == -56


def test_the_standing_charge_makes_debt_and_cuts_the_power_when_the_credit_is_out(tmp_path):
    r = rig(tmp_path, local(2027, 1, 12, 12), tick_s=60, deposit_poll_s=60, grace_s=120)
    r.deposit("a", 80)
    r.loop.run_for(120)
    assert r.balance() == 80 - 56 and r.relays["a"].closed
    r.loop.run_for(86400)                                          # the next day's charge: 24 - 56 < 0
    assert r.balance() == 80 - 2 * 56 and not r.relays["a"].closed


def test_usage_across_the_night_band_edge_is_billed_at_each_rate_and_the_journal_keeps_them(tmp_path):
    r = rig(tmp_path, local(2027, 1, 13, 0, 20), usage_entry_s=60)
    r.deposit("a", 5000)
    r.loop.run_for(2)
    r.draw("a", 1000, 1200)                                        # 1 kW from 00:20 to 00:40
    r.site.shutdown()
    usage = [e for e in r.journal.all_entries("a") if e.kind == "usage"]
    by_band: dict[str, Fraction] = {}
    billed = 0
    for e in usage:
        by_band[e.rate.band] = by_band.get(e.rate.band, Fraction(0)) + e.energy_wh
        billed -= e.amount
    assert set(by_band) == {STANDARD, "night"}
    assert abs(by_band[STANDARD] - 166) <= 2 and abs(by_band["night"] - 166) <= 2   # ten minutes each, in whole Wh
    exact = sum(e.energy_wh * e.rate.units_per_wh for e in usage)
    carry = r.journal.meter_state("a").baseline.carry
    assert billed + carry == exact                                 # to the fraction of a penny
    assert standing_days(r) == [date(2027, 1, 13).isoformat()]


def test_time_left_on_the_page_sees_the_cheap_band_ahead_and_the_standing_charge(tmp_path):
    from payg.services.dashboard import Dashboard, ViewSettings, socket_view

    r = rig(tmp_path, local(2027, 1, 13, 0, 10))                  # 20 minutes before the night band
    r.deposit("a", 20)
    r.loop.run_for(2)                                              # 56p of standing charge: 20 - 56 < 0, off
    assert not r.relays["a"].closed
    r.deposit("a", 100)
    r.meters["a"].power_w = 1000
    r.loop.run_for(2)
    assert r.relays["a"].closed and r.balance() == 64
    dash = Dashboard(r.journal, r.clock)
    banded = socket_view(r.metering.state("a"), dash, ViewSettings(r.metering.tariff, 10, 24.0, r.metering.schedules))
    # 64p at 1 kW: the day rate (25.725p/h) until 00:30, then what is left at the night rate (12.6p/h)
    to_night = local(2027, 1, 13, 0, 30) - banded.state.updated_at
    assert banded.time_left_s == pytest.approx(to_night + (64 - to_night / 3600 * 25.725) / 12.6 * 3600, abs=0.1)
    day_rate_only = 64 / 25.725 * 3600                             # what a flat estimate at the present rate says
    assert banded.time_left_s > day_rate_only * 1.8
    evening = rig(tmp_path / "e", local(2027, 1, 13, 23, 0))      # an hour before midnight's standing charge
    evening.deposit("a", 56 + 40)
    evening.meters["a"].power_w = 1000
    evening.loop.run_for(2)
    assert evening.balance() == 40
    view = socket_view(evening.metering.state("a"), Dashboard(evening.journal, evening.clock),
                       ViewSettings(evening.metering.tariff, 10, 24.0, evening.metering.schedules))
    assert view.time_left_s == pytest.approx(3600 - 2, abs=2)     # 25.725p by midnight, then 56p due: 14.275 < 56


def test_after_a_clean_restart_a_delta_is_priced_from_the_shutdown_reading_not_the_last_change(tmp_path):
    """60 Wh at 20:02, idle until a shutdown at 02:00, 100 Wh counted while down (a stuck contact): at 02:05 those
    100 Wh are priced at the night rate of the five minutes they came in, not spread back to 20:02."""
    r = rig(tmp_path, local(2027, 1, 13, 20, 0), usage_entry_s=1, tick_s=5, deposit_poll_s=5, grace_s=30)
    r.deposit("a", 5000)
    r.loop.run_for(2)
    r.draw("a", 3600, 60)
    r.meters["a"].power_w = 0
    r.loop.run_until(local(2027, 1, 14, 2, 0))
    r.site.shutdown()
    r.clock.advance(300)
    r.meters["a"].energy_wh += 100
    r.open()
    r.loop.run_for(6)
    r.site.shutdown()
    last = [e for e in r.journal.all_entries("a") if e.kind == "usage"][-1]
    assert (last.energy_wh, last.rate.band) == (100, "night")
