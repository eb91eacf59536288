"""Fakes for the ports: scriptable meters, relays and deposit sources, injected through constructors."""

from __future__ import annotations

from fractions import Fraction

from payg.clock import ManualClock
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

    def __init__(self):
        self.deposits: list[tuple[Deposit, bool]] = []
        self.fail = False
        self.redeliver = False
        self.calls = 0

    def address_for(self, socket_id: str) -> str:
        return f"fake-address-{socket_id}"

    def payment_uri(self, socket_id: str, amount: int | None) -> str:
        return f"fake:{self.address_for(socket_id)}" + ("" if amount is None else f"?amount={amount}")

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
