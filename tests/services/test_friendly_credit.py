"""Friendly-credit periods on the virtual clock: out of credit at 23:00, on until the window ends, billed as debt."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from payg.adapters.clocks import ManualClock
from payg.domain.friendly import FriendlyCredit
from tests.fakes import FakeJournal
from tests.support.rigs import Rig

LONDON = ZoneInfo("Europe/London")
EVENINGS = FriendlyCredit(hours=((16 * 60, 8 * 60),), tz=LONDON)  # 16:00-08:00


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=LONDON).timestamp()


def rig_at(tmp_path, when: str, friendly: FriendlyCredit = EVENINGS, off: frozenset = frozenset()) -> Rig:
    r = Rig(tmp_path, ids=("a",), clock=ManualClock(at(when)), journal=FakeJournal())
    r.metering.settings = dataclasses.replace(r.metering.settings, friendly=friendly, friendly_off=off)
    r.loop.run_ticks(1)
    return r


def draw_until(rig: Rig, power_w: float, end: float, step_s: float = 1.0) -> None:
    rig.draw("a", power_w, end - rig.clock.now(), step_s)


def test_credit_running_out_at_23_00_keeps_the_socket_on_until_08_00_and_the_usage_becomes_debt(tmp_path):
    rig = rig_at(tmp_path, "2026-12-02T22:50:00")
    rig.deposit("a", 100)
    rig.loop.run_for(2)
    assert rig.relays["a"].closed
    draw_until(rig, 600.0, at("2026-12-02T23:30:00"))   # 100 Wh at 600 W: gone at about 23:00
    assert rig.relays["a"].closed and rig.balance() < 0  # still on, in debt
    debt_at_half_past = -rig.balance()
    assert 290 <= debt_at_half_past <= 310               # 400 Wh used since 22:50, 100 paid
    draw_until(rig, 0.0, at("2026-12-03T07:59:00"), step_s=30.0)
    rig.loop.run_until(at("2026-12-03T07:59:59"))
    assert rig.relays["a"].closed
    rig.loop.run_until(at("2026-12-03T08:00:01"))
    assert not rig.relays["a"].closed                    # the window ended with no credit: off
    off_at, closed = rig.relays["a"].history[-1]
    assert not closed and at("2026-12-03T08:00:00") <= off_at <= at("2026-12-03T08:00:01")
    assert rig.balance() == -debt_at_half_past           # billed, not forgiven


def test_outside_a_window_the_credit_runs_out_as_always(tmp_path):
    rig = rig_at(tmp_path, "2026-12-02T10:00:00")
    rig.deposit("a", 20)
    rig.loop.run_for(2)
    draw_until(rig, 600.0, at("2026-12-02T10:05:00"))
    assert not rig.relays["a"].closed and rig.balance() >= -1


def test_a_socket_already_off_stays_off_when_a_window_starts(tmp_path):
    rig = rig_at(tmp_path, "2026-12-02T15:50:00")
    rig.deposit("a", 10)
    rig.loop.run_for(2)
    draw_until(rig, 600.0, at("2026-12-02T15:55:00"))
    assert not rig.relays["a"].closed
    rig.loop.run_until(at("2026-12-02T16:05:00"))
    assert not rig.relays["a"].closed


def test_the_predicted_cut_off_waits_for_the_windows_end(tmp_path):
    rig = rig_at(tmp_path, "2026-12-03T07:58:00")
    rig.deposit("a", 10)   # 10 Wh at 3600 W: 10 s of credit, run out at about 07:58:12
    rig.loop.run_for(2)
    draw_until(rig, 3600.0, at("2026-12-03T07:59:00"))
    assert rig.relays["a"].closed
    rig.loop.run_until(at("2026-12-03T07:59:59.5"))
    assert rig.relays["a"].closed and rig.metering.next_cutoff() == pytest.approx(at("2026-12-03T08:00:00"))
    rig.loop.run_until(at("2026-12-03T08:00:00.2"))
    assert not rig.relays["a"].closed   # cut at 08:00 by the predictive cut-off, not a tick later


def test_a_socket_may_do_without_friendly_credit(tmp_path):
    rig = rig_at(tmp_path, "2026-12-02T22:50:00", off=frozenset({"a"}))
    rig.deposit("a", 20)
    rig.loop.run_for(2)
    draw_until(rig, 600.0, at("2026-12-02T23:00:00"))
    assert not rig.relays["a"].closed


def test_a_top_up_during_the_window_pays_the_debt_and_keeps_it_on_past_its_end(tmp_path):
    rig = rig_at(tmp_path, "2026-12-03T07:40:00")
    rig.deposit("a", 10)
    rig.loop.run_for(2)
    draw_until(rig, 600.0, at("2026-12-03T07:50:00"))   # 100 Wh used, 10 paid: 90 in debt
    assert rig.relays["a"].closed and rig.balance() < 0
    rig.deposit("a", 500)
    draw_until(rig, 0.0, at("2026-12-03T08:10:00"), step_s=10.0)
    assert rig.relays["a"].closed and rig.balance() > 0


def test_the_configured_periods_reach_the_metering_loop(tmp_path):
    from payg import bootstrap as composition
    from payg.adapters import config as cfg

    text = ('[controller]\ndata_dir = "var"\n[web]\ntimezone = "Europe/London"\n[ledger]\nbackend = "mock"\n'
            '[protections.friendly_credit]\nhours = ["16:00-08:00"]\n'
            '[[sockets]]\nid = "a"\nmeter = { kind = "simulated", load_w = 100 }\nrelay = { kind = "simulated" }\n'
            '[[sockets]]\nid = "b"\nfriendly_credit = false\nmeter = { kind = "simulated", load_w = 100 }\n'
            'relay = { kind = "simulated" }\n')
    (tmp_path / "c.toml").write_text(text.replace('"var"', f'"{tmp_path / "var"}"'))
    rt = composition.build(cfg.load(tmp_path / "c.toml"), ManualClock(at("2026-12-02T23:00:00")))
    try:
        settings = rt.metering.settings
        assert settings.friendly.ends_at(at("2026-12-02T23:00:00")) == at("2026-12-03T08:00:00")
        assert settings.friendly_off == frozenset({"b"})
    finally:
        rt.close()
