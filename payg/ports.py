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
    """A final payment into a socket's address, in the ledger's smallest unit (nanos, wei, token base units)."""

    deposit_id: str  # ledger identity, unique per (payment, socket); the journal's idempotency key is built from it
    socket_id: str
    amount: int  # ledger units; the watcher converts them to tokens with the remainder carried
    at: float


class DepositSource(Protocol):
    name: str  # "mock", "iota", "ethereum": prefixes idempotency keys and cursor rows
    units_per_token: int  # ledger units in one token (1 for the mock ledger, nanos or wei per token otherwise)

    def address_for(self, socket_id: str) -> str: ...

    def payment_uri(self, socket_id: str, amount: int | None) -> str:
        """What a top-up QR code encodes; amount in tokens (the URI carries ledger units) or None."""
        ...

    def deposits_since(self, cursor: str | None) -> tuple[list[Deposit], str | None]:
        """Final deposits after cursor, oldest first, and the cursor to pass next time.
        Raises LedgerUnavailable (LedgerReorganised when the cursor's block left the chain)."""
        ...

    def close(self) -> None: ...


class DepositPayer(Protocol):
    """Pays into a socket's address. Only the mock ledger offers this to the entry points."""

    def pay(self, socket_id: str, amount: int) -> str: ...


class StatePublisher(Protocol):
    def publish(self, states: list[dict]) -> None:
        """Called once per tick with every socket's state."""
        ...
