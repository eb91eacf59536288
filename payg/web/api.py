"""The JSON API: health, every socket's state, a socket's events and journal, and mock deposits.

`GET /api/sockets/<id>` and /healthz are public; the rest needs the landlord's session or the
API token (the guard in payg/web/__init__.py).
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Blueprint, abort, jsonify, request

from payg import serialize
from payg.domain.money import MAX_TOKENS
from payg.web.views import with_money, with_topup

MAX_PAGE = 500
MAX_DEPOSIT_TOKENS = MAX_TOKENS - 1  # a deposit of MAX_TOKENS or more is never credited (domain/money.py)


def blueprint(services, json_body: Callable[[], dict]) -> Blueprint:
    bp = Blueprint("api", __name__)
    ctl = services.metering

    @bp.get("/favicon.ico")
    def favicon():
        return "", 204

    @bp.get("/healthz")
    def healthz():
        body = services.health() if services.health else {"status": "ok"}
        return jsonify(body), 200 if body.get("status") == "ok" else 503

    @bp.get("/api/sockets")
    def sockets():
        return jsonify([with_money(with_topup(serialize.socket_state(st), services.deposits), st, services.money)
                        for st in ctl.states()])

    @bp.get("/api/sockets/<socket_id>")
    def socket(socket_id: str):
        st = ctl.state(socket_id)
        return jsonify(with_money(with_topup(serialize.socket_state(st), services.deposits), st, services.money))

    @bp.get("/api/sockets/<socket_id>/events")
    def events(socket_id: str):
        ctl.socket(socket_id)
        return jsonify(socket=socket_id, events=services.journal.events(socket_id, limit=50))

    @bp.get("/api/sockets/<socket_id>/journal")
    def journal(socket_id: str):
        ctl.socket(socket_id)
        limit = request.args.get("limit", "50")
        before = request.args.get("before")
        if not limit.isdigit() or not 1 <= int(limit) <= MAX_PAGE:
            abort(400, description=f"limit must be an integer from 1 to {MAX_PAGE}")
        if before is not None and not before.isdigit():
            abort(400, description="before must be an entry id (a positive integer)")
        entries = services.journal.entries(socket_id, int(limit), int(before) if before else None)
        next_before = entries[-1].id if len(entries) == int(limit) else None
        return jsonify(socket=socket_id, entries=[serialize.entry(e) for e in entries], next_before=next_before)

    if services.payer is not None:
        payer = services.payer

        @bp.post("/api/mock/deposits")
        def mock_deposit():
            body = json_body()
            unknown = set(body) - {"socket", "amount"}
            if unknown:
                abort(400, description=f"unknown field(s): {', '.join(sorted(unknown))}")
            socket_id, amount = body.get("socket"), body.get("amount")
            if not isinstance(socket_id, str):
                abort(400, description="socket must be a socket id (a string)")
            ctl.socket(socket_id)
            if not isinstance(amount, int) or isinstance(amount, bool) or not 0 < amount <= MAX_DEPOSIT_TOKENS:
                abort(400, description=f"amount must be a positive integer (tokens) of at most {MAX_DEPOSIT_TOKENS}"
                                       " (2**62 - 1, the most one journal entry holds)")
            deposit_id = payer.pay(socket_id, amount)
            return jsonify(deposit_id=deposit_id, socket=socket_id, amount=amount), 201

    return bp
