"""Decoding one block of Modbus registers with a meter profile, exactly.

Integers and float32 values become Fractions (a float32 is a binary fraction, so
Fraction(value) loses nothing), multiplied by the exact scale. Billing then
carries every fraction and never drifts.
"""

from __future__ import annotations

import math
import struct
from fractions import Fraction

from payg.domain.meter_profile import MeterProfile
from payg.errors import MeterUnavailable


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
    if f is None:  # the profile loader requires the field
        raise ValueError(f"meter profile {profile.name!r} has no energy_wh field")
    if f.encoding.startswith("f32"):
        return float32_step(float(energy_wh / f.scale)) * f.scale
    return f.scale
