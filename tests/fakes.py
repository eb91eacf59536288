"""Fakes for the ports: scriptable meters, relays and deposit sources, injected through constructors."""

from __future__ import annotations

from fractions import Fraction

from payg.adapters.clocks import ManualClock
from payg.errors import LedgerUnavailable, MeterUnavailable, RelayError
from payg.ports import Deposit, MeterReading


class FakeMeter:
    """A meter whose counter and power the test sets; `offline` makes reads fail."""

    def __init__(self, clock: ManualClock, energy_wh: int | Fraction = 0, power_w: float = 0.0,
                 resolution_wh: Fraction = Fraction(1)):
        self.clock = clock
        self.energy_wh = energy_wh
        self.power_w = power_w
        self.resolution_wh = resolution_wh
        self.offline = False
        self.reads = 0

    def read(self) -> MeterReading:
        self.reads += 1
        if self.offline:
            raise MeterUnavailable("fake meter offline")
        return MeterReading(self.energy_wh, self.power_w, 230.0, round(self.power_w / 230.0, 3), self.clock.now(),
                            self.resolution_wh)


class FakeRelay:
    """Records every command; `fail` makes the next commands raise RelayError."""

    def __init__(self, clock: ManualClock | None = None):
        self.clock = clock
        self.closed = False
        self.calls: list[bool] = []
        self.history: list[tuple[float | None, bool]] = []
        self.fail = False

    def set_closed(self, closed: bool) -> None:
        if self.fail:
            raise RelayError("fake relay stuck")
        self.calls.append(closed)
        if closed != self.closed or not self.history:
            self.history.append((self.clock.now() if self.clock else None, closed))
        self.closed = closed

    def is_closed(self) -> bool:
        return self.closed


class FakeDepositSource:
    """A ledger the test fills: `add()` a deposit, `finalize()` it, `fail` to make the node unreachable.

    The cursor is the index of the last final deposit listed. `redeliver` makes
    it return already-listed deposits again, as a flaky node or a re-scan would.
    """

    name = "fake"

    def __init__(self, units_per_token: int = 1):
        self.units_per_token = units_per_token
        self.deposits: list[tuple[Deposit, bool]] = []
        self.fail = False
        self.redeliver = False
        self.calls = 0

    def address_for(self, socket_id: str) -> str:
        return f"fake-address-{socket_id}"

    def payment_uri(self, socket_id: str, amount: int | None) -> str:
        return f"fake:{self.address_for(socket_id)}" + ("" if amount is None else f"?amount={amount}")

    def close(self) -> None:
        pass

    def add(self, deposit_id: str, socket_id: str, amount: int, final: bool = True) -> None:
        self.deposits.append((Deposit(deposit_id, socket_id, amount, 0.0), final))

    def finalize(self, deposit_id: str) -> None:
        self.deposits = [(d, final or d.deposit_id == deposit_id) for d, final in self.deposits]

    def deposits_since(self, cursor: str | None) -> tuple[list[Deposit], str | None]:
        self.calls += 1
        if self.fail:
            raise LedgerUnavailable("fake node unreachable")
        start = 0 if (cursor is None or self.redeliver) else int(cursor)
        listed = []
        index = start
        for d, final in self.deposits[start:]:
            if not final:
                break
            listed.append(d)
            index += 1
        return listed, str(index)


class FakePublisher:
    def __init__(self):
        self.published: list[list[dict]] = []

    def publish(self, states: list[dict]) -> None:
        self.published.append(states)


class FakeGPIO:
    """The RPi.GPIO module, as far as hardware.gpio_relay uses it. Pass it as `gpio=`.

    Every call is recorded in order in `calls` with readable names, e.g.
    ("setmode", "BCM"), ("setup", 4, "OUT", 1), ("output", 4, 0), ("cleanup", 4).
    `modes` and `levels` hold each pin's direction and level (None: an input
    with no pull, i.e. floating); `driven` lists every (pin, level) an output
    was driven to, so a test can see a glitch. Like the real module, output()
    on a pin not set up as an output raises RuntimeError. Set `fail_output`
    to make output() fail, `fail_setup` (True or a message) to make setup() fail.
    """

    BOARD = 10
    BCM = 11
    OUT = 0
    IN = 1
    LOW = 0
    HIGH = 1
    PUD_OFF = 20
    PUD_DOWN = 21
    PUD_UP = 22

    _MODE_NAMES = {BOARD: "BOARD", BCM: "BCM"}
    _DIRECTION_NAMES = {OUT: "OUT", IN: "IN"}

    def __init__(self, mode: int | None = None):
        self.mode = mode
        self.warnings = True
        self.calls: list[tuple] = []
        self.modes: dict[int, str] = {}
        self.levels: dict[int, int | None] = {}
        self.driven: list[tuple[int, int]] = []
        self.fail_output = False
        self.fail_setup: bool | str = False

    def getmode(self) -> int | None:
        self.calls.append(("getmode",))
        return self.mode

    def setmode(self, mode: int) -> None:
        self.calls.append(("setmode", self._MODE_NAMES.get(mode, mode)))
        if self.mode is not None and mode != self.mode:
            raise ValueError("A different mode has already been set!")
        if mode not in self._MODE_NAMES:
            raise ValueError("An invalid mode was passed to setmode()")
        self.mode = mode

    def setwarnings(self, flag: bool) -> None:
        self.calls.append(("setwarnings", flag))
        self.warnings = bool(flag)

    def setup(self, pin: int, direction: int, pull_up_down: int = PUD_OFF, initial: int | None = None) -> None:
        self.calls.append(("setup", pin, self._DIRECTION_NAMES.get(direction, direction), initial))
        self._check_channel(pin)
        if self.fail_setup:
            raise RuntimeError(self.fail_setup if isinstance(self.fail_setup, str) else "fake GPIO: setup failed")
        if direction == self.OUT:
            if pull_up_down != self.PUD_OFF:
                raise ValueError("pull_up_down parameter is not valid for outputs")
            # Like the real module: the level is written before the pin becomes an output.
            level = initial if initial is not None else (self.levels.get(pin) or self.LOW)
            self.modes[pin] = "OUT"
            self._drive(pin, level)
        elif direction == self.IN:
            if initial is not None:
                raise ValueError("initial parameter is not valid for inputs")
            self.modes[pin] = "IN"
            self.levels[pin] = {self.PUD_UP: self.HIGH, self.PUD_DOWN: self.LOW}.get(pull_up_down)
        else:
            raise ValueError("An invalid direction was passed to setup()")

    def output(self, pin: int, value: int | bool) -> None:
        self.calls.append(("output", pin, int(value)))
        self._check_channel(pin)
        if self.modes.get(pin) != "OUT":
            raise RuntimeError("The GPIO channel has not been set up as an OUTPUT")
        if self.fail_output:
            raise RuntimeError("fake GPIO: output failed")
        self._drive(pin, int(value))

    def input(self, pin: int) -> int | None:
        self.calls.append(("input", pin))
        self._check_channel(pin)
        if pin not in self.modes:
            raise RuntimeError("You must setup() the GPIO channel first")
        return self.levels.get(pin)

    def cleanup(self, pin: int | None = None) -> None:
        self.calls.append(("cleanup", pin))
        pins = list(self.modes) if pin is None else [pin]
        for p in pins:
            if p in self.modes:
                self.modes[p] = "IN"  # the real cleanup leaves an input with no pull: floating
                self.levels[p] = None
        if pin is None:
            self.mode = None

    def _check_channel(self, pin: int) -> None:
        if self.mode is None:
            raise RuntimeError("Please set pin numbering mode using GPIO.setmode(GPIO.BOARD) or GPIO.setmode(GPIO.BCM)")
        if self.mode == self.BCM and not 0 <= pin < 54:
            raise ValueError("The channel sent is invalid on a Raspberry Pi")

    def _drive(self, pin: int, level: int) -> None:
        self.levels[pin] = level
        self.driven.append((pin, level))
