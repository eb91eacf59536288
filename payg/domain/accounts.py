"""The journal's vocabulary: the kinds of entry an account holds, and one entry as read back."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Literal, get_args

from payg.domain.tariff import Rate

CreditKind = Literal["deposit", "credit", "trade_in", "emergency"]  # emergency: a loan repaid by the next top-up
DebitKind = Literal["usage", "debit", "trade_out", "emergency_repaid", "standing"]  # standing: a day's charge
EntryKind = CreditKind | DebitKind
# Events that need a person to look: the landlord view shows them until acknowledged.
AlarmKind = Literal["implausible_jump", "counter_reset", "relay_bypass", "code_lockout", "unexplained_funds",
                    "uncreditable_deposit"]
# What else the journal's event log records: notices, the landlord's actions, codes, emergency credit, debt plans.
EventKind = AlarmKind | Literal["credit_off", "credit_on", "low_credit", "override", "manual", "alarm_ack", "code",
                                "code_issued", "emergency", "debt_recovered", "channel"]
CREDIT_KINDS: tuple[CreditKind, ...] = get_args(CreditKind)
DEBIT_KINDS: tuple[DebitKind, ...] = get_args(DebitKind)
ALARM_KINDS: tuple[AlarmKind, ...] = get_args(AlarmKind)


@dataclass(frozen=True)
class Entry:
    id: int
    socket_id: str
    at: float
    kind: EntryKind
    amount: int
    energy_wh: Fraction | None
    idem_key: str | None
    memo: str
    rate: Rate | None = None  # what usage or a standing charge was billed at (None before rates were kept)


@dataclass(frozen=True)
class Deposit:
    """A final payment into a socket's address, in the ledger's smallest unit (nanos, wei, token base units)."""

    deposit_id: str  # ledger identity, unique per (payment, socket); the journal's idempotency key is built from it
    socket_id: str
    amount: int  # ledger units; the watcher converts them to tokens with the remainder carried
    at: float
    # Units at the address that no payment explains (ether a contract moved there; negative: moved away): the
    # watcher raises an alarm for the landlord and credits nothing.
    unexplained: bool = False
