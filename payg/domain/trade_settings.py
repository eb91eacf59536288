"""Trading energy: [trade] and a socket's `trade = { ... }` (payg/domain/market.py has the rules)."""

from __future__ import annotations

from dataclasses import dataclass

from payg.domain.config_keys import setting


@dataclass(frozen=True)
class SellConfig:
    """The socket supplies energy through payment channels at this price."""

    price_per_wh: int = setting(doc="this socket sells: its price in ledger units per Wh", key="sell_price_per_wh",
                                kind="positive integer (or a string of digits)", by_hand=True)


@dataclass(frozen=True)
class BuyConfig:
    """When the socket's balance falls below `below_tokens`, open a channel to `supplier` on `peer`."""

    peer: str = setting(doc="the supplying controller's base URL", kind="`http://` or `https://` URL", by_hand=True)
    supplier: str = setting(doc="the supplying socket's id on that controller")
    below_tokens: int = setting(doc="open a channel when this socket's balance falls below this", ge=1)
    escrow_wh: int = setting(doc="the channel's escrow buys this much energy", ge=1, le=10_000_000)
    max_price_per_wh: int = setting(doc="refuse a supplier asking more (ledger units per Wh)",
                                    kind="positive integer (or a string of digits)", by_hand=True)
    hours: float = setting(24.0, "the channel's lifetime", gt=0)
    lead_wh: int = setting(1, "paid ahead, so the supplier can switch on", ge=0, le=1000)


@dataclass(frozen=True)
class TradeConfig:
    capacity_wh: int = setting(1_000_000, "grid capacity of a market this controller creates", ge=1_000, le=1_000_000)
    tax_bps: int = setting(500, "tax on buys, in basis points of the producer's share", ge=0, le=10_000)
    owner: str | None = setting(None, "the socket whose trade party owns a market this controller creates",
                                kind="a socket id")
    market_contract: str | None = setting(None, "ethereum: the deployed market", kind="contract address")
    channels_contract: str | None = setting(None, "ethereum: the deployed channel manager", kind="contract address")
    evm_version: str = setting("prague", "ethereum: the target of `payg trade deploy`",
                               choices=("prague", "cancun", "shanghai", "paris"))
    market_url: str | None = setting(None, "iota: the controller hosting the market", shown="this controller",
                                     kind="`http://` or `https://` URL", by_hand=True)
    voucher_cache_s: float = setting(1.0, "ethereum: how long a voucher check reuses the latest block (`0`: never)",
                                     ge=0, le=60)
