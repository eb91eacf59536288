"""Meters and relays: simulated ones here, real ones (Modbus, GPIO) beside them."""
