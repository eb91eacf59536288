"""Meter register maps as data: load a profile (TOML) and decode one block of registers.

A profile names the Modbus function code, the one contiguous block read per
poll (start, count), and per field its register offset, encoding and scale.
Decoding is exact: integers and float32 values become Fractions (a float32 is
a binary fraction, so Fraction(value) loses nothing), multiplied by the exact
scale. Billing then carries every fraction and never drifts.
"""

from __future__ import annotations

import math
import struct
import tomllib
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from pathlib import Path

from payg.errors import ConfigError, MeterUnavailable

# encoding -> number of registers
ENCODINGS = {
    "u16": 1,
    "s16": 1,
    "u32_low_first": 2,
    "u32_high_first": 2,
    "s32_low_first": 2,
    "s32_high_first": 2,
    "f32_high_first": 2,
    "f32_low_first": 2,
}
REQUIRED_FIELDS = ("energy_wh", "power_w")
KNOWN_FIELDS = ("energy_wh", "power_w", "voltage_v", "current_a", "frequency_hz", "power_factor")
MAX_REGISTERS = 125  # Modbus limit for one read


@dataclass(frozen=True)
class FieldSpec:
    name: str
    offset: int
    encoding: str
    scale: Fraction
    unit: str = ""

    @property
    def width(self) -> int:
        return ENCODINGS[self.encoding]


@dataclass(frozen=True)
class SerialDefaults:
    baud: int = 9600
    parity: str = "N"
    stopbits: int = 1


@dataclass(frozen=True)
class MeterProfile:
    name: str
    model: str
    function_code: int
    start: int
    count: int
    fields: tuple[FieldSpec, ...]
    serial: SerialDefaults
    source: str = ""

    def field(self, name: str) -> FieldSpec | None:
        return next((f for f in self.fields if f.name == name), None)

    @property
    def request_bytes(self) -> int:
        return 8  # address, function, start (2), count (2), CRC (2)

    @property
    def reply_bytes(self) -> int:
        return 5 + 2 * self.count  # address, function, byte count, data, CRC (2)


def bits_per_character(parity: str, stopbits: int) -> int:
    return 1 + 8 + (0 if parity == "N" else 1) + stopbits


def silence_s(baud: int, bits: int) -> float:
    """Modbus RTU's inter-frame silence: 3.5 characters, fixed at 1.75 ms above 19200 baud."""
    return 3.5 * bits / baud if baud <= 19200 else 0.00175


def reading_time_s(profile: MeterProfile, baud: int, parity: str, stopbits: int) -> float:
    """Wire time of one full reading: request, silence, reply, silence."""
    bits = bits_per_character(parity, stopbits)
    return (profile.request_bytes + profile.reply_bytes) * bits / baud + 2 * silence_s(baud, bits)


def default_timeout_s(profile: MeterProfile, baud: int, parity: str, stopbits: int, margin_s: float = 0.5) -> float:
    """Long enough for the whole reply to arrive, plus a margin for the meter to answer."""
    return round(margin_s + profile.reply_bytes * bits_per_character(parity, stopbits) / baud, 3)


def _raw(encoding: str, regs: list[int]) -> Fraction:
    if encoding == "u16":
        return Fraction(regs[0])
    if encoding == "s16":
        return Fraction(regs[0] - 0x10000 if regs[0] & 0x8000 else regs[0])
    high, low = (regs[1], regs[0]) if encoding.endswith("low_first") else (regs[0], regs[1])
    word = (high << 16) | low
    if encoding.startswith("u32"):
        return Fraction(word)
    if encoding.startswith("s32"):
        return Fraction(word - 0x1_0000_0000 if word & 0x8000_0000 else word)
    value = struct.unpack(">f", struct.pack(">I", word))[0]
    if not math.isfinite(value):
        raise MeterUnavailable(f"register value is not a finite number ({value})")
    return Fraction(value)


def float32_step(value: float) -> Fraction:
    """The distance from a float32 value to the next one: a float32 counter's resolution there."""
    if value == 0:
        return Fraction(1, 2**149)
    exponent = math.frexp(abs(value))[1] - 1  # value = m * 2**exponent, 1 <= m < 2
    return Fraction(2) ** (max(exponent, -126) - 23)


def decode(profile: MeterProfile, registers: list[int]) -> dict[str, Fraction]:
    """Every field of the profile, exact, from one block read of `profile.count` registers."""
    if len(registers) != profile.count:
        raise MeterUnavailable(f"short reply: {len(registers)} registers instead of {profile.count}")
    values = {}
    for f in profile.fields:
        values[f.name] = _raw(f.encoding, registers[f.offset - profile.start:f.offset - profile.start + f.width]) \
            * f.scale
    return values


def energy_resolution_wh(profile: MeterProfile, energy_wh: Fraction) -> Fraction:
    f = profile.field("energy_wh")
    if f.encoding.startswith("f32"):
        return float32_step(float(energy_wh / f.scale)) * f.scale
    return f.scale


def _exact(value: object, where: str, key: str) -> Fraction:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ConfigError(where, key, 'an integer or a decimal string such as "0.1"', value, has_got=True)
    try:
        return Fraction(Decimal(value)) if isinstance(value, str) else Fraction(value)
    except (InvalidOperation, ValueError):
        raise ConfigError(where, key, 'an integer or a decimal string such as "0.1"', value, has_got=True) from None


def parse_profile(name: str, data: dict, where: str) -> MeterProfile:
    def need(table: dict, key: str, kind: type, prefix: str = ""):
        if key not in table:
            raise ConfigError(where, prefix + key, f"a {kind.__name__}")
        value = table[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ConfigError(where, prefix + key, f"a {kind.__name__}", value, has_got=True)
        return value

    unknown = set(data) - {"model", "function_code", "start", "count", "serial", "fields"}
    if unknown:
        raise ConfigError(where, sorted(unknown)[0], "no such key in a meter profile")
    model = need(data, "model", str)
    function_code = need(data, "function_code", int)
    if function_code not in (3, 4):
        raise ConfigError(where, "function_code", "3 (holding registers) or 4 (input registers)", function_code,
                          has_got=True)
    start, count = need(data, "start", int), need(data, "count", int)
    if not 0 <= start <= 0xFFFF or not 1 <= count <= MAX_REGISTERS or start + count > 0x10000:
        raise ConfigError(where, "count", f"a block of 1 to {MAX_REGISTERS} registers within 0x0000-0xFFFF",
                          (start, count), has_got=True)
    serial_table = data.get("serial", {})
    if not isinstance(serial_table, dict) or set(serial_table) - {"baud", "parity", "stopbits"}:
        raise ConfigError(where, "serial", "a table with baud, parity, stopbits")
    serial = SerialDefaults(serial_table.get("baud", 9600), serial_table.get("parity", "N"),
                            serial_table.get("stopbits", 1))
    if not isinstance(serial.baud, int) or isinstance(serial.baud, bool) or not 300 <= serial.baud <= 921600:
        raise ConfigError(where, "serial.baud", "an integer from 300 to 921600", serial.baud, has_got=True)
    if serial.parity not in ("N", "E", "O"):
        raise ConfigError(where, "serial.parity", "'N', 'E' or 'O'", serial.parity, has_got=True)
    if serial.stopbits not in (1, 2) or isinstance(serial.stopbits, bool):
        raise ConfigError(where, "serial.stopbits", "1 or 2", serial.stopbits, has_got=True)
    fields_table = need(data, "fields", dict)
    fields = []
    for fname, spec in fields_table.items():
        prefix = f"fields.{fname}."
        if fname not in KNOWN_FIELDS:
            raise ConfigError(where, f"fields.{fname}", f"one of {', '.join(KNOWN_FIELDS)}")
        if not isinstance(spec, dict) or set(spec) - {"offset", "encoding", "scale", "unit"}:
            raise ConfigError(where, f"fields.{fname}", "a table with offset, encoding, scale, unit")
        offset = need(spec, "offset", int, prefix)
        encoding = need(spec, "encoding", str, prefix)
        if encoding not in ENCODINGS:
            raise ConfigError(where, prefix + "encoding", f"one of {', '.join(ENCODINGS)}", encoding, has_got=True)
        if not start <= offset <= start + count - ENCODINGS[encoding]:
            raise ConfigError(where, prefix + "offset", f"a register inside the block {start:#06x}-"
                              f"{start + count - 1:#06x}", offset, has_got=True)
        scale = _exact(spec.get("scale", 1), where, prefix + "scale")
        fields.append(FieldSpec(fname, offset, encoding, scale, str(spec.get("unit", ""))))
    for required in REQUIRED_FIELDS:
        if required not in fields_table:
            raise ConfigError(where, f"fields.{required}", "a field (every profile needs energy_wh and power_w)")
    return MeterProfile(name, model, function_code, start, count, tuple(fields), serial, where)


def load_profile(name_or_path: str, search_dirs: list[Path]) -> MeterProfile:
    """A profile by name (searched as NAME.toml in search_dirs) or by path to a .toml file."""
    candidates = [Path(name_or_path)] if name_or_path.endswith(".toml") else \
        [d / f"{name_or_path}.toml" for d in search_dirs]
    for path in candidates:
        if path.is_file():
            try:
                with open(path, "rb") as fh:
                    data = tomllib.load(fh)
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(str(path), "(syntax)", f"valid TOML ({exc})") from None
            return parse_profile(path.stem, data, str(path))
    known = sorted({p.stem for d in search_dirs if d.is_dir() for p in d.glob("*.toml")})
    raise ConfigError(name_or_path, "profile", f"a meter profile file (known: {', '.join(known) or 'none'})")
