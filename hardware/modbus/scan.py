"""ModbusScanner: which slave addresses of a port answer, at which baud rate, as which meter profile.

Per baud rate the port is opened once and every address is asked once with one small read (one register of the
profiles' most common block start), waited for `presence_timeout_s` (payg/domain/meter_scan.py: the wire time of
the request and the reply, plus a turnaround margin). Silence is absence; any answer, even a Modbus exception, is
presence. Only the addresses that answered get the identifying reads: each distinct block read of the profiles,
once, decoded with every profile that reads that block; a profile fits when its read answers and every field it
decodes is physically plausible, and a profile with an `[identify]` read wins over those without when its
registers are not all zero there (an SDM630 and an SDM120 answer the same block alike). An address that fits no
profile, or two, is reported as unidentified, never as a meter. Only reads (function codes 3 and 4) are sent.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from fractions import Fraction

import minimalmodbus
import serial

from hardware.modbus.registers import decode
from payg.domain.meter_profile import MeterProfile, default_timeout_s
from payg.domain.meter_scan import (
    FIRST_ADDRESS,
    LAST_ADDRESS,
    FoundMeter,
    ScanProgress,
    ScanReport,
    Unidentified,
    budget_s,
    presence_timeout_s,
)
from payg.errors import MeterUnavailable, PortUnavailable

# The readings a working meter can give (the SI units the profiles decode to); anything else is not that meter.
PLAUSIBLE: dict[str, tuple[Fraction, Fraction]] = {
    "voltage_v": (Fraction(0), Fraction(480)),
    "current_a": (Fraction(-1000), Fraction(1000)),
    "power_w": (Fraction(-1_000_000), Fraction(1_000_000)),
    "energy_wh": (Fraction(0), Fraction(10) ** 12),
    "frequency_hz": (Fraction(0), Fraction(70)),
    "power_factor": (Fraction(-1), Fraction(1)),
}
IDENTIFY_MARGIN_S = 0.2  # an identifying read's wait beyond its reply's wire time (an exception reply waits it all)
MAINS_HZ = (Fraction(40), Fraction(70))  # a frequency that is not 0 (no voltage) is a mains frequency
Answer = list[int] | None  # the registers, or None: an exception reply or a garbled one


class ModbusScanner:
    """Scans one port with the given profiles; `serial_factory(port, baud, parity, stopbits)` opens the port."""

    def __init__(self, profiles: list[MeterProfile], *, local_echo: bool = False,
                 serial_factory: Callable[[str, int, str, int], serial.Serial] | None = None,
                 monotonic: Callable[[], float] = time.monotonic):
        if not profiles:
            raise ValueError("a scan needs at least one meter profile")
        if any(p.function_code not in (3, 4) for p in profiles):
            raise ValueError("a scan only reads: every profile's function code must be 3 or 4")
        self.profiles = sorted(profiles, key=lambda p: p.name)
        self.local_echo = local_echo
        self._open = serial_factory or _open_serial
        self._monotonic = monotonic
        # the presence read: one register where most profiles' blocks start
        self._presence = Counter((p.function_code, p.start) for p in self.profiles).most_common(1)[0][0]

    def default_bauds(self) -> tuple[int, ...]:
        """The profiles' own baud rates, fastest first."""
        return tuple(sorted({p.serial.baud for p in self.profiles}, reverse=True))

    def scan(self, port: str, bauds: tuple[int, ...], *, first: int = FIRST_ADDRESS, last: int = LAST_ADDRESS,
             parity: str = "N", stopbits: int = 1, timeout_s: float | None = None, expect: int | None = None,
             progress: Callable[[ScanProgress], None] | None = None,
             cancelled: Callable[[], bool] = lambda: False) -> ScanReport:
        """Every address first..last at each baud rate (stopping once `expect` meters are found). Raises
        PortUnavailable when the port cannot be opened."""
        if not FIRST_ADDRESS <= first <= last <= LAST_ADDRESS:
            raise ValueError(f"addresses are {FIRST_ADDRESS}-{LAST_ADDRESS}, got {first}-{last}")
        started = self._monotonic()
        report = ScanReport(port, bauds, first, last,
                            budget_s=budget_s(bauds, last - first + 1, timeout_s, parity, stopbits))
        known: set[int] = set()
        for baud in bauds:
            known.update(m.address for m in report.found)
            known.update(u.address for u in report.unidentified)
            session = _Session(self._open(port, baud, parity, stopbits), port, baud, self.local_echo)
            try:
                wait = timeout_s if timeout_s is not None else presence_timeout_s(baud, parity, stopbits)
                for address in range(first, last + 1):
                    if cancelled() or (expect is not None and len(report.found) >= expect):
                        report.stopped_early = True
                        break
                    if address in known:
                        pass  # found at a faster baud rate already: a meter answers at one
                    elif self._present(session, address, wait, parity, stopbits):
                        self._identify(session, address, parity, stopbits, report)
                    if progress is not None:
                        progress(ScanProgress(baud, address, last, len(report.found)))
            finally:
                report.requests += session.requests
                session.close()
            if report.stopped_early:
                break
        report.elapsed_s = round(self._monotonic() - started, 2)
        return report

    def _present(self, session: _Session, address: int, wait_s: float, parity: str, stopbits: int) -> bool:
        fc, start = self._presence
        try:
            session.read(address, fc, start, 1, wait_s)
        except minimalmodbus.NoResponseError:
            return False
        except minimalmodbus.SlaveReportedException:
            return True
        except minimalmodbus.ModbusException:
            # garbled: noise, or a late reply of the address before; ask once more, waiting as for a meter
            try:
                session.read(address, fc, start, 1, wait_s + 0.5)
            except minimalmodbus.NoResponseError:
                return False
            except minimalmodbus.ModbusException:
                return True
        return True

    def _identify(self, session: _Session, address: int, parity: str, stopbits: int, report: ScanReport) -> None:
        baud = session.baud
        answers: dict[tuple[int, int, int], Answer] = {}
        fitting: list[tuple[MeterProfile, Fraction]] = []
        for profile in self.profiles:
            block = (profile.function_code, profile.start, profile.count)
            if block not in answers:
                answers[block] = _registers(session, address, *block,
                                            default_timeout_s(profile, baud, parity, stopbits, IDENTIFY_MARGIN_S))
            energy = _plausible_energy(profile, answers[block])
            if energy is not None:
                fitting.append((profile, energy))
        specific = []
        for profile, energy in fitting:
            hint = profile.identify
            if hint is None:
                continue
            regs = _within(answers, hint.function_code, hint.start, hint.count)
            if regs is None:
                regs = _registers(session, address, hint.function_code, hint.start, hint.count,
                                  default_timeout_s(profile, baud, parity, stopbits, IDENTIFY_MARGIN_S))
            if regs is not None and any(regs):
                specific.append((profile, energy))
        if specific:
            fitting = specific
        else:
            fitting = [(p, e) for p, e in fitting if p.identify is None]
        if len(fitting) == 1:
            profile, energy = fitting[0]
            report.found.append(FoundMeter(address, baud, parity, stopbits, profile.name, profile.model, energy,
                                           default_timeout_s(profile, baud, parity, stopbits)))
        elif fitting:
            names = " and ".join(p.name for p, _ in fitting)
            report.unidentified.append(Unidentified(address, baud, f"answers alike as {names}"))
        else:
            report.unidentified.append(Unidentified(address, baud, "answers, but as none of the profiles "
                                                    f"({', '.join(p.name for p in self.profiles)})"))


class _Session:
    """One port opened at one baud rate: a request and its reply at a time, with the timeout each read asks."""

    def __init__(self, port: serial.Serial, name: str, baud: int, local_echo: bool):
        self.port, self.name, self.baud, self.local_echo = port, name, baud, local_echo
        self.requests = 0

    def read(self, address: int, function_code: int, start: int, count: int, timeout_s: float) -> list[int]:
        instrument = minimalmodbus.Instrument(self.port, address)
        instrument.handle_local_echo = self.local_echo
        instrument.clear_buffers_before_each_transaction = True  # a late reply is not the next one's
        self.port.timeout = timeout_s
        self.requests += 1
        try:
            return instrument.read_registers(start, count, functioncode=function_code)
        except minimalmodbus.ModbusException:  # an OSError too: the caller tells silence from an answer
            raise
        except (serial.SerialException, OSError) as exc:
            raise PortUnavailable(f"{self.name}: serial port error ({exc})") from exc

    def close(self) -> None:
        try:
            self.port.close()
        except (serial.SerialException, OSError):
            pass  # the scan is over; a port that failed is closed already


def _open_serial(port: str, baud: int, parity: str, stopbits: int) -> serial.Serial:
    try:
        # exclusive, as the controller's own bus opens it: a scan never talks over a running controller's reads
        return serial.Serial(port, baudrate=baud, bytesize=8, parity=parity, stopbits=stopbits, timeout=0.5,
                             write_timeout=1.0, exclusive=True)
    except (serial.SerialException, OSError, ValueError) as exc:
        busy = "lock" in str(exc).lower()
        raise PortUnavailable(f"cannot open the serial port {port} ({exc})" + (
            "; a running controller reads its meters on it: stop it first (sudo systemctl stop payg)"
            if busy else "")) from exc


def _registers(session: _Session, address: int, function_code: int, start: int, count: int,
               timeout_s: float) -> Answer:
    try:
        return session.read(address, function_code, start, count, timeout_s)
    except minimalmodbus.ModbusException:  # an exception reply, silence, a bad frame: not this read
        return None


def _within(answers: dict[tuple[int, int, int], Answer], function_code: int, start: int,
            count: int) -> list[int] | None:
    """The registers start..start+count from a block already read, if one holds them."""
    for (fc, block_start, block_count), regs in answers.items():
        if regs is not None and fc == function_code and block_start <= start and \
                start + count <= block_start + block_count:
            return regs[start - block_start:start - block_start + count]
    return None


def _plausible_energy(profile: MeterProfile, regs: Answer) -> Fraction | None:
    """The energy counter when every field the profile decodes from these registers is plausible, else None."""
    if regs is None:
        return None
    try:
        values = decode(profile, regs)
    except MeterUnavailable:  # a short reply, a float that is not a number
        return None
    for name, value in values.items():
        low, high = PLAUSIBLE[name]
        if not low <= value <= high:
            return None
    frequency = values.get("frequency_hz")
    if frequency and not MAINS_HZ[0] <= frequency <= MAINS_HZ[1]:
        return None
    return values["energy_wh"]
