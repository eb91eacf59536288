"""The web app on the embedded default's real objects, for Flask's and Socket.IO's test clients."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from werkzeug.security import generate_password_hash

from payg import bootstrap as composition
from payg.adapters import config as cfg
from payg.adapters.clocks import ManualClock
from payg.adapters.virtual import VirtualDriver
from payg.domain import settings
from payg.web import Web, create_web
from payg.webkit.security import WebSecrets
from tests.support import ROOT

PASSWORD = "correct horse battery staple"
HASH_ENV = "PAYG_LANDLORD_HASH"
# Debian's Chromium as the browser tests and bench/web.py launch it (the network here is closed)
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TOKEN = "t" * 43
# A cheap hash keeps the tests quick; `payg password` makes scrypt ones.
PASSWORD_HASH = generate_password_hash(PASSWORD, method="pbkdf2:sha256:1000")


def embedded_config(data_dir: Path, **web) -> settings.Config:
    config = cfg.load(ROOT / "config" / "default.toml")
    return settings.Config(config.path, settings.ControllerConfig(data_dir=data_dir), settings.WebConfig(**web),
                           config.ledger, config.tariff, config.sockets)


def embedded_default_toml(data_dir: Path, port: int) -> str:
    """config/default.toml as text with its data directory, port and landlord password hash variable set,
    nothing else (checked), for a controller run as a subprocess."""
    text = (ROOT / "config" / "default.toml").read_text()
    for key, value in (("data_dir", f'"{data_dir}"'), ("port", str(port))):
        text, n = re.subn(rf"(?m)^{key} = [^#\n]*?(\s*(#.*)?)$",
                          lambda m, key=key, value=value: f"{key} = {value}{m.group(1)}", text)
        assert n == 1, f"config/default.toml has {n} lines setting {key}"
    text, n = re.subn(r"(?m)^landlord_password_hash_env = .*$", f'landlord_password_hash_env = "{HASH_ENV}"', text)
    if n == 0:
        text, n = re.subn(r"(?m)^\[web\]$", f'[web]\nlandlord_password_hash_env = "{HASH_ENV}"', text)
    assert n == 1, "config/default.toml has no [web] table"
    # What the controller will read: the embedded default but for those three settings.
    path = data_dir.parent / "check.toml"
    path.write_text(text)
    got, default = cfg.load(path), cfg.load(ROOT / "config" / "default.toml")
    path.unlink()
    assert (got.controller.data_dir, got.web.port, got.web.landlord_password.env) == (data_dir, port, HASH_ENV)
    assert [s.id for s in got.sockets] == [s.id for s in default.sockets] == ["kitchen", "laundry", "office"]
    assert got.sockets == default.sockets and got.ledger == default.ledger and got.tariff == default.tariff
    return text


@dataclass
class WebBed:
    rt: composition.Runtime
    loop: VirtualDriver
    clock: ManualClock
    web: Web
    health: dict

    @property
    def app(self):
        return self.web.app

    def client(self, token: bool = False):
        c = self.web.app.test_client()
        if token:
            c.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {TOKEN}"
        return c

    def landlord(self, client=None):
        """A test client logged in as the landlord (through the real login form)."""
        c = client or self.client()
        c.get("/landlord/login")
        resp = c.post("/landlord/login", data={"password": PASSWORD, "csrf_token": csrf_of(c), "next": "/landlord"})
        assert resp.status_code == 302, resp.get_data(as_text=True)
        return c

    def close(self) -> None:
        self.rt.close()


def csrf_of(client) -> str:
    """The CSRF token of the client's session, read from a page's meta tag like the browser does."""
    html = client.get("/landlord/login").get_data(as_text=True)
    match = re.search(r'<meta name="csrf-token" content="([^"]+)"', html)
    assert match, "no csrf-token meta tag"
    return match.group(1)


def make_web_bed(tmp_path: Path, *, password_hash: str | None = PASSWORD_HASH, payer: bool = True,
                 start: float = 1_800_000_000.0, config: settings.Config | None = None, **web) -> WebBed:
    """The embedded default (or `config`) built on a virtual clock, its web app in testing mode."""
    config = config or embedded_config(tmp_path / "var", **web)
    clock = ManualClock(start)
    rt = composition.build(config, clock)
    rt.site.start()
    loop = VirtualDriver(rt.site, clock)
    health = {"status": "ok"}
    services = composition.web_services(rt, WebSecrets("s" * 43, TOKEN, password_hash))
    services.payer = rt.ledger if payer else None
    services.health = lambda: health
    w = create_web(services)
    w.app.testing = True
    rt.publishers.subscribe(w.hub)
    return WebBed(rt, loop, clock, w, health)
