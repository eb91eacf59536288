"""Energy meters over Modbus RTU: the bus (one serial port), the meter, and register decoding."""

from hardware.modbus.bus import BusSettings, ModbusBus
from hardware.modbus.meter import ModbusMeter, ModbusProbe

__all__ = ["BusSettings", "ModbusBus", "ModbusMeter", "ModbusProbe"]
