"""`payg scan`'s time: a full scan of addresses 1-247 at one baud rate on the emulated RS485 bus.

The bus is tests/support/modbus_emulator.py's (pseudo-terminals, a bridge, pymodbus slaves) with `wire_baud`: the
bridge holds each request for its time on a real wire and sends each reply at the wire's pace, so the figures
include the wire time a real 9600 baud bus adds. Three meters (one of each shipped profile) at seeded random
addresses; printed: the time taken, the budget the scan states for an empty bus, the requests sent, and the same
with a shorter `--timeout-ms`.

    .venv/bin/python bench/scan.py [--baud 9600] [--seed 29]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hardware.modbus.scan import ModbusScanner  # noqa: E402
from payg.domain.meter_scan import presence_timeout_s  # noqa: E402
from payg.wiring.scan import shipped_profiles  # noqa: E402
from tests.support.modbus_emulator import ModbusEmulator  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baud", type=int, default=9600)
    ap.add_argument("--seed", type=int, default=29)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    slaves = dict(zip(rng.sample(range(1, 248), 3), ("pzem004t", "sdm120", "sdm630"), strict=True))
    scanner = ModbusScanner(shipped_profiles())
    print(f"emulated bus at {args.baud} baud (wire time emulated), meters {sorted(slaves.items())}, seed {args.seed}")
    for timeout_s in (None, 0.03):
        with ModbusEmulator(slaves, wire_baud=args.baud) as emu:
            began = time.monotonic()
            report = scanner.scan(emu.port, (args.baud,), timeout_s=timeout_s)
            took = time.monotonic() - began
        wait = timeout_s if timeout_s is not None else presence_timeout_s(args.baud)
        found = sorted((m.address, m.profile) for m in report.found)
        assert found == sorted(slaves.items()), found
        print(f"  wait per address {wait * 1000:.0f} ms: full scan 1-247 in {took:.1f} s "
              f"(stated budget for an empty bus {report.budget_s} s), {report.requests} requests, "
              f"found {len(found)}/3")


if __name__ == "__main__":
    main()
