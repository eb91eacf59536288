"""Market and channel rules, shared by every ledger backend.

Amounts are integers in the ledger's smallest unit (mock tokens, wei, nanos);
times are integer unix seconds on the ledger's clock (block or checkpoint time
on the real ledgers); energy is in whole Wh. The Ethereum contracts implement
exactly these formulas; the mock and IOTA backends call these functions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from payg.errors import AdvertExpired, CapacityExceeded, InvalidAmount, NotEnoughEnergy, PriceAboveLimit

HOUR_S = 3600
ADVERT_LIFETIME_S = 3 * HOUR_S
PRICE_STEP_PER_HOUR_PERCENT = 10
DEFAULT_CAPACITY_WH = 1_000_000  # 1000 kWh
MIN_CAPACITY_WH = 1_000          # 1 kWh
MAX_CAPACITY_WH = 1_000_000      # 1000 kWh
DEFAULT_TAX_BPS = 500            # 5 % on top of the producer's share
MAX_TAX_BPS = 10_000

OWNER = "owner"
REGULATOR = "regulator"
PRODUCER = "producer"
CONSUMER = "consumer"
NO_ROLE = "none"
ROLES = (OWNER, REGULATOR, PRODUCER, CONSUMER, NO_ROLE)

OPEN = "open"
CLOSED = "closed"
RECLAIMED = "reclaimed"


def positive(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidAmount(f"{what} must be a positive integer, got {value!r}")
    return value


def paid_tokens(amount: int, price_per_wh: int, tokens_per_wh: Fraction) -> int:
    """Whole tokens a cumulative amount has paid for (Wh paid, at the socket's tariff, rounded down)."""
    return math.floor((amount // price_per_wh) * tokens_per_wh)


def price_per_wh(min_price_per_wh: int, posted_at: int, now: int) -> int:
    """The minimum price plus 10 % of it for every full hour since posting (rounded down)."""
    hours = max(0, now - posted_at) // HOUR_S
    return min_price_per_wh * (100 + PRICE_STEP_PER_HOUR_PERCENT * hours) // 100


def is_expired(posted_at: int, now: int) -> bool:
    return now >= posted_at + ADVERT_LIFETIME_S


def tax_on(producer_amount: int, tax_bps: int) -> int:
    return producer_amount * tax_bps // 10_000


def check_capacity(advertised_wh: int, energy_wh: int, capacity_wh: int) -> None:
    if advertised_wh + energy_wh > capacity_wh:
        raise CapacityExceeded(
            f"advertising {energy_wh} Wh would take the grid to {advertised_wh + energy_wh} Wh,"
            f" above its capacity of {capacity_wh} Wh")


@dataclass(frozen=True)
class MarketInfo:
    owner: str            # party address
    capacity_wh: int
    advertised_wh: int    # energy in open (unexpired, unsold) adverts
    tax_bps: int
    domain: str           # where it lives: "mock:<id>", "ethereum:<chain>:<contract>", "iota:<network>:<market>"


@dataclass(frozen=True)
class Advert:
    advert_id: str
    producer: str         # party address
    energy_wh: int        # as posted
    remaining_wh: int     # not yet sold (0 once expired and returned)
    min_price_per_wh: int
    posted_at: int

    @property
    def expires_at(self) -> int:
        return self.posted_at + ADVERT_LIFETIME_S

    def price_at(self, now: int) -> int:
        return price_per_wh(self.min_price_per_wh, self.posted_at, now)

    def is_open(self, now: int) -> bool:
        return self.remaining_wh > 0 and not is_expired(self.posted_at, now)

    def quote(self, energy_wh: int, now: int, tax_bps: int,
              max_price_per_wh: int | None = None) -> tuple[int, int, int]:
        """(price per Wh, producer's share, tax) for buying `energy_wh` now; refuses what the rules refuse."""
        positive(energy_wh, "energy_wh")
        if is_expired(self.posted_at, now):
            raise AdvertExpired(f"advert {self.advert_id} expired at {self.expires_at} (now {now})")
        if energy_wh > self.remaining_wh:
            raise NotEnoughEnergy(f"advert {self.advert_id} has {self.remaining_wh} Wh left, {energy_wh} Wh asked")
        price = self.price_at(now)
        if max_price_per_wh is not None and price > max_price_per_wh:
            raise PriceAboveLimit(f"advert {self.advert_id} costs {price} per Wh now, above the limit "
                                  f"{max_price_per_wh}")
        share = energy_wh * price
        return price, share, tax_on(share, tax_bps)

    def as_dict(self, now: int | None = None) -> dict[str, Any]:
        d = {"advert_id": self.advert_id, "producer": self.producer, "energy_wh": self.energy_wh,
             "remaining_wh": self.remaining_wh, "min_price_per_wh": self.min_price_per_wh,
             "posted_at": self.posted_at, "expires_at": self.expires_at}
        if now is not None:
            d["price_per_wh"] = self.price_at(now)
            d["open"] = self.is_open(now)
        return d


@dataclass(frozen=True)
class Purchase:
    purchase_id: str      # the ledger's identity for the buy (tx hash, digest, mock id)
    advert_id: str
    consumer: str
    producer: str
    energy_wh: int
    price_per_wh: int
    producer_amount: int  # energy_wh * price_per_wh
    tax_amount: int
    regulator: str        # who the tax went to
    at: int

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Channel:
    channel_id: str
    sender: str           # party address (pays)
    recipient: str        # party address (is paid)
    escrow: int           # total deposited, ledger units
    expires_at: int
    state: str = OPEN     # open | closed | reclaimed
    paid: int = 0         # paid to the recipient on close
    address: str = ""     # where the escrow sits, when the ledger has one per channel (IOTA)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Voucher:
    """The sender's promise: `amount` in total (cumulative) on `channel_id`, valid only in `domain`."""
    channel_id: str
    amount: int
    domain: str
    signature: str        # hex, backend-specific scheme

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Voucher:
        try:
            amount = d["amount"]
            if isinstance(amount, str) and amount.isdigit():
                amount = int(amount)
            return cls(str(d["channel_id"]), positive(amount, "amount"), str(d["domain"]), str(d["signature"]))
        except KeyError as exc:
            raise InvalidAmount(f"a voucher needs {exc.args[0]!r}") from None


@dataclass(frozen=True)
class ChannelRow:
    """A payment channel as this controller books it. Amounts in ledger units (text in SQLite: wei)."""
    domain: str
    channel_id: str
    socket_id: str
    direction: str          # 'out': our socket pays (sends vouchers); 'in': our socket is paid
    price_per_wh: int
    escrow: int
    amount: int = 0         # latest voucher, cumulative
    signature: str = ""
    base_wh: Fraction = Fraction(0)   # the socket's billed counter when the channel opened ('out')
    lead_wh: int = 0        # Wh paid ahead of metering, so the supplier can switch on ('out')
    peer: str = ""          # the other controller's base URL
    state: str = "open"
    opened_at: float = 0.0
    updated_at: float = 0.0

    @classmethod
    def from_row(cls, r: tuple[Any, ...]) -> ChannelRow:
        return cls(r[0], r[1], r[2], r[3], int(r[4]), int(r[5]), int(r[6]), r[7], Fraction(r[8]), r[9], r[10],
                   r[11], r[12], r[13])

    def as_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["base_wh"] = str(self.base_wh)
        return d
