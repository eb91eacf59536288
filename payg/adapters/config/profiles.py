"""Meter profiles from TOML files: parsed and checked into payg.domain.meter_profile.MeterProfile."""

from __future__ import annotations

import tomllib
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from pathlib import Path

from payg.domain.meter_profile import (
    ENCODINGS,
    KNOWN_FIELDS,
    MAX_REGISTERS,
    REQUIRED_FIELDS,
    FieldSpec,
    IdentifyRead,
    MeterProfile,
    SerialDefaults,
)
from payg.errors import ConfigError


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

    unknown = set(data) - {"model", "function_code", "start", "count", "serial", "fields", "identify"}
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
    return MeterProfile(name, model, function_code, start, count, tuple(fields), serial, where,
                        _identify(data.get("identify"), where))


def _identify(table: object, where: str) -> IdentifyRead | None:
    if table is None:
        return None
    expected = "a table with function_code (3 or 4), start and count: registers that are not all zero on this meter"
    if not isinstance(table, dict) or set(table) != {"function_code", "start", "count"} or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in table.values()):
        raise ConfigError(where, "identify", expected)
    read = IdentifyRead(table["function_code"], table["start"], table["count"])
    if read.function_code not in (3, 4) or not 0 <= read.start <= 0xFFFF or not 1 <= read.count <= MAX_REGISTERS \
            or read.start + read.count > 0x10000:
        raise ConfigError(where, "identify", expected, (read.function_code, read.start, read.count), has_got=True)
    return read


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
