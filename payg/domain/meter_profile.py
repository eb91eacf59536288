"""Meter profiles: a meter's register map as data, and the wire time of one reading.

A profile (loaded from a TOML file by payg/adapters/config/profiles.py) names the
Modbus function code, the one contiguous block read per poll (start, count), and
per field its register offset, encoding and scale. hardware/modbus/registers.py
decodes a block with it; the configuration checks timeouts and poll intervals
against the wire time computed here.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

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
class IdentifyRead:
    """What tells a meter from others that answer its block read alike (`payg scan`): these registers are read and
    are not all zero."""

    function_code: int
    start: int
    count: int


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
    identify: IdentifyRead | None = None

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
