"""`payg relay test` and `payg relay off` with a fake RPi.GPIO; `payg meters` is covered in test_modbus.py."""

import io

from hardware.gpio_relay import GpioRelay
from payg.cli.installer import cmd_relay_test
from payg.cli.parser import parse_args
from tests.fakes import FakeGPIO
from tests.support import ROOT, launcher
from tests.support.configs import gpio_sockets_toml


def relay_test_args(*extra):
    return parse_args(["relay", "test", "--pin", "17", "--active-low", *extra])


def test_relay_test_asks_first_and_switches_nothing_without_yes():
    gpio = FakeGPIO()
    relay = GpioRelay(17, active_low=True, gpio=gpio)
    prompts, slept = [], []
    out = io.StringIO()
    code = cmd_relay_test(relay_test_args(), relay, slept.append,
                              ask=lambda text: prompts.append(text) or "no", out=out)
    assert code == 1 and "nothing switched" in out.getvalue()
    assert "GPIO17" in prompts[0] and "ON" in prompts[0]
    assert [c for c in gpio.calls if c[0] == "output"] == [] and slept == []


def test_relay_test_switches_on_for_the_given_time_then_off():
    gpio = FakeGPIO()
    relay = GpioRelay(17, active_low=True, gpio=gpio)
    slept = []
    out = io.StringIO()
    code = cmd_relay_test(relay_test_args("--seconds", "3"), relay, slept.append, ask=lambda _: "yes", out=out)
    assert code == 0 and slept == [3.0]
    assert [c for c in gpio.calls if c[0] == "output"] == [("output", 17, 0), ("output", 17, 1)]  # active-low
    assert not relay.is_closed()


def test_relay_test_turns_off_even_if_interrupted():
    gpio = FakeGPIO()
    relay = GpioRelay(4, gpio=gpio)

    def interrupted(_seconds):
        raise KeyboardInterrupt

    try:
        cmd_relay_test(parse_args(["relay", "test", "--pin", "4", "--yes"]), relay, interrupted,
                           out=io.StringIO())
    except KeyboardInterrupt:
        pass
    assert [c for c in gpio.calls if c[0] == "output"][-1] == ("output", 4, 0)


def test_relay_off_without_gpio_relays_does_nothing_and_succeeds():
    result = launcher.run("relay", "off", "--config", "config/default.toml", cwd=ROOT)
    assert result.returncode == 0 and result.stdout == ""


def test_relay_off_with_a_gpio_relay_and_no_gpio_library_says_what_to_install(tmp_path):
    config = tmp_path / "pi.toml"
    config.write_text(gpio_sockets_toml(tmp_path / "var", 'pin = 17, active_low = true, driver = "rpi-gpio"'))
    result = launcher.run("relay", "off", "--config", str(config), cwd=ROOT)
    assert result.returncode == 1
    assert "[pi]" in result.stderr and not (tmp_path / "var").exists()
