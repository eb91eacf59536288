"""Energy meters over Modbus RTU (minimalmodbus), with register maps from profile files.

Every meter on one serial port shares one ModbusBus: the port is opened once
and one lock makes sure a single request/reply exchange is on the wire at a
time (minimalmodbus shares the serial object of a port between instruments;
two threads on it without a lock corrupt each other's frames). Each poll is
ONE read of the profile's register block. Every failure (timeout, bad CRC,
short frame, exception reply, a port that vanished) raises MeterUnavailable
with its cause; an old value is never returned.
"""

from __future__ import annotations

import termios
import threading
from dataclasses import dataclass
from fractions import Fraction

import minimalmodbus
import serial

from payg.ports import Clock
from payg.errors import MeterTimeout, MeterUnavailable, PortUnavailable
from hardware.modbus.registers import decode, energy_resolution_wh
from payg.domain.meter_profile import MeterProfile
from payg.ports import MeterReading


@dataclass(frozen=True)
class BusSettings:
    port: str
    baud: int = 9600
    parity: str = "N"
    stopbits: int = 1
    timeout_s: float = 0.5
    local_echo: bool = False


class ModbusBus:
    """One RS485 port: opened lazily, reopened after an error, used by one exchange at a time."""

    def __init__(self, settings: BusSettings, serial_factory=None):
        self.settings = settings
        self.lock = threading.Lock()
        self._serial_factory = serial_factory or self._open_serial
        self._serial = None
        self._instruments: dict[int, minimalmodbus.Instrument] = {}
        self.requests = 0

    @property
    def bus_id(self) -> str:
        return self.settings.port

    def _open_serial(self):
        s = self.settings
        return serial.Serial(s.port, baudrate=s.baud, bytesize=8, parity=s.parity, stopbits=s.stopbits,
                             timeout=s.timeout_s, write_timeout=s.timeout_s)

    def read_registers(self, address: int, start: int, count: int, function_code: int) -> list[int]:
        """One request and its reply, under the bus lock. Raises MeterUnavailable."""
        where = f"{self.settings.port} address {address}"
        with self.lock:
            try:
                if self._serial is None:
                    self._serial = self._serial_factory()
                    self._instruments = {}
                instrument = self._instruments.get(address)
                if instrument is None:
                    instrument = minimalmodbus.Instrument(self._serial, address)
                    instrument.handle_local_echo = self.settings.local_echo
                    # A late reply from a slow slave must not be taken for the answer to the next request.
                    instrument.clear_buffers_before_each_transaction = True
                    self._instruments[address] = instrument
                self.requests += 1
                return instrument.read_registers(start, count, functioncode=function_code)
            except minimalmodbus.NoResponseError as exc:
                raise MeterTimeout(f"{where}: no response (timeout {self.settings.timeout_s} s)") from exc
            except minimalmodbus.InvalidResponseError as exc:
                raise MeterUnavailable(f"{where}: invalid reply ({exc})") from exc
            except minimalmodbus.SlaveReportedException as exc:
                raise MeterUnavailable(f"{where}: exception reply ({exc})") from exc
            except minimalmodbus.ModbusException as exc:
                raise MeterUnavailable(f"{where}: {exc}") from exc
            except (serial.SerialException, OSError, termios.error) as exc:  # termios: the adapter was unplugged
                self.close_locked()
                raise PortUnavailable(f"{where}: serial port error ({exc})") from exc

    def close_locked(self) -> None:
        if self._serial is not None:
            try:
                self._serial.close()
            except (serial.SerialException, OSError, termios.error):
                pass  # closing a port that already failed; it is reopened on the next read
            self._serial = None
            self._instruments = {}

    def close(self) -> None:
        with self.lock:
            self.close_locked()


class ModbusMeter:
    def __init__(self, bus: ModbusBus, address: int, profile: MeterProfile, clock: Clock):
        if not 1 <= address <= 247:
            raise ValueError(f"a Modbus slave address is 1-247, got {address}")
        self.bus = bus
        self.address = address
        self.profile = profile
        self.clock = clock

    @property
    def bus_id(self) -> str:
        return self.bus.bus_id

    def read_fields(self) -> dict[str, Fraction]:
        p = self.profile
        registers = self.bus.read_registers(self.address, p.start, p.count, p.function_code)
        return decode(p, registers)

    def read(self) -> MeterReading:
        values = self.read_fields()
        at = self.clock.now()
        energy = values["energy_wh"]
        if energy < 0:
            raise MeterUnavailable(f"{self.bus.settings.port} address {self.address}: negative energy counter")
        power = float(values["power_w"])
        voltage = float(values.get("voltage_v", 0))
        current = float(values["current_a"]) if "current_a" in values else (power / voltage if voltage else 0.0)
        return MeterReading(energy_wh=energy, power_w=power, voltage_v=voltage, current_a=current, at=at,
                            resolution_wh=energy_resolution_wh(self.profile, energy))
