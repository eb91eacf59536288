"""Who may change what: the landlord's login, the local API token, CSRF and the limiter of failed attempts.

- Tenant pages and `GET /api/sockets/<id>` are public and read-only.
- Everything else under /landlord and /api needs either the landlord's session (a server-side
  session, payg/webkit/sessions.py; state changes also need its CSRF token, checked by Flask-WTF)
  or the API token that the controller keeps in its data directory for `payg` commands on
  the same machine (sent as `Authorization: Bearer ...`; no cookie, so no CSRF check).
- /api/peer/* is what other controllers call: each message is checked on its own merits
  (signatures, the ledger), so it needs neither.

Secrets are generated once and kept in the data directory, readable by their owner only
(payg/adapters/secrets.py makes and reads them): `web-secret` signs the CSRF tokens,
`api-token` is the token. The landlord's password exists only as a hash (werkzeug's scrypt),
named by the config through an environment variable or an owner-only file; a new hash there
ends every session.

Failed logins are limited per client (the `Limiter`), never for everyone: a tenant who
guesses passwords slows down and then stops only himself, and the landlord logs in from
any other address as usual. The same limiter will guard the tenant's own actions.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import threading
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

from flask import request, session
from werkzeug.security import check_password_hash

from payg.ports import Clock
from payg.webkit.sessions import Sessions, current

log = logging.getLogger("payg.web")


def safe_next(target: str | None, default: str) -> str:
    """Only a path on this site (never //host or a scheme) may be the page after a login or a language switch."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return default


HASH_CHECKS_AT_ONCE = 2


@dataclass(frozen=True)
class WebSecrets:
    session_key: str
    api_token: str
    password_hash: str | None  # None: the landlord view is off


def client_key(address: str) -> str:
    """Whom a failure counts against: the address, or for IPv6 its /64 (one household's, or one attacker's, block)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if ip.version == 6:
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class Limiter:
    """Failed attempts per client: the first `free` in `window_s` cost nothing, each one after waits twice as
    long as the one before (from `first_wait_s`, at most `max_wait_s`), and `cap` of them hold the client
    until the oldest lapses. A success forgets the client's failures. Other clients are never held up."""

    def __init__(self, clock: Clock, *, free: int = 5, first_wait_s: float = 1.0, max_wait_s: float = 60.0,
                 cap: int = 30, window_s: float = 900.0, max_clients: int = 10_000):
        self.clock = clock
        self.free, self.first_wait_s, self.max_wait_s = free, first_wait_s, max_wait_s
        self.cap, self.window_s, self.max_clients = cap, window_s, max_clients
        self._failures: OrderedDict[str, deque] = OrderedDict()
        self._lock = threading.Lock()

    def _trim(self, q: deque, now: float) -> None:
        while q and q[0] <= now - self.window_s:
            q.popleft()

    def retry_after(self, client: str) -> float | None:
        """Seconds until this client may try again, or None when it may try now."""
        now = self.clock.now()
        with self._lock:
            q = self._failures.get(client_key(client))
            if q is None:
                return None
            self._trim(q, now)
            if not q:
                del self._failures[client_key(client)]
                return None
            if len(q) >= self.cap:
                return q[0] + self.window_s - now
            if len(q) < self.free:
                return None
            wait = min(self.max_wait_s, self.first_wait_s * 2 ** (len(q) - self.free)) + q[-1] - now
            return wait if wait > 0 else None

    def failed(self, client: str) -> None:
        now = self.clock.now()
        key = client_key(client)
        with self._lock:
            q = self._failures.get(key)
            if q is None:
                q = self._failures[key] = deque(maxlen=self.cap)
            q.append(now)
            self._failures.move_to_end(key)
            while len(self._failures) > self.max_clients:  # a flood of addresses forgets the oldest, not the memory
                self._failures.popitem(last=False)

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._failures.pop(client_key(client), None)


class Guard:
    """The checks the routes and the Socket.IO events call."""

    def __init__(self, secrets_: WebSecrets, sessions: Sessions, password_hash: Callable[[], str | None]):
        self.secrets = secrets_
        self.sessions = sessions
        self.password_hash = password_hash
        self._hashing = threading.BoundedSemaphore(HASH_CHECKS_AT_ONCE)

    @property
    def landlord_enabled(self) -> bool:
        return self.password_hash() is not None

    def check_password(self, password: str) -> bool:
        hashed = self.password_hash()
        if hashed is None:
            return False
        with self._hashing:  # scrypt takes tens of MB and ms: a flood of logins must not take the machine
            return check_password_hash(hashed, password)

    def log_in(self) -> None:
        s = current()
        s.clear()
        s.log_in = True

    def log_out(self) -> None:
        s = current()
        key = s.get("landlord")
        if key:
            self.sessions.end(key)
        s.clear()
        s.ended = True

    def landlord(self) -> bool:
        """The request comes with a current landlord session (checked when the session was opened)."""
        return self.landlord_key() is not None

    def landlord_key(self) -> str | None:
        if not self.landlord_enabled:
            return None
        key = session.get("landlord")
        return key if isinstance(key, str) else None

    def token(self) -> bool:
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(),
                                                                   self.secrets.api_token.encode())
