"""The charts' history and the tenant's daily use read from a real journal file (payg/services/history.py over
payg/adapters/journal_history.py), and the pages' low-credit warning on the metering loop (Dashboard)."""

from __future__ import annotations

from datetime import UTC
from fractions import Fraction

import pytest

from payg.adapters.clocks import ManualClock
from payg.adapters.journal import SqliteJournal
from payg.services.dashboard import Dashboard, ViewSettings, socket_view
from payg.services.history import HistoryDesk
from tests.support.rigs import Rig

MIDNIGHT = 1_799_971_200.0   # a UTC midnight: a multiple of every bucket


def book(journal: SqliteJournal, at: float, *, deposit: int = 0, used: int = 0, wh: Fraction | None = None,
         standing: int = 0, socket: str = "a") -> None:
    with journal.transaction() as tx:
        if deposit:
            tx.credit(socket, deposit, "deposit", f"d:{socket}:{at}", at)
        if used:
            tx.debit(socket, used, "usage", at, energy_wh=wh if wh is not None else Fraction(used))
        if standing:
            tx.debit(socket, standing, "standing", at, idem_key=f"standing:{socket}:{at}")


@pytest.fixture
def journal(tmp_path):
    j = SqliteJournal(tmp_path / "journal.sqlite")
    yield j
    j.close()


def test_the_hour_day_and_month_come_from_the_journal_and_survive_a_reopen(tmp_path, journal):
    book(journal, MIDNIGHT - 40 * 86_400, deposit=100)                   # long before any span
    book(journal, MIDNIGHT - 3 * 86_400 + 5, deposit=900)                # within the month
    book(journal, MIDNIGHT - 20 * 3600 + 1, used=200)                     # within the day: 200 Wh in 15 min
    book(journal, MIDNIGHT - 30 * 60 + 1, used=10, wh=Fraction(31, 3))   # within the hour: 10⅓ Wh in a minute
    book(journal, MIDNIGHT - 60 + 1, standing=5)
    book(journal, MIDNIGHT - 60 + 2, deposit=7, socket="b")              # another socket's: not counted
    clock = ManualClock(MIDNIGHT)
    desk = HistoryDesk(journal, clock, 1, UTC)

    hour = desk.chart("a", "hour")
    assert len(hour.series.t) == 60 and hour.series.t[-1] == MIDNIGHT
    at = hour.series.t.index(MIDNIGHT - 29 * 60)                         # the minute the 10⅓ Wh were billed in
    assert hour.series.power_w[at] == 620.0 and sum(p for p in hour.series.power_w if p) == 620.0
    assert hour.series.balance_tokens[0] == 800 and hour.series.balance_tokens[at] == 790
    assert hour.series.balance_tokens[-1] == 785                         # the standing charge in the last minute

    day = desk.chart("a", "day")
    assert len(day.series.t) == 96 and day.step_s == 900
    i = day.series.t.index(MIDNIGHT - 20 * 3600 + 900)
    assert day.series.power_w[i] == 800.0                                # 200 Wh over a quarter hour
    assert day.series.balance_tokens[i - 1] == 1000 and day.series.balance_tokens[i] == 800

    month = desk.chart("a", "month")
    assert len(month.series.t) == 120 and month.series.t[-1] == MIDNIGHT
    assert month.series.balance_tokens[0] == 100 and month.series.balance_tokens[-1] == 785
    assert max(month.series.balance_tokens) == 1000

    journal.close()                                                      # the controller stops and starts again
    reopened = SqliteJournal(tmp_path / "journal.sqlite")
    try:
        again = HistoryDesk(reopened, clock, 1, UTC)
        assert again.chart("a", "month") == month and again.chart("a", "hour") == hour
    finally:
        reopened.close()


def test_the_running_bucket_ends_at_now_and_a_socket_with_no_entries_draws_nothing(journal):
    book(journal, MIDNIGHT - 86_400, deposit=500)
    book(journal, MIDNIGHT + 100, used=30)                               # 30 Wh in the first 300 s of a bucket
    desk = HistoryDesk(journal, ManualClock(MIDNIGHT + 300), 1, UTC)
    day = desk.chart("a", "day")
    assert day.series.t[-1] == MIDNIGHT + 300 and day.series.power_w[-1] == 360.0
    assert day.series.balance_tokens[-1] == 470
    empty = desk.chart("nobody", "month")
    assert set(empty.series.power_w) == {None} and set(empty.series.balance_tokens) == {None}


def test_each_day_sums_its_energy_and_charges_in_local_time(journal):
    book(journal, MIDNIGHT - 2 * 86_400, deposit=1000)
    book(journal, MIDNIGHT - 86_400 + 60, used=40)                       # yesterday
    book(journal, MIDNIGHT - 86_400 + 120, standing=12)
    book(journal, MIDNIGHT - 61, used=5, wh=Fraction(9, 2))              # yesterday's last minute
    book(journal, MIDNIGHT + 3600, used=7)                               # today
    days = HistoryDesk(journal, ManualClock(MIDNIGHT + 7200), 1, UTC).days("a", 30)
    assert len(days) == 30 and days[0].start == MIDNIGHT and days[-1].start == MIDNIGHT - 29 * 86_400
    assert (days[0].energy_wh, days[0].used_units) == (7.0, 7)
    assert (days[1].energy_wh, days[1].used_units) == (44.5, 57)
    assert all(d.energy_wh == 0 and d.used_units == 0 for d in days[2:])


def test_a_page_warns_of_low_credit_when_use_crosses_the_threshold_not_right_after_a_top_up(tmp_path):
    rig = Rig(tmp_path, ids=("a",))
    rig.loop.run_ticks(1)
    dash = Dashboard(rig.journal, rig.clock)
    vs = ViewSettings(rig.metering.tariff, 100)

    def low() -> bool:
        dash.refresh()
        return socket_view(rig.metering.state("a"), dash, vs).low_credit

    assert low()                           # never paid: out of credit is always said
    rig.deposit("a", 100)                  # paying 100 with a threshold of 100 tokens: no "top up soon"
    rig.loop.run_for(2)
    assert rig.metering.state("a").relay_on and not low()
    rig.draw("a", 60.0, 120)               # a little use, still low: no crossing, no warning
    assert not low()
    rig.deposit("a", 150)                  # above the threshold now
    rig.loop.run_for(2)
    assert not low()
    rig.draw("a", 3600.0, 180)             # 1 Wh a second: down through 100 tokens
    assert rig.balance("a") <= 100 and low()
    rig.deposit("a", 500)
    rig.loop.run_for(2)
    assert not low()


def test_an_hour_of_quarter_hour_entries_is_four_quarter_hour_buckets_not_a_spike_a_quarter(journal):
    book(journal, MIDNIGHT - 86_400, deposit=1000)
    for q in range(4):  # 100 Wh a quarter hour, each booked at its quarter's last tick
        book(journal, MIDNIGHT - 3600 + 900 * (q + 1) - 1, used=100)
    quarters = HistoryDesk(journal, ManualClock(MIDNIGHT), 1, UTC, 900.0).chart("a", "hour")
    assert quarters.step_s == 900 and quarters.series.t == [MIDNIGHT - 2700, MIDNIGHT - 1800, MIDNIGHT - 900, MIDNIGHT]
    assert quarters.series.power_w == [400.0] * 4 and quarters.series.balance_tokens == [900, 800, 700, 600]
    minutes = HistoryDesk(journal, ManualClock(MIDNIGHT), 1, UTC, 60.0).chart("a", "hour")
    assert minutes.step_s == 60 and max(p or 0 for p in minutes.series.power_w) == 6000.0  # 100 Wh in one minute
