"""A dead meter must not take its bus-mates offline: PZEM-004T meters on one emulated RS485 bus, polled in real
time by the bus pool, one or two of them falling silent.

Before the bus pool backed silent meters off, each poll waited out the silent meters' timeouts (0.526 s
each): at poll_interval_s = 0.5 with one silent meter of two, and at 1 s with two of three, the healthy meter
was "bus busy" or "slow" at every tick and went offline. (At 0.25 s the healthy meter's read and a probe fit
in the poll's 0.2 s on an idle machine, but not on one running the whole suite on two cores.) Now a silent
meter costs its bus-mates one timeout, once, and is then probed every 2, 4, 8, ... polls with a short timeout,
after the meters that answer.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from hardware.modbus import BusSettings, ModbusBus, ModbusMeter
from payg import serialize
from payg.adapters.clocks import ManualClock
from payg.adapters.config.profiles import load_profile
from payg.adapters.journal import SqliteJournal
from payg.domain.meter_profile import default_timeout_s
from tests.fakes import FakeRelay
from tests.support import ROOT
from tests.support.modbus_emulator import ModbusEmulator
from tests.support.rigs import metering_for

PZEM = load_profile("pzem004t", [ROOT / "config" / "meters"])
WARM_UP_TICKS = 3  # the ticks the first timeouts occupy the bus (the meter is not known to be silent yet)


def run_in_real_time(metering, clock: ManualClock, poll_s: float, ticks: int) -> list[dict[str, dict]]:
    """Tick every `poll_s` of wall time (the virtual billing clock follows); each tick's states by socket."""
    seen = []
    started = time.monotonic()
    for i in range(ticks):
        time.sleep(max(0.0, started + i * poll_s - time.monotonic()))
        clock.set(clock.now() + (poll_s if i else 0.0))
        metering.tick()
        seen.append({st.id: serialize.socket_state(st) for st in metering.states()})
    return seen


@pytest.mark.parametrize("addresses, silent, poll_s, ticks", [
    ((1, 2), (2,), 0.5, 20),
    ((1, 2, 3), (1, 2), 1.0, 12),
], ids=["one-silent-of-two-at-0.5s", "two-silent-of-three-at-1s"])
def test_the_healthy_meters_on_a_bus_with_silent_meters_are_read_every_tick(tmp_path: Path, addresses, silent,
                                                                          poll_s, ticks):
    timeout_s = default_timeout_s(PZEM, 9600, "N", 1)  # what the configuration gives a PZEM-004T: 0.526 s
    with ModbusEmulator({a: "pzem004t" for a in addresses}) as emu:
        bus = ModbusBus(BusSettings(emu.port, baud=9600, timeout_s=timeout_s))
        clock = ManualClock()
        ids = [f"m{a}" for a in addresses]
        meters = {f"m{a}": ModbusMeter(bus, a, PZEM, clock) for a in addresses}
        journal = SqliteJournal(tmp_path / "journal.sqlite")
        metering = metering_for(meters, {i: FakeRelay(clock) for i in ids}, journal, clock, buses={emu.port: ids},
                                poll_interval_s=poll_s, meter_offline_grace_s=5.0)
        metering.start()
        with journal.transaction() as tx:
            for i in ids:
                tx.credit(i, 10_000, "credit", f"test:{i}", clock.now())
        for a in addresses:
            emu.set_pzem(a, energy_wh=100, power_w=60)
        try:
            assert all(st["meter"] == "ok" for st in run_in_real_time(metering, clock, poll_s, 2)[-1].values())
            for a in silent:
                emu.fault(a, "silent")
            seen = run_in_real_time(metering, clock, poll_s, ticks)
        finally:
            metering.shutdown()
            bus.close()
            journal.close()
        healthy = [f"m{a}" for a in addresses if a not in silent]
        missed: dict[str, list[tuple[int, str | None]]] = {i: [] for i in healthy}
        for n, states in enumerate(seen[WARM_UP_TICKS:], WARM_UP_TICKS):
            for i in healthy:
                st = states[i]
                # never offline, never switched off: a grace of 5 s (5 to 10 ticks) rides out a CI machine's stall
                # of a few reads in a row (one at 2 s, 4 ticks, did); missing every tick, as before the bus pool,
                # fails the count below
                assert (st["meter"], st["relay"]) == ("ok", "on"), (n, st)
                if (st["meter_error"], st["power_w"]) != (None, 60.0) or st["reading_at"] != st["updated_at"]:
                    missed[i].append((n, st["meter_error"]))
        # read in the very tick, every tick but (on a machine starved by the rest of the suite: a healthy read has
        # been seen to take over 0.4 s there) one in four at most: before the bus pool backed silent meters off, a
        # healthy meter here missed every tick
        allowed = (ticks - WARM_UP_TICKS) // 4
        assert all(len(m) <= allowed for m in missed.values()), (allowed, missed)
        last = seen[-1]
        for a in silent:
            assert last[f"m{a}"]["meter"] == "offline" and last[f"m{a}"]["relay"] == "off"
            assert "silent: asked every" in last[f"m{a}"]["meter_error"]
            # probed now and then, far less often than every tick
            assert 2 <= emu.requests(a) < ticks // 2, emu.requests(a)
        for a in addresses:
            if a not in silent:  # one request per tick but while the first timeouts held the bus
                assert ticks + 2 - WARM_UP_TICKS <= emu.requests(a) <= ticks + 2
