"""The web entry point: a Flask app factory serving the JSON API.

It talks to the domain (the controller, the journal) and to ports (the
deposit source, the mock payer); app.py builds those and hands them in.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from flask import Flask, abort, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

from payg.controller import Controller
from payg.errors import InvalidAmount, LedgerUnavailable, UnknownSocket
from payg.journal import SqliteJournal
from payg.ports import DepositPayer, DepositSource
from payg.web import trade as trade_routes
from payg.web.trade import TradeServices

MAX_PAGE = 500


@dataclass
class WebServices:
    controller: Controller
    journal: SqliteJournal
    deposits: DepositSource
    payer: DepositPayer | None = None  # only with the mock ledger
    health: Callable[[], dict] | None = None
    trade: "TradeServices | None" = None


def create_app(services: WebServices, template_folder: str | Path | None = None) -> Flask:
    app = Flask(__name__, template_folder=str(template_folder) if template_folder else None)
    app.config["JSON_SORT_KEYS"] = False
    ctl = services.controller

    def topup(socket_id: str) -> dict:
        return {"address": services.deposits.address_for(socket_id),
                "uri": services.deposits.payment_uri(socket_id, None),
                "backend": services.deposits.name,
                "units_per_token": services.deposits.units_per_token}

    def with_topup(state: dict) -> dict:
        return dict(state, topup=topup(state["id"]))

    def json_body() -> dict:
        if not request.is_json:
            abort(400, description="expected a JSON body (Content-Type: application/json)")
        body = request.get_json(silent=True)
        if body is None:
            abort(400, description="the body is not valid JSON")
        if not isinstance(body, dict):
            abort(400, description="expected a JSON object")
        return body

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        if request.path.startswith("/api/") or request.path == "/healthz":
            return jsonify(error=exc.name, message=exc.description), exc.code
        return exc

    @app.errorhandler(UnknownSocket)
    def unknown_socket(exc: UnknownSocket):
        return jsonify(error="Not Found", message=str(exc)), 404

    @app.errorhandler(LedgerUnavailable)
    def ledger_unavailable(exc: LedgerUnavailable):
        return jsonify(error="Service Unavailable", message=str(exc)), 503

    @app.get("/")
    def index():
        return render_template("index.html", sockets=ctl.states())

    @app.get("/healthz")
    def healthz():
        body = services.health() if services.health else {"status": "ok"}
        return jsonify(body), 200 if body.get("status") == "ok" else 503

    @app.get("/api/sockets")
    def sockets():
        return jsonify([with_topup(st) for st in ctl.states()])

    @app.get("/api/sockets/<socket_id>")
    def socket(socket_id: str):
        state = with_topup(ctl.state(socket_id))
        state["alarms"] = services.journal.events(socket_id, limit=10)
        return jsonify(state)

    @app.get("/api/sockets/<socket_id>/journal")
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
        return jsonify(socket=socket_id, entries=[e.as_dict() for e in entries], next_before=next_before)

    if services.payer is not None:
        payer = services.payer

        @app.post("/api/mock/deposits")
        def mock_deposit():
            body = json_body()
            unknown = set(body) - {"socket", "amount"}
            if unknown:
                abort(400, description=f"unknown field(s): {', '.join(sorted(unknown))}")
            socket_id, amount = body.get("socket"), body.get("amount")
            if not isinstance(socket_id, str):
                abort(400, description="socket must be a socket id (a string)")
            ctl.socket(socket_id)
            if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
                abort(400, description="amount must be a positive integer (tokens)")
            try:
                deposit_id = payer.pay(socket_id, amount)
            except InvalidAmount as exc:
                abort(400, description=str(exc))
            return jsonify(deposit_id=deposit_id, socket=socket_id, amount=amount), 201

    if services.trade is not None:
        trade_routes.register(app, services.trade, json_body)

    return app
