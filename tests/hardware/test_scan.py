"""`payg scan`'s scanner on an emulated RS485 bus (tests/support/modbus_emulator.py): meters of every shipped profile
at random addresses (seeded: the seed is in the test id), a silent address, one that answers every request with a
Modbus exception and a meter that answers with garbage. Every emulated meter is found with its profile; nothing else
is reported as a meter."""

from __future__ import annotations

import random
import time
from fractions import Fraction

import pytest

from hardware.modbus import BusSettings, ModbusBus
from hardware.modbus.scan import ModbusScanner
from payg.domain.meter_scan import budget_s, presence_timeout_s
from payg.errors import PortUnavailable
from payg.wiring.scan import shipped_profiles
from tests.support.modbus_emulator import ModbusEmulator, f32

SEEDS = (29,)
# Longer than a real meter needs (presence_timeout_s: 116 ms at 9600 baud): the emulated meters answer from a thread
# of this test process, which a loaded test machine starved for more than that (a meter was missed).
TEST_WAIT_S = 0.2
# The range scan asks a few dozen addresses, so it can afford to wait longer: at 0.2 s a loaded CI run (six workers)
# missed a meter inside the range.
RANGE_WAIT_S = 0.35


def bus_layout(seed: int) -> tuple[dict[int, str], int, int, int, int]:
    """Two meters of each model at random addresses, plus a silent address, an exception-only one and a garbled
    PZEM (its voltage register 6553.5 V): (slaves, silent, exception, garbled, energy seed)."""
    rng = random.Random(seed)
    addresses = rng.sample(range(1, 248), 9)
    slaves = {a: m for a, m in zip(addresses[:6], ("pzem004t", "pzem004t", "sdm120", "sdm120", "sdm630", "sdm630"),
                                   strict=True)}
    silent, exception, garbled = addresses[6:]
    slaves[garbled] = "pzem004t"
    return slaves, silent, exception, garbled, rng.randrange(1, 10**6)


def start(slaves: dict[int, str], exception: int, garbled: int, energy: int) -> ModbusEmulator:
    emu = ModbusEmulator(slaves).start()
    emu.bridge.present.add(exception)  # no device there: pymodbus answers every request with exception 0x04
    for address, model in slaves.items():
        if model == "pzem004t":
            emu.set_pzem(address, energy_wh=energy + address)
        else:
            emu.set_sdm(address, import_kwh=(energy + address) / 1000)
    emu.set_registers(garbled, 0, [0xFFFF])  # 6553.5 V: no meter reads that
    return emu


@pytest.fixture(scope="module")
def profiles():
    return shipped_profiles()


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS, ids=[f"seed={s}" for s in SEEDS])
def test_a_full_scan_finds_every_meter_with_its_profile_and_no_phantom(seed, profiles):
    slaves, silent, exception, garbled, energy = bus_layout(seed)
    emu = start(slaves, exception, garbled, energy)
    try:
        began = time.monotonic()
        report = ModbusScanner(profiles).scan(emu.port, (9600,), timeout_s=TEST_WAIT_S)
        took = time.monotonic() - began
        written = [frame for kind, frame, _ in emu.frames() if kind == "req" and frame[1] not in (3, 4)]
    finally:
        emu.stop()
    meters = {a: m for a, m in slaves.items() if a != garbled}
    assert {m.address: m.profile for m in report.found} == meters
    for m in report.found:  # one reading as proof, each the emulated meter's own counter
        kwh = (energy + m.address) / 1000
        assert m.energy_wh == (energy + m.address if m.profile == "pzem004t" else Fraction(f32(kwh)) * 1000)
        assert m.baud == 9600
    assert {u.address for u in report.unidentified} == {exception, garbled}
    assert silent not in {m.address for m in report.found}
    assert written == [], "the scan sent something other than a read"
    assert report.requests < 247 + 4 * len(slaves) + 4, "the identifying reads are only for addresses that answered"
    print(f"\nfull scan 1-247 at 9600 baud, {len(meters)} meters: {took:.1f} s (budget {report.budget_s} s, "
          f"{report.requests} requests)")


def test_a_range_scan_asks_only_its_addresses_and_finds_the_meters_in_it(profiles):
    slaves, silent, exception, garbled, energy = bus_layout(5247)
    meters = sorted(a for a in slaves if a != garbled)
    first, last = meters[1], meters[3]  # three meters at least, some outside on both sides
    emu = start(slaves, exception, garbled, energy)
    try:
        report = ModbusScanner(profiles).scan(emu.port, (9600,), first=first, last=last, timeout_s=RANGE_WAIT_S)
        asked = {frame[0] for kind, frame, _ in emu.frames() if kind == "req"}
    finally:
        emu.stop()
    inside = {a: m for a, m in slaves.items() if first <= a <= last and a != garbled}
    assert {m.address: m.profile for m in report.found} == inside and len(inside) >= 3
    assert min(asked) == first and max(asked) == last
    assert {u.address for u in report.unidentified} == {a for a in (exception, garbled) if first <= a <= last}


def test_a_scan_stops_once_the_meters_expected_are_found(profiles):
    with ModbusEmulator({4: "pzem004t", 9: "sdm120"}) as emu:
        report = ModbusScanner(profiles).scan(emu.port, (9600, 2400), expect=2)
        asked = emu.requests()
    assert [m.address for m in report.found] == [4, 9] and report.stopped_early
    assert asked < 30  # addresses 1-9, and the identifying reads of two meters, at one baud rate


def test_a_meter_at_another_baud_rate_is_not_found_at_this_one(profiles):
    with ModbusEmulator({7: "pzem004t"}) as emu:
        emu.fault(7, "silent")  # as a meter at 2400 baud hears a 9600 baud request: nothing it can answer
        report = ModbusScanner(profiles).scan(emu.port, (9600,), first=1, last=12)
    assert report.found == [] and report.unidentified == []


def test_the_timeout_and_the_budget_follow_the_wire_time():
    assert presence_timeout_s(9600) == pytest.approx(15 * 10 / 9600 + 0.1, abs=1e-4)
    assert presence_timeout_s(2400) > presence_timeout_s(9600)
    assert budget_s((9600,), 247) == pytest.approx(247 * (presence_timeout_s(9600) + 3.5 * 10 / 9600), abs=0.1)
    assert budget_s((9600,), 247, timeout_s=0.02) < 6


def test_a_port_that_cannot_be_opened_names_the_port(profiles):
    with pytest.raises(PortUnavailable, match="/dev/ttyNOPE9"):
        ModbusScanner(profiles).scan("/dev/ttyNOPE9", (9600,))


def test_a_scan_is_refused_on_a_port_a_running_controllers_bus_holds(profiles):
    """Both open the port exclusively: a scan never talks over the controller's reads, nor the controller over it."""
    with ModbusEmulator({4: "pzem004t"}) as emu:
        bus = ModbusBus(BusSettings(emu.port, timeout_s=0.5))
        try:
            bus.read_registers(4, 0, 1, 4)  # the controller's bus has the port open, as after its first tick
            with pytest.raises(PortUnavailable, match="stop it first"):
                ModbusScanner(profiles).scan(emu.port, (9600,), first=1, last=5)
        finally:
            bus.close()
        report = ModbusScanner(profiles).scan(emu.port, (9600,), first=1, last=5)  # closed: the scan may go on
    assert [m.address for m in report.found] == [4]
