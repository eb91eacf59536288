"""Who may change what: the landlord's login, the local API token, CSRF and the login throttle.

- Tenant pages and `GET /api/sockets/<id>` are public and read-only.
- Everything else under /landlord and /api needs either the landlord's session (a signed
  cookie; state changes also need its CSRF token, checked by Flask-WTF) or the API token
  that the controller keeps in its data directory for `payg` commands on the same machine
  (sent as `Authorization: Bearer ...`; no cookie, so no CSRF check).
- /api/peer/* is what other controllers call: each message is checked on its own merits
  (signatures, the ledger), so it needs neither.

Secrets are generated once and kept in the data directory, readable by their owner only
(payg/adapters/secrets.py makes and reads them): `web-secret` signs the session cookies (so
logins survive a restart), `api-token` is the token. The landlord's password exists only as a hash (werkzeug's scrypt), named by the
config through an environment variable or an owner-only file; the session carries a
fingerprint of that hash, so changing the password logs every session out.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
from collections import deque
from dataclasses import dataclass

from flask import request, session
from werkzeug.security import check_password_hash

from payg.ports import Clock

log = logging.getLogger("payg.web")


@dataclass(frozen=True)
class WebSecrets:
    session_key: str
    api_token: str
    password_hash: str | None  # None: the landlord view is off

    @property
    def password_fingerprint(self) -> str:
        return hashlib.sha256((self.password_hash or "").encode()).hexdigest()[:16]


class LoginThrottle:
    """At most `per_address` failed logins per address and `overall` in all per `window_s`."""

    def __init__(self, clock: Clock, per_address: int = 5, overall: int = 30, window_s: float = 900.0):
        self.clock = clock
        self.per_address, self.overall, self.window_s = per_address, overall, window_s
        self._failures: dict[str, deque] = {}
        self._all: deque = deque()
        self._lock = threading.Lock()

    def _trim(self, q: deque, now: float) -> None:
        while q and q[0] <= now - self.window_s:
            q.popleft()

    def retry_after(self, address: str) -> float | None:
        """Seconds until this address may try again, or None when it may try now."""
        now = self.clock.now()
        with self._lock:
            waits = []
            q = self._failures.get(address)
            if q is not None:
                self._trim(q, now)
                if len(q) >= self.per_address:
                    waits.append(q[0] + self.window_s - now)
                if not q:
                    del self._failures[address]
            self._trim(self._all, now)
            if len(self._all) >= self.overall:
                waits.append(self._all[0] + self.window_s - now)
        return max(waits) if waits else None

    def failed(self, address: str) -> None:
        now = self.clock.now()
        with self._lock:
            self._failures.setdefault(address, deque()).append(now)
            self._all.append(now)

    def succeeded(self, address: str) -> None:
        with self._lock:
            self._failures.pop(address, None)


class Guard:
    """The checks the routes and the Socket.IO events call."""

    def __init__(self, secrets_: WebSecrets, clock: Clock, session_s: float):
        self.secrets = secrets_
        self.clock = clock
        self.session_s = session_s

    @property
    def landlord_enabled(self) -> bool:
        return self.secrets.password_hash is not None

    def check_password(self, password: str) -> bool:
        if self.secrets.password_hash is None:
            return False
        return check_password_hash(self.secrets.password_hash, password)

    def log_in(self) -> None:
        session.clear()
        session.permanent = True
        session["landlord"] = True
        session["at"] = self.clock.now()
        session["pw"] = self.secrets.password_fingerprint

    def landlord(self) -> bool:
        """A landlord session that is current: not expired, and made with today's password."""
        return self.landlord_until() is not None

    def landlord_until(self) -> float | None:
        """When the current landlord session ends; None when there is none."""
        if not self.landlord_enabled or session.get("landlord") is not True:
            return None
        at = session.get("at")
        if not isinstance(at, (int, float)) or not 0 <= self.clock.now() - at <= self.session_s:
            return None
        if not hmac.compare_digest(str(session.get("pw", "")), self.secrets.password_fingerprint):
            return None
        return at + self.session_s

    def token(self) -> bool:
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(),
                                                                   self.secrets.api_token.encode())
