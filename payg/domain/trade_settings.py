"""Trading energy: [trade] and a socket's `trade = { ... }` (payg/domain/market.py has the rules)."""

from __future__ import annotations

from dataclasses import dataclass

from payg.domain.config_keys import setting

BUY = "required to buy"
UNITS = "positive integer (or a string of digits)"


@dataclass(frozen=True)
class SellConfig:
    """The socket supplies energy through payment channels at this price."""

    price_per_wh: int = setting(doc="ledger units per Wh this socket sells at", key="sell_price_per_wh", kind=UNITS,
                                shown="required to sell", by_hand=True)


@dataclass(frozen=True)
class BuyConfig:
    """When the socket's balance falls below `below_tokens`, open a channel to `supplier` on `peer`."""

    peer: str = setting(doc="the supplier's controller", kind="`http://` or `https://` URL", shown=BUY, by_hand=True)
    supplier: str = setting(doc="the id of the selling socket on that controller", shown=BUY)
    below_tokens: int = setting(doc="open a channel when the balance falls below this", ge=1, shown=BUY)
    escrow_wh: int = setting(doc="Wh the channel's escrow holds, at the supplier's price", ge=1, le=10_000_000,
                             shown=BUY)
    max_price_per_wh: int = setting(doc="never pay more per Wh than this (ledger units)", kind=UNITS, shown=BUY,
                                    by_hand=True)
    hours: float = setting(24.0, "the channel's lifetime", gt=0)
    lead_wh: int = setting(1, "Wh paid ahead so the supplier can switch on", ge=0, le=1000)


@dataclass(frozen=True)
class TradeConfig:
    capacity_wh: int = setting(1_000_000, "grid capacity of a market created here, in Wh", ge=1_000, le=1_000_000)
    tax_bps: int = setting(500, "tax on buys, in 1/100 % of the producer's share", ge=0, le=10_000)
    owner: str | None = setting(None, "the socket whose trade party owns a market this controller creates (mock: the "
                                "first controller to open the ledger file creates it; IOTA: the hosting controller; "
                                "Ethereum: the deployer in `payg trade deploy`)", kind="a socket id")
    market_contract: str | None = setting(None, "Ethereum: the deployed market (printed by `payg trade deploy`); "
                                          "without it and `channels_contract` trade is off", kind="contract address")
    channels_contract: str | None = setting(None, "Ethereum: the deployed channel manager (printed by `payg trade "
                                            "deploy`)", kind="contract address")
    evm_version: str = setting("prague", "Ethereum: the target `payg trade deploy` compiles for; `paris` for chains "
                               "without PUSH0 or transient storage", choices=("prague", "cancun", "shanghai", "paris"))
    market_url: str | None = setting(None, "IOTA: the controller hosting the market", shown="none (this controller "
                                     "hosts it)", kind="`http://` or `https://` URL", by_hand=True)
    voucher_cache_s: float = setting(1.0, "Ethereum: how long a voucher check reuses the latest block it read (the "
                                     "channel itself is read once per block). Safe by the channel contract's rules: "
                                     "before its expiry only the recipient (this controller) can pay an escrow out, "
                                     "so with the cache on a channel stops taking vouchers `voucher_cache_s` + 30 s "
                                     "before its expiry (a reclaim needs a block at the expiry). `0`: the latest "
                                     "block is read for every voucher, and vouchers are taken up to the expiry",
                                     ge=0, le=60)
