"""GpioRelay and force_off over a fake RPi.GPIO module; the controller driving a GPIO relay."""

from __future__ import annotations

import pytest

from hardware.gpio_relay import GpioRelay, force_off, load_gpio
from payg.adapters.clocks import ManualClock
from payg.adapters.journal import SqliteJournal
from payg.errors import RelayError
from tests.fakes import FakeGPIO, FakeMeter
from tests.support.rigs import metering_for

HIGH, LOW = FakeGPIO.HIGH, FakeGPIO.LOW


def calls_of(gpio: FakeGPIO, *names: str) -> list[tuple]:
    return [c for c in gpio.calls if c[0] in names]


@pytest.mark.parametrize("active_low, off", [(True, HIGH), (False, LOW)])
def test_the_pin_is_claimed_already_off_and_never_written_before(active_low, off):
    gpio = FakeGPIO()
    relay = GpioRelay(4, active_low=active_low, gpio=gpio)
    assert calls_of(gpio, "setmode", "setwarnings", "setup", "output", "cleanup") == [
        ("setmode", "BCM"), ("setwarnings", False), ("setup", 4, "OUT", off)]
    assert gpio.driven == [(4, off)]  # no glitch: the first level the pin ever drives is "off"
    assert gpio.modes[4] == "OUT" and gpio.levels[4] == off
    assert relay.is_closed() is False


def test_active_low_closed_is_low_and_open_is_high():
    gpio = FakeGPIO()
    relay = GpioRelay(17, active_low=True, gpio=gpio)
    relay.set_closed(True)
    assert gpio.levels[17] == LOW and relay.is_closed()
    relay.set_closed(False)
    assert gpio.levels[17] == HIGH and not relay.is_closed()
    assert calls_of(gpio, "output") == [("output", 17, LOW), ("output", 17, HIGH)]


def test_active_high_closed_is_high_and_open_is_low():
    gpio = FakeGPIO()
    relay = GpioRelay(17, gpio=gpio)
    relay.set_closed(True)
    assert gpio.levels[17] == HIGH and relay.is_closed()
    relay.set_closed(False)
    assert gpio.levels[17] == LOW and not relay.is_closed()


def test_a_mode_already_set_to_bcm_is_accepted():
    gpio = FakeGPIO(mode=FakeGPIO.BCM)
    GpioRelay(5, gpio=gpio)
    assert calls_of(gpio, "setmode") == []
    assert ("setup", 5, "OUT", LOW) in gpio.calls


def test_board_numbering_already_set_is_refused():
    gpio = FakeGPIO(mode=FakeGPIO.BOARD)
    with pytest.raises(RelayError, match="BCM"):
        GpioRelay(5, gpio=gpio)
    assert calls_of(gpio, "setup", "output") == []


@pytest.mark.parametrize("pin", [-1, 28, 40, True, 4.0, "4"])
def test_a_pin_outside_bcm_0_to_27_is_refused_before_touching_the_library(pin):
    gpio = FakeGPIO()
    with pytest.raises(ValueError, match="0 to 27"):
        GpioRelay(pin, gpio=gpio)
    assert gpio.calls == []


def test_close_drives_off_and_leaves_the_pin_driven_off():
    gpio = FakeGPIO()
    relay = GpioRelay(22, active_low=True, gpio=gpio)
    relay.set_closed(True)
    relay.close()
    assert gpio.calls[-1] == ("output", 22, HIGH)
    assert calls_of(gpio, "cleanup") == []  # cleanup would leave a floating input
    assert gpio.modes[22] == "OUT" and gpio.levels[22] == HIGH
    assert not relay.is_closed()
    relay.close()  # idempotent
    assert calls_of(gpio, "output") == [("output", 22, LOW), ("output", 22, HIGH)]
    with pytest.raises(RelayError, match="released"):
        relay.set_closed(True)
    assert gpio.levels[22] == HIGH


def test_a_library_failure_becomes_a_relay_error():
    gpio = FakeGPIO()
    relay = GpioRelay(4, gpio=gpio)
    relay.set_closed(True)
    gpio.fail_output = True
    with pytest.raises(RelayError, match="GPIO4") as info:
        relay.set_closed(False)
    assert isinstance(info.value.__cause__, RuntimeError)
    assert relay.is_closed()  # the last state that was actually commanded
    with pytest.raises(RelayError):
        relay.close()
    gpio.fail_output = False
    relay.close()  # a failed close can be retried
    assert gpio.levels[4] == LOW


def test_output_on_a_pin_taken_away_becomes_a_relay_error():
    gpio = FakeGPIO()
    relay = GpioRelay(4, gpio=gpio)
    gpio.cleanup(4)  # someone else released the pin: the real module raises RuntimeError
    with pytest.raises(RelayError, match="not been set up as an OUTPUT"):
        relay.set_closed(True)


def test_rpi_gpio_on_a_pi_5_says_to_install_rpi_lgpio():
    gpio = FakeGPIO()
    gpio.fail_setup = "Cannot determine SOC peripheral base address"
    with pytest.raises(RelayError, match="rpi-lgpio"):
        GpioRelay(4, gpio=gpio)


def test_lgpio_errors_passed_through_by_rpi_lgpio_become_relay_errors():
    class LgpioError(Exception):
        pass

    class FakeLgpio:
        error = LgpioError

    class FakeRpiLgpio(FakeGPIO):
        lgpio = FakeLgpio

        def output(self, pin, value):
            super().output(pin, value)
            raise LgpioError("GPIO busy")

    relay = GpioRelay(4, gpio=FakeRpiLgpio())
    with pytest.raises(RelayError, match="GPIO busy"):
        relay.set_closed(True)


def test_a_missing_gpio_library_names_the_pi_extra():
    with pytest.raises(RelayError) as info:
        load_gpio("payg_no_such_gpio_module")
    message = str(info.value)
    assert "[pi]" in message and "rpi-lgpio" in message
    assert isinstance(info.value.__cause__, ImportError)


def test_load_gpio_returns_the_module():
    import json

    assert load_gpio("json") is json


def test_force_off_claims_the_pin_off_and_does_not_release_it():
    gpio = FakeGPIO()  # a fresh process after the controller died
    force_off(4, active_low=True, gpio=gpio)
    assert calls_of(gpio, "setup", "output", "cleanup") == [("setup", 4, "OUT", HIGH)]
    assert gpio.modes[4] == "OUT" and gpio.levels[4] == HIGH and gpio.driven == [(4, HIGH)]

    gpio = FakeGPIO()
    force_off(27, active_low=False, gpio=gpio)
    assert calls_of(gpio, "setup", "output", "cleanup") == [("setup", 27, "OUT", LOW)]


def test_force_off_turns_off_a_pin_left_on():
    gpio = FakeGPIO()
    relay = GpioRelay(4, active_low=True, gpio=gpio)
    relay.set_closed(True)  # and then the controller is killed
    force_off(4, active_low=True, gpio=gpio)
    assert gpio.levels[4] == HIGH and gpio.modes[4] == "OUT"


def test_force_off_validates_the_pin_and_translates_errors():
    with pytest.raises(ValueError):
        force_off(30, active_low=False, gpio=FakeGPIO())
    gpio = FakeGPIO()
    gpio.fail_setup = True
    with pytest.raises(RelayError):
        force_off(4, active_low=False, gpio=gpio)


def test_the_controller_drives_a_gpio_relay(tmp_path):
    clock = ManualClock()
    gpio = FakeGPIO()
    meter = FakeMeter(clock)
    relay = GpioRelay(4, active_low=True, gpio=gpio)
    journal = SqliteJournal(tmp_path / "journal.sqlite")
    controller = metering_for({"a": meter}, {"a": relay}, journal, clock, names={"a": "A"}, poll_interval_s=1.0)
    try:
        controller.start()
        assert gpio.levels[4] == HIGH and not relay.is_closed()  # off at start

        controller.tick()  # a healthy reading but no credit: still off
        assert gpio.levels[4] == HIGH and calls_of(gpio, "output") == [("output", 4, HIGH)]

        with journal.transaction() as tx:
            tx.credit("a", 50, "credit", "test:1", clock.now())
        controller.credits_arrived({"a"})
        assert gpio.levels[4] == LOW and relay.is_closed()  # credit + healthy reading: on

        meter.power_w = 500.0
        clock.advance(1)
        controller.tick()
        assert gpio.levels[4] == LOW

        controller.shutdown()
        assert gpio.levels[4] == HIGH and not relay.is_closed()  # off at shutdown
        assert gpio.modes[4] == "OUT"
        assert (4, LOW) in gpio.driven and gpio.driven[0] == (4, HIGH)
    finally:
        journal.close()
