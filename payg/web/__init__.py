"""The web entry point: the JSON API, the tenant and landlord pages, and live pushes, as Flask blueprints.

It talks to the services (metering, the landlord's desk, the dashboard) and to ports (the
journal, the deposit source, the mock payer); payg/bootstrap.py builds those and hands them in. Who may
do what is decided in one place, `_guard` below, with the checks of payg/webkit/security.py.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

from flask import Flask, abort, jsonify, render_template, request
from flask.typing import ResponseReturnValue
from flask_socketio import SocketIO

from payg.domain.money import MoneyUnit
from payg.domain.settings import ProtectionsConfig, WebConfig
from payg.errors import InvalidAmount, LedgerUnavailable, UnknownSocket
from payg.ports import DepositPayer, DepositSource, Journal, SessionStore
from payg.services.codes import CodeDesk
from payg.services.dashboard import Dashboard, ViewSettings
from payg.services.emergency import EmergencyDesk
from payg.services.landlord import LandlordDesk
from payg.services.metering import Metering
from payg.services.site import Site
from payg.services.statements import StatementDesk
from payg.web import api, landlord, metrics, statements, tenant
from payg.web import trade as trade_routes
from payg.web.live import LANDLORD_NS, LiveHub
from payg.web.setup import SetupServices
from payg.web.trade import TradeServices
from payg.webkit import money
from payg.webkit.app import STATE_CHANGING, Kit, WebSite, make_app
from payg.webkit.i18n import N_
from payg.webkit.language import current as current_language
from payg.webkit.language import gettext
from payg.webkit.proxies import networks
from payg.webkit.security import Guard, Limiter, WebSecrets
from payg.webkit.sessions import Sessions

ROOT = Path(__file__).resolve().parent.parent.parent
SESSION_COOKIE = "payg_session"
PUBLIC_API = re.compile(r"^/api/sockets/[^/]+(/receipts|/history)?$")  # a socket's state, receipts, chart: its page's
TENANT_ACTION = re.compile(r"^/api/sockets/[^/]+/(redeem|emergency)$")  # a code, emergency credit: anyone there may
SITE = WebSite(name="payg", cookie=SESSION_COOKIE, home="/landlord", login="/landlord/login",
               logout="/landlord/logout", anonymous_under="/landlord", csrf_under="/landlord",
               private=lambda path: path.startswith(("/landlord", "/api/")),
               json=lambda path: path.startswith("/api/") or path in ("/api", "/healthz"),
               who="landlord", wrong_password_status=200, home_label=N_("Back to the start page"),
               login_back=N_("Back to the sockets"))


@dataclass
class WebServices:
    metering: Metering
    landlord: LandlordDesk
    journal: Journal
    deposits: DepositSource
    secrets: WebSecrets
    payer: DepositPayer | None = None  # only with the mock ledger
    health: Callable[[], dict] | None = None
    trade: TradeServices | None = None
    settings: WebConfig = field(default_factory=WebConfig)
    dashboard: Dashboard | None = None  # None: one is made from the journal and the metering clock
    sessions: SessionStore | None = None  # where landlord sessions are kept (required)
    password_hash: Callable[[], str | None] | None = None  # the hash as of now (None: secrets.password_hash)
    codes: CodeDesk | None = None  # top-up codes (None: off)
    protections: ProtectionsConfig = field(default_factory=ProtectionsConfig)  # emergency credit among them
    site: Site | None = None  # the loop: GET /metrics (None: none), and /healthz when `health` is None
    mqtt_status: Callable[[], dict | None] | None = None  # the MQTT bridge's status for /metrics (None: MQTT off)
    server_status: Callable[[], dict | None] | None = None  # the HTTP server's status for /metrics (None: not served)
    statements: StatementDesk | None = None  # receipts and statements (None: made from the journal, `money`, timezone)
    money: MoneyUnit = field(default_factory=MoneyUnit)  # what amounts are: tokens, or [tariff] currency's minor unit
    resale_warnings: tuple[str, ...] = ()  # resale prices above [tariff.supply] (payg/domain/resale.py)
    setup: SetupServices | None = None  # the first-run setup page: scan for meters, add them (None: no page)

    def __post_init__(self) -> None:
        if self.health is None and self.site is not None:
            self.health = self.site.health


@dataclass
class Web:
    app: Flask
    socketio: SocketIO
    hub: LiveHub
    guard: Guard
    throttle: Limiter
    sessions: Sessions
    code_limiter: Limiter  # wrong top-up codes, per address and per socket ("socket:<id>")
    emergency: EmergencyDesk
    kit: Kit


def json_body() -> dict:
    if not request.is_json:
        abort(400, description="expected a JSON body (Content-Type: application/json)")
    body = request.get_json(silent=True)
    if body is None:
        abort(400, description="the body is not valid JSON")
    if not isinstance(body, dict):
        abort(400, description="expected a JSON object")
    return body


def same_origin_json() -> ResponseReturnValue | None:
    """A tenant's action must come from the controller's own page: a JSON body (a form from another site cannot
    send one without a preflight this server never answers) and, when the browser says, the same origin."""
    if not request.is_json:
        return jsonify(error="Bad Request", message="expected a JSON body (Content-Type: application/json)"), 400
    origin = request.headers.get("Origin")
    site = request.headers.get("Sec-Fetch-Site")
    if (origin is not None and origin.rstrip("/") != request.host_url.rstrip("/")) or site not in (None, "same-origin",
                                                                                                  "none"):
        return jsonify(error="Forbidden", message="this action is taken from the socket's own page"), 403
    return None


def create_web(services: WebServices, *, templates: Path = ROOT / "templates", static: Path = ROOT / "static",
               assets: Path = ROOT / "node_modules") -> Web:
    settings = services.settings
    ctl = services.metering
    clock = ctl.clock
    if services.sessions is None:
        raise ValueError("WebServices.sessions: the web side needs a session store")
    kit = make_app(__name__, SITE, services.secrets, services.sessions, clock, password_hash=services.password_hash,
                   session_hours=settings.session_hours, session_idle_minutes=settings.session_idle_minutes,
                   secure_cookies=settings.https, max_body_bytes=settings.server.max_body_kib * 1024,
                   templates=templates, static=static, assets=assets,
                   trusted_proxies=networks(settings.trusted_proxies), language=settings.language)
    app, guard, csrf = kit.app, kit.guard, kit.csrf
    app.jinja_env.globals.update(money.template_globals(services.money, current_language))
    dashboard = services.dashboard or Dashboard(services.journal, clock,
                                                ZoneInfo(settings.timezone) if settings.timezone else None,
                                                lock=threading.Lock())
    addresses = {sid: services.deposits.address_for(sid) for sid in ctl.sockets}
    hub = LiveHub(kit, ctl, dashboard, ViewSettings(ctl.tariff, settings.low_credit_tokens,
                                                    ctl.settings.notices.flag_off_hours, ctl.schedules), addresses)
    p, ids = services.protections, list(ctl.sockets)
    web = Web(app, kit.socketio, hub, guard, kit.throttle, kit.sessions, Limiter(clock),
              EmergencyDesk(ctl, services.journal, p.per(ids, "emergency_credit_tokens"),
                            p.per(ids, "emergency_below_tokens")), kit)

    @app.before_request
    def _guard() -> ResponseReturnValue | None:
        path = request.path
        if path.startswith("/api/peer/"):
            return None
        if path == metrics.PATH:  # a scraper: the API token, or Prometheus on this machine
            if guard.token() or metrics.from_loopback(request.environ):
                return None
            return jsonify(error="Unauthorized", message="send the API token (Authorization: Bearer ...), or "
                           "scrape from the controller's machine"), 401
        if request.method == "POST" and TENANT_ACTION.match(path):
            return same_origin_json()  # no cookie to ride on; a cross-site form can send neither JSON nor Origin
        if path.startswith("/api/") and not (request.method == "GET" and PUBLIC_API.match(path)):
            if guard.token():
                return None  # a `payg` command on this machine: no cookie, so no CSRF to fear
            if not guard.landlord():
                return jsonify(error="Unauthorized", message="log in as the landlord (/landlord/login), or use "
                               "`payg` on the controller's machine"), 401
        # With the landlord view off, every /landlord route answers 503 and changes nothing, and its pages keep no
        # session (so no CSRF token) for a cookie-less visitor: there is nothing to protect there.
        if request.method in STATE_CHANGING and (guard.landlord_enabled or not path.startswith("/landlord")):
            csrf.protect()
        return None

    @app.errorhandler(UnknownSocket)
    def unknown_socket(exc: UnknownSocket):
        if kit.wants_json():
            return jsonify(error="Not Found", message=str(exc)), 404
        return render_template("error.html", code=404, title=gettext("No such socket"), socket_id=exc.socket_id,
                               message=str(exc)), 404

    @app.errorhandler(InvalidAmount)
    def invalid_amount(exc: InvalidAmount):
        return jsonify(error="Bad Request", message=str(exc)), 400

    @app.errorhandler(LedgerUnavailable)
    def ledger_unavailable(exc: LedgerUnavailable):
        return jsonify(error="Service Unavailable", message=str(exc)), 503

    app.register_blueprint(api.blueprint(services, json_body))
    app.register_blueprint(tenant.blueprint(web, services, json_body))
    app.register_blueprint(landlord.blueprint(web, services, json_body))
    if services.statements is None:
        services.statements = StatementDesk(services.journal, clock, ZoneInfo(settings.timezone) if settings.timezone
                                            else None, services.money)
    app.register_blueprint(statements.blueprint(web, services))
    if services.site is not None:
        app.register_blueprint(metrics.blueprint(metrics.ControllerMetrics(services.site, services.journal,
                                                                          services.mqtt_status,
                                                                          services.server_status)))
    if services.trade is not None:
        app.register_blueprint(trade_routes.blueprint(services.trade, json_body))
    return web


__all__ = ["LANDLORD_NS", "Web", "WebServices", "create_web"]
