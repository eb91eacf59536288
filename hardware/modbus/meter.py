"""ModbusMeter: one energy meter on a ModbusBus, read with its profile's register map."""

from __future__ import annotations

from fractions import Fraction

from hardware.modbus.bus import BusSettings, ModbusBus
from hardware.modbus.registers import decode, energy_resolution_wh
from payg.domain.billing import MeterReading
from payg.domain.meter_profile import MeterProfile
from payg.errors import MeterUnavailable
from payg.ports import Clock


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

    def read_fields(self, timeout_s: float | None = None) -> dict[str, Fraction]:
        p = self.profile
        registers = self.bus.read_registers(self.address, p.start, p.count, p.function_code, timeout_s)
        return decode(p, registers)

    def read(self) -> MeterReading:
        return self._reading(self.read_fields())

    def probe(self) -> MeterReading:
        """A read with the bus's short probe timeout, for a meter that has been silent."""
        return self._reading(self.read_fields(self.bus.settings.probe_timeout_s(self.profile.count)))

    def _reading(self, values: dict[str, Fraction]) -> MeterReading:
        at = self.clock.now()
        energy = values["energy_wh"]
        if energy < 0:
            raise MeterUnavailable(f"{self.bus.settings.port} address {self.address}: negative energy counter")
        power = float(values["power_w"])
        voltage = float(values.get("voltage_v", 0))
        current = float(values["current_a"]) if "current_a" in values else (power / voltage if voltage else 0.0)
        return MeterReading(energy_wh=energy, power_w=power, voltage_v=voltage, current_a=current, at=at,
                            resolution_wh=energy_resolution_wh(self.profile, energy))


class ModbusProbe:
    """A port for the installer's commands: one read of the meter at any address."""

    def __init__(self, settings: BusSettings, profile: MeterProfile, clock: Clock):
        self.bus = ModbusBus(settings)
        self.profile = profile
        self.clock = clock

    def read_fields(self, address: int) -> dict[str, Fraction]:
        return ModbusMeter(self.bus, address, self.profile, self.clock).read_fields()

    def close(self) -> None:
        self.bus.close()
