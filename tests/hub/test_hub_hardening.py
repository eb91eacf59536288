"""The hub's own hardening: `[hub] trusted_proxies` means what a controller's `[web] trusted_proxies` means (behind
a trusted proxy the pages and the server's per-client limits count the client X-Forwarded-For names; from anyone
else the header is ignored), a bad value is refused, and `payg hub` stops at once on SIGTERM. The hub in-process
on a real Mosquitto, raw sockets and HTTP on 127.0.0.x; `payg hub` itself as a process for the rest."""

from __future__ import annotations

import http.client
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import pytest
from werkzeug.security import generate_password_hash

from payg.adapters.clocks import ManualClock
from payg.adapters.mqtt.acl import mosquitto_acl
from payg.domain.hub_settings import HubConfig
from payg.domain.settings import MqttConfig, SecretRef, ServerConfig
from payg.wiring.hub import build_hub
from tests.support import ROOT, free_port, wait_until
from tests.support.mosquitto import Broker
from tests.support.mqtt_beds import served_hub

USERS = {"hub": "pw-hub"}
PASSWORD = "pw"
PROXY, STRANGER = "127.0.0.2", "127.0.0.3"  # the reverse proxy, and a machine that is not one


@pytest.fixture
def hub(tmp_path, monkeypatch):
    broker = Broker(tmp_path / "broker", USERS, mosquitto_acl("payg", {}, ["hub"])).start()
    monkeypatch.setenv("PAYG_TEST_HUB_HASH", generate_password_hash(PASSWORD, method="pbkdf2:sha256:1000"))
    monkeypatch.setenv("PAYG_TEST_HUB_MQTT", USERS["hub"])
    config = HubConfig(path=tmp_path / "hub.toml", data_dir=tmp_path / "hub-data",
                       mqtt=MqttConfig(enabled=True, port=broker.port, username="hub", client_id="payg-hub",
                                       password=SecretRef(env="PAYG_TEST_HUB_MQTT", key="mqtt.password_env")),
                       landlord_password=SecretRef(env="PAYG_TEST_HUB_HASH", key="hub.landlord_password_hash_env"),
                       trusted_proxies=(PROXY,), server=ServerConfig(workers=2, max_live_per_client=2))
    # the clock stands still: a login wait never lapses
    with served_hub(build_hub(config, ManualClock(1_000_000.0), port=0), broker) as (h, _):
        yield h


def live_page(port: int, source: str, forwarded_for: str) -> tuple[socket.socket, bytes]:
    s = socket.socket()
    s.bind((source, 0))
    s.settimeout(5)
    s.connect(("127.0.0.1", port))
    s.sendall((f"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
               f"X-Forwarded-For: {forwarded_for}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    return s, s.recv(12)


def test_the_live_limit_counts_the_client_a_trusted_proxy_names_and_ignores_the_header_from_others(hub):
    port = hub.server.port
    opened: list[socket.socket] = []

    def status(source: str, forwarded_for: str) -> bytes:
        s, answer = live_page(port, source, forwarded_for)
        opened.append(s)
        return answer

    try:
        # two live pages per client (max_live_per_client = 2): the proxy's clients each get their own two
        assert [status(PROXY, "10.0.0.1") for _ in range(3)] == [b"HTTP/1.1 101"] * 2 + [b"HTTP/1.1 503"]
        assert status(PROXY, "10.0.0.2") == b"HTTP/1.1 101"
        # what a client writes into the header itself is left of what the proxy added: still 10.0.0.1
        assert status(PROXY, "10.0.0.2, 10.0.0.1") == b"HTTP/1.1 503"
        # from an address that is not a trusted proxy the header counts for nothing: the sender is the client
        assert [status(STRANGER, f"10.0.1.{i}") for i in range(3)] == [b"HTTP/1.1 101"] * 2 + [b"HTTP/1.1 503"]
    finally:
        for s in opened:
            s.close()


class Browser:
    """One client's login attempts through the real server, from `source` with X-Forwarded-For `forwarded_for`."""

    def __init__(self, port: int, source: str, forwarded_for: str):
        self.port, self.source, self.forwarded_for = port, source, forwarded_for

    def login(self, password: str) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10, source_address=(self.source, 0))
        try:
            conn.request("GET", "/login", headers={"X-Forwarded-For": self.forwarded_for})
            resp = conn.getresponse()
            page = resp.read().decode()
            cookie = "; ".join(c.split(";")[0] for c in resp.headers.get_all("Set-Cookie") or [])
            token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
            form = urllib.parse.urlencode({"csrf_token": token, "password": password, "next": "/"})
            conn.request("POST", "/login", form, {"X-Forwarded-For": self.forwarded_for, "Cookie": cookie,
                                                  "Content-Type": "application/x-www-form-urlencoded"})
            resp = conn.getresponse()
            resp.read()
            return resp.status
        finally:
            conn.close()


def test_the_login_limiter_and_log_see_the_client_a_trusted_proxy_names(hub, caplog):
    port = hub.server.port
    caplog.set_level(logging.INFO, logger="payg.hub")
    tenant = Browser(port, PROXY, "10.0.0.66")
    statuses = [tenant.login("wrong") for _ in range(7)]
    assert statuses[-1] == 429 and 429 not in statuses[:5], statuses
    assert "landlord login from 10.0.0.66" in caplog.text
    # the same client claiming another address is still himself; the landlord behind the same proxy is not held
    assert Browser(port, PROXY, "10.0.0.10, 10.0.0.66").login("wrong") == 429
    assert Browser(port, PROXY, "10.0.0.10").login(PASSWORD) == 302
    assert "landlord logged in from 10.0.0.10" in caplog.text


def test_from_an_untrusted_address_the_forwarded_header_is_ignored(hub, caplog):
    port = hub.server.port
    caplog.set_level(logging.INFO, logger="payg.hub")
    statuses = [Browser(port, STRANGER, f"10.9.9.{i}").login("wrong") for i in range(7)]
    assert statuses[-1] == 429, statuses  # every attempt counted against the sender, whatever it claimed
    assert f"landlord login from {STRANGER}" in caplog.text and "from 10.9.9." not in caplog.text
    assert Browser(port, PROXY, "10.0.0.10").login(PASSWORD) == 302


def hub_toml(tmp_path: Path, broker_port: int, web_port: int, extra: str = "") -> Path:
    path = tmp_path / "hub.toml"
    path.write_text(f"""
[hub]
data_dir = "{tmp_path / 'hub-data'}"
port = {web_port}
landlord_password_hash_env = "PAYG_TEST_HUB_HASH"
{extra}
[mqtt]
port = {broker_port}
username = "hub"
password_env = "PAYG_TEST_HUB_MQTT"
keepalive_s = 5
""")
    return path


def payg_hub(path: Path, **kwargs) -> subprocess.Popen:
    env = dict(os.environ, PAYG_TEST_HUB_HASH=generate_password_hash(PASSWORD, method="pbkdf2:sha256:1000"),
               PAYG_TEST_HUB_MQTT=USERS["hub"])
    return subprocess.Popen([sys.executable, str(ROOT / "app.py"), "hub", "--config", str(path)], cwd=path.parent,
                            env=env, text=True, **kwargs)


@pytest.mark.parametrize("value", ['"127.0.0.1"', '["localhost"]', '["10.0.0.0/33"]', "[1]"])
def test_a_bad_trusted_proxies_in_the_hub_file_is_refused(tmp_path, value):
    path = hub_toml(tmp_path, free_port(), free_port(), f"trusted_proxies = {value}")
    proc = payg_hub(path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, (out, err)
    assert "hub.trusted_proxies" in err and "a list of proxy addresses or CIDR blocks" in err, err


def test_payg_hub_exits_at_once_on_sigterm(tmp_path):
    broker = Broker(tmp_path / "broker", USERS, mosquitto_acl("payg", {}, ["hub"])).start()
    web_port = free_port()
    log = tmp_path / "hub.log"
    path = hub_toml(tmp_path, broker.port, web_port, 'trusted_proxies = ["127.0.0.1", "::1"]')
    try:
        with log.open("w") as out:
            proc = payg_hub(path, stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_until(lambda: "payg hub running" in log.read_text() and "connected to" in log.read_text(), 60,
                       "the hub up and on the broker", 0.05)
            conn = http.client.HTTPConnection("127.0.0.1", web_port, timeout=10)
            conn.request("GET", "/login")
            assert conn.getresponse().status == 200
            conn.close()
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(30)
            took = time.monotonic() - started
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    finally:
        broker.stop()
    print(f"payg hub: SIGTERM to exit {took:.3f} s")
    text = log.read_text()
    assert code == 0, text
    assert took < 2.0, f"{took:.3f} s from SIGTERM to exit"
    assert "payg hub stopped" in text and "Traceback" not in text, text
