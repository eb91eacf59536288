"""Statements and receipts computed from hand-made journal entries: every figure from the entries, the tax per
group, the standing charges by day, and the reconciliation opening + credits - debits = closing."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from fractions import Fraction

import pytest

from payg.domain.accounts import Entry
from payg.domain.statement import make, method_of, period_of, receipt_of
from payg.domain.tariff import STANDING, Rate

DAY = Rate.of("day", Decimal("25.725"), Decimal(5))         # pence per kWh, VAT in
NIGHT = Rate.of("night", Decimal("12.6"), Decimal(5))
NIGHT_NEW = Rate.of("night", Decimal("13.65"), Decimal(5))    # the same band after a tariff change
STAND = Rate.of(STANDING, Decimal("55.902"), Decimal(5))      # a day's exact charge, 56p once rounded


def entry(i, kind, amount, *, at=None, wh=None, key=None, memo="", rate=None, socket="a"):
    return Entry(i, socket, float(at if at is not None else 1000 + i), kind, amount,
                 None if wh is None else Fraction(wh), key, memo, rate)


def month_of_entries():
    return [
        entry(1, "deposit", 2000, key="mock:d1"),
        entry(2, "usage", -258, wh=1000, rate=DAY),
        entry(3, "usage", -515, wh=2000, rate=DAY),
        entry(4, "usage", -126, wh=1000, rate=NIGHT),
        entry(5, "standing", -56, rate=STAND, memo="2027-01-01"),
        entry(6, "standing", -56, rate=STAND, memo="2027-01-02"),
        entry(7, "credit", 500, key="code:a:3"),
        entry(8, "usage", -137, wh=1000, rate=NIGHT_NEW),
        entry(9, "usage", -40, wh=160),                           # from before the journal kept rates
        entry(10, "emergency", 300, key="emergency:a:1"),
        entry(11, "deposit", 1000, key="mock:d2"),
        entry(12, "emergency_repaid", -300, key="mock:d2:emergency", memo="repays emergency credit"),
        entry(13, "debit", -25, key="manual:r1", memo="broken plug"),
        entry(14, "credit", 75, key="manual:r2", memo="goodwill"),
        entry(15, "trade_in", 10, key="channel:x:1:10"),
        entry(16, "trade_out", -4),
    ]


def test_a_statement_reconciles_every_entry_into_one_figure():
    entries = month_of_entries()
    s = make("a", 1000, 2000, -120, entries)
    assert s.opening == -120
    assert [(t.id, t.method, t.amount) for t in s.top_ups] == [
        (1, "deposit", 2000), (7, "code", 500), (10, "emergency credit", 300), (11, "deposit", 1000),
        (14, "manual credit", 75), (15, "trade-in", 10)]
    assert s.credits == 3885
    assert s.energy_units == 258 + 515 + 126 + 137 + 40 and s.standing_units == 112
    assert [(a.kind, a.amount) for a in s.adjustments] == [("emergency_repaid", 300), ("debit", 25), ("trade_out", 4)]
    assert s.debits == 1076 + 112 + 329
    assert s.closing == -120 + 3885 - 1517 == -120 + sum(e.amount for e in entries)
    assert s.energy_wh == 5160


def test_energy_is_grouped_by_band_rate_and_vat_and_each_group_has_its_own_tax():
    s = make("a", 1000, 2000, 0, month_of_entries())
    groups = {(g.band, g.units_per_kwh): g for g in s.energy}
    assert set(groups) == {("day", Decimal("25.725")), ("night", Decimal("12.6")), ("night", Decimal("13.65")),
                           (None, None)}
    day = groups["day", Decimal("25.725")]
    assert (day.energy_wh, day.units, day.entries) == (3000, 773, 2)
    assert day.vat == 37                                     # 773 × 5/105 = 36.81 -> 37
    assert groups["night", Decimal("12.6")].vat == 6         # 126 × 5/105 = 6.0
    assert groups["night", Decimal("13.65")].vat == 7        # 137 × 5/105 = 6.52 -> 7
    assert groups[None, None].vat == 0                       # no rate kept, no VAT known
    standing = s.standing[0]
    assert standing.vat == 5                                 # 112 × 5/105 = 5.33 -> 5
    assert s.tax == 37 + 6 + 7 + 5
    # each group is rounded on its own: two groups of 11p have 1p each (0.52p), where 22p at once would have 1p
    two = make("a", 0, 5000, 0, [entry(1, "usage", -11, wh=1, rate=DAY), entry(2, "usage", -11, wh=1, rate=NIGHT)])
    assert [g.vat for g in two.energy] == [1, 1] and two.tax == 2


def test_standing_charges_count_days_at_each_rate():
    cheaper = Rate.of(STANDING, Decimal("52.5"), Decimal(5))
    entries = [entry(1, "standing", -56, rate=STAND, memo="2027-03-30"),
               entry(2, "standing", -56, rate=STAND, memo="2027-03-31"),
               entry(3, "standing", -53, rate=cheaper, memo="2027-04-01")]
    s = make("a", 0, 5000, 200, entries)
    assert [(g.per_day, g.days, g.units, g.first_day, g.last_day) for g in s.standing] == [
        (Decimal("55.902"), 2, 112, "2027-03-30", "2027-03-31"), (Decimal("52.5"), 1, 53, "2027-04-01", "2027-04-01")]
    assert s.standing_days == 3 and s.standing_units == 165 and s.closing == 35
    assert s.debt == 0 and s.top_ups == ()


def test_the_debt_at_the_close_is_the_plans_deferred_debt_when_known_else_the_balance_below_zero():
    entries = [entry(1, "usage", -500, wh=500, rate=DAY), entry(2, "deposit", 100, key="mock:d")]
    assert make("a", 0, 5000, 0, entries).debt == 400
    # with a plan: 300 set aside, the usable credit is -100: both are owed (payg/domain/debt.py)
    assert make("a", 0, 5000, 0, entries, deferred=300).debt == 400
    # 450 set aside of 400 below zero: the usable credit is 50, the debt the 450 still owed
    assert make("a", 0, 5000, 0, entries, deferred=450).debt == 450


def test_an_entry_outside_the_range_or_of_another_socket_is_refused():
    with pytest.raises(ValueError, match="not in this statement"):
        make("a", 1000, 1005, 0, [entry(1, "deposit", 5, at=1005)])          # the end is not in the range
    with pytest.raises(ValueError, match="not in this statement"):
        make("a", 1000, 2000, 0, [entry(1, "deposit", 5, socket="b")])


def test_a_receipt_names_the_method_and_only_credits_have_one():
    assert method_of(entry(1, "credit", 5, key="code:a:9")) == "code"
    assert method_of(entry(1, "credit", 5, key="manual:req-1")) == "manual credit"
    assert method_of(entry(1, "usage", -5)) is None and receipt_of(entry(1, "standing", -5), 0) is None
    r = receipt_of(entry(7, "deposit", 250, key="mock:d"), 1250)
    assert (r.id, r.method, r.amount, r.balance_after) == (7, "deposit", 250, 1250)


def test_a_statements_top_ups_carry_the_running_balance_after_each():
    s = make("a", 1000, 2000, 40, month_of_entries()[:8])
    assert [(t.id, t.balance_after) for t in s.top_ups] == [(1, 2040), (7, 40 + 2000 - 258 - 515 - 126 - 112 + 500)]


@pytest.mark.parametrize(("args", "days"), [
    (("2027-01", None, None), (date(2027, 1, 1), date(2027, 1, 31))),
    (("2028-02", None, None), (date(2028, 2, 1), date(2028, 2, 29))),
    ((None, "2027-01-15", "2027-02-14"), (date(2027, 1, 15), date(2027, 2, 14))),
    ((None, "2027-01-15", None), (date(2027, 1, 15), date(2027, 1, 15))),
])
def test_a_period_is_a_month_or_a_range_of_local_days(args, days):
    assert period_of(*args) == days


@pytest.mark.parametrize(("args", "message"), [
    (("2027-13", None, None), "YYYY-MM"), (("2027-1", None, None), "YYYY-MM"), (("Jan", None, None), "YYYY-MM"),
    (("9999-12", None, None), "YYYY-MM"), (("2027-01", "2027-01-01", None), "not both"),
    ((None, None, None), "give a month"), ((None, None, "2027-01-01"), "give a month"),
    ((None, "2027-02-30", None), "first day"), ((None, "2027-01-02", "2027-01-01"), "before the first"),
    ((None, "2027-1-2", None), "YYYY-MM-DD"), ((None, "1970-01-01", "2027-01-01"), "at most"),
])
def test_a_bad_period_is_refused_with_what_is_wrong(args, message):
    with pytest.raises(ValueError, match=message):
        period_of(*args)
