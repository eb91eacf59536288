"""`payg scan` as an installer runs it (app.py in a process of its own) on an emulated RS485 bus: the TOML it prints
loads with the real config loader and names every meter; progress on stderr; the exit codes."""

from __future__ import annotations

import random
import tomllib
from pathlib import Path

import pytest

from payg.adapters import config as cfg
from payg.domain.settings import ModbusMeterConfig
from tests.support import ROOT, launcher
from tests.support.modbus_emulator import ModbusEmulator

SEED = 2029
METERS = ROOT / "config" / "meters"


@pytest.mark.slow
@pytest.mark.parametrize("seed", [SEED], ids=[f"seed={SEED}"])
def test_scan_prints_sockets_the_loader_accepts(tmp_path: Path, seed: int):
    rng = random.Random(seed)
    a, b, c, silent = rng.sample(range(1, 61), 4)  # the bus's first 60 addresses are scanned (--last)
    slaves = {a: "pzem004t", b: "sdm120", c: "sdm630"}
    with ModbusEmulator(slaves) as emu:
        port = emu.port
        emu.set_pzem(a, energy_wh=4321)
        # the emulated slaves answer within a millisecond, unless a loaded test machine starves their thread
        done = launcher.run("scan", "--port", emu.port, "--baud", "9600", "--timeout-ms", "150", "--last", "60",
                            cwd=tmp_path, timeout=120)
        assert emu.requests(silent) == 1  # the silent address was asked once, and only once
    assert done.returncode == 0, done.stderr
    assert "address 60/60" in done.stderr and "addresses 1-60" in done.stderr  # the progress, on stderr
    out = done.stdout
    assert "pzem004t" in out and "4321 Wh" in out
    data = tomllib.loads(out)
    assert [s["id"] for s in data["sockets"]] == [f"meter-{x}" for x in sorted(slaves)]
    assert out.rstrip().splitlines()[-1].startswith("# 3 meter(s) found on ")
    config = tmp_path / "payg.toml"
    config.write_text(f'[controller]\ndata_dir = "{tmp_path / "var"}"\n\n[ledger]\nbackend = "mock"\n\n{out}')
    loaded = cfg.load(config, profile_dirs=(METERS,))
    meters = {s.meter.address: s.meter for s in loaded.sockets if isinstance(s.meter, ModbusMeterConfig)}
    assert {addr: m.profile.name for addr, m in meters.items()} == slaves
    assert {(m.port, m.baud) for m in meters.values()} == {(port, 9600)}


def test_scan_of_an_empty_bus_says_so_and_exits_1(tmp_path: Path):
    with ModbusEmulator({3: "pzem004t"}) as emu:
        emu.fault(3, "silent")
        done = launcher.run("scan", "--port", emu.port, "--baud", "9600", "--timeout-ms", "5", cwd=tmp_path,
                            timeout=120)
    assert done.returncode == 1 and done.stdout == ""
    assert "payg: no meter found" in done.stderr


def test_scan_of_a_port_that_cannot_be_opened_names_it_and_exits_2(tmp_path: Path):
    done = launcher.run("scan", "--port", "/dev/ttyNOPE7", cwd=tmp_path)
    assert done.returncode == 2 and "/dev/ttyNOPE7" in done.stderr and "dialout" in done.stderr
    bad = launcher.run("scan", "--port", "/dev/ttyUSB0", "--baud", "fast", cwd=tmp_path)
    assert bad.returncode == 2 and "--baud" in bad.stderr
    backwards = launcher.run("scan", "--port", "/dev/ttyUSB0", "--first", "50", "--last", "10", cwd=tmp_path)
    assert backwards.returncode == 2 and "--first 50 is above --last 10" in backwards.stderr
    outside = launcher.run("scan", "--port", "/dev/ttyUSB0", "--last", "248", cwd=tmp_path)
    assert outside.returncode == 2 and "--last" in outside.stderr
