"""Landlord sessions kept by the controller: logout, a new password and idle time end them at once,
Socket.IO included; the cookie says nothing; tenant pages set none; failed logins hold up only their sender."""

from __future__ import annotations

import os
import sqlite3

import pytest
from werkzeug.security import generate_password_hash

from payg.adapters.clocks import ManualClock
from payg.adapters.secrets import LandlordPasswordHash
from payg.adapters.web_sessions import FILE
from payg.domain.settings import SecretRef
from payg.webkit.security import Limiter, client_key
from tests.support.web_beds import PASSWORD, PASSWORD_HASH, csrf_of, make_web_bed


def cookie_of(client) -> str:
    c = client.get_cookie("payg_session")
    assert c is not None, "no session cookie"
    return c.value


def replay(bed, value: str, remote: str = "127.0.0.1"):
    """A client that has nothing but a copy of the cookie."""
    c = bed.client()
    c.environ_base["REMOTE_ADDR"] = remote
    c.set_cookie("payg_session", value)
    return c


def landlord_socket(bed, client):
    sio = bed.web.socketio.test_client(bed.app, namespace="/landlord", flask_test_client=client)
    assert sio.is_connected("/landlord")
    return sio


def test_a_cookie_copied_before_logout_is_worth_nothing_after_it(bed):
    client = bed.landlord()
    copied = cookie_of(client)
    thief = replay(bed, copied)
    assert thief.get("/api/sockets").status_code == 200
    sio = landlord_socket(bed, thief)
    resp = client.post("/landlord/logout", data={"csrf_token": csrf_of(client)})
    assert resp.status_code == 302
    assert thief.get("/api/sockets").status_code == 401
    assert replay(bed, copied).get("/landlord").status_code == 302
    assert not sio.is_connected("/landlord")  # closed by the logout itself, not at the next push


def test_the_cookie_is_a_random_token_and_the_store_keeps_only_its_hash(bed):
    client = bed.landlord()
    value = cookie_of(client)
    assert len(value) == 43 and "." not in value  # 32 random bytes, nothing signed or encoded in it
    rows = sqlite3.connect(bed.rt.config.controller.data_dir / FILE).execute("SELECT * FROM sessions").fetchall()
    assert len(rows) == 1 and value not in repr(rows)
    assert oct(os.stat(bed.rt.config.controller.data_dir / FILE).st_mode & 0o777) == "0o600"


def test_logging_in_starts_a_new_token(bed):
    client = bed.client()
    client.get("/landlord/login")
    before = cookie_of(client)   # the login form's anonymous session, as a planted cookie would be
    bed.landlord(client)
    after = cookie_of(client)
    assert after != before
    assert replay(bed, before).get("/landlord").status_code == 302


@pytest.mark.parametrize("path", ["/", "/s/kitchen", "/api/sockets/kitchen", "/healthz", "/assets/uPlot.min.css",
                                  "/static/payg.css", "/s/kitchen/qr.svg"])
def test_tenant_pages_set_no_cookie(bed, path):
    resp = bed.client().get(path)
    assert resp.status_code == 200 and "Set-Cookie" not in resp.headers
    assert b"csrf-token" not in resp.data   # a tenant page has no form to protect


def test_an_idle_session_ends_and_its_live_connection_with_it(bed):
    client = bed.landlord()
    for _ in range(5):  # in use: 50 min of requests ten minutes apart keep it
        bed.clock.advance(600)
        assert client.get("/landlord").status_code == 200
    sio = landlord_socket(bed, client)
    bed.clock.advance(61 * 60)  # an hour and a minute with the page open and nothing asked
    bed.rt.metering.tick()
    bed.web.hub.flush()
    assert not sio.is_connected("/landlord")
    assert client.get("/api/sockets").status_code == 401


def test_a_session_outlives_a_restart_but_not_a_new_password(tmp_path):
    hash_file = tmp_path / "landlord.hash"
    hash_file.write_text(PASSWORD_HASH + "\n")
    hash_file.chmod(0o600)
    ref = SecretRef(file=hash_file, key="web.landlord_password_hash_file", what="the landlord's password hash")
    first = make_web_bed(tmp_path, landlord_password=ref)
    value = cookie_of(first.landlord())
    first.close()
    second = make_web_bed(tmp_path, landlord_password=ref)
    try:
        client = replay(second, value)
        assert client.get("/landlord").status_code == 200   # the store is a file of the data directory
        sio = landlord_socket(second, client)
        hash_file.write_text(generate_password_hash("another long password", method="pbkdf2:sha256:1000") + "\n")
        assert client.get("/landlord").status_code == 302   # at once, no restart
        second.rt.metering.tick()
        second.web.hub.flush()
        assert not sio.is_connected("/landlord")
        fresh = second.client()
        old = fresh.post("/landlord/login", data={"password": PASSWORD, "csrf_token": csrf_of(fresh)})
        assert "Wrong password" in old.get_data(as_text=True)
    finally:
        second.close()


def test_the_password_hash_is_read_again_when_its_file_changes_and_a_bad_one_turns_the_view_off(tmp_path):
    path = tmp_path / "h"
    path.write_text(PASSWORD_HASH)
    path.chmod(0o600)
    ref = SecretRef(file=path, key="web.landlord_password_hash_file", what="the landlord's password hash")
    watch = LandlordPasswordHash(ref, tmp_path / "c.toml", PASSWORD_HASH)
    assert watch() == PASSWORD_HASH
    new = generate_password_hash("x" * 20, method="pbkdf2:sha256:1000")
    path.write_text(new)
    assert watch() == new
    path.write_text("my password")  # not a hash
    assert watch() is None


@pytest.mark.parametrize("web, secure", [({}, False), ({"public_url": "https://payg.example.org"}, True),
                                         ({"public_url": "http://192.168.1.10:5000"}, False),
                                         ({"secure_cookies": True}, True)])
def test_cookies_are_secure_when_the_public_url_is_https(tmp_path, web, secure):
    b = make_web_bed(tmp_path, **web)
    try:
        client = b.client()
        client.get("/landlord/login")
        resp = client.post("/landlord/login", data={"password": PASSWORD, "csrf_token": csrf_of(client)})
        cookie = resp.headers["Set-Cookie"]
        assert ("; Secure" in cookie) is secure and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    finally:
        b.close()


def wrong(client, token):
    return client.post("/landlord/login", data={"password": "wrong guess", "csrf_token": token})


def test_a_hundred_wrong_passwords_from_one_address_do_not_stop_the_right_one_from_another(bed):
    attacker = bed.client()
    attacker.environ_base["REMOTE_ADDR"] = "192.168.1.66"
    token = csrf_of(attacker)
    statuses = {wrong(attacker, token).status_code for _ in range(100)}
    assert statuses == {200, 429}
    landlord = bed.client()
    landlord.environ_base["REMOTE_ADDR"] = "192.168.1.10"
    assert bed.landlord(landlord).get("/landlord").status_code == 200


def test_behind_a_trusted_proxy_the_limiter_sees_the_real_client(tmp_path):
    b = make_web_bed(tmp_path, trusted_proxies=("127.0.0.1",))
    try:
        def via_proxy(client_address: str, claimed: str = ""):
            c = b.client()  # every request comes from the proxy, 127.0.0.1
            c.environ_base["HTTP_X_FORWARDED_FOR"] = f"{claimed}, {client_address}" if claimed else client_address
            return c

        tenant = via_proxy("192.168.1.66")
        token = csrf_of(tenant)
        for _ in range(40):
            wrong(tenant, token)
        assert wrong(tenant, token).status_code == 429
        # the same tenant claiming another address in the header is still himself
        spoofing = via_proxy("192.168.1.66", claimed="192.168.1.10")
        assert wrong(spoofing, csrf_of(spoofing)).status_code == 429
        landlord = via_proxy("192.168.1.10")
        assert b.landlord(landlord).get("/landlord").status_code == 200
    finally:
        b.close()


def test_without_trusted_proxies_the_forwarded_header_is_ignored(bed):
    for i in range(40):  # a different claimed address each time: all counted against the sender
        c = bed.client()
        c.environ_base["REMOTE_ADDR"] = "192.168.1.66"
        c.environ_base["HTTP_X_FORWARDED_FOR"] = f"10.9.9.{i}"
        last = wrong(c, csrf_of(c))
    assert last.status_code == 429


def test_the_limiter_counts_an_ipv6_64_as_one_client_and_forgets_after_the_window():
    clock = ManualClock(1000.0)
    limiter = Limiter(clock, free=2, first_wait_s=1, max_wait_s=4, cap=5, window_s=100)
    for i in range(2):
        limiter.failed(f"2001:db8:1:2::{i}")
    assert limiter.retry_after("2001:db8:1:2::ffff") == 1
    assert limiter.retry_after("2001:db8:1:3::1") is None
    assert client_key("::ffff:192.0.2.1") == "192.0.2.1"
    for _ in range(3):
        limiter.failed("2001:db8:1:2::1")
    assert limiter.retry_after("2001:db8:1:2::1") == 100  # capped until the oldest failure lapses
    clock.advance(100)
    assert limiter.retry_after("2001:db8:1:2::1") is None


def test_a_login_link_from_the_device_logs_in_once_and_only_by_a_button(bed):
    made = bed.client(token=True).post("/api/login-links", json={})
    assert made.status_code == 201
    url = made.get_json()["url"]
    assert url.startswith("http://localhost/landlord/link/")
    path = url.removeprefix("http://localhost")
    browser = bed.client()
    page = browser.get(path)
    assert page.status_code == 200 and 'method="post"' in page.get_data(as_text=True)
    assert browser.get("/landlord").status_code == 302   # looking at the link (a preview) logs nobody in
    token = csrf_of(browser)
    resp = browser.post(path, data={"csrf_token": token})
    assert resp.status_code == 302 and browser.get("/landlord").status_code == 200
    again = bed.client()
    assert again.post(path, data={"csrf_token": csrf_of(again)}).status_code == 404
    assert again.get("/landlord").status_code == 302


def test_a_login_link_expires_and_only_the_api_token_makes_one(bed):
    path = bed.client(token=True).post("/api/login-links", json={}).get_json()["url"].removeprefix("http://localhost")
    bed.clock.advance(601)
    late = bed.client()
    assert late.get(path).status_code == 404
    assert late.post(path, data={"csrf_token": csrf_of(late)}).status_code == 404
    assert bed.client().post("/api/login-links", json={}).status_code == 401
    landlord = bed.landlord()
    resp = landlord.post("/api/login-links", json={}, headers={"X-CSRFToken": csrf_of(landlord)})
    assert resp.status_code == 403


def test_a_login_link_names_the_public_url(tmp_path):
    b = make_web_bed(tmp_path, public_url="https://payg.example.org/")
    try:
        url = b.client(token=True).post("/api/login-links", json={}).get_json()["url"]
        assert url.startswith("https://payg.example.org/landlord/link/") and len(url) > 70
    finally:
        b.close()
