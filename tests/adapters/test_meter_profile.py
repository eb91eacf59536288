"""Meter register maps as data: exact decoding, profile validation, the shipped profiles, Modbus config rules."""

from __future__ import annotations

import struct
import tomllib
from fractions import Fraction
from pathlib import Path

import pytest

from hardware.modbus.registers import decode, energy_resolution_wh, float32_step
from payg.adapters import config as config_module
from payg.adapters.config.profiles import load_profile, parse_profile
from payg.domain.meter_profile import ENCODINGS, MAX_REGISTERS
from payg.errors import ConfigError, MeterUnavailable
from tests.support import ROOT

METERS = ROOT / "config" / "meters"


def f32_high_first(value: float) -> list[int]:
    return list(struct.unpack(">HH", struct.pack(">f", value)))


def profile_data(energy: dict, *, count: int = 4, start: int = 0, function_code: int = 4, **extra) -> dict:
    """A small profile: power_w as u16 at `start`, energy_wh as given."""
    return {"model": "test meter", "function_code": function_code, "start": start, "count": count,
            "fields": {"power_w": {"offset": start, "encoding": "u16"}, "energy_wh": energy}, **extra}


def write_profile(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("encoding, regs, expected", [
    ("u16", [0xFFFF], 65535),
    ("u16", [0x0000], 0),
    ("s16", [0xFFFF], -1),
    ("s16", [0x8000], -32768),
    ("s16", [0x7FFF], 32767),
    ("u32_low_first", [0x5678, 0x1234], 0x12345678),
    ("u32_low_first", [0xE240, 0x0001], 123456),  # above 65,535: `<< 8` would give 57,920 + 256
    ("u32_high_first", [0x1234, 0x5678], 0x12345678),
    ("u32_high_first", [0xFFFF, 0xFFFF], 0xFFFF_FFFF),
    ("s32_low_first", [0xFFFE, 0xFFFF], -2),
    ("s32_low_first", [0x0000, 0x8000], -2**31),
    ("s32_high_first", [0xFFFF, 0xFFFE], -2),
    ("s32_high_first", [0x7FFF, 0xFFFF], 2**31 - 1),
    ("f32_high_first", [0x3FC0, 0x0000], Fraction(3, 2)),
    ("f32_high_first", f32_high_first(12345.678), Fraction(struct.unpack(">f", struct.pack(">f", 12345.678))[0])),
    ("f32_high_first", [0x0000, 0x0001], Fraction(1, 2**149)),  # the smallest subnormal, exactly
    ("f32_low_first", [0x0000, 0x3FC0], Fraction(3, 2)),
    ("f32_low_first", [0x0000, 0xC120], Fraction(-10)),
])
def test_each_encoding_decodes_exactly(encoding: str, regs: list[int], expected):
    profile = parse_profile("t", profile_data({"offset": 1, "encoding": encoding}, count=1 + len(regs)), "t.toml")

    values = decode(profile, [7, *regs])

    assert values["energy_wh"] == expected
    assert isinstance(values["energy_wh"], Fraction)
    assert values["power_w"] == 7


def test_every_encoding_is_covered_above():
    covered = {"u16", "s16", "u32_low_first", "u32_high_first", "s32_low_first", "s32_high_first", "f32_high_first",
               "f32_low_first"}
    assert covered == set(ENCODINGS)


def test_scales_are_exact_decimals_and_fields_sit_at_their_offset_from_the_block_start():
    profile = parse_profile("t", {
        "model": "m", "function_code": 3, "start": 0x100, "count": 6,
        "fields": {
            "voltage_v": {"offset": 0x100, "encoding": "u16", "scale": "0.1"},
            "power_w": {"offset": 0x101, "encoding": "s16", "scale": "0.1"},
            "energy_wh": {"offset": 0x102, "encoding": "u32_high_first", "scale": "10"},
            "current_a": {"offset": 0x104, "encoding": "u16", "scale": "0.001"},
            "power_factor": {"offset": 0x105, "encoding": "u16", "scale": 1},
        }}, "t.toml")

    values = decode(profile, [2301, 0xFFF6, 0x0001, 0x0000, 70, 1])

    assert values == {"voltage_v": Fraction(2301, 10), "power_w": Fraction(-1), "energy_wh": Fraction(655360),
                      "current_a": Fraction(7, 100), "power_factor": Fraction(1)}


def test_float32_kwh_becomes_wh_without_rounding():
    kwh = struct.unpack(">f", struct.pack(">f", 12345.678))[0]
    profile = load_profile("sdm120", [METERS])
    regs = [0] * profile.count
    regs[0x48:0x4A] = f32_high_first(kwh)

    energy = decode(profile, regs)["energy_wh"]

    assert energy == Fraction(kwh) * 1000
    assert energy == Fraction(790123375, 64)  # 12345.677734375 kWh: a binary fraction, kept whole
    assert energy_resolution_wh(profile, energy) == float32_step(kwh) * 1000 == Fraction(1000, 1024)


@pytest.mark.parametrize("kwh, step_kwh", [
    (1.0, Fraction(1, 2**23)),
    (12345.678, Fraction(1, 2**10)),  # ~0.98 Wh below 16,384 kWh
    (16384.0, Fraction(1, 2**9)),  # ~1.95 Wh from 16,384 kWh
    (100000.0, Fraction(1, 2**7)),  # ~7.8 Wh near 100,000 kWh
    (0.0, Fraction(1, 2**149)),
])
def test_float32_step_is_the_distance_to_the_next_float32(kwh: float, step_kwh: Fraction):
    assert float32_step(kwh) == step_kwh
    value = struct.unpack(">f", struct.pack(">f", kwh))[0]
    bits = struct.unpack(">I", struct.pack(">f", value))[0]
    following = struct.unpack(">f", struct.pack(">I", bits + 1))[0]
    assert Fraction(following) - Fraction(value) == step_kwh


@pytest.mark.parametrize("regs", [[0x7FC0, 0x0000], [0x7F80, 0x0000], [0xFF80, 0x0000], [0x7FFF, 0xFFFF]],
                         ids=["nan", "inf", "-inf", "nan-payload"])
def test_nan_and_infinity_are_an_unavailable_meter_not_a_number(regs: list[int]):
    profile = parse_profile("t", profile_data({"offset": 1, "encoding": "f32_high_first"}, count=3), "t.toml")

    with pytest.raises(MeterUnavailable, match="not a finite number"):
        decode(profile, [0, *regs])


@pytest.mark.parametrize("count", [0, 3, 9, 11])
def test_a_register_list_of_the_wrong_length_is_an_unavailable_meter(count: int):
    profile = load_profile("pzem004t", [METERS])

    with pytest.raises(MeterUnavailable, match="short reply|instead of 10"):
        decode(profile, [0] * count)


PZEM_TEXT = (METERS / "pzem004t.toml").read_text()


@pytest.mark.parametrize("edit, key, expected", [
    (lambda t: 'vendor = "x"\n' + t, "vendor", "no such key"),
    (lambda t: t.replace('encoding = "u32_low_first"\nscale = "0.1"', 'encoding = "u32_le"\nscale = "0.1"'),
     "fields.power_w.encoding", "one of u16"),
    (lambda t: t.replace("offset = 5", "offset = 9"), "fields.energy_wh.offset", "inside the block"),
    (lambda t: t.replace("[fields.energy_wh]\noffset = 5", "[fields.energy_kwh]\noffset = 5"),
     "fields.energy_kwh", "one of energy_wh"),
    (lambda t: t.replace("count = 10", "count = 126"), "count", f"1 to {MAX_REGISTERS} registers"),
    (lambda t: t.replace("count = 10", "count = 0"), "count", "registers"),
    (lambda t: t.replace("function_code = 4", "function_code = 5"), "function_code", "3 (holding registers) or 4"),
    (lambda t: t.replace('scale = "0.1"              # 0.1 V', 'scale = "ten"  #'), "fields.voltage_v.scale",
     "decimal string"),
    (lambda t: t.replace("start = 0x0000", 'start = "0"'), "start", "a int"),
    (lambda t: t.replace("model =", "modell ="), "modell", "no such key"),
])
def test_profile_errors_name_the_file_and_the_key(tmp_path: Path, edit, key: str, expected: str):
    text = edit(PZEM_TEXT)
    assert text != PZEM_TEXT
    path = write_profile(tmp_path / "broken.toml", text)

    with pytest.raises(ConfigError) as info:
        load_profile(path, [METERS])

    assert info.value.file == path
    assert info.value.key == key
    assert path in str(info.value) and key in str(info.value)
    assert expected in str(info.value)


def test_a_profile_without_energy_wh_is_refused_naming_the_missing_field(tmp_path: Path):
    start = PZEM_TEXT.index("[fields.energy_wh]")
    end = PZEM_TEXT.index("[fields.frequency_hz]")
    path = write_profile(tmp_path / "no-energy.toml", PZEM_TEXT[:start] + PZEM_TEXT[end:])

    with pytest.raises(ConfigError) as info:
        load_profile(path, [METERS])

    assert info.value.key == "fields.energy_wh"
    assert path in str(info.value) and "energy_wh" in str(info.value)


def test_a_32_bit_field_may_not_hang_over_the_end_of_the_block():
    data = profile_data({"offset": 3, "encoding": "u32_low_first"}, count=4)

    with pytest.raises(ConfigError) as info:
        parse_profile("t", data, "t.toml")

    assert info.value.key == "fields.energy_wh.offset"


def test_a_profile_file_with_a_toml_syntax_error_names_the_file(tmp_path: Path):
    path = write_profile(tmp_path / "syntax.toml", "model = \n")

    with pytest.raises(ConfigError) as info:
        load_profile(path, [METERS])

    assert info.value.file == path and info.value.key == "(syntax)"


@pytest.mark.parametrize("serial, key", [
    ('baud = "fast"', "serial.baud"),
    ('parity = "X"', "serial.parity"),
    ("stopbits = 7", "serial.stopbits"),
], ids=["baud", "parity", "stopbits"])
def test_a_profiles_serial_defaults_are_validated_too(tmp_path: Path, serial: str, key: str):
    """PRODUCT BUG: parse_profile checks only the keys of [serial], not their values.

    `payg meters read --profile this.toml` then dies with a ValueError traceback from pyserial
    (ModbusBus catches SerialException/OSError only), and payg.adapters.config reports the bad value
    against the socket's `meter.baud`/`meter.parity`, a key the user never wrote.
    """
    text = PZEM_TEXT.replace("[serial]\n", f"[serial]\n{serial}\n", 1)
    text = "\n".join(line for line in text.splitlines()
                     if not (line.startswith(serial.split()[0] + " ") and line != serial))
    path = write_profile(tmp_path / "bad-serial.toml", text)
    assert tomllib.loads(text)["serial"][serial.split()[0]] != 9600

    with pytest.raises(ConfigError) as info:
        load_profile(path, [METERS])

    assert info.value.file == path
    assert info.value.key.startswith(key.split(".")[0])
    assert key.split(".")[1] in str(info.value)


def test_an_unknown_profile_name_lists_the_known_ones():
    with pytest.raises(ConfigError) as info:
        load_profile("sdm999", [METERS])

    assert info.value.key == "profile"
    for known in ("pzem004t", "sdm120", "sdm630"):
        assert known in str(info.value)


@pytest.mark.parametrize("name, count, baud", [("pzem004t", 10, 9600), ("sdm120", 74, 2400), ("sdm630", 74, 9600)])
def test_shipped_profiles_load_and_are_read_in_one_block(name: str, count: int, baud: int):
    profile = load_profile(name, [METERS])

    assert profile.name == name and profile.source == str(METERS / f"{name}.toml")
    assert profile.function_code == 4
    assert (profile.start, profile.count) == (0, count)
    assert profile.count <= MAX_REGISTERS
    assert profile.serial.baud == baud and profile.serial.parity == "N" and profile.serial.stopbits == 1
    assert {f.name for f in profile.fields} == {"voltage_v", "current_a", "power_w", "energy_wh", "frequency_hz",
                                                "power_factor"}
    for f in profile.fields:
        assert profile.start <= f.offset and f.offset + f.width <= profile.start + profile.count, f
    assert (profile.request_bytes, profile.reply_bytes) == (8, 5 + 2 * count)


def test_pzem_profile_matches_the_datasheet():
    profile = load_profile("pzem004t", [METERS])
    spec = {f.name: (f.offset, f.encoding, f.scale) for f in profile.fields}

    assert spec == {
        "voltage_v": (0, "u16", Fraction(1, 10)),
        "current_a": (1, "u32_low_first", Fraction(1, 1000)),
        "power_w": (3, "u32_low_first", Fraction(1, 10)),
        "energy_wh": (5, "u32_low_first", Fraction(1)),
        "frequency_hz": (7, "u16", Fraction(1, 10)),
        "power_factor": (8, "u16", Fraction(1, 100)),
    }
    # The datasheet's example reply: 01 04 14 08 98 03 E8 00 00 ... -> 220.0 V, 1.000 A.
    regs = [0x0898, 0x03E8, 0x0000, 0x0898, 0x0000, 0x0000, 0x0000, 0x01F4, 0x0064, 0x0000]
    values = decode(profile, regs)
    assert values["voltage_v"] == 220 and values["current_a"] == 1 and values["power_w"] == 220
    assert values["frequency_hz"] == 50 and values["power_factor"] == 1


@pytest.mark.parametrize("name", ["sdm120", "sdm630"])
def test_sdm_profiles_bill_from_total_import_at_0x48_not_total_at_0x156(name: str):
    profile = load_profile(name, [METERS])
    energy = profile.field("energy_wh")

    assert energy.offset == 0x48 and energy.offset != 0x156
    assert energy.encoding == "f32_high_first"
    assert energy.scale == 1000
    assert all(f.encoding == "f32_high_first" for f in profile.fields)


def test_sdm630_reads_system_totals_and_sdm120_its_single_phase():
    sdm120 = {f.name: f.offset for f in load_profile("sdm120", [METERS]).fields}
    sdm630 = {f.name: f.offset for f in load_profile("sdm630", [METERS]).fields}

    assert sdm120 == {"voltage_v": 0x00, "current_a": 0x06, "power_w": 0x0C, "power_factor": 0x1E,
                      "frequency_hz": 0x46, "energy_wh": 0x48}
    assert sdm630 == {"voltage_v": 0x00, "current_a": 0x30, "power_w": 0x34, "power_factor": 0x3E,
                      "frequency_hz": 0x46, "energy_wh": 0x48}


def config_data(tmp_path: Path, *meters: dict) -> dict:
    return {
        "controller": {"data_dir": str(tmp_path / "state")},
        "ledger": {"backend": "mock"},
        "sockets": [{"id": f"s{i}", "meter": m, "relay": {"kind": "simulated"}} for i, m in enumerate(meters)],
    }


def parse(data: dict):
    return config_module.parse(data, "payg.toml", profile_dirs=(METERS,))


def modbus(**kw) -> dict:
    return {"kind": "modbus", "profile": "pzem004t", "port": "/dev/ttyUSB0", "address": 1, **kw}


def test_modbus_sockets_parse_with_the_profiles_serial_defaults(tmp_path: Path):
    config = parse(config_data(tmp_path, modbus(address=1, timeout_s=0.3), modbus(address=2, timeout_s=0.3),
                               modbus(profile="sdm120", port="/dev/ttyUSB1", address=1, baud=9600),
                               modbus(profile="sdm630", port="/dev/ttyUSB2", address=1)))

    a, b, c, d = (s.meter for s in config.sockets)
    assert a.profile.name == "pzem004t" and (a.baud, a.parity, a.stopbits, a.timeout_s) == (9600, "N", 1, 0.3)
    assert a.bus_settings == b.bus_settings and not a.local_echo
    assert c.profile.name == "sdm120" and (c.baud, c.parity, c.stopbits) == (9600, "N", 1)
    assert d.profile.name == "sdm630" and (d.baud, d.parity, d.stopbits) == (9600, "N", 1) and d.timeout_s > 0


@pytest.mark.parametrize("second, what", [
    (modbus(address=2, baud=19200), "baud"),
    (modbus(address=2, parity="E"), "parity"),
    (modbus(address=2, timeout_s=0.2), "timeout_s"),
    (modbus(address=2, local_echo=True), "local_echo"),
])
def test_two_sockets_on_one_port_with_different_serial_settings_are_refused(tmp_path: Path, second: dict,
                                                                              what: str):
    with pytest.raises(ConfigError) as info:
        parse(config_data(tmp_path, modbus(address=1), second))

    assert info.value.key == "sockets[1].meter"
    assert "payg.toml" in str(info.value) and "sockets[0]" in str(info.value) and what in str(info.value)


def test_the_same_port_and_address_twice_is_refused(tmp_path: Path):
    with pytest.raises(ConfigError) as info:
        parse(config_data(tmp_path, modbus(address=7), modbus(address=7, profile="sdm630")))

    assert info.value.key == "sockets[1].meter.address"
    assert "/dev/ttyUSB0" in str(info.value)


def test_the_same_address_on_two_ports_is_fine(tmp_path: Path):
    config = parse(config_data(tmp_path, modbus(address=7), modbus(address=7, port="/dev/ttyUSB1")))

    assert [s.meter.port for s in config.sockets] == ["/dev/ttyUSB0", "/dev/ttyUSB1"]


def test_an_unknown_profile_is_refused_naming_the_key_and_listing_the_known_ones(tmp_path: Path):
    with pytest.raises(ConfigError) as info:
        parse(config_data(tmp_path, modbus(profile="pzem017")))

    assert info.value.key == "sockets[0].meter.profile"
    message = str(info.value)
    assert "payg.toml" in message and "pzem017" in message
    assert all(known in message for known in ("pzem004t", "sdm120", "sdm630"))


@pytest.mark.parametrize("meter, key", [
    (modbus(address=0), "sockets[0].meter.address"),
    (modbus(address=248), "sockets[0].meter.address"),
    (modbus(port=""), "sockets[0].meter.port"),
    (modbus(timeout_s=0), "sockets[0].meter.timeout_s"),
    (modbus(stopbits=3), "sockets[0].meter.stopbits"),
    (modbus(parity="M"), "sockets[0].meter.parity"),
    (modbus(register=5), "sockets[0].meter.register"),
])
def test_bad_modbus_meter_keys_are_named(tmp_path: Path, meter: dict, key: str):
    with pytest.raises(ConfigError) as info:
        parse(config_data(tmp_path, meter))

    assert info.value.key == key
