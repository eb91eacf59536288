"""Test beds for the ledger conformance suite: one per backend, all with the same shape.

A bed owns a ledger (a chain, a node, a file) that the tests can pay into, make
final and break. `open()` builds a fresh DepositSource over the same ledger, the
way a restarted controller would.
"""

from __future__ import annotations

from pathlib import Path

from ledgers.mock import MockLedger, mock_address
from payg.adapters.clocks import ManualClock
from payg.ports import DepositSource


class LedgerBed:
    """The shape every bed has. Amounts here are ledger units (Deposit.amount's unit)."""

    name: str
    units_per_token: int  # what open() configures as the ledger's token value

    def open(self, accounts: dict[str, int]) -> DepositSource:
        """A new DepositSource over this ledger; accounts maps socket id -> derivation index."""
        raise NotImplementedError

    def pay(self, address: str, units: int) -> None:
        """One payment of `units` to `address`, included in the ledger but not final yet."""
        raise NotImplementedError

    def pay_many(self, payments: list[tuple[str, int]]) -> None:
        """Several payments that land together (one block, one checkpoint), not final yet."""
        raise NotImplementedError

    def finalize(self) -> None:
        """Make every payment so far final (confirmations, a checkpoint, finality time)."""
        raise NotImplementedError

    def foreign_address(self) -> str:
        """A well-formed address that belongs to no socket."""
        raise NotImplementedError

    def break_node(self) -> None:
        raise NotImplementedError

    def heal_node(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class MockBed(LedgerBed):
    name = "mock"
    units_per_token = 1
    FINALITY_S = 10.0

    def __init__(self, tmp_path: Path):
        self.path = tmp_path / "mock-ledger.sqlite"
        self.clock = ManualClock(1_700_000_000.0)
        self._payer = MockLedger(self.path, self.clock, [])
        self._opened: list[MockLedger] = []
        self._offline = False

    def open(self, accounts: dict[str, int]) -> DepositSource:
        ledger = MockLedger(self.path, self.clock, list(accounts), finality_s=self.FINALITY_S)
        ledger.set_offline(self._offline)
        self._opened.append(ledger)
        return ledger

    def pay(self, address: str, units: int) -> None:
        self._payer.pay_to(address, units)

    def pay_many(self, payments: list[tuple[str, int]]) -> None:
        for address, units in payments:
            self._payer.pay_to(address, units)

    def finalize(self) -> None:
        self.clock.advance(self.FINALITY_S)

    def foreign_address(self) -> str:
        return mock_address("nobody-here")

    def break_node(self) -> None:
        self._offline = True
        for ledger in self._opened:
            ledger.set_offline(True)

    def heal_node(self) -> None:
        self._offline = False
        for ledger in self._opened:
            ledger.set_offline(False)

    def close(self) -> None:
        for ledger in self._opened + [self._payer]:
            ledger.close()
