import math

import pytest

from hardware.simulated import LoadModel, SimulatedMeter, SimulatedRelay
from payg.adapters.clocks import ManualClock
from payg.domain.settings import ConstantLoad, RandomLoad, ScheduleLoad
from payg.errors import MeterUnavailable


def make(load, tmp_path=None):
    clock = ManualClock(start=0.0)
    relay = SimulatedRelay(clock)
    meter = SimulatedMeter(clock, LoadModel(load), relay, 230.0,
                           tmp_path / "m.json" if tmp_path is not None else None)
    return clock, relay, meter


def test_counter_is_whole_wh_and_integrates_only_while_closed():
    clock, relay, meter = make(ConstantLoad(1800.0))
    relay.set_closed(True)
    clock.advance(3.0)  # 1.5 Wh
    r = meter.read()
    assert r.energy_wh == 1 and r.power_w == 1800.0 and isinstance(r.energy_wh, int)
    assert r.current_a == pytest.approx(1800 / 230, abs=0.001)
    relay.set_closed(False)
    clock.advance(100.0)
    r = meter.read()
    assert r.energy_wh == 1 and r.power_w == 0.0
    assert meter.true_energy_wh == pytest.approx(1.5)


def test_switching_between_reads_is_integrated_exactly():
    clock, relay, meter = make(ConstantLoad(3600.0))
    relay.set_closed(True)
    clock.advance(0.25)
    relay.set_closed(False)
    clock.advance(0.5)
    relay.set_closed(True)
    clock.advance(0.25)
    meter.read()
    assert meter.true_energy_wh == pytest.approx(0.5)


def test_schedule_and_random_loads():
    sched = LoadModel(ScheduleLoad(((0.0, 100.0), (10.0, 1000.0)), repeat_s=20.0))
    assert [sched.power_w(t) for t in (0, 9.9, 10, 19.9, 20, 35)] == [100, 100, 1000, 1000, 100, 1000]
    assert sched.energy_wh(0, 20) == pytest.approx((100 * 10 + 1000 * 10) / 3600)
    rnd = LoadModel(RandomLoad(seed=3, min_w=50, max_w=60, step_s=10))
    values = [rnd.power_w(t) for t in range(0, 100, 10)]
    assert all(50 <= v <= 60 for v in values) and len(set(values)) > 5
    assert values == [LoadModel(RandomLoad(3, 50, 60, 10)).power_w(t) for t in range(0, 100, 10)]
    assert rnd.power_w(5) == rnd.power_w(0)


def test_offline_and_reset():
    clock, relay, meter = make(ConstantLoad(3600.0))
    relay.set_closed(True)
    clock.advance(5.0)
    meter.offline = True
    with pytest.raises(MeterUnavailable):
        meter.read()
    meter.offline = False
    assert meter.read().energy_wh == 5
    meter.reset_counter()
    assert meter.read().energy_wh == 0


def test_the_counter_persists_across_restarts(tmp_path):
    clock, relay, meter = make(ConstantLoad(3600.0), tmp_path)
    relay.set_closed(True)
    clock.advance(7.5)
    assert meter.read().energy_wh == 7
    _, _, again = make(ConstantLoad(3600.0), tmp_path)
    assert again.read().energy_wh == 7 and math.isclose(again.true_energy_wh, 7.5)


def test_relay_records_its_history():
    clock, relay, _ = make(ConstantLoad(1.0))
    relay.set_closed(True)
    clock.advance(2)
    relay.set_closed(True)
    relay.set_closed(False)
    assert list(relay.history) == [(0.0, False), (0.0, True), (2.0, False)]
