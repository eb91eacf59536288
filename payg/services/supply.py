"""Energy between controllers: a selling socket's offer, a buying socket's trigger, peer messages.

A socket configured to sell (`trade.sell_price_per_wh`) supplies through payment channels
at that price: it accepts a channel paying its trade party at that price, credits the
socket with every Wh a voucher pays for, and its relay then supplies exactly what was
paid (the ordinary prepaid rule), stopping when the vouchers stop.

A socket configured to buy (`trade.peer`, `supplier`, ...) opens a channel to the
supplier when its balance falls below `below_tokens` and no channel of its own is open,
and then streams one voucher per Wh billed (ChannelBook.stream).
"""

from __future__ import annotations

import logging
from typing import Any

from payg.domain import market as rules
from payg.domain.market import Voucher
from payg.domain.settings import BuyConfig, SellConfig
from payg.errors import LedgerUnavailable, NotAuthorised, PriceAboveLimit, TradeRefused, UnknownSocket
from payg.ports import Clock, PeerDirectory, PeerLink
from payg.ports.journal import Balances
from payg.services.channels import ChannelBook

log = logging.getLogger("payg.supply")

RETRY_S = 60.0  # after a failed attempt to open supply, wait this long before the next


class SupplyDesk:
    def __init__(self, book: ChannelBook, journal: Balances, clock: Clock, peers: PeerLink,
                 sells: dict[str, SellConfig], buys: dict[str, BuyConfig], peer_directory: PeerDirectory | None = None):
        self.book = book
        self.journal = journal
        self.clock = clock
        self.peers = peers
        self.sells = dict(sells)
        self.buys = dict(buys)
        self.peer_directory = peer_directory  # given only for ledgers that settle through the peer (IOTA)
        self._failed_at: dict[str, float] = {}


    def _seller(self, payload: dict[str, Any]) -> tuple[str, SellConfig]:
        socket_id = str(payload.get("supplier", ""))
        if socket_id not in self.sells:
            raise UnknownSocket(socket_id)
        return socket_id, self.sells[socket_id]

    def offer(self, payload: dict[str, Any]) -> dict[str, Any]:
        socket_id, sell = self._seller(payload)
        return {"supplier": socket_id, "party": self.book.channels.party_for(socket_id),
                "price_per_wh": sell.price_per_wh, "domain": self.book.channels.domain()}

    def accept_channel(self, payload: dict[str, Any]) -> dict[str, Any]:
        socket_id, sell = self._seller(payload)
        price = payload.get("price_per_wh")
        if price != sell.price_per_wh:
            raise NotAuthorised(f"socket {socket_id} supplies at {sell.price_per_wh} per Wh, not {price!r}")
        peer = str(payload.get("peer", ""))
        row = self.book.accept_channel(socket_id, str(payload.get("channel_id", "")), sell.price_per_wh, peer=peer)
        self._remember_peer(self.book.channels.channel(row.channel_id).sender, peer)
        return row.as_dict()

    def _remember_peer(self, party: str, base_url: str) -> None:
        # ledgers whose settlement goes through the other controller (IOTA) need to know where it is
        if self.peer_directory is not None and base_url:
            self.peer_directory.add_peer(party, base_url)

    def accept_voucher(self, payload: dict[str, Any]) -> dict[str, Any]:
        voucher = Voucher.from_dict(payload.get("voucher") or {})
        tokens = self.book.accept(voucher, str(payload.get("channel_id", "")))
        return {"channel_id": voucher.channel_id, "amount": voucher.amount, "credited_tokens": tokens}

    def handle(self, kind: str, payload: dict[str, Any]) -> dict[str, Any] | None:
        """Answer a peer message this desk handles; None for kinds it does not know."""
        handlers = {"offer": self.offer, "channel": self.accept_channel, "voucher": self.accept_voucher}
        handler = handlers.get(kind)
        return None if handler is None else handler(payload)


    def open_supply(self, socket_id: str, own_url: str = "") -> dict[str, Any]:
        """Open a channel to the socket's configured supplier and announce it there."""
        buy = self.buys.get(socket_id)
        if buy is None:
            raise UnknownSocket(socket_id)
        offer = self.peers.post(buy.peer, "offer", {"supplier": buy.supplier})
        price = offer.get("price_per_wh")
        if not isinstance(price, int) or price <= 0:
            raise LedgerUnavailable(f"{buy.peer} answered an offer without a price")
        if price > buy.max_price_per_wh:
            raise PriceAboveLimit(f"{buy.supplier} on {buy.peer} asks {price} per Wh, above the limit"
                                  f" {buy.max_price_per_wh}")
        if offer.get("domain") != self.book.channels.domain():
            raise NotAuthorised(f"{buy.peer} trades on {offer.get('domain')}, this controller on"
                                f" {self.book.channels.domain()}")
        self._remember_peer(offer["party"], buy.peer)
        expires_at = self.book.channels.now() + int(buy.hours * rules.HOUR_S)
        row = self.book.open(socket_id, offer["party"], buy.escrow_wh * price, expires_at, price, peer=buy.peer,
                             lead_wh=buy.lead_wh)
        self.peers.post(buy.peer, "channel", {"supplier": buy.supplier, "channel_id": row.channel_id,
                                              "price_per_wh": price, "peer": own_url})
        return row.as_dict()

    def tick(self, own_url: str = "") -> None:
        """Open supply for buying sockets below their threshold, then stream vouchers."""
        # a channel whose escrow is all promised no longer supplies: a new one may open
        supplying = {r.socket_id for r in self.book.rows("out", rules.OPEN) if r.amount < r.escrow}
        now = self.clock.now()
        for socket_id, buy in self.buys.items():
            if socket_id in supplying or self.journal.balance(socket_id) >= buy.below_tokens:
                continue
            if now - self._failed_at.get(socket_id, float("-inf")) < RETRY_S:
                continue
            try:
                self.open_supply(socket_id, own_url)
                self._failed_at.pop(socket_id, None)
            except (LedgerUnavailable, TradeRefused) as exc:
                self._failed_at[socket_id] = now
                log.warning("socket %s: no supply from %s: %s: %s", socket_id, buy.peer, type(exc).__name__, exc)
        self.book.stream()
