"""The hub's web app: the landlord's login, the fleet table (live), its JSON, CSV exports, and the actions.

Every page and every API route is the landlord's: without a session (or the hub's API token, for a script
on the hub's machine) a page redirects to the login and the API answers 401. The login, the sessions and
the limiter of failed attempts are the controller's (payg/web/security.py, payg/web/sessions.py), with a
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
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Protocol
from urllib.parse import quote

from flask import Flask, Response, abort, jsonify, redirect, render_template, request, send_file
from flask_socketio import SocketIO
from flask_wtf.csrf import CSRFProtect

from payg.hub.fleet import COMMANDS, RELAYS, Fleet, Refused, UnknownTarget
from payg.hub.live import FleetPusher
from payg.ports import Clock, SessionStore
from payg.web.landlord import csv_cell, safe_next
from payg.web.pages import error_pages, password_login
from payg.web.security import Guard, Limiter, WebSecrets
from payg.web.sessions import CookieSessions, Sessions

log = logging.getLogger("payg.hub")

ROOT = Path(__file__).resolve().parent.parent.parent
COOKIE = "payg_hub_session"
STATE_CHANGING = ("POST", "PUT", "PATCH", "DELETE")
PUBLIC = ("/login", "/healthz", "/favicon.ico", "/static/", "/assets/")
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
ASSETS = {"socket.io.min.js": "socket.io-client/dist/socket.io.min.js"}
ROW_FIELDS = ["controller", "socket", "controller_status", "relay", "balance", "balance_tokens", "debt",
              "debt_tokens", "power_w", "voltage_v", "current_a", "energy_wh", "meter", "override",
              "credit_exhausted", "at_utc", "received_at_utc"]
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
    session_hours: float = 12.0
    session_idle_minutes: float = 60.0
    secure_cookies: bool = False
    max_body_bytes: int = 64 * 1024


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
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds")


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
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return Response(out.getvalue(), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}-{stamp}.csv"'})


def create_hub_web(services: HubServices, *, templates: Path = ROOT / "templates", static: Path = ROOT / "static",
                   assets: Path = ROOT / "node_modules") -> HubWeb:
    fleet, sender, clock = services.fleet, services.sender, services.clock
    app = Flask(__name__, template_folder=str(templates), static_folder=str(static), static_url_path="/static")
    app.config.update(
        SECRET_KEY=services.secrets.session_key,  # signs the CSRF tokens; the session itself is server-side
        WTF_CSRF_CHECK_DEFAULT=False,  # checked in _guard, which knows the requests that need none
        WTF_CSRF_TIME_LIMIT=None,
        MAX_CONTENT_LENGTH=services.max_body_bytes,
    )
    password_hash = services.password_hash or (lambda: services.secrets.password_hash)
    sessions = Sessions(services.sessions, clock, password_hash, services.session_hours * 3600,
                        services.session_idle_minutes * 60)
    app.session_interface = CookieSessions(sessions, cookie=COOKIE, secure=services.secure_cookies,
                                           anonymous_under="/login")
    csrf = CSRFProtect(app)
    socketio = SocketIO(app, async_mode="threading", cors_allowed_origins=None, logger=False, engineio_logger=False)
    guard = Guard(services.secrets, sessions, password_hash)
    throttle = Limiter(clock)
    pusher = FleetPusher(socketio, fleet, guard.landlord_key, sessions)
    sessions.on_end(pusher.end_session)
    web = HubWeb(app, socketio, pusher, guard, sessions, throttle)

    def wants_json() -> bool:
        return request.path.startswith("/api/")

    @app.before_request
    def _guard():
        path = request.path
        if path.startswith(PUBLIC) or path.startswith("/socket.io"):  # Socket.IO checks the session on connect
            return None
        token = guard.token()
        if not token and not guard.landlord():
            if wants_json():
                return jsonify(error="Unauthorized", message="log in as the landlord (/login), or send the hub's "
                               "API token (Authorization: Bearer ...)"), 401
            return redirect("/login?next=" + quote(request.full_path.rstrip("?"), safe="/"))
        if request.method in STATE_CHANGING and not token:
            csrf.protect()
        return None

    @app.after_request
    def _headers(resp):
        resp.headers.setdefault("Content-Security-Policy", CSP)
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("X-Frame-Options", "DENY")
        resp.headers.setdefault("Referrer-Policy", "same-origin")
        if not request.path.startswith(("/static/", "/assets/")):
            resp.headers.setdefault("Cache-Control", "no-store")
        return resp

    error_pages(app, "hub/error.html", wants_json)

    @app.get("/assets/<name>")
    def asset(name: str):
        rel = ASSETS.get(name)
        path = next((p for p in ((assets / rel), (assets / name)) if p.is_file()), None) if rel else None
        if path is None:
            abort(404, description=f"no asset {name} (run `make assets`)")
        return send_file(path, max_age=86400)

    @app.get("/favicon.ico")
    def favicon():
        return "", 204

    @app.get("/healthz")
    def healthz():
        connected = sender.connected
        return jsonify(status="ok" if connected else "degraded", broker_connected=connected), 200 if connected else 503

    @app.route("/login", methods=["GET", "POST"])
    def login():
        next_page = safe_next(request.values.get("next"))
        next_page = "/" if next_page == "/landlord" else next_page  # safe_next's default is the controller's
        if request.method == "GET":
            if guard.landlord():
                return redirect(next_page)
            return render_template("hub/login.html", error=None, retry_after_s=None, next=next_page)
        csrf.protect()
        return password_login(guard, throttle, "hub/login.html", next_page, log, who="hub: landlord",
                              wrong_status=401)

    @app.post("/logout")
    def logout():
        guard.log_out()
        return redirect("/login")

    @app.get("/")
    def page():
        snapshot = fleet.snapshot()
        return render_template("hub/fleet.html", snapshot=snapshot,
                               boot={"snapshot": snapshot, "timeout_s": fleet.command_timeout_s,
                                     "commands": list(COMMANDS)})

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

    return web
