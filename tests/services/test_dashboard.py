"""Dashboard: today's and this month's energy and top-ups, followed entry by entry, on a real journal."""

from __future__ import annotations

from datetime import UTC, datetime
from fractions import Fraction
from zoneinfo import ZoneInfo

import pytest

from payg.adapters.clocks import ManualClock
from payg.adapters.journal import SqliteJournal
from payg.services.dashboard import Dashboard

BERLIN = ZoneInfo("Europe/Berlin")


def at(text: str, tz=UTC) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=tz).timestamp()


@pytest.fixture
def journal(tmp_path):
    j = SqliteJournal(tmp_path / "journal.sqlite")
    yield j
    j.close()


def use(journal, socket_id: str, wh, when: float) -> None:
    with journal.transaction() as tx:
        tx.debit(socket_id, int(wh), "usage", when, energy_wh=Fraction(wh))


def pay(journal, socket_id: str, tokens: int, when: float, key: str) -> None:
    with journal.transaction() as tx:
        tx.credit(socket_id, tokens, "deposit", key, when)


def test_today_and_this_month_follow_the_journal_and_restart_with_a_new_day(journal):
    clock = ManualClock(at("2027-03-31T09:00:00"))
    pay(journal, "k", 900, at("2027-02-27T12:00:00"), "feb")     # last month: counts as the last top-up only
    use(journal, "k", 100, at("2027-02-28T23:00:00"))
    use(journal, "k", 40, at("2027-03-30T10:00:00"))             # this month, yesterday
    use(journal, "k", Fraction(5, 2), at("2027-03-31T08:00:00"))  # today
    pay(journal, "k", 300, at("2027-03-31T08:30:00"), "mar")
    d = Dashboard(journal, clock, UTC)
    d.refresh()
    f = d.figures("k")
    assert (f.energy_today_wh, f.energy_month_wh, f.topups_month) == (Fraction(5, 2), Fraction(85, 2), 300)
    assert (f.last_topup, f.last_topup_at) == (300, at("2027-03-31T08:30:00"))
    use(journal, "k", 7, at("2027-03-31T09:10:00"))               # followed incrementally
    clock.set(at("2027-03-31T09:11:00"))
    d.refresh()
    assert d.figures("k").energy_today_wh == Fraction(19, 2)
    clock.set(at("2027-04-01T00:00:30"))                          # a new day and a new month
    use(journal, "k", 1, at("2027-04-01T00:00:10"))
    d.refresh()
    f = d.figures("k")
    assert (f.energy_today_wh, f.energy_month_wh, f.topups_month, f.last_topup) == (1, 1, 0, 300)
    assert d.figures("unknown") == d.figures("nobody")             # zeros, not an error


def test_days_begin_at_midnight_in_the_configured_time_zone(journal):
    # 23:30 UTC on March 30th is already March 31st in Berlin (UTC+2 in summer time)
    use(journal, "k", 10, at("2027-03-30T23:30:00"))
    clock = ManualClock(at("2027-03-31T06:00:00"))
    utc, berlin = Dashboard(journal, clock, UTC), Dashboard(journal, clock, BERLIN)
    utc.refresh()
    berlin.refresh()
    assert utc.figures("k").energy_today_wh == 0 and berlin.figures("k").energy_today_wh == 10
    assert berlin.period_starts(clock.now()) == (at("2027-03-31T00:00:00", BERLIN), at("2027-03-01T00:00:00", BERLIN))


def test_a_refresh_reads_only_new_entries_in_chunks(journal, monkeypatch):
    clock = ManualClock(at("2027-05-10T12:00:00"))
    for i in range(12):
        use(journal, f"s{i % 3}", 1, at("2027-05-10T11:00:00") + i)
    monkeypatch.setattr("payg.services.dashboard.CHUNK", 5)
    calls = []
    real = journal.entries_after

    def counted(after_id, limit=1000):
        calls.append(after_id)
        return real(after_id, limit)

    monkeypatch.setattr(journal, "entries_after", counted)
    d = Dashboard(journal, clock, UTC)
    d.refresh()
    assert calls == [0, 5, 10] and [d.figures(f"s{i}").energy_today_wh for i in range(3)] == [4, 4, 4]
    calls.clear()
    d.refresh()
    assert calls == [12]


def test_open_alarms_are_counted_until_acknowledged(journal):
    clock = ManualClock(at("2027-05-10T12:00:00"))
    with journal.transaction() as tx:
        tx.event("k", "implausible_jump", "counter 1 -> 9999", clock.now())
        tx.event("k", "counter_reset", "counter 50 -> 0", clock.now())
        tx.event("k", "override", "off", clock.now())
        tx.event("o", "relay_bypass", "40 W", clock.now())
    d = Dashboard(journal, clock, UTC)
    d.refresh()
    assert d.alarm("k").count == 2 and d.alarm("k").detail.startswith("counter reset") and d.alarm("o").count == 1
    with journal.transaction() as tx:
        tx.acknowledge_alarms("k", d.alarm("k").last_event_id, clock.now())
    d.refresh()
    assert d.alarm("k") is None and d.alarm("o").count == 1
