"""Trade routes: the market, payment channels, and messages from other controllers.

Like the rest of the API, these routes need the landlord's session or the local API token
(see payg/webkit/security.py); `payg trade ...` sends the token. /api/peer/* is what other
controllers call: everything arriving there is checked on its own merits (signatures, the
ledger), so it needs neither.

Errors carry the payg error's class name ({"error": "AdvertExpired", "message": ...}),
so a controller calling another gets back the same error the other raised.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from flask import Blueprint, abort, jsonify, request

from payg.domain import market as rules
from payg.errors import InvalidAmount, LedgerUnavailable, TradeRefused, UnknownSocket, error_reply
from payg.ports import PaymentChannel, PeerMessages, PeerTrade
from payg.services.channels import ChannelBook
from payg.services.supply import SupplyDesk


class Trade(PeerTrade, PaymentChannel, Protocol):
    """One backend object is both (ledgers/*/trade.py)."""


@dataclass
class TradeServices:
    trade: Trade
    book: ChannelBook
    supply: SupplyDesk
    socket_ids: tuple[str, ...]
    peer_messages: PeerMessages | None = None  # the backend's own peer messages (IOTA's), if it has any


def blueprint(services: TradeServices, json_body: Callable[[], dict]) -> Blueprint:
    bp = Blueprint("trade", __name__)
    t = services.trade

    def answers(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except (TradeRefused, UnknownSocket, InvalidAmount, LedgerUnavailable) as exc:
                status, body = error_reply(exc)
                return jsonify(body), status
        return wrapper

    def socket_of(body: dict) -> str:
        socket_id = body.get("socket")
        if socket_id not in services.socket_ids:
            raise UnknownSocket(str(socket_id))
        return socket_id

    def optional_integer(body: dict, key: str) -> int | None:
        value = body.get(key)
        if isinstance(value, str) and value.isdigit():
            value = int(value)  # amounts beyond JSON-safe integers (wei) may come as strings
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            abort(400, description=f"{key} must be a non-negative integer")
        return value

    def integer(body: dict, key: str, default: int | None = None) -> int:
        value = optional_integer(body, key) if key in body or default is None else default
        if value is None:
            abort(400, description=f"{key} is required")
        return value

    @bp.get("/api/trade")
    @answers
    def trade_info():
        info = t.market()
        parties = {s: {"party": t.party_for(s), "role": t.role_of(t.party_for(s))} for s in services.socket_ids}
        return jsonify(backend=t.name, now=t.now(), market=info.__dict__, channels_domain=t.domain(),
                       sockets=parties)

    @bp.get("/api/trade/adverts")
    @answers
    def adverts():
        now = t.now()
        return jsonify(now=now, adverts=[a.as_dict(now) for a in t.adverts()])

    @bp.get("/api/trade/adverts/<advert_id>")
    @answers
    def advert(advert_id: str):
        return jsonify(t.advert(advert_id).as_dict(t.now()))

    @bp.post("/api/trade/adverts")
    @answers
    def post_advert():
        body = json_body()
        advert = t.post_advert(socket_of(body), integer(body, "energy_wh"), integer(body, "min_price_per_wh"))
        return jsonify(advert.as_dict(t.now())), 201

    @bp.post("/api/trade/adverts/<advert_id>/buy")
    @answers
    def buy(advert_id: str):
        body = json_body()
        purchase = t.buy(socket_of(body), advert_id, integer(body, "energy_wh"),
                         optional_integer(body, "max_price_per_wh"))
        return jsonify(purchase.as_dict()), 201

    @bp.post("/api/trade/roles")
    @answers
    def grant():
        body = json_body()
        party, role = body.get("party"), body.get("role")
        if not isinstance(party, str) or not party:
            abort(400, description="party must be a party address")
        if role == "none":
            t.revoke(socket_of(body), party)
        else:
            t.grant(socket_of(body), party, str(role))
        return jsonify(party=party, role=t.role_of(party))

    @bp.post("/api/trade/withdraw")
    @answers
    def withdraw():
        body = json_body()
        return jsonify(socket=body.get("socket"), withdrawn=t.withdraw(socket_of(body)))

    @bp.get("/api/trade/channels")
    @answers
    def channels():
        return jsonify(channels=[r.as_dict() for r in services.book.rows()])

    @bp.get("/api/trade/channels/<channel_id>")
    @answers
    def channel(channel_id: str):
        ch = services.book.refresh(channel_id) if services.book.journal.channel(t.domain(), channel_id) \
            else t.channel(channel_id)
        row = services.book.journal.channel(t.domain(), channel_id)
        return jsonify(ledger=ch.as_dict(), booked=row.as_dict() if row else None)

    @bp.post("/api/trade/channels")
    @answers
    def open_channel():
        body = json_body()
        socket_id = socket_of(body)
        if body.get("supplier_config"):
            return jsonify(services.supply.open_supply(socket_id, request.host_url.rstrip("/"))), 201
        recipient = body.get("recipient")
        if not isinstance(recipient, str) or not recipient:
            abort(400, description="recipient must be a party address")
        hours = body.get("hours", 24)
        if isinstance(hours, bool) or not isinstance(hours, (int, float)) or hours <= 0:
            abort(400, description="hours must be a positive number")
        row = services.book.open(socket_id, recipient, integer(body, "escrow"),
                                 t.now() + int(hours * rules.HOUR_S), integer(body, "price_per_wh"),
                                 peer=str(body.get("peer", "")), lead_wh=integer(body, "lead_wh", 1))
        return jsonify(row.as_dict()), 201

    @bp.post("/api/trade/channels/<channel_id>/close")
    @answers
    def close_channel(channel_id: str):
        return jsonify(services.book.close(channel_id).as_dict())

    @bp.post("/api/trade/channels/<channel_id>/reclaim")
    @answers
    def reclaim_channel(channel_id: str):
        return jsonify(services.book.reclaim(channel_id).as_dict())

    @bp.post("/api/peer/<path:kind>")
    @answers
    def peer(kind: str):
        body = json_body()
        answer = services.supply.handle(kind, body)
        if answer is None:
            if services.peer_messages is None:
                abort(404, description=f"no peer message {kind!r} on the {t.name} backend")
            answer = services.peer_messages.handle_peer_message(kind, body)
        return jsonify(answer)

    return bp
