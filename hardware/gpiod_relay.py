"""A relay (or the coil driver of a contactor) on one GPIO line, through the kernel's GPIO character device.

The `gpiod` package is libgpiod v2's own Python binding. It is the default driver (`driver = "gpiod"`):

- It works on every Raspberry Pi, 1 to 5, and on any other Linux board: the character device
  (/dev/gpiochipN) is the kernel's supported GPIO interface. RPi.GPIO writes the SoC's registers
  through /dev/gpiomem and fails on a Pi 5, whose header is on the RP1 chip.
- It installs without a C compiler on 64-bit Raspberry Pi OS: PyPI has manylinux wheels of gpiod 2.x for
  aarch64 and x86-64 (measured with gpiod 2.5.0). RPi.GPIO has no wheel on PyPI and compiles from source
  (gcc and python3-dev). On 32-bit (armv7l) both compile from PyPI's sdists; gpiod's carries libgpiod's
  C source (docs/operations/raspberry-pi.md lists what was measured).
- The kernel hands a line to one holder at a time: a second controller, or `payg relay test` while the
  service runs, gets "busy" instead of fighting the controller over the relay.

Safety rules this module keeps:

- The line is requested as an output already at its off value, in the one call that requests it
  (`request_lines` with `output_value`): the kernel sets the direction and the level together, so the
  relay never sees an "on" level at start.
- `active_low` is the library's own setting (`LineSettings.active_low`), not levels computed here: the
  values written are logical (ACTIVE = relay on, INACTIVE = off) whatever the board, the kernel applies
  the inversion, and `gpioinfo` shows the line as "payg", output, active-low, as the installer expects.
- The request is never released while payg runs. A released line belongs to the kernel's driver again,
  and what the driver does with it is not promised by the character device: Raspberry Pi OS kernels keep
  the last level (`persist_gpio_outputs` of pinctrl-bcm2835 and pinctrl-rp1, on unless
  `dtparam=strict_gpiod`); with `strict_gpiod`, on mainline kernels and with other boards' drivers the
  line turns back into an input, and the relay board's input is then left to the pin's pull resistor or
  floats. So `close()` drives the line off and keeps the request, and the line is released only when the
  process ends (`payg relay off`, systemd's ExecStopPost, then drives it off again). A request that is
  garbage-collected is released by the binding: the holder must keep it (`force_off` does, below).
"""

from __future__ import annotations

import errno
import importlib
import re
from pathlib import Path
from types import ModuleType
from typing import Any

from hardware.output_relay import DrivenOutputRelay
from payg.errors import RelayError

# The labels of the GPIO chip that carries a Raspberry Pi's 40-pin header (`gpiodetect`): Pi 1-3 and
# Zero, Pi 4 and 400, Pi 5. Its line offsets are the BCM numbers.
HEADER_LABELS = ("pinctrl-bcm2835", "pinctrl-bcm2711", "pinctrl-rp1")
HEADER_LINES = range(0, 28)  # GPIO0..GPIO27 on the 40-pin header
CONSUMER = "payg"  # what `gpioinfo` shows as the line's user

_INSTALL_HINT = "install payg with the [pi] extra (pip install 'payg[pi]'), which brings gpiod 2.x"
# Lines requested by force_off, kept until the process exits (see the module doc).
_HELD: list[GpiodRelay] = []


def load_gpiod(module_name: str = "gpiod") -> ModuleType:
    """Import libgpiod's binding on first use, so that nothing needs it unless a gpiod relay is configured."""
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise RelayError(f"cannot import {module_name} ({exc}): {_INSTALL_HINT}") from exc
    if not hasattr(module, "LineSettings"):  # gpiod 1.x on PyPI is an unrelated pure-Python library
        version = getattr(module, "__version__", "unknown version")
        raise RelayError(f"the installed {module_name} ({version}) is not libgpiod's v2 binding: "
                         f"pip install 'gpiod>=2.2,<3' ({_INSTALL_HINT})")
    return module


def _errors(gpiod: Any) -> tuple[type[BaseException], ...]:
    errors: tuple[type[BaseException], ...] = (OSError, ValueError)
    for name in ("ChipClosedError", "RequestReleasedError"):
        extra = getattr(gpiod, name, None)
        if isinstance(extra, type) and issubclass(extra, Exception):
            errors += (extra,)
    return errors


def _explain(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    code = getattr(exc, "errno", None)
    if code == errno.EBUSY:
        return (f"{text}: another program holds the line (a running payg: stop it first; `gpioinfo` names "
                "the holder)")
    if code in (errno.EACCES, errno.EPERM):
        return f"{text}: the user needs the chip's group (`gpio` on Raspberry Pi OS; `ls -l /dev/gpiochip*`)"
    if code == errno.ENOENT:
        return f"{text}: no such GPIO chip (`gpiodetect` lists them)"
    return text


def _chip_number(path: Path) -> int:
    digits = re.sub(r"\D", "", path.name)
    return int(digits) if digits else -1


def find_header_chip(gpiod: Any, dev: Path = Path("/dev")) -> str:
    """The device of the GPIO chip that carries the Raspberry Pi's 40-pin header, found by its label.

    Its number differs between boards and kernels (gpiochip0 or gpiochip4 on a Pi 5), its label does not."""
    errors = _errors(gpiod)
    seen: list[str] = []
    for path in sorted(dev.glob("gpiochip*"), key=_chip_number):
        if not gpiod.is_gpiochip_device(str(path)):
            continue
        try:
            with gpiod.Chip(str(path)) as chip:
                label = chip.get_info().label
        except errors as exc:
            seen.append(f"{path} (unreadable: {_explain(exc)})")
            continue
        if label in HEADER_LABELS:
            return str(path)
        seen.append(f"{path} [{label}]")
    found = ", ".join(seen) if seen else f"no GPIO chip in {dev} at all"
    raise RelayError(f"no Raspberry Pi 40-pin header among the GPIO chips (looked for the label "
                     f"{', '.join(HEADER_LABELS)}; found {found}). On another board set the relay's "
                     f"chip = \"/dev/gpiochipN\" (`gpiodetect` lists the chips)")


def _check_line(line: int, header: bool) -> int:
    if isinstance(line, bool) or not isinstance(line, int) or line < 0:
        raise ValueError(f"GPIO line must be a number >= 0, got {line!r}")
    if header and line not in HEADER_LINES:
        raise ValueError(f"GPIO pin must be a BCM number from 0 to 27 on the Raspberry Pi's header, got {line!r}")
    return line


class GpiodRelay(DrivenOutputRelay):
    """One relay on one line of a GPIO chip (on a Raspberry Pi: the BCM number on the header's chip).
    Matches payg.ports.Relay."""

    def __init__(self, pin: int, active_low: bool = False, chip: str | None = None, gpiod: Any = None,
                 dev: Path = Path("/dev")):
        """`chip` None: the Raspberry Pi header's chip, found in `dev` by its label. Raises RelayError or
        ValueError."""
        super().__init__()
        self.pin = _check_line(pin, header=chip is None)
        self.active_low = bool(active_low)
        self._gpiod = gpiod if gpiod is not None else load_gpiod()
        self._errors = _errors(self._gpiod)
        self.chip = chip if chip is not None else find_header_chip(self._gpiod, dev)
        line = self._gpiod.line
        self._on, self._off = line.Value.ACTIVE, line.Value.INACTIVE
        settings = self._gpiod.LineSettings(direction=line.Direction.OUTPUT, active_low=self.active_low,
                                            output_value=self._off)
        try:
            self._request = self._gpiod.request_lines(self.chip, config={self.pin: settings}, consumer=CONSUMER)
        except self._errors as exc:
            raise RelayError(f"{self._where()}: cannot claim the line: {_explain(exc)}") from exc

    def __repr__(self) -> str:
        return f"GpiodRelay(pin={self.pin}, active_low={self.active_low}, chip={self.chip!r})"

    def _where(self) -> str:
        return f"GPIO{self.pin} ({self.chip} line {self.pin})"

    def _write(self, value: Any) -> None:
        try:
            self._request.set_value(self.pin, value)
        except self._errors as exc:
            raise RelayError(f"{self._where()}: cannot set the output: {_explain(exc)}") from exc


def force_off(pin: int, active_low: bool, chip: str | None = None, gpiod: Any = None,
              dev: Path = Path("/dev")) -> GpiodRelay:
    """Claim the line at its off level and hold it there until the process exits, for `payg relay off` after
    the controller stopped. Released early, the line could turn into an input (see the module doc)."""
    relay = GpiodRelay(pin, active_low, chip, gpiod, dev)
    _HELD.append(relay)
    return relay
