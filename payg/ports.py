"""Protocols the domain consumes. Adapters in hardware/ and ledgers/ match them by shape."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Protocol

from payg.domain.market import Advert, Channel, MarketInfo, Purchase, Voucher


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


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the Unix epoch."""
        ...


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


class PeerTrade(Protocol):
    """The energy market (rules in payg/trade.py). Every call that acts names the socket whose trade
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
    not above the last accepted) is the receiving controller's job, see payg/channels.py."""

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


class EscrowWatch(Protocol):
    """A recipient's look at a channel's escrow on the ledger, for ledgers that do not hold the escrow for the
    recipient (IOTA): {"balance": what the channel's address holds, ...}. The composition root hands it to the
    channel book only for such ledgers."""

    def watch(self, channel_id: str) -> dict: ...


class PeerDirectory(Protocol):
    """Remembers which controller holds a party's keys, for ledgers whose settlement goes through the other
    controller (IOTA)."""

    def add_peer(self, party: str, base_url: str) -> None: ...


class PeerMessages(Protocol):
    """Answers a backend's own messages from other controllers (`POST /api/peer/<kind>`); raises payg errors."""

    def handle_peer_message(self, kind: str, payload: dict) -> dict: ...


class PeerLink(Protocol):
    """Sends a JSON message to another controller (`POST {base_url}/api/peer/{kind}`) and returns its answer.
    A refusal comes back as the same payg error the peer raised; an unreachable peer is LedgerUnavailable."""

    def post(self, base_url: str, kind: str, payload: dict) -> dict: ...
