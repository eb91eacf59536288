"""`payg scan` and the landlord's setup page: the Modbus scanner with every shipped profile, the serial ports
there are, and the writer of the configuration file. Composition layer: the entry points may not import the
hardware or the config adapters, so they are handed these."""

from __future__ import annotations

from pathlib import Path

from payg.adapters.clocks import SystemClock
from payg.domain.meter_profile import MeterProfile
from payg.domain.settings import Config
from payg.wiring.runtime import profile_dirs


def shipped_profiles() -> list[MeterProfile]:
    from payg.adapters.config.profiles import load_profile

    names = sorted({p.stem for d in profile_dirs() if d.is_dir() for p in d.glob("*.toml")})
    return [load_profile(name, list(profile_dirs())) for name in names]


def meter_scanner(local_echo: bool = False):
    from hardware.modbus.scan import ModbusScanner

    return ModbusScanner(shipped_profiles(), local_echo=local_echo)


def serial_ports() -> list[str]:
    """The serial ports pyserial finds on this machine."""
    from serial.tools import list_ports

    return sorted(p.device for p in list_ports.comports())


def config_writer(path: Path):
    from payg.adapters import config as config_module
    from payg.adapters.config.writer import ConfigFileWriter

    return ConfigFileWriter(path, lambda p: config_module.load(p, profile_dirs()), SystemClock().now)


def setup_services(config: Config):
    """The setup page's parts, or None when the configuration is not a file this process may rewrite."""
    from payg.web.setup import SetupServices

    path = Path(config.path)
    if not path.is_file():
        return None
    writer = config_writer(path)

    def add_sockets(entries: str) -> tuple[Path, Config]:
        written = writer.add_sockets(entries)
        return written.backup, written.config

    return SetupServices(config, meter_scanner(), serial_ports, add_sockets)
