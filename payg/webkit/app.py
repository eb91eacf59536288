"""The frame of a payg web app, the same for a controller's pages and the hub's: Flask with the server-side
sessions and their CSRF tokens, Socket.IO, the landlord's guard and the limiter of failed logins, the security
headers, the error pages and the browser libraries. A `WebSite` says what differs between the two apps."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from flask import Flask, Response, abort, jsonify, render_template, request, send_file
from flask.typing import ResponseReturnValue
from flask_socketio import SocketIO
from flask_wtf.csrf import CSRFError, CSRFProtect  # type: ignore[import-untyped]  # no type information shipped
from werkzeug.exceptions import HTTPException

from payg.ports import Clock, SessionStore
from payg.webkit import language as languages
from payg.webkit.proxies import Network, TrustedProxies
from payg.webkit.security import Guard, Limiter, WebSecrets
from payg.webkit.sessions import CookieSessions, Sessions

log = logging.getLogger("payg.web")

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
STATE_CHANGING = ("POST", "PUT", "PATCH", "DELETE")
ERROR_TEMPLATE = "error.html"
# Browser libraries, installed from npm by the Makefile (package.json), served under /assets/:
LIBRARIES = {
    "socket.io.min.js": "socket.io-client/dist/socket.io.min.js",
    "uPlot.iife.min.js": "uplot/dist/uPlot.iife.min.js",
    "uPlot.min.css": "uplot/dist/uPlot.min.css",
}


@dataclass(frozen=True)
class WebSite:
    """What one app on the kit is: its name, its cookie, its landlord's pages, and its own wording."""

    name: str                         # the brand, and the end of every title: "payg", "payg hub"
    cookie: str                       # the session cookie (a controller and a hub on one host keep their own)
    home: str                         # the landlord's page: where the login leads when no other page was asked
    login: str                        # the login page's path
    logout: str                       # the logout's path (POST)
    anonymous_under: str              # only under this path may a login form keep an anonymous session
    csrf_under: str                   # the pages under this path carry the CSRF token for their scripts
    private: Callable[[str], bool]    # the paths whose answers no cache may keep
    json: Callable[[str], bool]       # the paths whose errors are JSON, not a page
    who: str                          # who logs in, as the log says it
    wrong_password_status: int        # a wrong password's answer
    home_label: str                   # the error page's link back to /
    login_intro: str | None = None    # a line under the login's heading
    login_back: str | None = None     # the login page's link back to /
    stylesheets: tuple[str, ...] = ()  # the site's own, after payg.css
    libraries: tuple[str, ...] = tuple(LIBRARIES)  # the browser libraries it serves


@dataclass
class Kit:
    site: WebSite
    app: Flask
    socketio: SocketIO
    csrf: CSRFProtect
    guard: Guard
    sessions: Sessions
    throttle: Limiter  # failed logins per client

    def wants_json(self) -> bool:
        return self.site.json(request.path)


def make_app(import_name: str, site: WebSite, secrets: WebSecrets, store: SessionStore, clock: Clock, *,
             password_hash: Callable[[], str | None] | None, session_hours: float, session_idle_minutes: float,
             secure_cookies: bool, max_body_bytes: int, templates: Path, static: Path, assets: Path,
             trusted_proxies: tuple[Network, ...] = (), language: str = "en") -> Kit:
    """A Flask app with the kit's sessions, CSRF, Socket.IO, guard, headers, error pages and /assets/.
    `password_hash` gives the landlord's hash as of now (None: `secrets.password_hash`); `assets` is
    node_modules in a source tree, or the flat folder pip installs them in; the client's address is the one
    `trusted_proxies` forward (payg/webkit/proxies.py), for the pages, not for Socket.IO; `language` is the pages'
    language when neither the switcher nor the browser names one (payg/webkit/language.py)."""
    app = Flask(import_name, template_folder=str(templates), static_folder=str(static), static_url_path="/static")
    if trusted_proxies:  # Flask's documented way to add a WSGI middleware, which mypy cannot tell from a mistake
        app.wsgi_app = TrustedProxies(app.wsgi_app, trusted_proxies)  # type: ignore[method-assign]
    app.config.update(
        SECRET_KEY=secrets.session_key,  # signs the CSRF tokens; the session itself is server-side
        WTF_CSRF_CHECK_DEFAULT=False,    # checked by the app's guard, which knows the requests that need none
        WTF_CSRF_TIME_LIMIT=None,        # a token lives as long as its session
        MAX_CONTENT_LENGTH=max_body_bytes,
    )
    current_hash = password_hash or (lambda: secrets.password_hash)
    sessions = Sessions(store, clock, current_hash, session_hours * 3600, session_idle_minutes * 60)
    app.session_interface = CookieSessions(sessions, cookie=site.cookie, secure=secure_cookies,
                                           anonymous_under=site.anonymous_under)
    csrf = CSRFProtect(app)
    # Socket.IO's default allows the page's own origin only.
    socketio = SocketIO(app, async_mode="threading", logger=False, engineio_logger=False)
    kit = Kit(site, app, socketio, csrf, Guard(secrets, sessions, current_hash), sessions, Limiter(clock))
    languages.install(app, language, secure_cookies=secure_cookies)

    @app.context_processor
    def _site() -> dict:
        return {"site": site}

    @app.after_request
    def _headers(resp: Response) -> Response:
        resp.headers.setdefault("Content-Security-Policy", CSP)
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("X-Frame-Options", "DENY")
        resp.headers.setdefault("Referrer-Policy", "same-origin")
        if site.private(request.path):
            resp.headers.setdefault("Cache-Control", "no-store")
        return resp

    @app.errorhandler(CSRFError)
    def _csrf_error(exc: CSRFError) -> ResponseReturnValue:
        if kit.wants_json():
            return jsonify(error="Bad Request", message=f"CSRF check failed: {exc.description}"), 400
        _ = languages.gettext
        return render_template(ERROR_TEMPLATE, code=400, title=_("Form expired"),
                               message=_("This form was open too long or came from elsewhere. Reload the page "
                                         "and try again.")), 400

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> ResponseReturnValue:
        code = exc.code or 500
        if kit.wants_json():
            return jsonify(error=exc.name, message=exc.description), code
        return render_template(ERROR_TEMPLATE, code=code, title=exc.name, message=exc.description), code

    _libraries(app, {name: LIBRARIES[name] for name in site.libraries}, assets)
    return kit


def _libraries(app: Flask, libraries: dict[str, str], assets: Path) -> None:
    def path_of(name: str) -> Path | None:
        """In node_modules (a source tree) or flat in share/payg/assets (installed by pip)."""
        rel = libraries.get(name)
        if rel is None:
            return None
        return next((p for p in (assets / rel, assets / name) if p.is_file()), None)

    missing = [name for name in libraries if path_of(name) is None]
    if missing:
        log.warning("browser libraries missing in %s (%s): pages work without live updates; run `make assets`",
                    assets, ", ".join(missing))

    @app.get("/assets/<name>")
    def asset(name: str) -> ResponseReturnValue:
        path = path_of(name)
        if path is None:
            abort(404, description=f"no asset {name} (run `make assets` to install the browser libraries)")
        return send_file(path, max_age=86400)

