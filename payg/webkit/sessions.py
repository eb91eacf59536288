"""Server-side sessions: the cookie is a random token and nothing else.

- A landlord session lives in the SessionStore (a SQLite file of the data directory, so a
  login survives a restart) under the SHA-256 of its token. It ends at once, for every
  request and every open Socket.IO connection, on logout, when the landlord's password
  changes, after `session_idle_minutes` without a request, and `session_hours` after login.
- Before login the only thing to remember is the login form's CSRF token: such anonymous
  sessions stay in memory (a bounded number, for an hour) and are made only under
  /landlord. Tenant pages never get a cookie.
- Logging in always starts a new token (an old one, planted or copied, is worth nothing).
- `payg login-link`, run on the device, gets a one-time link that logs in without the
  password (for ten minutes): whoever can run it holds the data directory anyway.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable

from flask import session
from flask.sessions import SessionInterface, SessionMixin
from werkzeug.datastructures import CallbackDict

from payg.ports import Clock, LandlordSession, SessionStore

ANONYMOUS_MAX = 2000
ANONYMOUS_S = 3600.0
LINK_S = 600.0       # a login link from `payg login-link` is good for ten minutes, once
LINKS_MAX = 20
SEEN_EVERY_S = 60.0  # how often a request writes that a session is in use (not every request: SD cards wear)


def key_of(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def fingerprint(password_hash: str | None) -> str:
    return hashlib.sha256((password_hash or "").encode()).hexdigest()[:16]


class Sessions:
    """The rules; `CookieSessions` below is how Flask asks for them."""

    def __init__(self, store: SessionStore, clock: Clock, password_hash: Callable[[], str | None],
                 lifetime_s: float, idle_s: float):
        self.store, self.clock, self.password_hash = store, clock, password_hash
        self.lifetime_s, self.idle_s = lifetime_s, idle_s
        self._anonymous: OrderedDict[str, tuple[float, dict]] = OrderedDict()
        self._lock = threading.Lock()
        self._ended: list[Callable[[str | None], None]] = []
        self._links: dict[str, float] = {}  # one-time login links: token hash -> valid until

    def on_end(self, callback: Callable[[str | None], None]) -> None:
        """Call `callback(key)` when a session ends by logout (None: every session ended)."""
        self._ended.append(callback)

    def landlord(self, key: str) -> LandlordSession | None:
        """The session if it is current; a session that is not is removed on the way."""
        s = self.store.get(key)
        if s is None:
            return None
        now = self.clock.now()
        current = fingerprint(self.password_hash()) if self.password_hash() is not None else None
        if (current is None or not hmac.compare_digest(s.password, current)
                or not 0 <= now - s.created_at <= self.lifetime_s or now - s.seen_at > self.idle_s):
            self.store.remove(key)
            return None
        return s

    def alive(self, key: str) -> bool:
        return self.landlord(key) is not None

    def until(self, key: str) -> float | None:
        s = self.landlord(key)
        return None if s is None else min(s.created_at + self.lifetime_s, s.seen_at + self.idle_s)

    def seen(self, s: LandlordSession) -> None:
        now = self.clock.now()
        if now - s.seen_at >= SEEN_EVERY_S:
            self.store.seen(s.key, now)

    def start(self) -> tuple[str, LandlordSession]:
        """A new landlord session: (the cookie's token, what is stored)."""
        token = secrets.token_urlsafe(32)
        now = self.clock.now()
        s = LandlordSession(key_of(token), now, now, fingerprint(self.password_hash()), secrets.token_hex(20))
        self.store.add(s)
        self.store.remove_stale(now - self.idle_s, now - self.lifetime_s)
        return token, s

    def end(self, key: str) -> None:
        self.store.remove(key)
        for callback in self._ended:
            callback(key)

    def end_all(self) -> int:
        n = self.store.remove_all()
        for callback in self._ended:
            callback(None)
        return n

    def login_link(self, valid_s: float = LINK_S) -> tuple[str, float]:
        """A one-time login token for `payg login-link` (the landlord holds the device): (token, expires at)."""
        token = secrets.token_urlsafe(32)
        now = self.clock.now()
        with self._lock:
            self._links = {k: t for k, t in self._links.items() if t > now}
            while len(self._links) >= LINKS_MAX:
                self._links.pop(next(iter(self._links)))
            self._links[key_of(token)] = now + valid_s
        return token, now + valid_s

    def link_valid(self, token: str) -> bool:
        with self._lock:
            until = self._links.get(key_of(token))
        return until is not None and self.clock.now() <= until

    def use_link(self, token: str) -> bool:
        """True once per link, while it is valid."""
        with self._lock:
            until = self._links.pop(key_of(token), None)
        return until is not None and self.clock.now() <= until

    def anonymous(self, key: str) -> dict | None:
        with self._lock:
            found = self._anonymous.get(key)
            if found is None or self.clock.now() - found[0] > ANONYMOUS_S:
                self._anonymous.pop(key, None)
                return None
            return dict(found[1])

    def keep_anonymous(self, key: str, data: dict) -> None:
        with self._lock:
            self._anonymous[key] = (self.clock.now(), data)
            self._anonymous.move_to_end(key)
            while len(self._anonymous) > ANONYMOUS_MAX:
                self._anonymous.popitem(last=False)

    def drop_anonymous(self, key: str) -> None:
        with self._lock:
            self._anonymous.pop(key, None)


class ServerSession(CallbackDict, SessionMixin):
    """flask.session: `landlord` holds the store key of a current landlord session, else it is absent."""

    def __init__(self, initial: dict | None = None, key: str | None = None, token: str | None = None):
        def changed(_):
            self.modified = True

        super().__init__(initial or {}, changed)
        self.key, self.token = key, token
        self.modified = False
        self.log_in = False   # set by Guard.log_in: start a landlord session when the response goes out
        self.ended = False    # set by Guard.log_out: drop the cookie


def current() -> ServerSession:
    """flask.session, as `CookieSessions` opened it."""
    found = session
    if not isinstance(found, ServerSession):
        raise RuntimeError("flask.session is not a payg session: the app's session_interface is not CookieSessions")
    return found


class CookieSessions(SessionInterface):
    def __init__(self, sessions: Sessions, *, cookie: str, secure: bool, anonymous_under: str = "/landlord"):
        self.sessions, self.cookie, self.secure = sessions, cookie, secure
        self.anonymous_under = anonymous_under

    def open_session(self, app, request) -> ServerSession:
        token = request.cookies.get(self.cookie)
        if not token or len(token) > 100:
            return ServerSession()
        key = key_of(token)
        s = self.sessions.landlord(key)
        if s is not None:
            self.sessions.seen(s)
            return ServerSession({"landlord": key, "csrf_token": s.csrf}, key, token)
        data = self.sessions.anonymous(key)
        if data is not None:
            return ServerSession(data, key, token)
        return ServerSession()

    def save_session(self, app, session: SessionMixin, response) -> None:
        if not isinstance(session, ServerSession):  # open_session makes only these
            return
        options = dict(path="/", httponly=True, samesite="Lax", secure=self.secure)
        if session.ended:
            response.delete_cookie(self.cookie, **options)
            return
        if session.log_in:
            if session.key:
                self.sessions.drop_anonymous(session.key)
            token, _ = self.sessions.start()
            response.set_cookie(self.cookie, token, max_age=int(self.sessions.lifetime_s), **options)
            response.vary.add("Cookie")
            return
        if session.get("landlord") or not session.modified or not session:
            return
        from flask import request

        if not request.path.startswith(self.anonymous_under):
            return  # a tenant page: no cookie, whatever it rendered
        token = session.token or secrets.token_urlsafe(32)
        self.sessions.keep_anonymous(key_of(token), dict(session))
        if session.token is None:
            response.set_cookie(self.cookie, token, **options)
