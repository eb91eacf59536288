"""Installer commands: find and read Modbus meters, test a GPIO relay (no configuration needed)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Protocol, TextIO

from payg.domain.meter_profile import MeterProfile, default_timeout_s
from payg.domain.settings import Config, GpioRelayConfig
from payg.errors import ConfigError, MeterTimeout, MeterUnavailable, PortUnavailable, RelayError
from payg.ports import Relay


class Probe(Protocol):
    """One Modbus port, for reading meters at any address (app.py builds it)."""

    def read_fields(self, address: int) -> dict: ...

    def close(self) -> None: ...


def run(args: argparse.Namespace, wiring, sleep: Callable[[float], None]) -> int:
    """`payg meters scan|read` and `payg relay test`: hardware at hand, no configuration needed."""
    if args.command == "relay":
        if args.chip is not None and args.driver != "gpiod":
            print('payg: --chip is for --driver gpiod (RPi.GPIO always drives the Raspberry Pi\'s header)',
                  file=sys.stderr)
            return 2
        try:
            relay = wiring.gpio_relay(GpioRelayConfig(args.pin, args.active_low, args.driver, args.chip))
        except (RelayError, ValueError) as exc:
            print(f"payg: {exc}", file=sys.stderr)
            return 1
        try:
            return cmd_relay_test(args, relay, sleep)
        finally:
            relay.close()
    try:
        profile = wiring.meter_profile(args.profile)
    except ConfigError as exc:
        print(f"payg: {exc}", file=sys.stderr)
        return 2
    baud, parity = args.baud or profile.serial.baud, args.parity or profile.serial.parity
    timeout = args.timeout or default_timeout_s(profile, baud, parity, profile.serial.stopbits,
                                                margin_s=0.2 if args.action == "scan" else 0.5)
    probe = wiring.modbus_probe(args.port, profile, baud=baud, parity=parity, timeout_s=timeout,
                                local_echo=args.local_echo)
    try:
        if args.action == "scan":
            return cmd_meters_scan(args, profile, probe.read_fields)
        return cmd_meters_read(args, profile, lambda: probe.read_fields(args.address))
    finally:
        probe.close()


def relays_off(config: Config, force_off: Callable[[GpioRelayConfig], None]) -> int:
    """`payg relay off`: drive every configured GPIO relay to 'off' (systemd's ExecStopPost); one that fails
    does not stop the others."""
    failed = 0
    for sc in config.sockets:
        if isinstance(sc.relay, GpioRelayConfig):
            where = f"{sc.relay.chip} line {sc.relay.pin}" if sc.relay.chip else f"GPIO{sc.relay.pin}"
            try:
                force_off(sc.relay)
                print(f"{sc.id}: relay on {where} off")
            except (RelayError, ValueError) as exc:
                failed += 1
                print(f"payg: {sc.id}: {exc}", file=sys.stderr)
    return 1 if failed else 0

def _reading_lines(profile: MeterProfile, values: dict) -> list[str]:
    lines = []
    for f in profile.fields:
        value = values[f.name]
        shown = f"{float(value):.3f}".rstrip("0").rstrip(".") if value.denominator != 1 else str(value)
        lines.append(f"  {f.name:<14} {shown} {_UNITS.get(f.name, '')}".rstrip())
    return lines


_UNITS = {"energy_wh": "Wh", "power_w": "W", "voltage_v": "V", "current_a": "A", "frequency_hz": "Hz"}


def cmd_meters_read(args: argparse.Namespace, profile: MeterProfile, read_fields: Callable[[], dict],
                    out: TextIO = sys.stdout) -> int:
    try:
        values = read_fields()
    except MeterUnavailable as exc:
        print(f"payg: {exc}", file=sys.stderr)
        return 1
    print(f"{profile.model} at address {args.address} on {args.port}:", file=out)
    for line in _reading_lines(profile, values):
        print(line, file=out)
    return 0


def cmd_meters_scan(args: argparse.Namespace, profile: MeterProfile, probe: Callable[[int], dict],
                    out: TextIO = sys.stdout, progress: TextIO = sys.stderr) -> int:
    if args.last < args.first:
        print("payg: --last must not be below --first", file=sys.stderr)
        return 2
    addresses = range(args.first, args.last + 1)
    found: list[tuple[int, dict | None, str | None]] = []  # (address, its values, or why they are missing)
    for n, address in enumerate(addresses, 1):
        _progress_bar(progress, n, len(addresses), f"address {address}, found {len(found)}")
        try:
            values = probe(address)
        except PortUnavailable as exc:
            print(file=progress)
            print(f"payg: {exc}", file=sys.stderr)
            return 1
        except MeterTimeout:
            continue
        except MeterUnavailable as exc:  # something answered, but not as this profile expects
            found.append((address, None, str(exc)))
            continue
        found.append((address, values, None))
    print(file=progress)
    if not any(got is not None for _, got, _ in found):
        print(f"no {profile.model} answered on {args.port} at addresses {args.first}-{args.last}", file=out)
    for address, got, error in found:
        if got is None:
            print(f"address {address}: answered, but not as a {profile.name} ({error})", file=out)
            continue
        print(f"address {address}: {profile.model}", file=out)
        for line in _reading_lines(profile, got):
            print(line, file=out)
    return 0 if any(got is not None for _, got, _ in found) else 1


def _progress_bar(stream: TextIO, done: int, total: int, text: str, width: int = 30) -> None:
    filled = width * done // total
    stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {text}")
    stream.flush()


def cmd_relay_test(args: argparse.Namespace, relay: Relay, sleep: Callable[[float], None],
                   ask: Callable[[str], str] = input, out: TextIO | None = None) -> int:
    out = out or sys.stdout  # looked up now: whoever ran the command may have replaced it
    polarity = "active-low" if args.active_low else "active-high"
    if not args.yes:
        answer = ask(f"This switches the relay on GPIO{args.pin} ({polarity}) ON for {args.seconds:g} s: whatever "
                     f"is plugged into its socket gets power. Type 'yes' to go on: ")
        if answer.strip().lower() != "yes":
            print("nothing switched", file=out)
            return 1
    try:
        relay.set_closed(True)
        print(f"GPIO{args.pin}: relay ON", file=out)
        sleep(args.seconds)
    finally:
        relay.set_closed(False)
        print(f"GPIO{args.pin}: relay OFF", file=out)
    return 0
