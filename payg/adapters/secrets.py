"""Secrets: read from environment variables or owner-only files, never from the TOML itself.

`read_secret` reads what a SecretRef names (a mnemonic, the landlord's password hash).
`owner_only_secret` keeps a generated secret in the data directory (mode 0600), made on
first use: `web-secret` signs the landlord's session cookies, `api-token` lets `payg`
commands on this machine use the controller's API.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
from pathlib import Path

from payg.domain.settings import SecretRef
from payg.errors import ConfigError

log = logging.getLogger("payg.web")

# Kept in the data directory, owner-only, made by the controller at its first start:
API_TOKEN_FILE = "api-token"        # lets `payg` commands on this machine use the controller's API
SESSION_SECRET_FILE = "web-secret"  # signs the landlord's session cookies
HASH_FORMAT = re.compile(r"^(scrypt|pbkdf2):[A-Za-z0-9:]+\$[^$\s]+\$[0-9a-f]{32,}$")


def read_secret(ref: SecretRef, config_file: str | Path) -> str:
    """The secret's text, stripped. ConfigError when it is missing, empty or readable by others."""
    file = str(config_file)
    if ref.env is not None:
        value = os.environ.get(ref.env, "").strip()
        if not value:
            raise ConfigError(file, ref.key, f"the environment variable {ref.env} to hold {ref.what} "
                              "(it is not set or empty)")
        return value
    assert ref.file is not None
    try:
        st = os.stat(ref.file)
        if st.st_mode & 0o077:
            raise ConfigError(file, ref.key, f"a file readable by its owner only (chmod 600 {ref.file})",
                              f"mode {st.st_mode & 0o777:04o}", has_got=True)
        if st.st_uid != os.geteuid():
            raise ConfigError(file, ref.key, f"a file owned by the user running payg (uid {os.geteuid()})",
                              f"owned by uid {st.st_uid}", has_got=True)
        value = ref.file.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(file, ref.key, f"a readable file holding {ref.what} ({exc.strerror}: "
                          f"{ref.file})") from None
    if not value:
        raise ConfigError(file, ref.key, f"a file holding {ref.what} ({ref.file} is empty)")
    return value


def owner_only_secret(path: Path, nbytes: int = 32) -> str:
    """The secret kept in `path`, made on first use with mode 0600. Refuses a file others can read."""
    if not path.exists():
        _make_whole(path, secrets.token_urlsafe(nbytes) + "\n")
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


def _make_whole(path: Path, text: str) -> None:
    """`path` with `text`, mode 0600, appearing whole or not at all: written and synced under another name, then
    linked into place, which never replaces a file that is there. A crash leaves no empty secret behind, and a
    `payg` command reading the token while the controller starts never reads half of one."""
    scratch = path.with_name(f".{path.name}.{os.getpid()}.new")
    fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(scratch, path)
        except FileExistsError:
            return  # made by another process meanwhile: that one is kept
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    finally:
        scratch.unlink(missing_ok=True)


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


def web_secrets(data_dir: Path, password: SecretRef | None, config_file: str | Path) -> tuple[str, str, str | None]:
    """(session key, API token, the landlord's password hash or None) of a controller's web side."""
    return (owner_only_secret(data_dir / SESSION_SECRET_FILE), owner_only_secret(data_dir / API_TOKEN_FILE),
            landlord_password_hash(password, config_file))


class LandlordPasswordHash:
    """The landlord's password hash as of now, for the web side to ask on every check.

    A hash file is read again whenever it changes, so `payg password` on the device ends every
    landlord session at once, without a restart. An unreadable or invalid new file turns the
    landlord view off (logged) rather than keep an old password working. A hash from an
    environment variable cannot change while the process runs."""

    def __init__(self, ref: SecretRef | None, config_file: str | Path, initial: str | None):
        self.ref, self.config_file = ref, config_file
        self._value = initial
        self._stamp = self._stat()

    def _stat(self) -> tuple | None:
        if self.ref is None or self.ref.file is None:
            return None
        try:
            st = os.stat(self.ref.file)
        except OSError:
            return ()
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def __call__(self) -> str | None:
        if self.ref is None or self.ref.file is None:
            return self._value
        stamp = self._stat()
        if stamp != self._stamp:
            self._stamp = stamp
            try:
                self._value = landlord_password_hash(self.ref, self.config_file)
                log.warning("the landlord's password hash changed (%s): every landlord session ends", self.ref.file)
            except ConfigError as exc:
                log.error("landlord view off: %s", exc)
                self._value = None
        return self._value
