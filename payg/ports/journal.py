"""The journal's roles: each service takes the one it needs (MeteringJournal, DepositJournal, ...) and its
transaction's role (BillingTx, DepositTx, ...). Journal and JournalTx are their unions, which the SQLite journal
(payg/adapters/journal.py, journal_writer.py) matches by shape."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from fractions import Fraction
from typing import Any, Protocol

from payg.domain.accounts import CreditKind, DebitKind, Entry, EntryKind, EventKind
from payg.domain.billing import MeterState
from payg.domain.codes import CodeCounts
from payg.domain.history import Bucket
from payg.domain.market import ChannelRow
from payg.domain.socket import OverrideMode
from payg.domain.tariff import Rate


class EventTx(Protocol):
    """The writes of one journal transaction (a unit of work): all of them commit, or none. This role: events and
    cursors (the tenant notices)."""

    def event(self, socket_id: str, kind: EventKind, detail: str, at: float) -> None: ...

    def set_cursor(self, name: str, value: str | None) -> None: ...


class AccountTx(EventTx, Protocol):
    """Booking money on an account (a top-up and its debt plan, emergency credit). Credits carry an idempotency
    key: one booked before is not booked again (False). Every amount is an integer in ledger units; debits are
    given as positive amounts."""

    def credit(self, socket_id: str, amount: int, kind: CreditKind, idem_key: str, at: float,
               memo: str = "") -> bool: ...

    def debit(self, socket_id: str, amount: int, kind: DebitKind, at: float, *, energy_wh: Fraction | None = None,
              idem_key: str | None = None, memo: str = "", rate: Rate | None = None) -> bool: ...

    def set_deferred_debt(self, socket_id: str, units: int) -> None:
        """Debt set aside by a repayment plan (payg/domain/debt.py)."""


class BillingTx(EventTx, Protocol):
    """What a metering tick writes: usage, the billing state, anomaly events."""

    def debit(self, socket_id: str, amount: int, kind: DebitKind, at: float, *, energy_wh: Fraction | None = None,
              idem_key: str | None = None, memo: str = "", rate: Rate | None = None) -> bool: ...

    def save_state(self, socket_id: str, state: MeterState, previous_pending: int) -> None:
        """A socket's billing state, written now; its pending usage counts in the balance (previous_pending: as
        last saved or kept)."""

    def keep_state(self, socket_id: str, state: MeterState, previous_pending: int) -> None:
        """The same state, held in memory (and shown by every reader) until a transaction writes anything or
        save_state writes it: a crash loses it, and the meter's cumulative counter bills it again."""


class DepositTx(AccountTx, Protocol):
    """The deposit watcher's writes: a deposit booked once, with the socket's carry."""

    def deposit_carry(self, source: str, socket_id: str) -> int:
        """Ledger units received for a socket that do not make a whole token yet."""

    def record_deposit(self, source: str, socket_id: str, idem_key: str, units: int, tokens: int, carry: int,
                       at: float) -> bool:
        """Remember a ledger deposit (its raw units and the tokens it made) and the socket's new carry;
        False, and nothing written, if this key was recorded before."""


class ChannelTx(EventTx, Protocol):
    """The channel book's writes: channels, their vouchers, and the energy they paid for."""

    def credit(self, socket_id: str, amount: int, kind: CreditKind, idem_key: str, at: float,
               memo: str = "") -> bool: ...

    def add_channel(self, row: ChannelRow) -> None: ...

    def advance_channel(self, domain: str, channel_id: str, previous: int, amount: int, signature: str,
                        at: float) -> None: ...

    def set_channel_state(self, domain: str, channel_id: str, state: str, escrow: int, at: float) -> None: ...


class LandlordTx(AccountTx, Protocol):
    """The landlord's writes: overrides, adjustments, acknowledgements."""

    def acknowledge_alarms(self, socket_id: str, upto_event_id: int, at: float) -> None: ...

    def set_override(self, socket_id: str, mode: OverrideMode | None, at: float) -> None: ...


class CodeTx(AccountTx, Protocol):
    """The top-up code desk's writes."""

    def set_code_counts(self, socket_id: str, counts: CodeCounts) -> None:
        """The top-up code decoder's memory for a socket (payg/domain/codes.py)."""

    def set_codes_issued(self, socket_id: str, count: int) -> None:
        """The count of the last top-up code made for a socket."""

    def record_code_request(self, socket_id: str, request_id: str, after_count: int, units: int, count: int,
                            at: float) -> bool:
        """Which code a landlord's request made; False if the request id was used for the socket before."""


class JournalTx(BillingTx, DepositTx, ChannelTx, LandlordTx, CodeTx, Protocol):
    """Every write of a journal transaction: the union of the roles (payg/adapters/journal_writer.py matches it)."""


class Balances(Protocol):
    """A socket's account as the services read it. balance = the sum of its entries minus its pending usage."""

    def balance(self, socket_id: str) -> int: ...

    def deferred_debt(self, socket_id: str) -> int: ...

    def emergency_owed(self, socket_id: str) -> tuple[int, int]:
        """(emergency credit not yet repaid, in units; how many times it was taken)."""


class EventLog(Protocol):
    def events(self, socket_id: str, limit: int = 10) -> list[dict[str, Any]]:
        """Newest first: {"id", "at", "kind", "detail"}."""

    def cursor(self, name: str) -> str | None: ...


class NoticeJournal(Balances, EventLog, Protocol):
    """What the tenant notices read and write (payg/services/notices.py)."""

    def transaction(self) -> AbstractContextManager[EventTx]: ...


class MeteringJournal(NoticeJournal, Protocol):
    """What the metering loop reads and writes (payg/services/metering.py)."""

    def transaction(self) -> AbstractContextManager[BillingTx]: ...

    def meter_state(self, socket_id: str) -> MeterState | None: ...

    def ever_credited(self, socket_id: str) -> bool:
        """Anyone ever paid for the socket (a deposit, a credit, a trade-in); emergency credit is a loan."""

    def overrides(self) -> dict[str, str]:
        """The stored override of each socket that has one (payg/domain/socket.py override_mode reads it)."""


class AccountJournal(Balances, Protocol):
    """What books money on an account (emergency credit)."""

    def transaction(self) -> AbstractContextManager[AccountTx]: ...


class DepositJournal(Balances, EventLog, Protocol):
    def transaction(self) -> AbstractContextManager[DepositTx]: ...


class LandlordJournal(Balances, Protocol):
    def transaction(self) -> AbstractContextManager[LandlordTx]: ...

    def entry_by_key(self, idem_key: str) -> Entry | None: ...

    def open_alarms(self) -> dict[str, tuple[int, int, str]]:
        """Per socket with alarms not yet acknowledged: (how many, the latest's id, the latest's detail)."""


class CodeJournal(Balances, EventLog, Protocol):
    def transaction(self) -> AbstractContextManager[CodeTx]: ...

    def code_counts(self, socket_id: str) -> CodeCounts: ...

    def codes_issued(self, socket_id: str) -> int: ...

    def code_request(self, socket_id: str, request_id: str) -> tuple[int, int, int] | None: ...


class ChannelJournal(Protocol):
    def transaction(self) -> AbstractContextManager[ChannelTx]: ...

    def meter_state(self, socket_id: str) -> MeterState | None: ...

    def channels(self, direction: str | None = None, state: str | None = None) -> list[ChannelRow]: ...

    def channel(self, domain: str, channel_id: str) -> ChannelRow | None: ...


class Reports(EventLog, Protocol):
    """What the dashboard and the pages read: entries in order, the latest of a kind, open alarms."""

    def entries(self, socket_id: str, limit: int = 50, before_id: int | None = None) -> list[Entry]:
        """Newest first."""

    def all_entries(self, socket_id: str) -> Iterator[Entry]:
        """Oldest first."""

    def entries_after(self, after_id: int, limit: int = 1000) -> list[Entry]: ...

    def last_entries(self, kind: EntryKind) -> list[tuple[str, float, int]]:
        """Per socket, the latest entry of this kind: (socket id, at, amount)."""

    def first_entry_id_since(self, at: float) -> int: ...

    def open_alarms(self) -> dict[str, tuple[int, int, str]]:
        """Per socket with alarms not yet acknowledged: (how many, the latest's id, the latest's detail)."""


class StatementJournal(Protocol):
    """What receipts and statements read (payg/services/statements.py): sums of a socket's entries, exact."""

    def entries_between(self, socket_id: str, start: float, end: float) -> list[Entry]:
        """The socket's entries booked at `start` <= at < `end`, in the order booked."""

    def sum_before(self, socket_id: str, at: float) -> int:
        """The sum of the socket's entries booked before `at` (pending usage not taken off)."""

    def credits_through(self, socket_id: str, limit: int, through_id: int | None = None) -> list[tuple[Entry, int]]:
        """The socket's credit entries with ids up to `through_id` (None: all), newest first, at most `limit`, each
        with the sum of the socket's entries up to and including it."""

    def deferred_debt(self, socket_id: str) -> int: ...


class HistoryJournal(Protocol):
    """What the charts and the tenant's history read (payg/services/history.py): entries summed into buckets."""

    def history(self, socket_id: str, start: float, step_s: int, count: int) -> tuple[int, list[Bucket], float | None]:
        """(the sum of the socket's entries before `start`, its non-empty buckets among `count` of `step_s` from
        `start`, the time of its first entry or None)."""


class Journal(MeteringJournal, AccountJournal, DepositJournal, LandlordJournal, CodeJournal, ChannelJournal, Reports,
              StatementJournal, HistoryJournal, Protocol):
    """Every socket's account, append-only: the union of the roles above (payg/adapters/journal.py SqliteJournal;
    tests.fakes.FakeJournal). Each service takes only the role it needs."""

    def transaction(self) -> AbstractContextManager[JournalTx]: ...
