"""The [[sockets]] tables: meter, relay and trade settings of each socket."""

from __future__ import annotations

import re
from pathlib import Path

import payg.adapters.config.protections as protection_tables
from payg.adapters.config.profiles import load_profile
from payg.adapters.config.tables import Table, fill, read_key, units, url
from payg.domain.meter_profile import default_timeout_s
from payg.domain.relay_settings import HEADER_PINS
from payg.domain.settings import (
    BuyConfig,
    ConstantLoad,
    GpioRelayConfig,
    MeterConfig,
    ModbusMeterConfig,
    RandomLoad,
    RelayConfig,
    ScheduleLoad,
    SellConfig,
    SimulatedMeterConfig,
    SimulatedRelayConfig,
    SocketConfig,
)
from payg.errors import ConfigError

SOCKET_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")


def _load(t: Table) -> ConstantLoad | ScheduleLoad | RandomLoad:
    given = [k for k in ("load_w", "schedule", "random") if t.has(k)]
    if len(given) != 1:
        raise t.error("load_w", "exactly one of load_w, schedule or random", has_got=False)
    if given[0] == "load_w":
        return fill(t, ConstantLoad)
    if given[0] == "schedule":
        steps_raw = t.raw("schedule")
        if not isinstance(steps_raw, list) or not steps_raw:
            raise t.error("schedule", "a non-empty array of { at_s = ..., load_w = ... }", steps_raw)
        steps = []
        for i, item in enumerate(steps_raw):
            step = Table(t.file, f"{t.key('schedule')}[{i}]", item)
            steps.append((step.number("at_s", minimum=0), read_key(step, ConstantLoad, "load_w")))
            step.finish()
        repeat_s = read_key(t, ScheduleLoad, "repeat_s")
        steps.sort()
        if steps[0][0] != 0:
            raise t.error("schedule", "a step with at_s = 0 (the load at the start of each cycle)", steps_raw)
        if steps[-1][0] >= repeat_s:
            raise t.error("repeat_s", "a cycle longer than the last step's at_s", repeat_s)
        return ScheduleLoad(tuple(steps), repeat_s)
    r = t.table("random")
    load = fill(r, RandomLoad)
    if load.max_w < load.min_w:
        raise r.error("max_w", f"a number >= min_w ({load.min_w})", load.max_w)
    r.finish()
    return load


def _meter(t: Table, profile_dirs: tuple[Path, ...]) -> MeterConfig:
    kind = t.string("kind", choices=("simulated", "modbus"))
    if kind == "simulated":
        simulated = fill(t, SimulatedMeterConfig, load=_load(t))
        t.finish()
        return simulated
    profile_name = t.string("profile")
    try:
        profile = load_profile(profile_name, list(profile_dirs))
    except ConfigError as exc:
        if exc.key == "profile":  # not found: name the config file and key, list the known ones
            raise t.error("profile", exc.expected, profile_name) from None
        raise
    port = t.string("port")
    if not port:
        raise t.error("port", "a serial port such as /dev/ttyUSB0", port)
    address = read_key(t, ModbusMeterConfig, "address")
    baud = read_key(t, ModbusMeterConfig, "baud", default=profile.serial.baud)
    parity = read_key(t, ModbusMeterConfig, "parity", default=profile.serial.parity)
    stopbits = read_key(t, ModbusMeterConfig, "stopbits", default=profile.serial.stopbits)
    reply_s = default_timeout_s(profile, baud, parity, stopbits, margin_s=0)
    timeout_s = read_key(t, ModbusMeterConfig, "timeout_s", default=default_timeout_s(profile, baud, parity, stopbits))
    if timeout_s <= reply_s:
        raise t.error("timeout_s", f"more than the {reply_s:.3f} s the reply takes on the wire at {baud} baud",
                      timeout_s)
    meter = ModbusMeterConfig(profile=profile, port=port, address=address, baud=baud, parity=parity,
                              stopbits=stopbits, timeout_s=timeout_s,
                              local_echo=read_key(t, ModbusMeterConfig, "local_echo"))
    t.finish()
    return meter


def _relay(t: Table) -> RelayConfig:
    kind = t.string("kind", choices=("simulated", "gpio"))
    if kind == "simulated":
        t.finish()
        return SimulatedRelayConfig()
    relay = fill(t, GpioRelayConfig)
    if relay.chip is not None:
        if relay.driver != "gpiod":
            raise t.error("chip", 'no chip with driver = "rpi-gpio" (it always drives the Raspberry Pi\'s header); '
                          'a chip is for driver = "gpiod"', relay.chip)
        if not Path(relay.chip).is_absolute():
            raise t.error("chip", 'a GPIO chip\'s device path such as "/dev/gpiochip0"', relay.chip)
    elif relay.pin >= HEADER_PINS:
        raise t.error("pin", f"a BCM GPIO number from 0 to {HEADER_PINS - 1} (the Raspberry Pi's 40-pin header); a "
                      'line above that needs chip = "/dev/gpiochipN"', relay.pin)
    t.finish()
    return relay


def socket(t: Table, profile_dirs: tuple[Path, ...]) -> SocketConfig:
    socket_id = t.string("id")
    if not SOCKET_ID.match(socket_id):
        raise t.error("id", "1-32 characters of a-z, 0-9, '-' or '_', starting with a letter or digit", socket_id)
    name = read_key(t, SocketConfig, "name", default=socket_id)
    max_power_w = read_key(t, SocketConfig, "max_power_w")
    account_index = read_key(t, SocketConfig, "account_index")
    meter = _meter(t.table("meter"), profile_dirs)
    relay = _relay(t.table("relay"))
    sell, buy = _socket_trade(t.table("trade")) if t.has("trade") else (None, None)
    if isinstance(meter, SimulatedMeterConfig) and isinstance(meter.load, ConstantLoad) \
            and meter.load.load_w > max_power_w:
        raise t.error("meter.load_w", f"at most max_power_w ({max_power_w})", meter.load.load_w)
    friendly = read_key(t, SocketConfig, "friendly_credit")
    own = protection_tables.socket(t.table("protections")) if t.has("protections") else ()
    tariff = read_key(t, SocketConfig, "tariff")
    t.finish()
    return SocketConfig(socket_id, name, meter, relay, max_power_w, account_index, sell, buy, friendly, own, tariff)


def _socket_trade(t: Table) -> tuple[SellConfig | None, BuyConfig | None]:
    if t.has("sell_price_per_wh"):
        if t.has("peer"):
            raise t.error("peer", "no buying keys on a socket that sells (sell_price_per_wh is set)", t.raw("peer"))
        sell = SellConfig(units(t, "sell_price_per_wh", ...))
        t.finish()
        return sell, None
    if not t.has("peer"):
        raise t.error("sell_price_per_wh", "either sell_price_per_wh (to supply) or peer, supplier, below_tokens,"
                      " escrow_wh and max_price_per_wh (to buy)", has_got=False)
    buy = fill(t, BuyConfig, peer=url(t, "peer", "http://192.168.1.20:5000"),
               max_price_per_wh=units(t, "max_price_per_wh", ...))
    t.finish()
    return None, buy
