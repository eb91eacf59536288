"""Statements and receipts of a real SQLite journal that the loop wrote on Economy 7 (tests/services/test_tariffs.py):
usage across the night band's edge and a month's end, standing charges, top-ups and a manual debit, reconciled
with the journal's own balance."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from payg.adapters.clocks import ManualClock
from payg.domain.money import MoneyUnit
from payg.domain.tariff import STANDARD, STANDING, vat_of
from payg.services.statements import StatementDesk
from tests.support.rigs import Rig
from tests.support.tariffs import LONDON, economy7, local

GBP = MoneyUnit("GBP", 2)


def month_end_rig(tmp_path) -> Rig:
    """Two sockets on Economy 7 from 30 January, 22:00: top-ups, a manual debit, 1 kW on `a` from 31 January 23:00
    to 1 February 01:30 (the day rate, then the night band from 00:30), a standing charge each day."""
    r = Rig(tmp_path, ids=("a", "b"), clock=ManualClock(local(2027, 1, 30, 22)), schedule=economy7(), tick_s=60,
            deposit_poll_s=60, grace_s=120)
    r.deposit("a", 3000)
    r.deposit("b", 700)
    r.loop.run_for(120)
    r.landlord.adjust("a", -25, "broken plug", "req-debit-1")
    r.loop.run_for(local(2027, 1, 31, 23) - r.clock.now())
    r.draw("a", 1000, 9000, step_s=60)                   # to 01:30
    r.landlord.adjust("a", 150, "goodwill", "req-credit-1")
    r.deposit("a", 400)
    r.loop.run_for(600)
    return r


def test_a_statement_reconciles_with_the_journal_and_the_next_one_opens_where_it_closed(tmp_path):
    r = month_end_rig(tmp_path)
    desk = StatementDesk(r.journal, r.clock, LONDON, GBP)
    jan = desk.statement("a", date(2027, 1, 1), date(2027, 1, 31))
    feb = desk.statement("a", date(2027, 2, 1), date(2027, 2, 28))
    both = desk.statement("a", date(2027, 1, 1), date(2027, 2, 28))
    assert jan.opening == 0 and feb.opening == jan.closing and both.closing == feb.closing
    pending = r.journal.meter_state("a").pending_units
    assert feb.closing - pending == r.journal.balance("a") == r.journal.recomputed_balance("a")
    assert [(t.method, t.amount) for t in jan.top_ups] == [("deposit", 3000)]
    assert [(t.method, t.amount) for t in feb.top_ups] == [("manual credit", 150), ("deposit", 400)]
    assert [(a.kind, a.amount, a.memo) for a in jan.adjustments] == [("debit", 25, "broken plug")]
    # the standing charges: 30 and 31 January, then 1 February; 53.24p + 5 % = 55.902p, 56p a day
    assert [(g.days, g.units, g.per_day, g.first_day, g.last_day) for g in jan.standing] == [
        (2, 112, Decimal("55.902"), "2027-01-30", "2027-01-31")]
    assert (feb.standing_days, feb.standing_units) == (1, 56)
    # energy: the day rate on both sides of midnight, the night band from 00:30; each entry in the month it was booked
    usage = list(r.journal.entries_between("a", both.start, both.end))
    assert {g.band for g in jan.energy} == {STANDARD} and {g.band for g in feb.energy} == {STANDARD, "night"}
    assert both.energy_units == -sum(e.amount for e in usage if e.kind == "usage")
    assert {(g.band, g.units_per_kwh) for g in both.energy} == {(STANDARD, Decimal("25.725")), ("night",
                                                                                             Decimal("12.6"))}
    assert sum(g.energy_wh for g in both.energy) + r.journal.meter_state("a").pending_wh == 2500
    assert both.tax == sum(vat_of(g.units, Decimal(5)) for g in both.energy) + vat_of(168, Decimal(5))
    assert both.debt == 0 and jan.debt == 0
    other = desk.statement("b", date(2027, 1, 1), date(2027, 2, 28))
    assert other.closing == r.journal.balance("b") == 700 - 3 * 56 and other.energy == ()


def test_receipts_list_each_top_up_with_the_balance_after_it_and_refuse_what_is_not_one(tmp_path):
    r = month_end_rig(tmp_path)
    desk = StatementDesk(r.journal, r.clock, LONDON, GBP)
    receipts = desk.receipts("a")
    assert [(x.method, x.amount) for x in receipts] == [("deposit", 400), ("manual credit", 150), ("deposit", 3000)]
    for x in receipts:
        through = [e for e in r.journal.all_entries("a") if e.id <= x.id]
        assert x.balance_after == sum(e.amount for e in through)
        assert desk.receipt("a", x.id) == x
    assert receipts[-1].balance_after == 3000 - 56                 # the first day's charge was booked first
    debit = next(e for e in r.journal.all_entries("a") if e.kind == "standing")
    assert desk.receipt("a", debit.id) is None                       # not a credit
    assert desk.receipt("b", receipts[0].id) is None                 # not that socket's
    assert desk.receipt("a", 10**9) is None
    assert [x.amount for x in desk.receipts("a", limit=1)] == [400]


def test_a_statement_ending_in_the_past_shows_no_standing_or_usage_after_it(tmp_path):
    r = month_end_rig(tmp_path)
    desk = StatementDesk(r.journal, r.clock, LONDON, GBP)
    day = desk.statement("a", date(2027, 1, 30), date(2027, 1, 30))
    assert day.start == local(2027, 1, 30, 0) and day.end == local(2027, 1, 31, 0)
    assert [g.days for g in day.standing] == [1] and day.closing == 3000 - 56 - 25
    kinds = {e.kind for e in r.journal.all_entries("a") if e.at >= day.end}
    assert STANDING in kinds and "usage" in kinds
