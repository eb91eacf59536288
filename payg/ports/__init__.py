"""Protocols the services consume. Adapters (payg/adapters, hardware/, ledgers/) match them by shape.

The journal's roles are in payg/ports/journal.py (Journal and JournalTx, their unions, are named here too). The
values that cross them (MeterReading, Deposit, Advert, ...) are the domain's and are named here too."""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol, runtime_checkable

from payg.domain.accounts import Deposit as Deposit  # named here for the adapters (see the docstring)
from payg.domain.billing import MeterReading as MeterReading
from payg.domain.codes import CodeCounts, CodeKey, Decoded
from payg.domain.market import Advert, Channel, MarketInfo, Purchase, Voucher
from payg.domain.socket import SocketSnapshot
from payg.errors import MeterUnavailable
from payg.ports.journal import Journal as Journal
from payg.ports.journal import JournalTx as JournalTx


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the Unix epoch."""
        ...


class Lock(Protocol):
    """What serialises the loop's jobs and the web's requests on shared state (threading.RLock in production;
    the services take it as a context manager and import no threads)."""

    def __enter__(self) -> object: ...

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None,
                 /) -> bool | None: ...


class MeterReader(Protocol):
    """Reads every meter once per tick (hardware/bus_pool.py BusPool)."""

    def read_all(self) -> dict[str, MeterReading | MeterUnavailable]:
        """A fresh reading of every socket's meter, or why there is none this tick; never an old reading."""

    def close(self) -> None: ...


class Notifier(Protocol):
    """Tells the service manager how the controller is doing (systemd's sd_notify); every call may do nothing."""

    def ready(self) -> bool: ...

    def watchdog(self) -> bool: ...

    def stopping(self) -> bool: ...

    def watchdog_interval_s(self) -> float | None: ...


class EnergyMeter(Protocol):
    def read(self) -> MeterReading:
        """A fresh reading; raises MeterUnavailable, never returns a stale value."""
        ...


class Relay(Protocol):
    def set_closed(self, closed: bool) -> None:
        """closed=True powers the socket. Raises RelayError."""
        ...

    def is_closed(self) -> bool: ...


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


@runtime_checkable
class DepositPayer(Protocol):
    """Pays into a socket's address. Only the mock ledger offers this to the entry points (found by this type)."""

    def pay(self, socket_id: str, amount: int) -> str: ...


class StatePublisher(Protocol):
    def publish(self, states: list[SocketSnapshot]) -> None:
        """Called once per tick with every socket's state."""
        ...


class PeerTrade(Protocol):
    """The energy market (rules in payg/domain/market.py). Every call that acts names the socket whose trade
    key acts (`as_socket`); a socket's trade party is its own address, separate from its top-up
    address, so trade money is never mistaken for a tenant's deposit. Refusals raise a TradeRefused
    subclass and move nothing; an unreachable ledger raises LedgerUnavailable."""

    name: str

    def party_for(self, socket_id: str) -> str: ...

    def now(self) -> int:
        """The ledger's clock (unix seconds) that prices and expiries are judged by."""

    def market(self) -> MarketInfo: ...

    def role_of(self, party: str) -> str: ...

    def grant(self, as_socket: str, party: str, role: str) -> None:
        """Owner grants regulator; a regulator grants producer or consumer (never both to one party)."""

    def revoke(self, as_socket: str, party: str) -> None: ...

    def post_advert(self, as_socket: str, energy_wh: int, min_price_per_wh: int) -> Advert: ...

    def advert(self, advert_id: str) -> Advert: ...

    def adverts(self) -> list[Advert]:
        """Adverts open now (unexpired, energy left), oldest first."""

    def buy(self, as_socket: str, advert_id: str, energy_wh: int,
            max_price_per_wh: int | None = None) -> Purchase: ...

    def expire(self, advert_id: str) -> int:
        """Return an expired advert's unsold energy to its producer (frees grid capacity); the Wh returned."""

    def withdraw(self, as_socket: str) -> int:
        """Pull what the market owes the socket's party (sales, tax); the amount paid out (0 if none)."""


class PaymentChannel(Protocol):
    """One-way payment channels. Vouchers are cumulative and bound to one channel and one domain
    (chain and contract, or network). `check_voucher` is stateless; replay protection (an amount
    not above the last accepted) is the receiving controller's job, see payg/services/channels.py."""

    name: str

    def party_for(self, socket_id: str) -> str: ...

    def now(self) -> int: ...

    def domain(self) -> str: ...

    def open_channel(self, as_socket: str, recipient: str, escrow: int, expires_at: int) -> Channel: ...

    def top_up(self, as_socket: str, channel_id: str, amount: int, expires_at: int) -> Channel:
        """Add `amount` (may be 0) and keep or extend the expiry; sender only, while open."""

    def channel(self, channel_id: str) -> Channel: ...

    def sign_voucher(self, as_socket: str, channel_id: str, amount: int) -> Voucher: ...

    def check_voucher(self, voucher: Voucher, channel_id: str) -> Channel:
        """The channel, if `voucher` is a valid promise on `channel_id` right now; else VoucherRejected
        (or UnknownChannel, ChannelClosed, ChannelExpired)."""

    def close(self, as_socket: str, channel_id: str, voucher: Voucher) -> Channel:
        """Recipient only, before expiry: pays the voucher's amount to the recipient, the rest to the sender."""

    def reclaim(self, as_socket: str, channel_id: str) -> Channel:
        """Sender only, after expiry, if not closed: the whole escrow back to the sender."""


@runtime_checkable
class EscrowWatch(Protocol):
    """A recipient's look at a channel's escrow on the ledger, for ledgers that do not hold the escrow for the
    recipient (IOTA): {"balance": what the channel's address holds, ...}. The composition root hands the trade
    backend to the channel book as one when it is one (found by this type)."""

    def watch(self, channel_id: str) -> dict[str, Any]: ...


@runtime_checkable
class PeerDirectory(Protocol):
    """Remembers which controller holds a party's keys, for ledgers whose settlement goes through the other
    controller (IOTA)."""

    def add_peer(self, party: str, base_url: str) -> None: ...


@runtime_checkable
class PeerMessages(Protocol):
    """Answers a backend's own messages from other controllers (`POST /api/peer/<kind>`); raises payg errors."""

    def handle_peer_message(self, kind: str, payload: dict[str, Any]) -> dict[str, Any]: ...


class PeerLink(Protocol):
    """Sends a JSON message to another controller (`POST {base_url}/api/peer/{kind}`) and returns its answer.
    A refusal comes back as the same payg error the peer raised; an unreachable peer is LedgerUnavailable."""

    def post(self, base_url: str, kind: str, payload: dict[str, Any]) -> dict[str, Any]: ...


@dataclass(frozen=True)
class LandlordSession:
    """A landlord's login as the controller keeps it. The cookie holds a random token; this holds only the
    token's SHA-256 (`key`), so a copy of the store logs nobody in."""

    key: str
    created_at: float
    seen_at: float
    password: str  # fingerprint of the password hash it was made with: a new password ends it
    csrf: str      # the raw CSRF token of this session (Flask-WTF signs it for the forms)


class SessionStore(Protocol):
    """Where landlord sessions live between requests (and restarts)."""

    def add(self, session: LandlordSession) -> None: ...

    def get(self, key: str) -> LandlordSession | None: ...

    def seen(self, key: str, at: float) -> None: ...

    def remove(self, key: str) -> bool: ...

    def remove_all(self) -> int: ...

    def remove_stale(self, seen_before: float, created_before: float) -> int: ...


class CodeCodec(Protocol):
    """Makes and reads a socket's top-up codes (payg/adapters/openpaygo.py, on the openpaygo package)."""

    def encode(self, key: CodeKey, count: int, units: int) -> tuple[int, str]:
        """The next Add-Time code after `count` worth `units`: (its count, its 9 digits)."""

    def decode(self, key: CodeKey, code: str, counts: CodeCounts) -> Decoded: ...
