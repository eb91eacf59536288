"""The hub's web app: the landlord's login, the fleet table (live), its JSON, CSV exports, and the actions.

Every page and every API route is the landlord's: without a session (or the hub's API token, for a script
on the hub's machine) a page redirects to the login and the API answers 401. The frame is the web kit's
(payg/webkit/: the login, the sessions, the limiter of failed attempts, the headers, the error pages), with a
cookie of its own name (a controller on the same host must not see the hub's cookie as its own). State
changes need the session's CSRF token, as on a controller.

An action is an MQTT command of the contract (force_off, automatic, credit) to one controller. The page
sends its own request id, one per action, so a click sent twice books once; the hub notes the command
before it goes out, and its result is the controller's response with that id, or a timeout.
"""

from __future__ import annotations

import csv
import io
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol
from urllib.parse import quote

from flask import Flask, Response, abort, jsonify, redirect, render_template, request
from flask.typing import ResponseReturnValue
from flask_socketio import SocketIO

from payg.domain.hub_settings import HubConfig
from payg.domain.money import MoneyUnit
from payg.hub.fleet import COMMANDS, RELAYS, Fleet, Refused, UnknownTarget
from payg.hub.history_web import HistoryReader, register_history
from payg.hub.live import FleetPusher
from payg.ports import Clock, SessionStore
from payg.webkit import money
from payg.webkit.app import STATE_CHANGING, WebSite, make_app
from payg.webkit.i18n import N_
from payg.webkit.language import current as current_language
from payg.webkit.pages import csv_cell, login_pages
from payg.webkit.proxies import networks
from payg.webkit.security import Guard, Limiter, WebSecrets
from payg.webkit.sessions import Sessions

log = logging.getLogger("payg.hub")

ROOT = Path(__file__).resolve().parent.parent.parent
COOKIE = "payg_hub_session"
PUBLIC = ("/login", "/healthz", "/favicon.ico", "/static/", "/assets/", "/lang/")
SITE = WebSite(name="payg hub", cookie=COOKIE, home="/", login="/login", logout="/logout", anonymous_under="/login",
               csrf_under="/", private=lambda path: not path.startswith(("/static/", "/assets/")),
               json=lambda path: path.startswith("/api/"), who="hub: landlord", wrong_password_status=401,
               home_label=N_("Back to the fleet"), login_intro=N_("The fleet view of every building's controller."),
               stylesheets=("/static/hub.css",), libraries=("socket.io.min.js",))
ROW_FIELDS = ["controller", "socket", "controller_status", "relay", "balance", "balance_tokens", "debt",
              "debt_tokens", "power_w", "voltage_v", "current_a", "energy_wh", "meter", "override",
              "credit_exhausted", "at_utc", "received_at_utc", "currency", "name"]  # added last: the columns
#                                               before keep their places; balance and debt are the currency's minor unit
EVENT_FIELDS = ["id", "seq", "controller", "socket", "kind", "at_utc", "received_at_utc", "details"]
TOKENS_MAX = 10**9  # the contract's CREDIT_MAX_TOKENS; the link's check says so in its own words too


class CommandSender(Protocol):
    """What sends a command (payg.adapters.mqtt.hub_link.HubLink matches it)."""

    @property
    def connected(self) -> bool: ...

    def send_command(self, controller: str, command: str, socket: str, request_id: str, tokens: int | None = None,
                     reason: str | None = None) -> None:
        """ValueError: the controller would refuse it; ConnectionError: no broker now."""
        ...


@dataclass
class HubServices:
    fleet: Fleet
    sender: CommandSender
    secrets: WebSecrets
    sessions: SessionStore
    clock: Clock
    password_hash: Callable[[], str | None] | None = None  # the hash as of now (None: secrets.password_hash)
    session_hours: float = HubConfig.session_hours
    session_idle_minutes: float = HubConfig.session_idle_minutes
    secure_cookies: bool = False
    max_body_bytes: int = 64 * 1024
    locale: str = HubConfig.locale  # how money is written (each controller's currency comes with its states)
    language: str = HubConfig.language  # the pages' language when neither the switcher nor the browser names one
    trusted_proxies: tuple[str, ...] = HubConfig.trusted_proxies  # whose X-Forwarded-For names the client
    history: HistoryReader | None = None  # the fleet's history (adapters/fleet_archive.py); None: no routes


@dataclass
class HubWeb:
    app: Flask
    socketio: SocketIO
    pusher: FleetPusher
    guard: Guard
    sessions: Sessions
    throttle: Limiter


def utc(t: object) -> str:
    if not isinstance(t, (int, float)) or isinstance(t, bool) or not math.isfinite(t):
        return ""
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")


def filters() -> dict:
    """The table's filters from the query string: ?controller=&relay=on|off&q=text."""
    relay = request.args.get("relay") or None
    if relay is not None and relay not in RELAYS:
        abort(400, description=f"relay must be one of {', '.join(RELAYS)}")
    return {"controller": request.args.get("controller") or None, "relay": relay,
            "text": (request.args.get("q") or "").strip()[:100] or None}


def csv_response(fields: list[str], rows: list[dict], name: str) -> Response:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(fields)
    for row in rows:
        writer.writerow([csv_cell(row.get(f)) for f in fields])
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return Response(out.getvalue(), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}-{stamp}.csv"'})


def create_hub_web(services: HubServices, *, templates: Path = ROOT / "templates", static: Path = ROOT / "static",
                   assets: Path = ROOT / "node_modules") -> HubWeb:
    fleet, sender = services.fleet, services.sender
    kit = make_app(__name__, SITE, services.secrets, services.sessions, services.clock,
                   password_hash=services.password_hash, session_hours=services.session_hours,
                   session_idle_minutes=services.session_idle_minutes, secure_cookies=services.secure_cookies,
                   max_body_bytes=services.max_body_bytes, templates=templates, static=static, assets=assets,
                   trusted_proxies=networks(services.trusted_proxies), language=services.language)
    app, guard = kit.app, kit.guard
    app.jinja_env.globals.update(money.template_globals(MoneyUnit(locale=services.locale), current_language))
    pusher = FleetPusher(kit, fleet)
    web = HubWeb(app, kit.socketio, pusher, guard, kit.sessions, kit.throttle)

    @app.before_request
    def _guard() -> ResponseReturnValue | None:
        path = request.path
        if path.startswith(PUBLIC) or path.startswith("/socket.io"):  # Socket.IO checks the session on connect
            return None
        token = guard.token()
        if not token and not guard.landlord():
            if kit.wants_json():
                return jsonify(error="Unauthorized", message="log in as the landlord (/login), or send the hub's "
                               "API token (Authorization: Bearer ...)"), 401
            return redirect("/login?next=" + quote(request.full_path.rstrip("?"), safe="/"))
        if request.method in STATE_CHANGING and not token:
            kit.csrf.protect()
        return None

    login_pages(kit, log, skip_when_in=True)

    @app.get("/favicon.ico")
    def favicon():
        return "", 204

    @app.get("/healthz")
    def healthz():
        connected = sender.connected
        return jsonify(status="ok" if connected else "degraded", broker_connected=connected), 200 if connected else 503

    @app.get("/")
    def page():
        snapshot = fleet.snapshot()
        # a state without some of the contract's keys (an older controller, another publisher) shows them empty
        snapshot["rows"] = [{**dict.fromkeys(ROW_FIELDS), **row} for row in snapshot["rows"]]
        return render_template("hub/fleet.html", snapshot=snapshot, history=services.history is not None,
                               boot={"snapshot": snapshot, "timeout_s": fleet.command_timeout_s,
                                     "commands": list(COMMANDS), "locale": services.locale.replace("_", "-")})

    @app.get("/api/fleet")
    def api_fleet():
        return jsonify(fleet.snapshot(**filters()))

    @app.get("/api/commands")
    def api_commands():
        return jsonify(fleet.commands())

    @app.get("/api/commands/<request_id>")
    def api_command(request_id: str):
        found = fleet.command(request_id)
        if found is None:
            abort(404, description=f"no command {request_id} was sent from this hub (or it is long gone)")
        return jsonify(found)

    @app.post("/api/commands")
    def api_send():
        body = request.get_json(silent=True) if request.is_json else None
        if not isinstance(body, dict):
            abort(400, description="expected a JSON object (Content-Type: application/json)")
        controller, socket, command = body.get("controller"), body.get("socket"), body.get("command")
        tokens, reason, rid = body.get("tokens"), body.get("reason"), body.get("request_id")
        if not isinstance(controller, str) or not isinstance(socket, str):
            abort(400, description="controller and socket are required (strings)")
        if command not in COMMANDS:
            abort(400, description=f"command must be one of {', '.join(COMMANDS)}")
        if rid is not None and not isinstance(rid, str):
            abort(400, description="request_id must be a string")
        if command == "credit":
            if not isinstance(tokens, int) or isinstance(tokens, bool) or tokens == 0 or abs(tokens) > TOKENS_MAX:
                abort(400, description=f"tokens must be a whole number, not 0, at most {TOKENS_MAX:,} either way")
            if not isinstance(reason, str) or not reason.strip():
                abort(400, description="a credit needs a reason")
            reason = " ".join(reason.split())
        elif tokens is not None or reason is not None:
            abort(400, description=f"{command} takes no tokens or reason")
        try:
            cmd = fleet.begin(controller, socket, command, tokens, reason, rid)
        except UnknownTarget as exc:
            abort(404, description=str(exc))
        except Refused as exc:
            abort(409, description=str(exc))
        except ValueError as exc:
            abort(400, description=str(exc))
        try:
            sender.send_command(controller, command, socket, cmd.request_id, tokens, reason)
        except ValueError as exc:
            fleet.forget(cmd.request_id)
            abort(400, description=str(exc))
        except ConnectionError as exc:
            fleet.forget(cmd.request_id)
            abort(503, description=str(exc))
        log.info("hub: %s on %s/%s by the landlord (request %s)", command, controller, socket, cmd.request_id)
        return jsonify(fleet.command(cmd.request_id)), 202

    @app.get("/fleet.csv")
    def fleet_csv():
        rows = [{**r, "at_utc": utc(r.get("at")), "received_at_utc": utc(r.get("received_at"))}
                for r in fleet.rows(**filters())]
        return csv_response(ROW_FIELDS, rows, "fleet")

    @app.get("/events.csv")
    def events_csv():
        known = {"id", "seq", "controller", "socket", "kind", "at", "received_at"}
        rows = [{**e, "at_utc": utc(e.get("at")), "received_at_utc": utc(e.get("received_at")),
                 "details": " ".join(f"{k}={v}" for k, v in sorted(e.items()) if k not in known)}
                for e in reversed(fleet.events())]
        return csv_response(EVENT_FIELDS, rows, "events")

    if services.history is not None:
        register_history(app, services.history, csv_response,
                         lambda: {(r["controller"], r["socket"]) for r in fleet.rows()})
    return web
