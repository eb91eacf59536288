"""Protocols the domain consumes. Adapters in hardware/ and ledgers/ match them by shape."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Protocol


@dataclass(frozen=True)
class MeterReading:
    """One fresh reading. energy_wh is the meter's cumulative counter, exact (int or Fraction)."""

    energy_wh: int | Fraction
    power_w: float
    voltage_v: float
    current_a: float
    at: float
    # Smallest step the energy counter can show (1 Wh for a PZEM-004T); the
    # cut-off predictor uses it to bound the energy hidden below the last step.
    resolution_wh: Fraction = Fraction(1)


class EnergyMeter(Protocol):
    def read(self) -> MeterReading:
        """A fresh reading; raises MeterUnavailable, never returns a stale value."""
        ...


class Relay(Protocol):
    def set_closed(self, closed: bool) -> None:
        """closed=True powers the socket. Raises RelayError."""
        ...

    def is_closed(self) -> bool: ...


@dataclass(frozen=True)
class Deposit:
    """A final payment into a socket's address, in the ledger's smallest unit."""

    deposit_id: str  # ledger identity; the journal's idempotency key is built from it
    socket_id: str
    amount: int
    at: float


class DepositSource(Protocol):
    name: str  # "mock", "iota", "ethereum": prefixes idempotency keys and cursor rows

    def address_for(self, socket_id: str) -> str: ...

    def payment_uri(self, socket_id: str, amount: int | None) -> str: ...

    def deposits_since(self, cursor: str | None) -> tuple[list[Deposit], str | None]:
        """Final deposits after cursor, oldest first, and the cursor to pass next time.
        Raises LedgerUnavailable."""
        ...


class DepositPayer(Protocol):
    """Pays into a socket's address. Only the mock ledger offers this to the entry points."""

    def pay(self, socket_id: str, amount: int) -> str: ...


class StatePublisher(Protocol):
    def publish(self, states: list[dict]) -> None:
        """Called once per tick with every socket's state."""
        ...
