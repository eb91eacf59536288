"""The web entry point: the JSON API, the tenant and landlord pages, and live pushes.

It talks to the domain (the controller, the journal, the dashboard) and to ports (the
deposit source, the mock payer); app.py builds those and hands them in. Who may do what is
decided in one place, `_guard` below, with the checks of payg/web/security.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Callable
from zoneinfo import ZoneInfo

from flask import Flask, abort, jsonify, render_template, request
from flask_socketio import SocketIO
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.exceptions import HTTPException

from payg.ports import Clock
from payg.domain.settings import WebConfig
from payg.controller import Controller
from payg.services.dashboard import Dashboard
from payg.errors import InvalidAmount, LedgerUnavailable, UnknownSocket
from payg.adapters.journal import SqliteJournal
from payg.ports import DepositPayer, DepositSource
from payg.web import pages
from payg.web import trade as trade_routes
from payg.web.live import LANDLORD_NS, LiveHub, ViewSettings
from payg.web.security import Guard, LoginThrottle, WebSecrets
from payg.web.trade import TradeServices

MAX_PAGE = 500
ROOT = Path(__file__).resolve().parent.parent.parent
STATE_CHANGING = ("POST", "PUT", "PATCH", "DELETE")
PUBLIC_API = re.compile(r"^/api/sockets/[^/]+$")
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


@dataclass
class WebServices:
    controller: Controller
    journal: SqliteJournal
    deposits: DepositSource
    secrets: WebSecrets
    payer: DepositPayer | None = None  # only with the mock ledger
    health: Callable[[], dict] | None = None
    trade: "TradeServices | None" = None
    settings: WebConfig = field(default_factory=WebConfig)
    dashboard: Dashboard | None = None  # None: one is made from the journal and the controller's clock


@dataclass
class Web:
    app: Flask
    socketio: SocketIO
    hub: LiveHub
    guard: Guard
    throttle: LoginThrottle


def create_web(services: WebServices, *, templates: Path = ROOT / "templates", static: Path = ROOT / "static",
               assets: Path = ROOT / "node_modules") -> Web:
    settings = services.settings
    ctl = services.controller
    clock: Clock = ctl.clock
    app = Flask(__name__, template_folder=str(templates), static_folder=str(static), static_url_path="/static")
    app.config.update(
        SECRET_KEY=services.secrets.session_key,
        SESSION_COOKIE_NAME="payg_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.secure_cookies,
        PERMANENT_SESSION_LIFETIME=timedelta(hours=settings.session_hours),
        WTF_CSRF_CHECK_DEFAULT=False,  # checked in _guard, which knows the requests that need no CSRF token
        WTF_CSRF_TIME_LIMIT=None,      # a token lives as long as its session
        JSON_SORT_KEYS=False,
        MAX_CONTENT_LENGTH=256 * 1024,
    )
    csrf = CSRFProtect(app)
    socketio = SocketIO(app, async_mode="threading", cors_allowed_origins=None, logger=False, engineio_logger=False)
    guard = Guard(services.secrets, clock, settings.session_hours * 3600)
    throttle = LoginThrottle(clock)
    dashboard = services.dashboard or Dashboard(services.journal, clock,
                                                ZoneInfo(settings.timezone) if settings.timezone else None)
    view_settings = ViewSettings(ctl.tariff.units_per_token, ctl.tariff.units_per_wh, settings.low_credit_tokens)
    addresses = {sid: services.deposits.address_for(sid) for sid in ctl.sockets}
    hub = LiveHub(socketio, ctl, services.journal, dashboard, view_settings, guard.landlord_until, addresses)
    web = Web(app, socketio, hub, guard, throttle)

    def wants_json() -> bool:
        return request.path.startswith("/api/") or request.path == "/healthz"

    def json_body() -> dict:
        if not request.is_json:
            abort(400, description="expected a JSON body (Content-Type: application/json)")
        body = request.get_json(silent=True)
        if body is None:
            abort(400, description="the body is not valid JSON")
        if not isinstance(body, dict):
            abort(400, description="expected a JSON object")
        return body

    @app.before_request
    def _guard():
        path = request.path
        if path.startswith("/api/peer/"):
            return None
        if path.startswith("/api/") and not (request.method == "GET" and PUBLIC_API.match(path)):
            if guard.token():
                return None  # a `payg` command on this machine: no cookie, so no CSRF to fear
            if not guard.landlord():
                return jsonify(error="Unauthorized", message="log in as the landlord (/landlord/login), or use "
                               "`payg` on the controller's machine"), 401
        if request.method in STATE_CHANGING:
            csrf.protect()
        return None

    @app.after_request
    def _headers(resp):
        resp.headers.setdefault("Content-Security-Policy", CSP)
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("X-Frame-Options", "DENY")
        resp.headers.setdefault("Referrer-Policy", "same-origin")
        if request.path.startswith(("/landlord", "/api/")):
            resp.headers.setdefault("Cache-Control", "no-store")
        return resp

    @app.errorhandler(CSRFError)
    def csrf_error(exc: CSRFError):
        if wants_json():
            return jsonify(error="Bad Request", message=f"CSRF check failed: {exc.description}"), 400
        return render_template("error.html", code=400, title="Form expired",
                               message="This form was open too long or came from elsewhere. Reload the page "
                                       "and try again."), 400

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        if wants_json():
            return jsonify(error=exc.name, message=exc.description), exc.code
        return render_template("error.html", code=exc.code, title=exc.name, message=exc.description), exc.code

    @app.errorhandler(UnknownSocket)
    def unknown_socket(exc: UnknownSocket):
        if wants_json():
            return jsonify(error="Not Found", message=str(exc)), 404
        return render_template("error.html", code=404, title="No such socket",
                               message=f"This controller has no socket {exc}."), 404

    @app.errorhandler(InvalidAmount)
    def invalid_amount(exc: InvalidAmount):
        return jsonify(error="Bad Request", message=str(exc)), 400

    @app.errorhandler(LedgerUnavailable)
    def ledger_unavailable(exc: LedgerUnavailable):
        return jsonify(error="Service Unavailable", message=str(exc)), 503

    @app.get("/favicon.ico")
    def favicon():
        return "", 204

    @app.get("/healthz")
    def healthz():
        body = services.health() if services.health else {"status": "ok"}
        return jsonify(body), 200 if body.get("status") == "ok" else 503

    @app.get("/api/sockets")
    def sockets():
        return jsonify([pages.with_topup(st, services.deposits) for st in ctl.states()])

    @app.get("/api/sockets/<socket_id>")
    def socket(socket_id: str):
        return jsonify(pages.with_topup(ctl.state(socket_id), services.deposits))

    @app.get("/api/sockets/<socket_id>/events")
    def events(socket_id: str):
        ctl.socket(socket_id)
        return jsonify(socket=socket_id, events=services.journal.events(socket_id, limit=50))

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
            deposit_id = payer.pay(socket_id, amount)
            return jsonify(deposit_id=deposit_id, socket=socket_id, amount=amount), 201

    pages.register(app, web, services, json_body, assets)
    if services.trade is not None:
        trade_routes.register(app, services.trade, json_body)
    return web


__all__ = ["LANDLORD_NS", "Web", "WebServices", "create_web"]
