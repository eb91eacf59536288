"""ModbusBus: one RS485 port of Modbus RTU meters (minimalmodbus).

Every meter on one serial port shares one ModbusBus: the port is opened once
and one lock makes sure a single request/reply exchange is on the wire at a
time (minimalmodbus shares the serial object of a port between instruments;
two threads on it without a lock corrupt each other's frames). Each poll is
ONE read of the profile's register block. Every failure (timeout, bad CRC,
short frame, exception reply, a port that vanished) raises MeterUnavailable
with its cause; an old value is never returned.

A read may ask for a shorter timeout than the port's (`timeout_s`): a meter that has been
silent is probed with `probe_timeout_s`, long enough for its reply to cross the wire and
little more, so that probing it costs its bus-mates a fraction of a poll (hardware/bus_pool.py).
"""

from __future__ import annotations

import termios
import threading
from collections.abc import Callable
from dataclasses import dataclass

import minimalmodbus
import serial

from payg.errors import MeterTimeout, MeterUnavailable, PortUnavailable

PROBE_MARGIN_S = 0.1  # what a probe waits beyond the reply's wire time for the meter to start answering


@dataclass(frozen=True)
class BusSettings:
    port: str
    baud: int = 9600
    parity: str = "N"
    stopbits: int = 1
    timeout_s: float = 0.5
    local_echo: bool = False

    def probe_timeout_s(self, registers: int) -> float:
        """The time a reply of `registers` registers takes on the wire, plus PROBE_MARGIN_S (at most timeout_s)."""
        bits = 1 + 8 + (0 if self.parity == "N" else 1) + self.stopbits
        return min(self.timeout_s, round((5 + 2 * registers) * bits / self.baud + PROBE_MARGIN_S, 3))


class ModbusBus:
    """One RS485 port: opened lazily, reopened after an error, used by one exchange at a time."""

    def __init__(self, settings: BusSettings, serial_factory: Callable[[], serial.Serial] | None = None):
        self.settings = settings
        self.lock = threading.Lock()
        self._serial_factory = serial_factory or self._open_serial
        self._serial: serial.Serial | None = None
        self._instruments: dict[int, minimalmodbus.Instrument] = {}
        self.requests = 0

    @property
    def bus_id(self) -> str:
        return self.settings.port

    def _open_serial(self) -> serial.Serial:
        s = self.settings
        # exclusive: a second opener (a `payg scan`, another controller) is refused instead of mixing its
        # frames with this bus's on the wire
        return serial.Serial(s.port, baudrate=s.baud, bytesize=8, parity=s.parity, stopbits=s.stopbits,
                             timeout=s.timeout_s, write_timeout=s.timeout_s, exclusive=True)

    def read_registers(self, address: int, start: int, count: int, function_code: int,
                       timeout_s: float | None = None) -> list[int]:
        """One request and its reply, under the bus lock, waiting `timeout_s` (default: the port's) for the reply.
        Raises MeterUnavailable."""
        where = f"{self.settings.port} address {address}"
        timeout = self.settings.timeout_s if timeout_s is None else timeout_s
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
                if self._serial.timeout != timeout:
                    self._serial.timeout = timeout
                return instrument.read_registers(start, count, functioncode=function_code)
            except minimalmodbus.NoResponseError as exc:
                raise MeterTimeout(f"{where}: no response (timeout {timeout} s)") from exc
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
