"""Secrets of the web side: the owner-only files in the data directory, the landlord's password
hash, and `payg password`."""

from __future__ import annotations

import io
import os
import stat
from argparse import Namespace

import pytest
from werkzeug.security import check_password_hash

from payg.adapters.secrets import landlord_password_hash, owner_only_secret, web_secrets
from payg.cli.password import cmd_password
from payg.domain.settings import SecretRef
from payg.errors import ConfigError
from payg.webkit.security import WebSecrets
from tests.support.web_beds import PASSWORD, PASSWORD_HASH, csrf_of, make_web_bed


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_secret_is_made_once_owner_only_and_kept(tmp_path):
    path = tmp_path / "web-secret"
    first = owner_only_secret(path)
    assert mode(path) == 0o600 and len(first) >= 40
    assert owner_only_secret(path) == first
    assert owner_only_secret(tmp_path / "other") != first


def test_a_secret_is_never_left_half_made(tmp_path, monkeypatch):
    """A failure (or a crash) before the secret is on disk leaves no file: the next start makes a whole one,
    where an empty file would stop every later start ("at least 32 characters")."""
    path = tmp_path / "api-token"

    def disk_fails(fd: int) -> None:
        raise OSError(5, "Input/output error")

    with monkeypatch.context() as patch:
        patch.setattr(os, "fsync", disk_fails)
        with pytest.raises(OSError):
            owner_only_secret(path)
    assert os.listdir(tmp_path) == []
    assert len(owner_only_secret(path)) >= 40 and mode(path) == 0o600
    assert os.listdir(tmp_path) == ["api-token"]


def test_a_secret_others_can_read_is_refused(tmp_path):
    path = tmp_path / "web-secret"
    owner_only_secret(path)
    os.chmod(path, 0o640)
    with pytest.raises(ConfigError, match="chmod 600"):
        owner_only_secret(path)


def test_a_short_secret_is_refused(tmp_path):
    path = tmp_path / "api-token"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"secret!\n")
    os.close(fd)
    with pytest.raises(ConfigError, match="at least 32"):
        owner_only_secret(path)


def test_logins_survive_a_restart_because_the_session_key_is_kept(tmp_path):
    secrets = WebSecrets(*web_secrets(tmp_path, None, "c.toml"))
    assert secrets == WebSecrets(*web_secrets(tmp_path, None, "c.toml"))
    assert mode(tmp_path / "web-secret") == 0o600 and mode(tmp_path / "api-token") == 0o600
    assert secrets.session_key != secrets.api_token


def test_the_password_hash_comes_from_the_environment(tmp_path, monkeypatch):
    ref = SecretRef(env="PAYG_TEST_HASH", key="web.landlord_password_hash_env", what="the landlord's password hash")
    monkeypatch.delenv("PAYG_TEST_HASH", raising=False)
    assert landlord_password_hash(ref, "c.toml") is None           # not set: the landlord view is off
    monkeypatch.setenv("PAYG_TEST_HASH", PASSWORD_HASH)
    assert landlord_password_hash(ref, "c.toml") == PASSWORD_HASH
    monkeypatch.setenv("PAYG_TEST_HASH", PASSWORD)                 # the password itself: refused
    with pytest.raises(ConfigError) as err:
        landlord_password_hash(ref, "c.toml")
    assert err.value.key == "web.landlord_password_hash_env" and PASSWORD not in str(err.value)


def test_the_password_hash_file_must_be_owner_only(tmp_path):
    path = tmp_path / "landlord.hash"
    path.write_text(PASSWORD_HASH + "\n")
    ref = SecretRef(file=path, key="web.landlord_password_hash_file", what="the landlord's password hash")
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        landlord_password_hash(ref, "c.toml")
    os.chmod(path, 0o600)
    assert landlord_password_hash(ref, "c.toml") == PASSWORD_HASH
    path.unlink()
    with pytest.raises(ConfigError, match="landlord's password hash"):
        landlord_password_hash(ref, "c.toml")


def test_payg_password_writes_an_owner_only_scrypt_hash(tmp_path):
    path = tmp_path / "landlord.hash"
    out, err = io.StringIO(), io.StringIO()
    assert cmd_password(Namespace(stdin=True, file=str(path)), out, err, io.StringIO(PASSWORD + "\n")) == 0
    hashed = path.read_text().strip()
    assert mode(path) == 0o600 and hashed.startswith("scrypt:") and PASSWORD not in hashed
    assert check_password_hash(hashed, PASSWORD) and not check_password_hash(hashed, PASSWORD + "x")
    ref = SecretRef(file=path, key="web.landlord_password_hash_file", what="the landlord's password hash")
    assert landlord_password_hash(ref, "c.toml") == hashed
    printed = io.StringIO()
    assert cmd_password(Namespace(stdin=True, file=None), printed, err, io.StringIO(PASSWORD + "\n")) == 0
    assert check_password_hash(printed.getvalue().strip(), PASSWORD)


def test_payg_password_refuses_a_short_password(tmp_path):
    err = io.StringIO()
    assert cmd_password(Namespace(stdin=True, file=str(tmp_path / "h")), io.StringIO(), err,
                            io.StringIO("short\n")) == 1
    assert "at least" in err.getvalue() and not (tmp_path / "h").exists()


def test_a_hash_made_by_payg_password_logs_in(tmp_path):
    out = io.StringIO()
    cmd_password(Namespace(stdin=True, file=None), out, io.StringIO(), io.StringIO(PASSWORD + "\n"))
    bed = make_web_bed(tmp_path, password_hash=out.getvalue().strip())
    try:
        client = bed.client()
        resp = client.post("/landlord/login", data={"password": PASSWORD, "csrf_token": csrf_of(client)})
        assert resp.status_code == 302 and client.get("/landlord").status_code == 200
    finally:
        bed.close()
