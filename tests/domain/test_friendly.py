"""Friendly-credit periods: which instants they cover and when a period ends, in the controller's time zone."""

from __future__ import annotations

import math
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from payg.domain.friendly import FriendlyCredit, parse_window

LONDON = ZoneInfo("Europe/London")


def at(text: str, tz=LONDON) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=tz).timestamp()


EVENINGS = FriendlyCredit(hours=(parse_window("16:00-08:00"),), tz=LONDON)


@pytest.mark.parametrize("when, covered", [("2026-12-02T15:59:59", False), ("2026-12-02T16:00:00", True),
                                           ("2026-12-02T23:00:00", True), ("2026-12-03T07:59:59", True),
                                           ("2026-12-03T08:00:00", False), ("2026-12-03T12:00:00", False)])
def test_a_window_past_midnight_covers_the_evening_and_the_night(when, covered):
    assert EVENINGS.covers(at(when)) is covered


def test_the_period_ends_at_the_windows_end_and_outside_it_there_is_none():
    assert EVENINGS.ends_at(at("2026-12-02T23:00:00")) == at("2026-12-03T08:00:00")
    assert EVENINGS.ends_at(at("2026-12-03T02:00:00")) == at("2026-12-03T08:00:00")
    assert EVENINGS.ends_at(at("2026-12-03T09:00:00")) is None
    assert FriendlyCredit().ends_at(at("2026-12-03T02:00:00")) is None and not FriendlyCredit().enabled


def test_a_friday_evening_runs_into_the_weekend_and_ends_on_monday_morning():
    weekends = FriendlyCredit(hours=(parse_window("16:00-08:00"),), days=frozenset({5, 6}), tz=LONDON)
    # Friday 4 December 2026, 20:00: the window, then Saturday and Sunday all day, then Sunday's window
    assert weekends.ends_at(at("2026-12-04T20:00:00")) == at("2026-12-07T08:00:00")
    assert weekends.covers(at("2026-12-05T12:00:00")) and not weekends.covers(at("2026-12-07T12:00:00"))


def test_a_holiday_is_friendly_all_day_and_joins_the_nights_around_it():
    christmas = FriendlyCredit(hours=(parse_window("16:00-08:00"),), holidays=frozenset({date(2026, 12, 25)}),
                               tz=LONDON)
    assert christmas.covers(at("2026-12-25T12:00:00"))
    assert christmas.ends_at(at("2026-12-24T22:00:00")) == at("2026-12-26T08:00:00")


def test_every_day_friendly_never_ends():
    always = FriendlyCredit(days=frozenset(range(7)), tz=LONDON)
    assert always.ends_at(at("2026-12-02T10:00:00")) == math.inf


def test_the_end_is_local_time_across_a_clock_change():
    # Europe/London goes from GMT to BST on 28 March 2027 at 01:00: that night is an hour shorter
    night = FriendlyCredit(hours=(parse_window("22:00-06:00"),), tz=LONDON)
    start, end = at("2027-03-27T22:00:00"), night.ends_at(at("2027-03-27T22:00:00"))
    assert end == at("2027-03-28T06:00:00") and end - start == 7 * 3600


@pytest.mark.parametrize("text", ["16-08", "16:00", "25:00-08:00", "16:00-16:00", "16:0-08:00", "x"])
def test_a_window_that_is_not_one_is_refused(text):
    with pytest.raises(ValueError):
        parse_window(text)
