"""A socket's GPIO relay: `relay = { kind = "gpio", ... }` (hardware/gpiod_relay.py, hardware/gpio_relay.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from payg.domain.config_keys import setting

GPIO_DRIVERS = ("gpiod", "rpi-gpio")
HEADER_PINS = 28  # GPIO0-27: the BCM numbers of a Raspberry Pi's 40-pin header


@dataclass(frozen=True)
class GpioRelayConfig:
    pin: int = setting(doc="the BCM GPIO number, 0–27 (GPIO17 is pin 11 of the header), which is also the line's "
                       "offset on the header's GPIO chip; with `chip`, any line of that chip. One relay per pin",
                       ge=0, le=1023, kind="integer")
    active_low: bool = setting(False, "the relay pulls in when the pin is low")
    driver: str = setting("gpiod", "`\"gpiod\"`: the kernel's GPIO character device through libgpiod, on every "
                          "Raspberry Pi (1–5) and other Linux boards (installed by the `[pi]` extra); `\"rpi-gpio\"`: "
                          "RPi.GPIO (Pi 1–4) or rpi-lgpio (Pi 5), installed by hand (see [Wiring](hardware/wiring.md"
                          "#gpio-drivers))", choices=GPIO_DRIVERS, kind='`"gpiod"` or `"rpi-gpio"`')
    chip: str | None = setting(None, "`driver = \"gpiod\"` only: the GPIO chip's device, such as "
                               "`\"/dev/gpiochip0\"` (`gpiodetect` lists them with their labels)", kind="string",
                               shown="the Raspberry Pi header's chip, found by its label (`pinctrl-bcm2835`, "
                               "`pinctrl-bcm2711` or `pinctrl-rp1`)")
    kind: Literal["gpio"] = field(default="gpio", init=False)
