"""The Debian package's own files (packaging/), checked without building it; `make deb-test` installs the
package in a Debian root and runs it."""

from __future__ import annotations

import re
import subprocess

from payg.adapters.config import load
from payg.domain.settings import SimulatedMeterConfig, SimulatedRelayConfig
from payg.wiring.runtime import profile_dirs
from tests.support import ROOT

PACKAGING = ROOT / "packaging"


def test_the_installed_configuration_is_safe_until_configured():
    config = load(PACKAGING / "payg.toml", profile_dirs())

    assert str(config.controller.data_dir) == "/var/lib/payg"  # the unit's only writable path
    assert config.web.host == "127.0.0.1"
    assert config.ledger.backend == "mock"
    assert config.sockets
    for socket in config.sockets:  # no GPIO pin driven, no serial port opened
        assert isinstance(socket.meter, SimulatedMeterConfig), socket.id
        assert isinstance(socket.relay, SimulatedRelayConfig), socket.id


def test_the_smoke_test_moves_the_web_port_and_nothing_else():
    text = (PACKAGING / "payg.toml").read_text()
    script = ("import sys; sys.path.insert(0, sys.argv[1]); import smoke; "
              "sys.stdout.write(smoke.with_port(sys.stdin.read(), 5999))")
    moved = subprocess.run(["python3", "-c", script, str(PACKAGING)], input=text, capture_output=True, text=True,
                           check=True).stdout

    changed = [(a, b) for a, b in zip(text.splitlines(), moved.splitlines(), strict=True) if a != b]
    assert [b for _, b in changed] == ["port = 5999"]
    assert re.search(r"(?m)^port = 5000$", text)


def test_the_maintainer_scripts_are_posix_shell():
    for name in ("postinst", "prerm", "postrm"):
        script = PACKAGING / "debian" / name
        assert script.read_text().startswith("#!/bin/sh\n"), name
        subprocess.run(["sh", "-n", str(script)], check=True)
