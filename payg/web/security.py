"""Who may change what: the landlord's login, the local API token, CSRF and the login throttle.

- Tenant pages and `GET /api/sockets/<id>` are public and read-only.
- Everything else under /landlord and /api needs either the landlord's session (a signed
  cookie; state changes also need its CSRF token, checked by Flask-WTF) or the API token
  that the controller keeps in its data directory for `payg` commands on the same machine
  (sent as `Authorization: Bearer ...`; no cookie, so no CSRF check).
- /api/peer/* is what other controllers call: each message is checked on its own merits
  (signatures, the ledger), so it needs neither.

Secrets are generated once and kept in the data directory, readable by their owner only:
`web-secret` signs the session cookies (so logins survive a restart), `api-token` is the
token. The landlord's password exists only as a hash (werkzeug's scrypt), named by the
config through an environment variable or an owner-only file; the session carries a
fingerprint of that hash, so changing the password logs every session out.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from flask import request, session
from werkzeug.security import check_password_hash

from payg.clock import Clock
from payg.config import API_TOKEN_FILE, SESSION_SECRET_FILE, SecretRef, read_secret
from payg.errors import ConfigError

log = logging.getLogger("payg.web")

HASH_FORMAT = re.compile(r"^(scrypt|pbkdf2):[A-Za-z0-9:]+\$[^$\s]+\$[0-9a-f]{32,}$")


def owner_only_secret(path: Path, nbytes: int = 32) -> str:
    """The secret kept in `path`, made on first use with mode 0600. Refuses a file others can read."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(nbytes) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
    st = os.stat(path)
    if st.st_mode & 0o077:
        raise ConfigError(str(path), "(secret file)", f"a file readable by its owner only (chmod 600 {path})",
                          f"mode {st.st_mode & 0o777:04o}", has_got=True)
    if st.st_uid != os.geteuid():
        raise ConfigError(str(path), "(secret file)", f"a file owned by the user running payg (uid {os.geteuid()})",
                          f"owned by uid {st.st_uid}", has_got=True)
    value = path.read_text(encoding="ascii").strip()
    if len(value) < 32:
        raise ConfigError(str(path), "(secret file)", "at least 32 characters of secret (delete the file to "
                          "have a new one made)", f"{len(value)} characters", has_got=True)
    return value


def landlord_password_hash(ref: SecretRef | None, config_file: str | Path) -> str | None:
    """The configured hash; None when no landlord login is configured (or its variable is unset)."""
    if ref is None:
        return None
    if ref.env is not None and not os.environ.get(ref.env, "").strip():
        log.warning("landlord view off: the environment variable %s (%s) is not set", ref.env, ref.key)
        return None
    value = read_secret(ref, config_file)
    if not HASH_FORMAT.match(value):
        raise ConfigError(str(config_file), ref.key, "a password hash as printed by `payg password` "
                          "(never the password itself)", "something else", has_got=True)
    return value


@dataclass(frozen=True)
class WebSecrets:
    session_key: str
    api_token: str
    password_hash: str | None  # None: the landlord view is off

    @classmethod
    def load(cls, data_dir: Path, password: SecretRef | None, config_file: str | Path) -> "WebSecrets":
        return cls(owner_only_secret(data_dir / SESSION_SECRET_FILE), owner_only_secret(data_dir / API_TOKEN_FILE),
                   landlord_password_hash(password, config_file))

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
