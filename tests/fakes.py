"""Fakes for the ports: scriptable meters, relays, deposit sources, a journal, systemd and the bus deadline,
injected through constructors."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import replace
from fractions import Fraction

from payg.adapters.clocks import ManualClock
from payg.domain.accounts import ALARM_KINDS, CREDIT_KINDS, DEBIT_KINDS, Entry
from payg.domain.billing import MeterState
from payg.domain.codes import CodeCounts
from payg.domain.market import ChannelRow
from payg.domain.socket import SocketSnapshot
from payg.errors import JournalError, LedgerUnavailable, MeterUnavailable, RelayError
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
        self.published: list[list[SocketSnapshot]] = []

    def publish(self, states: list[SocketSnapshot]) -> None:
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


class FakeJournal:
    """The Journal port in memory: append-only entries with idempotency keys, billing states, cursors,
    events, overrides and channels; a transaction is applied whole when it ends without an error, else not
    at all (as SqliteJournal's). `fail_next_commit` makes the next transaction fail at its end."""

    def __init__(self):
        self.entries_: list[Entry] = []
        self.states: dict[str, MeterState] = {}
        self.cursors: dict[str, str | None] = {}
        self.events_: list[dict] = []
        self.overrides_: dict[str, str] = {}
        self.carries: dict[tuple[str, str], int] = {}
        self.received: dict[str, tuple[str, int, int]] = {}
        self.channels_: dict[tuple[str, str], ChannelRow] = {}
        self.code_counts_: dict[str, CodeCounts] = {}
        self.codes_issued_: dict[str, int] = {}
        self.code_requests_: dict[tuple[str, str], tuple[int, int, int]] = {}
        self.deferred_: dict[str, int] = {}
        self.commits = 0
        self.fail_next_commit = False
        self._sums: dict[str, int] = {}  # each socket's entries summed, up to entry number _summed
        self._summed = 0

    @contextmanager
    def transaction(self):
        tx = _FakeTx(self)
        yield tx
        if self.fail_next_commit:
            self.fail_next_commit = False
            raise JournalError("fake journal: the commit failed")
        tx.apply()
        self.commits += 1

    def balance(self, socket_id: str) -> int:
        pending = self.states[socket_id].pending_units if socket_id in self.states else 0
        return self._sum(socket_id) - pending

    def _sum(self, socket_id: str) -> int:
        """The entries' sum, adding only those appended since the last call (entries are append-only): the
        balance is read several times a tick, and summing afresh made long runs quadratic."""
        for e in self.entries_[self._summed:]:
            self._sums[e.socket_id] = self._sums.get(e.socket_id, 0) + e.amount
        self._summed = len(self.entries_)
        return self._sums.get(socket_id, 0)

    def meter_state(self, socket_id: str) -> MeterState | None:
        return self.states.get(socket_id)

    def ever_credited(self, socket_id: str) -> bool:
        return any(e.socket_id == socket_id and e.kind in ("deposit", "credit", "trade_in") for e in self.entries_)

    def overrides(self) -> dict[str, str]:
        return dict(self.overrides_)

    def cursor(self, name: str) -> str | None:
        return self.cursors.get(name)

    def entry_by_key(self, idem_key: str) -> Entry | None:
        return next((e for e in self.entries_ if e.idem_key == idem_key), None)

    def entries(self, socket_id: str, limit: int = 50, before_id: int | None = None) -> list[Entry]:
        mine = [e for e in self.entries_ if e.socket_id == socket_id and (before_id is None or e.id < before_id)]
        return mine[::-1][:limit]

    def all_entries(self, socket_id: str):
        return iter([e for e in self.entries_ if e.socket_id == socket_id])

    def entries_after(self, after_id: int, limit: int = 1000) -> list[Entry]:
        return [e for e in self.entries_ if e.id > after_id][:limit]

    def entries_between(self, socket_id: str, start: float, end: float) -> list[Entry]:
        return [e for e in self.entries_ if e.socket_id == socket_id and start <= e.at < end]

    def sum_before(self, socket_id: str, at: float) -> int:
        return sum(e.amount for e in self.entries_ if e.socket_id == socket_id and e.at < at)

    def credits_through(self, socket_id: str, limit: int, through_id: int | None = None) -> list[tuple[Entry, int]]:
        out, running = [], 0
        for e in self.entries_:
            if e.socket_id == socket_id and (through_id is None or e.id <= through_id):
                running += e.amount
                if e.kind in CREDIT_KINDS:
                    out.append((e, running))
        return out[::-1][:limit]

    def last_entries(self, kind: str) -> list[tuple[str, float, int]]:
        last = {e.socket_id: e for e in self.entries_ if e.kind == kind}
        return [(e.socket_id, e.at, e.amount) for e in last.values()]

    def first_entry_id_since(self, at: float) -> int:
        later = [e.id for e in self.entries_ if e.at >= at]
        return min(later) - 1 if later else len(self.entries_)

    def open_alarms(self) -> dict[str, tuple[int, int, str]]:
        out = {}
        for socket_id in {e["socket"] for e in self.events_}:
            seen = int(self.cursors.get(f"alarms-seen:{socket_id}") or 0)
            alarms = [e for e in self.events_ if e["socket"] == socket_id and e["kind"] in ALARM_KINDS
                      and e["id"] > seen]
            if alarms:
                last = alarms[-1]
                out[socket_id] = (len(alarms), last["id"], f"{last['kind'].replace('_', ' ')}: {last['detail']}")
        return out

    def events(self, socket_id: str, limit: int = 10) -> list[dict]:
        mine = [{k: e[k] for k in ("id", "at", "kind", "detail")} for e in self.events_ if e["socket"] == socket_id]
        return mine[::-1][:limit]

    def channels(self, direction: str | None = None, state: str | None = None) -> list[ChannelRow]:
        return [r for r in self.channels_.values()
                if (direction is None or r.direction == direction) and (state is None or r.state == state)]

    def channel(self, domain: str, channel_id: str) -> ChannelRow | None:
        return self.channels_.get((domain, channel_id))

    def code_counts(self, socket_id: str) -> CodeCounts:
        return self.code_counts_.get(socket_id, CodeCounts())

    def codes_issued(self, socket_id: str) -> int:
        return self.codes_issued_.get(socket_id, 0)

    def code_request(self, socket_id: str, request_id: str) -> tuple[int, int, int] | None:
        return self.code_requests_.get((socket_id, request_id))

    def deferred_debt(self, socket_id: str) -> int:
        return self.deferred_.get(socket_id, 0)

    def emergency_owed(self, socket_id: str) -> tuple[int, int]:
        mine = [e for e in self.entries_ if e.socket_id == socket_id and e.kind in ("emergency", "emergency_repaid")]
        return sum(e.amount for e in mine), sum(1 for e in mine if e.kind == "emergency")


class _FakeTx:
    """One FakeJournal transaction: the writes are collected, checked as SqliteJournal checks them, and
    applied only by FakeJournal.transaction when the block ends."""

    def __init__(self, journal: FakeJournal):
        self.j = journal
        self.ops: list = []
        self._keys: set[str] | None = None
        self.received = set(journal.received)

    @property
    def keys(self) -> set[str]:
        """The idempotency keys booked, gathered at the first keyed entry (a tick's usage entries have none)."""
        if self._keys is None:
            self._keys = {e.idem_key for e in self.j.entries_ if e.idem_key is not None}
        return self._keys

    def _entry(self, socket_id, at, kind, amount, energy_wh, idem_key, memo, rate=None) -> bool:
        if idem_key is not None and idem_key in self.keys:
            return False
        if idem_key is not None:
            self.keys.add(idem_key)
        self.ops.append(("entry", (socket_id, at, kind, amount, energy_wh, idem_key, memo, rate)))
        return True

    def credit(self, socket_id, amount, kind, idem_key, at, memo=""):
        if kind not in CREDIT_KINDS or not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
            raise ValueError(f"not a credit: {kind} {amount!r}")
        return self._entry(socket_id, at, kind, amount, None, idem_key, memo)

    def debit(self, socket_id, amount, kind, at, *, energy_wh=None, idem_key=None, memo="", rate=None):
        if kind not in DEBIT_KINDS or not isinstance(amount, int) or isinstance(amount, bool) or amount < 0:
            raise ValueError(f"not a debit: {kind} {amount!r}")
        return self._entry(socket_id, at, kind, -amount, energy_wh, idem_key, memo, rate)

    def save_state(self, socket_id, state, previous_pending):
        self.ops.append(("state", (socket_id, state)))

    keep_state = save_state  # the fake keeps everything in memory

    def deposit_carry(self, source, socket_id):
        carried = self.j.carries.get((source, socket_id), 0)
        for op, args in self.ops:
            if op == "carry" and args[:2] == (source, socket_id):
                carried = args[2]
        return carried

    def record_deposit(self, source, socket_id, idem_key, units, tokens, carry, at):
        if idem_key in self.received:
            return False
        self.received.add(idem_key)
        self.ops.append(("received", (idem_key, socket_id, units, tokens)))
        self.ops.append(("carry", (source, socket_id, carry)))
        return True

    def add_channel(self, row):
        if (row.domain, row.channel_id) in self.j.channels_:
            raise ValueError(f"channel {row.channel_id} on {row.domain} is already known")
        self.ops.append(("channel", row))

    def advance_channel(self, domain, channel_id, previous, amount, signature, at):
        row = self.j.channels_.get((domain, channel_id))
        if row is None or row.amount != previous or row.state != "open":
            raise JournalError(f"channel {channel_id}: its latest voucher changed underneath")
        self.ops.append(("channel", replace(row, amount=amount, signature=signature, updated_at=at)))

    def set_channel_state(self, domain, channel_id, state, escrow, at):
        row = self.j.channels_[(domain, channel_id)]
        self.ops.append(("channel", replace(row, state=state, escrow=escrow, updated_at=at)))

    def event(self, socket_id, kind, detail, at):
        self.ops.append(("event", (socket_id, at, kind, detail)))

    def set_cursor(self, name, value):
        self.ops.append(("cursor", (name, value)))

    def acknowledge_alarms(self, socket_id, upto_event_id, at):
        self.set_cursor(f"alarms-seen:{socket_id}", str(upto_event_id))
        self.event(socket_id, "alarm_ack", f"alarms up to event {upto_event_id} acknowledged", at)

    def set_override(self, socket_id, mode, at):
        self.ops.append(("override", (socket_id, mode)))

    def set_code_counts(self, socket_id, counts):
        self.ops.append(("code_counts", (socket_id, counts)))

    def set_codes_issued(self, socket_id, count):
        if count < 0:
            raise ValueError("a count is >= 0")
        self.ops.append(("codes_issued", (socket_id, count)))

    def record_code_request(self, socket_id, request_id, after_count, units, count, at):
        if (socket_id, request_id) in self.j.code_requests_ or any(
                op == "code_request" and args[:2] == (socket_id, request_id) for op, args in self.ops):
            return False
        self.ops.append(("code_request", (socket_id, request_id, after_count, units, count)))
        return True

    def set_deferred_debt(self, socket_id, units):
        if units < 0:
            raise ValueError("deferred debt is >= 0")
        self.ops.append(("deferred", (socket_id, units)))

    def apply(self) -> None:
        j = self.j
        for op, args in self.ops:
            if op == "entry":
                j.entries_.append(Entry(len(j.entries_) + 1, *args))
            elif op == "state":
                j.states[args[0]] = args[1]
            elif op == "received":
                j.received[args[0]] = args[1:]
            elif op == "carry":
                j.carries[args[:2]] = args[2]
            elif op == "channel":
                j.channels_[(args.domain, args.channel_id)] = args
            elif op == "event":
                socket_id, at, kind, detail = args
                j.events_.append({"id": len(j.events_) + 1, "socket": socket_id, "at": at, "kind": kind,
                                  "detail": detail})
            elif op == "cursor":
                j.cursors[args[0]] = args[1]
            elif op == "override":
                if args[1] is None:
                    j.overrides_.pop(args[0], None)
                else:
                    j.overrides_[args[0]] = args[1]
            elif op == "code_counts":
                j.code_counts_[args[0]] = args[1]
            elif op == "codes_issued":
                j.codes_issued_[args[0]] = args[1]
            elif op == "code_request":
                j.code_requests_[args[:2]] = args[2:]
            elif op == "deferred":
                j.deferred_[args[0]] = args[1]


class FakeNotifier:
    """systemd's notify socket as the Site sees it: records what it was told."""

    def __init__(self, watchdog_interval_s: float | None = None):
        self.messages: list[str] = []
        self.interval_s = watchdog_interval_s

    def ready(self) -> bool:
        self.messages.append("READY=1")
        return True

    def watchdog(self) -> bool:
        self.messages.append("WATCHDOG=1")
        return True

    def stopping(self) -> bool:
        self.messages.append("STOPPING=1")
        return True

    def watchdog_interval_s(self) -> float | None:
        return self.interval_s


class VirtualWaiter:
    """The bus pool's deadline on a virtual clock: a wait ends when its event is set, or when the test has
    moved `clock` past the deadline; it never waits out real time."""

    def __init__(self, clock: ManualClock):
        self.clock = clock
        self.waits: list[float] = []
        self.waiting = threading.Event()  # set while a wait runs: move the clock only then

    def wait(self, event: threading.Event, timeout_s: float) -> bool:
        self.waits.append(timeout_s)
        until = self.clock.now() + timeout_s
        self.waiting.set()
        try:
            while not event.wait(0.001):
                if self.clock.now() >= until:
                    return False
            return True
        finally:
            self.waiting.clear()
