"""Low-credit warnings (one event per crossing) and the record of times off for lack of credit, on the
virtual clock, and the landlord's flag for a socket that was off for long in the last 7 days."""

from __future__ import annotations

import dataclasses

import pytest

from payg.domain.notices import NoticeSettings, credit_off_intervals, hours_left, off_hours, warning_level
from payg.services.dashboard import Dashboard, ViewSettings, socket_view
from tests.support.rigs import Rig


def rig_with(tmp_path, warn_hours=(1.0, 0.25), **rig) -> Rig:
    r = Rig(tmp_path, ids=("a",), **rig)
    r.metering.settings = dataclasses.replace(r.metering.settings, notices=NoticeSettings(warn_hours))
    r.metering.notices.settings = r.metering.settings.notices
    r.loop.run_ticks(1)
    return r


def kinds(rig, *wanted) -> list[str]:
    return [e["detail"] for e in reversed(rig.journal.events("a", 200)) if e["kind"] in wanted]


def test_each_threshold_crossed_is_recorded_once_and_a_top_up_rearms_them(tmp_path):
    rig = rig_with(tmp_path)
    rig.deposit("a", 1000)          # 1000 Wh at 600 W: 100 minutes
    rig.loop.run_for(2)
    rig.draw("a", 600.0, 30 * 60)   # 70 min left: no warning yet
    assert kinds(rig, "low_credit") == []
    rig.draw("a", 600.0, 20 * 60)   # 50 min left: below 1 h
    assert kinds(rig, "low_credit") == ["less than 1 h of credit left at 600 W"]
    assert rig.metering.state("a").credit_warning_h == 1.0
    for _ in range(5):              # the power wavers around the threshold: no string of warnings
        rig.draw("a", 100.0, 60)
        rig.draw("a", 900.0, 60)
    rig.draw("a", 600.0, 30 * 60)   # under 15 min left
    assert kinds(rig, "low_credit") == ["less than 1 h of credit left at 600 W",
                                        "less than 0.25 h of credit left at 600 W"]
    assert rig.metering.state("a").credit_warning_h == 0.25
    rig.deposit("a", 2000)          # a top-up: the levels fall, and will be crossed again
    rig.loop.run_for(2)
    assert rig.metering.state("a").credit_warning_h is None
    rig.draw("a", 600.0, 200 * 60)   # through both thresholds again (about 210 min of credit)
    assert len(kinds(rig, "low_credit")) == 4


def test_a_restart_does_not_repeat_a_warning(tmp_path):
    rig = rig_with(tmp_path)
    rig.deposit("a", 500)           # 50 min at 600 W
    rig.loop.run_for(2)
    rig.draw("a", 600.0, 60)
    assert len(kinds(rig, "low_credit")) == 1
    rig.restart()
    rig.metering.settings = dataclasses.replace(rig.metering.settings, notices=NoticeSettings((1.0, 0.25)))
    rig.metering.notices.settings = rig.metering.settings.notices
    rig.draw("a", 600.0, 60)
    assert len(kinds(rig, "low_credit")) == 1


def test_each_time_off_for_lack_of_credit_is_recorded_with_its_start_and_end(tmp_path):
    rig = rig_with(tmp_path, warn_hours=())
    rig.loop.run_for(3600)
    assert kinds(rig, "credit_off") == []           # never paid: vacant, not off for lack of credit
    rig.deposit("a", 60)            # 6 min at 600 W
    rig.loop.run_for(2)
    assert kinds(rig, "credit_on") == []
    rig.draw("a", 600.0, 7 * 60)
    assert kinds(rig, "credit_off", "credit_on") == ["off for lack of credit"]
    rig.restart()                   # still off after a restart: no second start is recorded
    rig.loop.run_for(10)
    assert kinds(rig, "credit_off") == ["off for lack of credit"]
    rig.landlord.set_override("a", "off")   # off by the landlord's hand is not off for lack of credit
    rig.deposit("a", 100)
    rig.loop.run_for(2)
    assert kinds(rig, "credit_on")[-1].startswith("on again after")
    events = rig.journal.events("a", 200)
    off_at = next(e["at"] for e in events if e["kind"] == "credit_off")
    on_at = next(e["at"] for e in events if e["kind"] == "credit_on")
    assert 0 < on_at - off_at < 120 and on_at <= rig.clock.now()     # the last minute of the draw and the restart
    hours = off_hours(credit_off_intervals(events), rig.clock.now())
    assert hours == pytest.approx((on_at - off_at) / 3600, abs=1e-6)


def test_the_landlord_view_flags_a_socket_off_for_lack_of_credit_for_long_this_week(tmp_path):
    # a tick a minute: what is counted is the time between the credit_off event and now, whatever the tick
    rig = rig_with(tmp_path, warn_hours=(), tick_s=60.0, deposit_poll_s=60.0, grace_s=120.0)
    dash = Dashboard(rig.journal, rig.clock)
    vs = ViewSettings(rig.metering.tariff, 100, flag_off_hours=24.0)
    rig.loop.run_for(48 * 3600)     # vacant for two days: never flagged
    view = socket_view(rig.metering.state("a"), dash, vs)
    assert view.status == "vacant" and view.off_for_credit_h_7d == 0 and not view.needs_help
    rig.deposit("a", 5)
    rig.loop.run_for(120)
    rig.draw("a", 600.0, 120, step_s=60)           # the 5 tokens run out within a tick: off for lack of credit
    start = rig.clock.now()
    rig.loop.run_for(20 * 3600)
    dash._off.clear()
    view = socket_view(rig.metering.state("a"), dash, vs)
    assert view.status == "off" and view.off_for_credit_h_7d == pytest.approx(20.0, abs=0.1) and not view.needs_help
    rig.clock.advance(5 * 3600)
    dash._off.clear()
    view = socket_view(rig.metering.state("a"), dash, vs)
    assert view.needs_help and view.off_for_credit_h_7d == pytest.approx((rig.clock.now() - start) / 3600, abs=0.1)
    rig.clock.advance(8 * 24 * 3600)   # a week later, still off: only the last 7 days count
    dash._off.clear()
    assert socket_view(rig.metering.state("a"), dash, vs).off_for_credit_h_7d == pytest.approx(168.0, abs=0.1)


def test_the_flag_follows_a_socket_going_off_for_lack_of_credit_within_the_minute(tmp_path):
    # the hours off are read again at most once a minute, but at once when the socket goes off for lack of credit
    rig = rig_with(tmp_path, warn_hours=())
    dash = Dashboard(rig.journal, rig.clock)
    vs = ViewSettings(rig.metering.tariff, 100, flag_off_hours=1e-9)
    rig.deposit("a", 2)
    rig.loop.run_for(2)
    view = socket_view(rig.metering.state("a"), dash, vs)
    assert view.status == "on" and not view.needs_help
    rig.draw("a", 3600.0, 3)                       # 2 tokens gone in 2 s: off for lack of credit
    rig.loop.run_for(5)
    assert rig.clock.now() - dash._off["a"][0] < 60
    view = socket_view(rig.metering.state("a"), dash, vs)
    assert view.status == "off" and view.needs_help and view.off_for_credit_h_7d >= 0
    rig.deposit("a", 50)                           # back on: no longer read as off, within the same minute
    rig.loop.run_for(2)
    view = socket_view(rig.metering.state("a"), dash, vs)
    assert view.status == "on" and view.needs_help  # the seconds it was off still count this week


def test_hours_left_and_levels():
    assert hours_left(0, 600, 1) == 0 and hours_left(600, None, 1) == float("inf")
    assert hours_left(600, 600, 1) == 1.0
    assert [warning_level(h, (24.0, 2.0)) for h in (30, 24, 10, 1.5)] == [0, 0, 1, 2]
    assert off_hours([(0, 3600), (7200, None)], 10800, window_s=9000) == pytest.approx((1800 + 3600) / 3600)
