"""The bus pool: buses read at once, the tick's deadline on an injected clock, silent meters read last.

No sleeps and no elapsed-time asserts: a hung read blocks on an event the test releases, and
the deadline passes when the test moves the virtual clock (tests.fakes.VirtualWaiter).
"""

from __future__ import annotations

import threading

from hardware.bus_pool import BusPool
from payg.adapters.clocks import ManualClock
from payg.errors import MeterTimeout, MeterUnavailable
from tests.fakes import FakeJournal, FakeMeter, FakeRelay, VirtualWaiter
from tests.support import wait_until
from tests.support.rigs import metering_for


class HungMeter(FakeMeter):
    """A meter whose reads hang until the test releases them (a dead slave that has not timed out yet)."""

    def __init__(self, clock):
        super().__init__(clock)
        self.release = threading.Event()
        self.entered = threading.Event()

    def read(self):
        self.entered.set()
        assert self.release.wait(10), "the test never released the read"
        return super().read()


class SilentMeter(FakeMeter):
    """A bus meter that times out (MeterTimeout) while `silent`; records in `order` each read ("m1") and each
    probe ("m1?"), in the order they happen."""

    def __init__(self, clock, name, order):
        super().__init__(clock)
        self.name, self.order, self.silent = name, order, False

    def read(self, mark=""):
        self.order.append(self.name + mark)
        if self.silent:
            self.reads += 1
            raise MeterTimeout(f"{self.name}: no response")
        return super().read()

    def probe(self):
        return self.read("?")


def test_a_slow_bus_does_not_hold_up_the_other_buses():
    clock = ManualClock()
    waiter = VirtualWaiter(clock)
    meters = {"fast": FakeMeter(clock), "slow": HungMeter(clock)}
    metering = metering_for(meters, {i: FakeRelay(clock) for i in meters}, FakeJournal(), clock,
                            buses={"/dev/ttyA": ["fast"], "/dev/ttyB": ["slow"]}, waiter=waiter,
                            poll_interval_s=0.25)
    metering.start()
    tick = threading.Thread(target=metering.tick)
    tick.start()
    wait_until(lambda: meters["fast"].reads == 1 and meters["slow"].entered.is_set() and waiter.waiting.is_set(), 5,
               "both buses to be asked")
    assert tick.is_alive()  # the tick waits for the slow bus, up to its deadline
    clock.advance(0.2)  # 80 % of the poll interval: the deadline passes
    tick.join(5)
    assert not tick.is_alive() and waiter.waits == [0.2]
    assert metering.state("fast").meter == "ok" and metering.state("fast").reading.power_w == 0.0
    assert "slow" in metering.state("slow").meter_error

    metering.tick()  # the slow bus is still busy: its sockets are skipped, not queued
    assert "busy" in metering.state("slow").meter_error and meters["fast"].reads == 2
    assert metering.reader.busy() == {"/dev/ttyB"}

    meters["slow"].release.set()
    wait_until(lambda: not metering.reader.busy(), 5, "the slow bus to finish its round")
    metering.tick()
    assert metering.state("slow").meter_error is None and metering.state("slow").meter == "ok"
    metering.shutdown()


def test_a_reading_that_came_back_before_the_deadline_is_used_though_its_bus_is_still_busy():
    clock = ManualClock()
    order: list[str] = []
    meters = {"good": SilentMeter(clock, "good", order), "dead": HungMeter(clock)}
    waiter = VirtualWaiter(clock)
    pool = BusPool(meters, {"/dev/ttyA": ["good", "dead"]}, 0.2, waiter)
    result: dict = {}
    reading = threading.Thread(target=lambda: result.update(pool.read_all()))
    reading.start()
    wait_until(lambda: meters["dead"].entered.is_set() and waiter.waiting.is_set(), 5, "the dead meter to be asked")
    clock.advance(0.2)
    reading.join(5)
    assert result["good"].power_w == 0.0  # a fresh reading, delivered as soon as it was read
    assert "slow" in str(result["dead"])
    meters["dead"].release.set()
    pool.close()


def rounds(pool, n, order):
    """The reads and probes of `n` polls, one list per poll."""
    seen = []
    for _ in range(n):
        order.clear()
        pool.read_all()
        seen.append(list(order))
    return seen


def test_a_silent_meter_is_asked_less_and_less_often_after_its_bus_mates_and_with_a_probe():
    clock = ManualClock()
    order: list[str] = []
    meters = {name: SilentMeter(clock, name, order) for name in ("m1", "m2", "m3")}
    pool = BusPool(meters, {"/dev/ttyA": ["m1", "m2", "m3"]}, 0.2, VirtualWaiter(clock), max_probe_every=8)
    assert rounds(pool, 1, order) == [["m1", "m2", "m3"]]
    meters["m1"].silent = True
    assert rounds(pool, 1, order) == [["m1", "m2", "m3"]]  # the poll it falls silent in: one full timeout
    assert rounds(pool, 16, order) == [
        ["m2", "m3"], ["m2", "m3", "m1?"],                                   # asked every 2 polls
        ["m2", "m3"], ["m2", "m3"], ["m2", "m3"], ["m2", "m3", "m1?"],       # every 4
        ["m2", "m3"], ["m2", "m3"], ["m2", "m3"], ["m2", "m3"], ["m2", "m3"], ["m2", "m3"], ["m2", "m3"],
        ["m2", "m3", "m1?"],                                                 # every 8, the most
        ["m2", "m3"], ["m2", "m3"]]
    results = pool.read_all()
    assert isinstance(results["m1"], MeterTimeout) and "asked every 8 polls" in str(results["m1"])
    meters["m1"].silent = False
    seen = rounds(pool, 8, order)
    assert seen[-4] == ["m2", "m3", "m1?"]  # the next probe finds it answering again ...
    assert seen[-3:] == [["m1", "m2", "m3"]] * 3  # ... and it is read every poll from then on, in its place
    pool.close()


def test_a_meter_that_answers_badly_is_not_backed_off():
    clock = ManualClock()

    class Garbled(FakeMeter):
        def read(self):
            self.reads += 1
            raise MeterUnavailable("invalid reply (bad CRC)")

    meters = {"g": Garbled(clock)}
    pool = BusPool(meters, {"/dev/ttyA": ["g"]}, 0.2, VirtualWaiter(clock))
    for _ in range(3):
        pool.read_all()
    assert meters["g"].reads == 3
    pool.close()


def test_meters_on_no_bus_are_read_in_the_calling_thread_without_waiting():
    clock = ManualClock()
    waiter = VirtualWaiter(clock)
    meters = {"a": FakeMeter(clock), "b": FakeMeter(clock)}
    pool = BusPool(meters, {}, 0.8, waiter)
    assert all(r.power_w == 0.0 for r in pool.read_all().values()) and waiter.waits == []
    pool.close()
