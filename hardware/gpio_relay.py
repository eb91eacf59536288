"""A relay (or the coil driver of a contactor) on one Raspberry Pi GPIO pin, through RPi.GPIO.

The opt-in driver (`driver = "rpi-gpio"`), kept for installations built on it; the default is
hardware/gpiod_relay.py, whose module doc says why.

Works with the classic RPi.GPIO (Pi 1-4) and with rpi-lgpio, its drop-in for
the Pi 5 (same import name; the two cannot be installed together). Pins are
BCM numbers. `active_low` is for relay boards that switch on when their input
is pulled low (most opto-isolated modules).

Safety rules this module keeps:

- The pin is claimed with its "off" level in the same call that makes it an
  output (`setup(..., initial=off)`): no write before or after, so the relay
  never clicks on while the controller starts.
- The pin is never handed back with `cleanup()`. RPi.GPIO's cleanup turns the
  pin into an input *with its pull resistor disabled*, which removes even the
  boot-time pull that keeps an active-low board off on GPIO0-8; what a
  floating relay input does depends on the board, and some switch on. A pin
  left driven at the off level is unambiguous, so `close()` and `force_off()`
  both leave it driven off.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from hardware.output_relay import DrivenOutputRelay
from payg.errors import RelayError

BCM_PINS = range(0, 28)  # the GPIO0..GPIO27 on the 40-pin header

_INSTALL_HINT = ("for driver = \"rpi-gpio\" install RPi.GPIO (pip install RPi.GPIO; it compiles: gcc, "
                 "python3-dev), or, on a Raspberry Pi 5, rpi-lgpio instead (pip install rpi-lgpio; the two cannot "
                 "be installed together); or use the default driver = \"gpiod\", which payg's [pi] extra installs")
_PI5_MARKER = "SOC peripheral base address"  # what RPi.GPIO says when it meets a Pi 5


def load_gpio(module_name: str = "RPi.GPIO") -> ModuleType:
    """Import the GPIO library on first use, so that nothing needs it unless a GPIO relay is configured."""
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        raise RelayError(f"cannot import {module_name} ({exc}): {_INSTALL_HINT}") from exc
    except RuntimeError as exc:  # RPi.GPIO refuses to import off a Raspberry Pi
        raise RelayError(f"{module_name} failed to load: {exc}; {_INSTALL_HINT}") from exc


def _library_errors(gpio) -> tuple[type[BaseException], ...]:
    errors: tuple[type[BaseException], ...] = (RuntimeError, ValueError, OSError)
    # rpi-lgpio lets some of lgpio's own exceptions (lgpio.error) through unchanged.
    extra = getattr(getattr(gpio, "lgpio", None), "error", None)
    if isinstance(extra, type) and issubclass(extra, Exception):
        errors += (extra,)
    return errors


def _explain(exc: BaseException) -> str:
    if _PI5_MARKER in str(exc):
        return f"{exc} (RPi.GPIO does not work on a Raspberry Pi 5: {_INSTALL_HINT})"
    return str(exc) or type(exc).__name__


def _check_pin(pin: int) -> int:
    if isinstance(pin, bool) or not isinstance(pin, int) or pin not in BCM_PINS:
        raise ValueError(f"GPIO pin must be a BCM number from 0 to 27, got {pin!r}")
    return pin


def _levels(gpio, active_low: bool) -> tuple[int, int]:
    """(on level, off level)."""
    return (gpio.LOW, gpio.HIGH) if active_low else (gpio.HIGH, gpio.LOW)


def _claim_off(gpio, pin: int, off_level: int) -> None:
    """BCM numbering, no warnings, and the pin made an output already at `off_level`."""
    errors = _library_errors(gpio)
    try:
        mode = gpio.getmode()
        if mode is None:
            gpio.setmode(gpio.BCM)
        elif mode != gpio.BCM:
            raise RelayError(f"GPIO{pin}: the GPIO library is already set to another pin numbering "
                             f"(mode {mode!r}); payg uses BCM numbers")
        # "channel already in use" is expected: a crashed controller leaves the pin an output.
        gpio.setwarnings(False)
        gpio.setup(pin, gpio.OUT, initial=off_level)
    except errors as exc:
        raise RelayError(f"GPIO{pin}: cannot claim the pin: {_explain(exc)}") from exc


class GpioRelay(DrivenOutputRelay):
    """One relay on one BCM pin. Matches payg.ports.Relay."""

    def __init__(self, pin: int, active_low: bool = False, gpio=None):
        super().__init__()
        self.pin = _check_pin(pin)
        self.active_low = bool(active_low)
        self._gpio = gpio if gpio is not None else load_gpio()
        self._on, self._off = _levels(self._gpio, self.active_low)
        self._errors = _library_errors(self._gpio)
        _claim_off(self._gpio, self.pin, self._off)

    def __repr__(self) -> str:
        return f"GpioRelay(pin={self.pin}, active_low={self.active_low})"

    def _where(self) -> str:
        return f"GPIO{self.pin}"

    def _write(self, level: int) -> None:
        try:
            self._gpio.output(self.pin, level)
        except self._errors as exc:
            raise RelayError(f"GPIO{self.pin}: cannot set the output: {_explain(exc)}") from exc


def force_off(pin: int, active_low: bool, gpio=None) -> None:
    """Claim `pin` at its off level and leave it driven there, for `payg relay off` after the controller stopped.

    No cleanup: it would turn the pin into a floating input (see the module doc).
    Without `dtparam=strict_gpiod` the level outlives this process.
    """
    pin = _check_pin(pin)
    gpio = gpio if gpio is not None else load_gpio()
    _claim_off(gpio, pin, _levels(gpio, bool(active_low))[1])
