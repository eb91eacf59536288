"""`payg scan`: find the meters on a Modbus port and print them as ready-to-paste `[[sockets]]` entries.

Progress goes to standard error, so that a long scan is not silent and standard output stays TOML: the entries,
then the summary as a comment. Exit 0 when meters were found, 1 when none, 2 when the port cannot be opened.
"""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from payg.cli.voice import EXIT_FAILED, EXIT_OK, EXIT_USAGE, say
from payg.domain.meter_scan import MeterScanner, ScanProgress, budget_s, bus_timeout_s, socket_entry
from payg.errors import PortUnavailable

PROGRESS_EVERY = 32  # addresses between two progress lines


def run(args: argparse.Namespace, scanner: MeterScanner, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    bauds = tuple(dict.fromkeys(args.baud)) if args.baud else scanner.default_bauds()
    timeout_s = args.timeout_ms / 1000 if args.timeout_ms else None
    first, last = args.first, args.last
    if first > last:
        say(f"--first {first} is above --last {last}: nothing to scan", err)
        return EXIT_USAGE
    rates = ", ".join(str(b) for b in bauds)
    count = last - first + 1
    say(f"scanning {args.port} at {rates} baud, addresses {first}-{last}: at most "
        f"{budget_s(bauds, count, timeout_s):.0f} s on an empty bus, about a second more per meter", err)

    def progress(step: ScanProgress) -> None:
        if step.address % PROGRESS_EVERY == 0 or step.address == step.last:
            say(f"{step.baud} baud: address {step.address}/{step.last}, {step.found} meter(s) found so far", err)

    try:
        report = scanner.scan(args.port, bauds, first=first, last=last, timeout_s=timeout_s, expect=args.expect,
                              progress=progress)
    except PortUnavailable as exc:
        say(f"{exc}: is {args.port} the RS485 adapter, and may this user open it (group dialout)?", err)
        return EXIT_USAGE
    for odd in report.unidentified:
        say(f"address {odd.address} at {odd.baud} baud {odd.why}: not reported as a meter", err)
    if len({m.baud for m in report.found}) > 1:
        say("meters answered at different baud rates: the meters of one port must share one (set them on the "
            "meters' displays, then keep one baud in the entries)", err)
    timeout_s = bus_timeout_s(report.found) if report.found else None
    for meter in report.found:
        print(socket_entry(meter, report.port, timeout_s=timeout_s), file=out)
    summary = (f"{len(report.found)} meter(s) found on {report.port} at {rates} baud in {report.elapsed_s:.1f} s "
               f"({report.requests} requests{', stopped early' if report.stopped_early else ''})")
    if not report.found:
        say(f"no meter found: {summary}; check the wiring (A/B), the meters' power and their baud rate "
            "(--baud)", err)
        return EXIT_FAILED
    print(f"# {summary}", file=out)
    return EXIT_OK
