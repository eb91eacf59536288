"""GpiodRelay over a fake of libgpiod's binding and the kernel behind it; its config keys; `payg relay off|test`
with the gpiod driver; and, when the real `gpiod` package is installed, the calls checked against it."""

from __future__ import annotations

import errno
import gc
import inspect
import os
import sys

import pytest

from hardware import gpio_relay_off, make_gpio_relay
from hardware.gpiod_relay import GpiodRelay, find_header_chip, force_off, load_gpiod
from payg import cli
from payg.adapters.clocks import ManualClock
from payg.adapters.journal import SqliteJournal
from payg.bootstrap import CliWiring
from payg.domain.settings import GpioRelayConfig
from payg.errors import ConfigError, RelayError
from tests.fakes import FakeMeter
from tests.support.configs import gpio_sockets_toml, load_text
from tests.support.fake_gpiod import FakeGpiod
from tests.support.rigs import metering_for

CHIP = "/dev/gpiochip0"
HIGH, LOW = 1, 0


def pi4(persist_outputs: bool = True) -> FakeGpiod:
    gpiod = FakeGpiod(persist_outputs=persist_outputs)
    gpiod.add_chip(CHIP, "pinctrl-bcm2711", 58, pulls={4: HIGH, 17: LOW, 22: LOW})
    return gpiod


def of(gpiod: FakeGpiod, *names: str) -> list[tuple]:
    return [c for c in gpiod.calls if c[0] in names]


@pytest.mark.parametrize("active_low, off", [(True, HIGH), (False, LOW)])
def test_the_line_is_requested_as_an_output_already_off_in_one_call(active_low, off):
    gpiod = pi4()
    relay = GpiodRelay(4, active_low=active_low, chip=CHIP, gpiod=gpiod)
    assert gpiod.calls == [("request", CHIP, "payg", {4: ("OUTPUT", active_low, "INACTIVE")})]
    assert gpiod.driven == [(CHIP, 4, off)]  # the first level the pin ever drives is "off": no glitch
    line = gpiod.state(CHIP, 4)
    assert (line.direction, line.consumer, line.active_low, line.level) == ("output", "payg", active_low, off)
    assert relay.is_closed() is False


def test_active_low_is_the_kernels_setting_and_closed_drives_the_pin_low():
    gpiod = pi4()
    relay = GpiodRelay(17, active_low=True, chip=CHIP, gpiod=gpiod)
    relay.set_closed(True)
    assert gpiod.state(CHIP, 17).level == LOW and relay.is_closed()
    relay.set_closed(False)
    assert gpiod.state(CHIP, 17).level == HIGH and not relay.is_closed()
    # logical values only: the kernel inverts them
    assert of(gpiod, "set_value") == [("set_value", CHIP, 17, "ACTIVE"), ("set_value", CHIP, 17, "INACTIVE")]


def test_active_high_closed_is_high_and_open_is_low():
    gpiod = pi4()
    relay = GpiodRelay(17, chip=CHIP, gpiod=gpiod)
    relay.set_closed(True)
    assert gpiod.state(CHIP, 17).level == HIGH
    relay.set_closed(False)
    assert gpiod.state(CHIP, 17).level == LOW
    assert gpiod.driven == [(CHIP, 17, LOW), (CHIP, 17, HIGH), (CHIP, 17, LOW)]


@pytest.mark.parametrize("persist_outputs", [True, False])
def test_close_drives_off_and_keeps_the_line_requested(persist_outputs):
    gpiod = pi4(persist_outputs)  # without persistence (strict_gpiod), a release would make the pin an input
    relay = GpiodRelay(22, active_low=True, chip=CHIP, gpiod=gpiod)
    relay.set_closed(True)
    relay.close()
    assert gpiod.calls[-1] == ("set_value", CHIP, 22, "INACTIVE")
    assert of(gpiod, "release") == []
    line = gpiod.state(CHIP, 22)
    assert (line.direction, line.consumer, line.level) == ("output", "payg", HIGH)
    relay.close()  # idempotent
    assert len(of(gpiod, "set_value")) == 2
    with pytest.raises(RelayError, match="released"):
        relay.set_closed(True)
    assert line.level == HIGH and not relay.is_closed()


def test_force_off_holds_the_line_off_after_its_caller_dropped_it():
    gpiod = pi4(persist_outputs=False)
    force_off(22, active_low=False, chip=CHIP, gpiod=gpiod)
    gc.collect()  # a request nobody holds is released by the binding, and the pin would float
    line = gpiod.state(CHIP, 22)
    assert (line.direction, line.consumer, line.level) == ("output", "payg", LOW)
    assert of(gpiod, "release") == []


def test_a_request_dropped_without_a_holder_is_released_which_is_why_force_off_holds_it():
    gpiod = pi4(persist_outputs=False)
    GpiodRelay(13, active_low=True, chip=CHIP, gpiod=gpiod)  # nobody keeps it
    gc.collect()
    line = gpiod.state(CHIP, 13)
    assert (line.direction, line.consumer, line.level) == ("input", None, None)  # floating


def test_a_line_held_by_the_running_controller_is_busy_and_stays_as_it_was():
    gpiod = pi4()
    controller = GpiodRelay(4, active_low=True, chip=CHIP, gpiod=gpiod)
    controller.set_closed(True)
    with pytest.raises(RelayError) as info:
        GpiodRelay(4, active_low=True, chip=CHIP, gpiod=gpiod)  # `payg relay test` while the service runs
    message = str(info.value)
    assert "GPIO4" in message and f"{CHIP} line 4" in message and "another program holds the line" in message
    assert info.value.__cause__.errno == errno.EBUSY
    assert gpiod.state(CHIP, 4).level == LOW and controller.is_closed()


def test_a_failed_write_is_a_relay_error_naming_chip_and_line_and_can_be_retried():
    gpiod = pi4()
    relay = GpiodRelay(4, chip=CHIP, gpiod=gpiod)
    relay.set_closed(True)
    gpiod.fail_set_value = OSError(errno.EIO, "Input/output error")
    with pytest.raises(RelayError, match=f"GPIO4 \\({CHIP} line 4\\): cannot set the output") as info:
        relay.set_closed(False)
    assert isinstance(info.value.__cause__, OSError)
    assert relay.is_closed()  # the last state that was actually commanded
    with pytest.raises(RelayError):
        relay.close()
    gpiod.fail_set_value = None
    relay.close()  # a failed close can be retried
    assert gpiod.state(CHIP, 4).level == LOW


@pytest.mark.parametrize("failure, words", [
    (OSError(errno.EACCES, "Permission denied"), "gpio"),
    (OSError(errno.EINVAL, "Invalid argument"), "Invalid argument"),
])
def test_a_refused_request_is_a_relay_error_naming_chip_and_line(failure, words):
    gpiod = pi4()
    gpiod.fail_request = failure
    with pytest.raises(RelayError, match=f"{CHIP} line 5") as info:
        GpiodRelay(5, chip=CHIP, gpiod=gpiod)
    assert words in str(info.value)


def test_a_missing_chip_and_a_file_that_is_no_chip_are_relay_errors(tmp_path):
    with pytest.raises(RelayError, match="/dev/gpiochip9 line 5.*no such GPIO chip"):
        GpiodRelay(5, chip="/dev/gpiochip9", gpiod=pi4())
    not_a_chip = tmp_path / "gpiochip0"
    not_a_chip.touch()
    with pytest.raises(RelayError, match=f"{not_a_chip} line 5"):
        GpiodRelay(5, chip=str(not_a_chip), gpiod=pi4())


def test_a_line_beyond_the_chip_is_a_relay_error_and_a_chip_allows_lines_above_27():
    gpiod = FakeGpiod()
    gpiod.add_chip("/dev/gpiochip1", "1c20800.pinctrl", 224)  # another board's chip
    GpiodRelay(200, chip="/dev/gpiochip1", gpiod=gpiod)
    with pytest.raises(RelayError, match="/dev/gpiochip1 line 300"):
        GpiodRelay(300, chip="/dev/gpiochip1", gpiod=gpiod)


@pytest.mark.parametrize("pin", [-1, 28, 40, True, 4.0, "4"])
def test_a_pin_outside_the_header_is_refused_before_touching_the_library(pin, tmp_path):
    gpiod = pi4()
    with pytest.raises(ValueError, match="0"):
        GpiodRelay(pin, gpiod=gpiod, dev=tmp_path)
    assert gpiod.calls == []


@pytest.mark.parametrize("chips, found", [
    ({"gpiochip0": "pinctrl-bcm2835"}, "gpiochip0"),                                           # Pi 1-3, Zero
    ({"gpiochip0": "pinctrl-bcm2711", "gpiochip1": "raspberrypi-exp-gpio"}, "gpiochip0"),    # Pi 4
    ({"gpiochip0": "gpio-brcmstb@107d508500", "gpiochip4": "pinctrl-rp1"}, "gpiochip4"),     # Pi 5, older kernel
    ({"gpiochip10": "gpio-brcmstb@107d508500", "gpiochip0": "pinctrl-rp1"}, "gpiochip0"),    # Pi 5
])
def test_the_header_chip_is_found_by_its_label(tmp_path, chips, found):
    gpiod = FakeGpiod()
    for name, label in chips.items():
        (tmp_path / name).touch()
        gpiod.add_chip(str(tmp_path / name), label)
    relay = GpiodRelay(17, gpiod=gpiod, dev=tmp_path)
    assert relay.chip == str(tmp_path / found)
    assert gpiod.state(str(tmp_path / found), 17).consumer == "payg"


def test_without_a_header_chip_the_error_lists_the_chips_and_names_the_chip_key(tmp_path):
    gpiod = FakeGpiod()
    (tmp_path / "gpiochip0").touch()
    gpiod.add_chip(str(tmp_path / "gpiochip0"), "1c20800.pinctrl")
    (tmp_path / "gpiochip1").touch()  # a file that is not a chip: skipped
    with pytest.raises(RelayError) as info:
        GpiodRelay(17, gpiod=gpiod, dev=tmp_path)
    message = str(info.value)
    assert "[1c20800.pinctrl]" in message and "pinctrl-rp1" in message and 'chip = "/dev/gpiochipN"' in message
    assert of(gpiod, "request") == []
    with pytest.raises(RelayError, match="no GPIO chip in"):
        find_header_chip(FakeGpiod(), tmp_path / "empty")


def test_a_missing_library_names_the_pi_extra_and_gpiod_1_is_refused():
    with pytest.raises(RelayError, match=r"\[pi\]") as info:
        load_gpiod("payg_no_such_gpiod_module")
    assert isinstance(info.value.__cause__, ImportError)
    with pytest.raises(RelayError, match="not libgpiod's v2 binding"):
        load_gpiod("json")  # a module without the v2 API, as the unrelated gpiod 1.x on PyPI


def test_the_controller_drives_a_gpiod_relay(tmp_path):
    clock = ManualClock()
    gpiod = pi4()
    meter = FakeMeter(clock)
    relay = GpiodRelay(4, active_low=True, chip=CHIP, gpiod=gpiod)
    journal = SqliteJournal(tmp_path / "journal.sqlite")
    controller = metering_for({"a": meter}, {"a": relay}, journal, clock, names={"a": "A"}, poll_interval_s=1.0)
    try:
        controller.start()
        controller.tick()  # a healthy reading but no credit: off
        assert gpiod.state(CHIP, 4).level == HIGH and not relay.is_closed()
        with journal.transaction() as tx:
            tx.credit("a", 50, "credit", "test:1", clock.now())
        controller.credits_arrived({"a"})
        assert gpiod.state(CHIP, 4).level == LOW and relay.is_closed()
        controller.shutdown()
        assert gpiod.state(CHIP, 4).level == HIGH and gpiod.state(CHIP, 4).consumer == "payg"
        assert gpiod.driven[0] == (CHIP, 4, HIGH)
    finally:
        journal.close()


def relay_config(tmp_path, pin=17, more=""):
    return load_text(tmp_path, gpio_sockets_toml("var", f"pin = {pin}{more}")).sockets[0].relay


def test_config_keys_and_their_defaults(tmp_path):
    assert relay_config(tmp_path) == GpioRelayConfig(17, False, "gpiod", None)
    assert relay_config(tmp_path, more=', driver = "rpi-gpio", active_low = true') == \
        GpioRelayConfig(17, True, "rpi-gpio", None)
    assert relay_config(tmp_path, 200, ', chip = "/dev/gpiochip1"') == GpioRelayConfig(200, False, "gpiod",
                                                                                         "/dev/gpiochip1")


@pytest.mark.parametrize("pin, more, key, words", [
    (17, ', driver = "lgpio"', "driver", "'gpiod', 'rpi-gpio'"),
    (17, ', chip = "gpiochip0"', "chip", "/dev/gpiochip0"),
    (17, ', chip = 0', "chip", "a string"),
    (17, ', driver = "rpi-gpio", chip = "/dev/gpiochip0"', "chip", 'driver = "gpiod"'),
    (28, "", "pin", "0 to 27"),
    (2000, ', chip = "/dev/gpiochip1"', "pin", "1023"),
    (17, ', chips = "/dev/gpiochip0"', "chips", "did you mean 'chip'"),
])
def test_a_bad_driver_chip_or_pin_names_the_file_and_the_key(tmp_path, pin, more, key, words):
    with pytest.raises(ConfigError) as info:
        relay_config(tmp_path, pin, more)
    assert info.value.key == f"sockets[0].relay.{key}" and str(tmp_path / "c.toml") in str(info.value)
    assert words in str(info.value)


class PiWiring(CliWiring):
    """The real wiring of the commands, with the Pi's GPIO chips faked."""

    gpiod = pi4()

    def gpio_relay(self, relay):
        return GpiodRelay(relay.pin, relay.active_low, relay.chip or CHIP, gpiod=self.gpiod)

    def force_relay_off(self, relay):
        force_off(relay.pin, relay.active_low, relay.chip or CHIP, gpiod=self.gpiod)


def run_cli(capfd, *argv: str, wiring: CliWiring) -> tuple[int, str, str]:
    """`payg ARGV` in this process; its output read from the file descriptors (a command may have bound
    sys.stdout before the test)."""
    capfd.readouterr()
    code = cli.main(list(argv), wiring)
    sys.stdout.flush()
    out, err = capfd.readouterr()
    return code, out, err


def test_relay_off_drives_every_gpiod_relay_off_and_reports_one_that_fails(tmp_path, capfd):
    config = tmp_path / "pi.toml"
    config.write_text(gpio_sockets_toml(tmp_path / "var", "pin = 4, active_low = true", "pin = 17",
                                        'pin = 22, chip = "/dev/gpiochip0"'))
    wiring = PiWiring()
    wiring.gpiod = pi4(persist_outputs=False)
    left_on = GpiodRelay(4, active_low=True, chip=CHIP, gpiod=pi4())  # another "boot": not in the way
    left_on.set_closed(True)
    stranger = GpiodRelay(17, chip=CHIP, gpiod=wiring.gpiod)  # something else holds GPIO17
    code, out, err = run_cli(capfd, "relay", "off", "--config", str(config), wiring=wiring)
    gc.collect()
    assert code == 1
    assert out.splitlines() == ["a: relay on GPIO4 off", "c: relay on /dev/gpiochip0 line 22 off"]
    assert "payg: b: GPIO17 (/dev/gpiochip0 line 17): cannot claim the line" in err
    for pin, off in ((4, HIGH), (22, LOW)):
        line = wiring.gpiod.state(CHIP, pin)
        assert (line.direction, line.consumer, line.level) == ("output", "payg", off)  # held, off
    assert stranger.is_closed() is False and wiring.gpiod.state(CHIP, 17).consumer == "payg"
    assert not (tmp_path / "var").exists()


def test_relay_test_with_the_gpiod_driver_switches_on_then_off(capfd):
    wiring = PiWiring()
    wiring.gpiod = pi4()
    code, out, _ = run_cli(capfd, "relay", "test", "--pin", "4", "--active-low", "--seconds", "0", "--yes",
                           wiring=wiring)
    assert code == 0 and out.splitlines() == ["GPIO4: relay ON", "GPIO4: relay OFF"]
    assert [level for _, _, level in wiring.gpiod.driven] == [HIGH, LOW, HIGH, HIGH]  # claimed off, on, off, closed


def test_relay_test_refuses_a_chip_with_rpi_gpio(capfd):
    code, _, err = run_cli(capfd, "relay", "test", "--pin", "4", "--driver", "rpi-gpio", "--chip", CHIP, "--yes",
                           wiring=PiWiring())
    assert code == 2 and "--chip is for --driver gpiod" in err


def test_the_wiring_builds_each_driver_from_the_config():
    with pytest.raises(RelayError, match=r"RPi\.GPIO"):  # not installed here: the RPi.GPIO driver was chosen
        make_gpio_relay(GpioRelayConfig(4, False, "rpi-gpio", None))
    with pytest.raises(RelayError, match=r"RPi\.GPIO"):
        gpio_relay_off(GpioRelayConfig(4, False, "rpi-gpio", None))


def test_the_calls_match_the_real_binding(tmp_path):
    gpiod = pytest.importorskip("gpiod")
    module = load_gpiod()
    assert module is gpiod
    fake = FakeGpiod()
    for name in ("request_lines",):
        real, ours = inspect.signature(getattr(gpiod, name)), inspect.signature(getattr(fake, name))
        assert list(real.parameters) == list(ours.parameters)
    settings = gpiod.LineSettings(direction=gpiod.line.Direction.OUTPUT, active_low=True,
                                  output_value=gpiod.line.Value.INACTIVE)
    assert settings.output_value is gpiod.line.Value.INACTIVE and not gpiod.line.Value.INACTIVE
    assert {"ACTIVE", "INACTIVE"} <= set(gpiod.line.Value.__members__)
    assert {"label", "num_lines"} <= set(inspect.signature(gpiod.ChipInfo).parameters)
    not_a_chip = tmp_path / "gpiochip0"
    not_a_chip.touch()
    with pytest.raises(RelayError, match=f"{not_a_chip} line 4") as info:
        GpiodRelay(4, chip=str(not_a_chip), gpiod=gpiod)
    assert isinstance(info.value.__cause__, OSError)
    with pytest.raises(RelayError, match="no GPIO chip in"):
        find_header_chip(gpiod, tmp_path / "nothing")
    if not any(name.startswith("gpiochip") for name in os.listdir("/dev")):
        with pytest.raises(RelayError, match="no Raspberry Pi 40-pin header"):
            GpiodRelay(4)
