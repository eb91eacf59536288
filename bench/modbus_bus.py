"""Modbus RTU bus budget per meter profile: requests and bytes per reading, the wire's physical limit,
and the software overhead of one ModbusMeter.read() over a real RTU exchange on pseudo-terminals.

The exchange: hardware.modbus (ModbusBus/ModbusMeter, minimalmodbus) -> pty -> a bridge thread that
counts frames and bytes -> pty -> a pymodbus 3.16 RTU slave (tests/support/modbus_emulator.py).

Figures, per profile (pzem004t, sdm120, sdm630):

- requests and bytes per full reading, measured at the bridge (expected: 1 request of 8 bytes, one reply of
  5 + 2N bytes for a block of N registers);
- the physical limit of full readings per second on one bus, from frame sizes: a reading costs
  (8 + 5 + 2N) characters plus two inter-frame silences (request -> reply, reply -> next request) of 3.5
  characters each at 19200 baud and below, 1.75 ms each above (Modbus over serial line v1.02, 2.5.1.1).
  A character is 10 bits on an 8N1 line (start + 8 data + stop: what PZEM-004T and SDM meters use by
  default) and 11 bits on 8E1/8O1/8N2 (the character the Modbus spec assumes, and the one minimalmodbus
  uses to size its silence). Both are printed. The slave's own turnaround time (how long it takes to start
  answering, often several ms on real meters) comes on top and is not counted: these are upper bounds;
- the measured software overhead of one ModbusMeter.read() over the ptys with no wire delay: wall time of
  the call, started after minimalmodbus's inter-frame silence has already elapsed (so the figure is
  minimalmodbus + pyserial + pty + bridge + pymodbus + decode, nothing slept), median and p95. Goal: <= 5 ms;
- back-to-back reads per second over the ptys: minimalmodbus sleeps until 3.5 character times
  (11-bit characters: 4.01 ms at 9600 baud, 2.005 ms at 19200, at least 1.75 ms) have passed since the last
  reply on the port before it writes the next request, so back-to-back reads cost overhead + that silence;
- a check of the wire arithmetic: reads per second through the bridge emulating a 9600 baud wire
  (11-bit characters), against what frame time + minimalmodbus's silence + overhead predicts.

Exits 1 after printing if a reading takes more than one request or the median overhead exceeds 5 ms.
Run from the repository root: `.venv/bin/python bench/modbus_bus.py` (about 20 s).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from hardware.modbus import BusSettings, ModbusBus, ModbusMeter  # noqa: E402
from payg.adapters.clocks import SystemClock  # noqa: E402
from payg.adapters.config.profiles import load_profile  # noqa: E402
from tests.support.modbus_emulator import ModbusEmulator  # noqa: E402

PROFILES = ("pzem004t", "sdm120", "sdm630")
GOAL_OVERHEAD_MS = 5.0
BAUDS = (9600, 19200)
LIMIT_BAUDS = (2400, 9600, 19200)  # 2400: the SDM120's factory setting


def silence_s(baud: int, bits_per_char: int) -> float:
    """Inter-frame silence: 3.5 characters, fixed 1.75 ms above 19200 baud (Modbus serial line spec)."""
    return 0.00175 if baud > 19200 else 3.5 * bits_per_char / baud


def minimalmodbus_silence_s(baud: int) -> float:
    """What minimalmodbus 2.1.1 sleeps between calls on a port (its _calculate_minimum_silent_period)."""
    return max(3.5 * 11 / baud, 0.00175)


def wire_s(nbytes: int, baud: int, bits_per_char: int) -> float:
    return nbytes * bits_per_char / baud


def reading_s(profile, baud: int, bits_per_char: int) -> float:
    """Physical minimum for one full reading: request + reply on the wire and two silences."""
    chars = profile.request_bytes + profile.reply_bytes
    return wire_s(chars, baud, bits_per_char) + 2 * silence_s(baud, bits_per_char)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def measure(name: str, samples: int, wire_samples: int) -> dict:
    profile = load_profile(name, [ROOT / "config" / "meters"])
    model = name
    result: dict = {"profile": profile}
    with ModbusEmulator({1: model}) as emu:
        if model == "pzem004t":
            emu.set_pzem(1, voltage_v=230.0, current_a=10.0, power_w=2300.0, energy_wh=123456)
        else:
            emu.set_sdm(1, voltage_v=230.0, current_a=10.0, power_w=2300.0, import_kwh=12345.678)
        bus = ModbusBus(BusSettings(emu.port, baud=9600, timeout_s=0.5))
        meter = ModbusMeter(bus, 1, profile, SystemClock())
        try:
            for _ in range(5):  # warm up: open the port, create the instrument
                meter.read()
            # Requests and bytes per reading, at the bridge.
            requests0, (req0, rep0), bus0 = emu.requests(), emu.wire_bytes(), bus.requests
            counted = 20
            for _ in range(counted):
                meter.read()
            req1, rep1 = emu.wire_bytes()
            result["requests_per_reading"] = (emu.requests() - requests0) / counted
            result["bus_requests_per_reading"] = (bus.requests - bus0) / counted
            result["request_bytes"] = (req1 - req0) / counted
            result["reply_bytes"] = (rep1 - rep0) / counted

            # Software overhead: each read starts after minimalmodbus's silence has passed.
            gap = minimalmodbus_silence_s(9600) + 0.001
            overhead = []
            for _ in range(samples):
                time.sleep(gap)
                t0 = time.perf_counter()
                meter.read()
                overhead.append(time.perf_counter() - t0)
            result["overhead_ms"] = [x * 1000 for x in overhead]

            # Back-to-back reads, minimalmodbus's silence included, at each configured baud (the pty ignores it).
            result["back_to_back"] = {}
            for baud in BAUDS:
                bus.close()
                bus.settings = BusSettings(emu.port, baud=baud, timeout_s=0.5)
                meter.read()
                n = samples
                t0 = time.perf_counter()
                for _ in range(n):
                    meter.read()
                result["back_to_back"][baud] = n / (time.perf_counter() - t0)
        finally:
            bus.close()

    # The wire arithmetic, checked: the bridge holds each frame for its time on a 9600 baud, 11-bit wire.
    with ModbusEmulator({1: model}, wire_baud=9600, bits_per_char=11) as emu:
        bus = ModbusBus(BusSettings(emu.port, baud=9600, timeout_s=1.0))
        meter = ModbusMeter(bus, 1, profile, SystemClock())
        try:
            meter.read()
            t0 = time.perf_counter()
            for _ in range(wire_samples):
                meter.read()
            result["wire_9600_per_s"] = wire_samples / (time.perf_counter() - t0)
        finally:
            bus.close()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=300, help="timed reads per profile (default 300)")
    parser.add_argument("--wire-samples", type=int, default=12,
                        help="reads per profile through the emulated 9600 baud wire (default 12)")
    args = parser.parse_args(argv)

    import minimalmodbus
    import pymodbus

    print(f"Modbus RTU bus budget (minimalmodbus {minimalmodbus.__version__}, pymodbus {pymodbus.__version__}, "
          f"Python {sys.version.split()[0]})")
    print("Inter-frame silence: 3.5 characters at <= 19200 baud, 1.75 ms above; two per reading "
          "(request->reply, reply->next request). Slave turnaround not included.")
    print(f"minimalmodbus sleeps before each request until 3.5 x 11-bit characters have passed since the last "
          f"reply: {minimalmodbus_silence_s(9600) * 1000:.2f} ms at 9600, "
          f"{minimalmodbus_silence_s(19200) * 1000:.3f} ms at 19200, >= 1.75 ms.")
    failed = False
    for name in PROFILES:
        r = measure(name, args.samples, args.wire_samples)
        p = r["profile"]
        n = p.count
        print()
        print(f"== {name} ({p.model}): one block of {n} registers at {p.start:#06x}, function {p.function_code}")
        print(f"  requests per full reading     {r['requests_per_reading']:.2f} at the bridge, "
              f"{r['bus_requests_per_reading']:.2f} by ModbusBus.requests")
        print(f"  bytes per reading             request {p.request_bytes} + reply 5+2x{n} = {p.reply_bytes} -> "
              f"{p.request_bytes + p.reply_bytes} (measured: {r['request_bytes']:.0f} + {r['reply_bytes']:.0f})")
        print("  physical limit, one bus       (frames + 2 silences; full readings per second)")
        for bits, label in ((10, "8N1, 10 bits/char"), (11, "8E1/8N2, 11 bits/char")):
            cells = []
            for baud in LIMIT_BAUDS:
                t = reading_s(p, baud, bits)
                frames = wire_s(p.request_bytes + p.reply_bytes, baud, bits)
                cells.append(f"{baud:>5} baud {t * 1000:6.1f} ms ({frames * 1000:5.1f} wire + "
                             f"{2 * silence_s(baud, bits) * 1000:4.1f} silence) = {1 / t:5.1f}/s")
            print(f"    {label}")
            for cell in cells:
                print(f"      {cell}")
        ov = r["overhead_ms"]
        median, p95 = statistics.median(ov), percentile(ov, 95)
        print(f"  software overhead per read    median {median:.2f} ms, p95 {p95:.2f} ms, max {max(ov):.2f} ms "
              f"({len(ov)} reads over ptys, no wire delay, nothing slept; goal <= {GOAL_OVERHEAD_MS:.0f} ms)")
        print(f"    -> at most {1000 / median:.0f} reads/s of pure software per bus")
        for baud, rate in r["back_to_back"].items():
            sleep_ms = minimalmodbus_silence_s(baud) * 1000
            print(f"  back-to-back over ptys, {baud:>5} baud configured: {rate:6.1f} reads/s "
                  f"(= {1000 / rate:.2f} ms/read: overhead {median:.2f} + minimalmodbus silence {sleep_ms:.2f})")
        expected_s = (wire_s(p.request_bytes + p.reply_bytes, 9600, 11) + minimalmodbus_silence_s(9600)
                      + median / 1000)
        print(f"  emulated 9600 baud wire (11 bits/char): {r['wire_9600_per_s']:.1f} reads/s measured, "
              f"{1 / expected_s:.1f} predicted (wire {wire_s(p.request_bytes + p.reply_bytes, 9600, 11) * 1000:.1f}"
              f" + silence {minimalmodbus_silence_s(9600) * 1000:.2f} + overhead {median:.2f} ms; the bridge does"
              f" not add a slave turnaround)")
        if r["requests_per_reading"] != 1 or r["bus_requests_per_reading"] != 1:
            print("  GOAL MISSED: more than one request per reading")
            failed = True
        if median > GOAL_OVERHEAD_MS:
            print(f"  GOAL MISSED: median overhead {median:.2f} ms > {GOAL_OVERHEAD_MS} ms")
            failed = True
    pzem = load_profile("pzem004t", [ROOT / "config" / "meters"])
    separate = sum(8 + 5 + 2 * f.width for f in pzem.fields)
    separate_s = sum(wire_s(8 + 5 + 2 * f.width, 9600, 11) + 2 * silence_s(9600, 11) for f in pzem.fields)
    print()
    print(f"For comparison, pzem004t read one field per request: {len(pzem.fields)} requests, {separate} bytes, "
          f"{separate_s * 1000:.1f} ms at 9600 baud (11 bits) vs {reading_s(pzem, 9600, 11) * 1000:.1f} ms "
          f"for the one block read.")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
