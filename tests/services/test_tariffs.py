"""A tariff schedule in the loop: usage billed at the band of its time, a standing charge booked once per local
day (the days the controller was down too), in debt when the credit is out; the journal keeps each rate."""

from __future__ import annotations

import zoneinfo
from datetime import date, datetime
from decimal import Decimal
from fractions import Fraction

from payg.domain.tariff import STANDARD, STANDING, Band, TariffPeriod, TariffSchedule
from tests.support.rigs import Rig

LONDON = zoneinfo.ZoneInfo("Europe/London")


def economy7() -> TariffSchedule:
    night = Band("night", 30, 450, Decimal("0.1200"))
    return TariffSchedule((TariffPeriod(Decimal("0.2450"), (night,), Decimal("0.5324"), Decimal(5), False),),
                          minor=2, currency="GBP", tz=LONDON)


def local(y, mo, d, h, mi=0) -> float:
    return datetime(y, mo, d, h, mi, tzinfo=LONDON).timestamp()


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
