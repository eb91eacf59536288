"""Finding meters on a bus: what a scan found, how long it may take, and the `[[sockets]]` entries it suggests.

The scan itself is hardware/modbus/scan.py; the CLI (`payg scan`) and the landlord's setup page show its report.

The time budget: every address is asked once, with one small read (8 bytes out, a 7-byte reply), and waited for
`presence_timeout_s`: the wire time of the request and of that reply, plus the meter's turnaround margin. An empty
bus costs that per address; each meter that answers adds its profiles' identifying reads.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Protocol

from payg.domain.meter_profile import bits_per_character, silence_s

FIRST_ADDRESS, LAST_ADDRESS = 1, 247
PRESENCE_REQUEST_BYTES = 8  # address, function, start (2), count (2), CRC (2)
PRESENCE_REPLY_BYTES = 7  # address, function, byte count, one register (2), CRC (2)
TURNAROUND_S = 0.1  # what a meter may take to start its reply, beyond the wire time
SOCKET_ID = re.compile(r"^[a-z0-9_-]{1,32}$")


def presence_timeout_s(baud: int, parity: str = "N", stopbits: int = 1, turnaround_s: float = TURNAROUND_S) -> float:
    """(request + reply bytes) x bits per character / baud + the turnaround: 0.116 s at 9600 8N1, 0.163 s at 2400."""
    wire = (PRESENCE_REQUEST_BYTES + PRESENCE_REPLY_BYTES) * bits_per_character(parity, stopbits) / baud
    return round(wire + turnaround_s, 4)


def budget_s(bauds: tuple[int, ...], addresses: int, timeout_s: float | None = None, parity: str = "N",
             stopbits: int = 1) -> float:
    """The most an empty bus takes: each address once per baud rate, its timeout and the silence before a request
    (the meters found add their identifying reads)."""
    total = 0.0
    for baud in bauds:
        wait = timeout_s if timeout_s is not None else presence_timeout_s(baud, parity, stopbits)
        total += addresses * (wait + silence_s(baud, bits_per_character(parity, stopbits)))
    return round(total, 1)


@dataclass(frozen=True)
class FoundMeter:
    address: int
    baud: int
    parity: str
    stopbits: int
    profile: str  # the profile's name, as `profile = "..."` in a socket's meter
    model: str
    energy_wh: Fraction  # one reading, as proof
    timeout_s: float  # what its socket's meter waits for a reply (the profile's reply wire time + 0.5 s)

    @property
    def energy_text(self) -> str:
        whole = self.energy_wh.numerator // self.energy_wh.denominator
        return str(whole) if self.energy_wh.denominator == 1 else f"{float(self.energy_wh):.1f}"


@dataclass(frozen=True)
class Unidentified:
    """An address that answered, but as no profile (an exception to every read, an implausible reading, or as
    two profiles at once): never reported as a meter."""

    address: int
    baud: int
    why: str


@dataclass(frozen=True)
class ScanProgress:
    baud: int
    address: int
    last: int
    found: int


@dataclass
class ScanReport:
    port: str
    bauds: tuple[int, ...]
    first: int = FIRST_ADDRESS
    last: int = LAST_ADDRESS
    found: list[FoundMeter] = field(default_factory=list)
    unidentified: list[Unidentified] = field(default_factory=list)
    elapsed_s: float = 0.0
    budget_s: float = 0.0
    requests: int = 0
    stopped_early: bool = False


def toml_string(text: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def default_id(meter: FoundMeter) -> str:
    return f"meter-{meter.address}"


def bus_timeout_s(meters: list[FoundMeter]) -> float:
    """One timeout for the meters of one port: the loader wants one set of serial settings per port."""
    return max(m.timeout_s for m in meters)


def socket_entry(meter: FoundMeter, port: str, socket_id: str | None = None, name: str | None = None,
                 timeout_s: float | None = None) -> str:
    """One `[[sockets]]` table for a found meter, its relay simulated until it is wired; `timeout_s`: the port's."""
    sid = socket_id or default_id(meter)
    lines = [f"# {meter.model} at address {meter.address}, {meter.baud} baud: {meter.energy_text} Wh when found",
             "[[sockets]]", f"id = {toml_string(sid)}"]
    if name:
        lines.append(f"name = {toml_string(name)}")
    serial = "" if (meter.parity, meter.stopbits) == ("N", 1) else \
        f", parity = {toml_string(meter.parity)}, stopbits = {meter.stopbits}"
    lines.append(f"meter = {{ kind = \"modbus\", profile = {toml_string(meter.profile)}, port = {toml_string(port)}, "
                 f"address = {meter.address}, baud = {meter.baud}{serial}, "
                 f"timeout_s = {timeout_s if timeout_s is not None else meter.timeout_s} }}")
    lines.append("# wire the relay: relay = { kind = \"gpio\", pin = N, active_low = true }")
    lines.append('relay = { kind = "simulated" }')
    return "\n".join(lines) + "\n"


class MeterScanner(Protocol):
    """hardware/modbus/scan.py's ModbusScanner, as the composition root builds it for the CLI and the setup page."""

    def default_bauds(self) -> tuple[int, ...]: ...

    def scan(self, port: str, bauds: tuple[int, ...], *, first: int = 1, last: int = 247,
             timeout_s: float | None = None, expect: int | None = None,
             progress: Callable[[ScanProgress], None] | None = None,
             cancelled: Callable[[], bool] = ...) -> ScanReport:
        """Raises PortUnavailable when the port cannot be opened."""
