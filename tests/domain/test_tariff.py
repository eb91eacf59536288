"""The tariff schedule: bands by local time and weekday, across daylight-saving changes, split exactly; standing
charges with VAT; the time credit lasts with rates ahead."""

from __future__ import annotations

import zoneinfo
from datetime import date, datetime
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from payg.domain.billing import CounterTracker, MeterState, bill
from payg.domain.tariff import STANDARD, Band, Rate, TariffPeriod, TariffSchedule, vat_of

LONDON = zoneinfo.ZoneInfo("Europe/London")
D = Decimal


def economy7(**more) -> TariffSchedule:
    """UK Economy 7: 12.00p from 00:30 to 07:30, 24.50p otherwise, 53.24p a day, 5 % VAT added; pence."""
    night = Band("night", 30, 450, D("0.1200"))
    period = TariffPeriod(D("0.2450"), (night,), D("0.5324"), D(5), False, **more)
    return TariffSchedule((period,), minor=2, currency="GBP", tz=LONDON)


def at(y, mo, d, h, mi=0, s=0, tz=LONDON, fold=0) -> float:
    return datetime(y, mo, d, h, mi, s, tzinfo=tz, fold=fold).timestamp()


def utc(y, mo, d, h, mi=0) -> float:
    return at(y, mo, d, h, mi, tz=zoneinfo.ZoneInfo("UTC"))


def test_economy7_bands_by_local_time_with_vat_in_pence_per_wh():
    t = economy7()
    assert t.rate_at(at(2027, 1, 12, 0, 29, 59)).band == STANDARD
    night = t.rate_at(at(2027, 1, 12, 0, 30))
    assert night.band == "night" and night.units_per_kwh == D("12.6")      # 12.00p + 5 %
    assert night.units_per_wh == Fraction(126, 10000)
    assert t.rate_at(at(2027, 1, 12, 7, 30)).units_per_kwh == D("25.725")  # 24.50p + 5 %
    assert t.next_change(at(2027, 1, 12, 3)) == at(2027, 1, 12, 7, 30)
    # in summer the same wall-clock edge is an hour earlier in UTC
    assert t.next_change(at(2027, 7, 12, 3)) == utc(2027, 7, 12, 6, 30)


def test_a_reading_across_a_band_edge_is_split_by_time_exactly():
    t = economy7()
    pieces = t.split(at(2027, 1, 12, 7, 29), at(2027, 1, 12, 7, 32))
    assert [(share, rate.band) for share, rate in pieces] == [(Fraction(1, 3), "night"), (Fraction(2, 3), STANDARD)]
    state = MeterState(baseline_at(Fraction(1000), at(2027, 1, 12, 7, 29)))
    step = bill(CounterTracker(10_000), t, state, Fraction(1300), at(2027, 1, 12, 7, 32), at(2027, 1, 12, 7, 32),
                usage_entry_s=60)
    night, day = step.usages[0], step.state
    assert night.rate.band == "night" and night.energy_wh == 100 and night.units == 1   # 100 Wh x 1.26p = 1.26p
    assert day.pending_rate.band == STANDARD and day.pending_wh == 200
    # 1.26p + 200 Wh x 0.025725p = 6.405p: 1 + 5 billed, 0.405 carried
    assert night.units + day.pending_units == 6 and day.baseline.carry == Fraction(405, 1000)


def baseline_at(counter, t):
    from payg.domain.billing import Baseline
    return Baseline(counter, t)


def test_spring_forward_moves_into_a_band_at_the_jump_itself():
    # 2027-03-28: 01:00 GMT becomes 02:00 BST; a band from 01:30 starts when the clock jumps over 01:30
    band = Band("night", 90, 420, D("0.10"))
    t = TariffSchedule((TariffPeriod(D("0.30"), (band,)),), minor=2, tz=LONDON)
    assert t.rate_at(utc(2027, 3, 28, 0, 59)).band == STANDARD
    assert [(s.end, s.rate.band) for s in t.segments(utc(2027, 3, 28, 0, 10), 3600)] == [
        (utc(2027, 3, 28, 1, 0), STANDARD), (utc(2027, 3, 28, 1, 10), "night")]
    assert t.rate_at(utc(2027, 3, 28, 1, 0)).band == "night"
    shares = t.split(utc(2027, 3, 28, 0, 30), utc(2027, 3, 28, 1, 30))
    assert [(s, r.band) for s, r in shares] == [(Fraction(1, 2), STANDARD), (Fraction(1, 2), "night")]


def test_fall_back_leaves_and_reenters_a_band_as_the_wall_clock_does():
    # 2027-10-31: 02:00 BST becomes 01:00 GMT; local 01:30 happens twice, at 00:30 and at 01:30 UTC
    band = Band("night", 90, 420, D("0.10"))
    t = TariffSchedule((TariffPeriod(D("0.30"), (band,)),), minor=2, tz=LONDON)
    segments = [(s.start, s.end, s.rate.band) for s in t.segments(utc(2027, 10, 31, 0, 0), 2 * 3600)]
    assert segments == [(utc(2027, 10, 31, 0, 0), utc(2027, 10, 31, 0, 30), STANDARD),
                        (utc(2027, 10, 31, 0, 30), utc(2027, 10, 31, 1, 0), "night"),
                        (utc(2027, 10, 31, 1, 0), utc(2027, 10, 31, 1, 30), STANDARD),
                        (utc(2027, 10, 31, 1, 30), utc(2027, 10, 31, 2, 0), "night")]


def test_weekday_bands_and_a_band_past_midnight_belongs_to_the_day_it_starts():
    weekend = Band("weekend", 0, 0, D("0.05"), frozenset({5, 6}))   # all of Saturday and Sunday
    late = Band("late", 22 * 60, 2 * 60, D("0.08"), frozenset({4}))  # Friday 22:00 to Saturday 02:00
    t = TariffSchedule((TariffPeriod(D("0.30"), (late, weekend)),), minor=2, tz=LONDON)
    assert t.rate_at(at(2027, 1, 15, 23)).band == "late"          # a Friday
    assert t.rate_at(at(2027, 1, 16, 1)).band == "late"           # Saturday 01:00, the Friday band's tail
    assert t.rate_at(at(2027, 1, 16, 3)).band == "weekend"
    assert t.rate_at(at(2027, 1, 18, 0, 1)).band == STANDARD     # Monday


def test_a_tariff_change_takes_effect_at_local_midnight_of_its_date():
    first = TariffPeriod(D("0.2450"), standing_charge=D("0.50"))
    later = TariffPeriod(D("0.2600"), standing_charge=D("0.55"), since=date(2027, 4, 1))
    t = TariffSchedule((later, first), minor=2, tz=LONDON)   # any order
    assert t.rate_at(at(2027, 3, 31, 23, 59)).units_per_kwh == D("24.5")
    assert t.rate_at(at(2027, 4, 1, 0, 0)).units_per_kwh == D("26")
    assert t.next_change(at(2027, 3, 31, 12)) == at(2027, 4, 1, 0, 0)
    assert (t.standing(date(2027, 3, 31)).units, t.standing(date(2027, 4, 1)).units) == (50, 55)
    with pytest.raises(ValueError, match="same date"):
        TariffSchedule((first, later, later), minor=2)


def test_a_standing_charge_with_vat_added_is_rounded_once_a_day_half_up():
    charge = economy7().standing(date(2027, 1, 12))
    assert charge.gross_units == D("55.902") and charge.units == 56
    assert vat_of(56, D(5)) == 3 and vat_of(105, D(5)) == 5 and vat_of(0, D(5)) == 0


def test_time_left_sees_a_cheaper_band_ahead_and_the_standing_charge_at_midnight():
    t = economy7()
    now = at(2027, 1, 12, 0, 20)     # 10 minutes before the night band
    # 1 kW: 25.725p/h until 00:30 (4.2875p), then 12.6p/h
    assert t.time_to_spend(4.2875, 1000, now) == pytest.approx(600)
    assert t.time_to_spend(4.2875 + 12.6, 1000, now) == pytest.approx(600 + 3600)
    flat = t.rate_at(now).units_per_wh
    assert t.time_to_spend(20, 1000, now) > 20 / float(flat) / 1000 * 3600   # the cheap band makes it last longer
    evening = at(2027, 1, 12, 23, 0)  # an hour to midnight, where 56p of standing charge is taken
    assert t.time_to_spend(25.725 + 30, 1000, evening) == pytest.approx(3600)
    assert t.time_to_spend(10, None, now) is None


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 5400), st.integers(0, 900)), min_size=1, max_size=60),
       st.integers(0, 364 * 86400))
def test_billed_units_and_carry_equal_energy_times_the_rates_of_its_times(steps, offset):
    """Readings at random gaps and deltas across bands, DST and a tariff change: units billed + carry left =
    the sum over each reading's pieces of energy x rate, exactly."""
    change = TariffPeriod(D("0.2600"), (Band("night", 30, 450, D("0.1300")),), vat_percent=D(5),
                          vat_included=False, since=date(2027, 6, 1))
    t = TariffSchedule((*economy7().periods, change), minor=2, tz=LONDON)
    tracker = CounterTracker(max_power_w=10**9)
    now = at(2027, 1, 1, 0) + offset
    counter = Fraction(0)
    state = bill(tracker, t, None, counter, now, now, 60).state
    billed, expected = 0, Fraction(0)
    for gap, wh in steps:
        start, now = now, now + gap
        counter += wh
        expected += sum(wh * share * rate.units_per_wh for share, rate in t.split(start, now))
        step = bill(tracker, t, state, counter, now, now, 600)
        billed += sum(u.units for u in step.usages)
        state = step.state
    assert billed + state.pending_units + state.baseline.carry == expected


def test_rates_read_back_from_the_journal_equal_the_configured_ones():
    night = economy7().rate_at(at(2027, 1, 12, 1))
    assert Rate.of("night", D("12.6"), D(5)) == night and hash(Rate.of("night", D("12.60"), D("5.0"))) == hash(night)
    assert Rate.of("night", D("12.6"), D(20)) != night
