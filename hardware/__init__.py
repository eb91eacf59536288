"""Meters and relays: simulated ones, Modbus meters (hardware/modbus/), GPIO relays, and the bus pool.

`build` makes the configured sockets' relays and meters, one ModbusBus per serial port, and the
BusPool that reads them every tick; the composition root (app.py) calls it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from payg.domain.settings import Config, GpioRelayConfig, ModbusMeterConfig, SocketConfig
from payg.ports import Clock, EnergyMeter, MeterReader, Relay

if TYPE_CHECKING:
    from hardware.gpio_relay import GpioRelay
    from hardware.gpiod_relay import GpiodRelay
    from hardware.modbus import ModbusBus

Made = Callable[[str, Callable[[], None]], None]  # told of each thing made that must be closed: (its name, close)

PROBE_EVERY_AT_MOST_S = 30.0  # a silent meter is asked again at least this often (hardware/bus_pool.py)


@dataclass
class Hardware:
    relays: dict[str, Relay]
    meters: dict[str, EnergyMeter]
    reader: MeterReader


def build(config: Config, clock: Clock, made: Made) -> Hardware:
    """The configured sockets' hardware; `made(name, close)` is told of everything that must be closed."""
    from hardware.bus_pool import BusPool

    relays: dict[str, Relay] = {}
    meters: dict[str, EnergyMeter] = {}
    buses: dict[str, ModbusBus] = {}
    on_bus: dict[str, list[str]] = {}
    for sc in config.sockets:
        relay = relays[sc.id] = _relay(sc, clock, made)
        meters[sc.id] = _meter(sc, relay, clock, config.controller.data_dir, buses, made)
        if isinstance(sc.meter, ModbusMeterConfig):
            on_bus.setdefault(sc.meter.bus_key, []).append(sc.id)
    poll_s = config.controller.poll_interval_s
    reader = BusPool(meters, on_bus, 0.8 * poll_s, max_probe_every=max(2, round(PROBE_EVERY_AT_MOST_S / poll_s)))
    made("bus pool", reader.close)
    return Hardware(relays, meters, reader)


def _relay(sc: SocketConfig, clock: Clock, made: Made) -> Relay:
    if isinstance(sc.relay, GpioRelayConfig):
        relay = make_gpio_relay(sc.relay)
        made(f"relay of {sc.id}", relay.close)  # the pin is left driven at its off level
        return relay
    from hardware.simulated import SimulatedRelay

    return SimulatedRelay(clock)


def make_gpio_relay(rc: GpioRelayConfig) -> GpiodRelay | GpioRelay:
    """The relay on a GPIO pin, by its driver, claimed at its off level. Raises RelayError or ValueError."""
    if rc.driver == "rpi-gpio":
        from hardware.gpio_relay import GpioRelay

        return GpioRelay(rc.pin, rc.active_low)
    from hardware.gpiod_relay import GpiodRelay

    return GpiodRelay(rc.pin, rc.active_low, rc.chip)


def gpio_relay_off(rc: GpioRelayConfig) -> None:
    """`payg relay off`: the pin claimed at its off level and left driven there. Raises RelayError or ValueError."""
    if rc.driver == "rpi-gpio":
        from hardware.gpio_relay import force_off

        force_off(rc.pin, rc.active_low)
        return
    from hardware.gpiod_relay import force_off as hold_off

    hold_off(rc.pin, rc.active_low, rc.chip)


def _meter(sc: SocketConfig, relay: Relay, clock: Clock, data_dir: Path, buses: dict[str, ModbusBus],
           made: Made) -> EnergyMeter:
    mc = sc.meter
    if isinstance(mc, ModbusMeterConfig):
        from hardware.modbus import BusSettings, ModbusBus, ModbusMeter

        bus = buses.get(mc.bus_key)
        if bus is None:
            bus = buses[mc.bus_key] = ModbusBus(BusSettings(mc.port, mc.baud, mc.parity, mc.stopbits, mc.timeout_s,
                                                            mc.local_echo))
            made(f"serial port {mc.port}", bus.close)
        return ModbusMeter(bus, mc.address, mc.profile, clock)
    from hardware.simulated import LoadModel, SimulatedMeter

    state_path = None
    if mc.persist:
        (data_dir / "simulated").mkdir(exist_ok=True, mode=0o700)
        state_path = data_dir / "simulated" / f"{sc.id}.json"
    return SimulatedMeter(clock, LoadModel(mc.load), relay, mc.voltage_v, state_path)
