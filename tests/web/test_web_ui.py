"""The pages, the landlord's login and actions, and the live pushes, through Flask's and
Flask-SocketIO's test clients on the embedded default's real objects (journal, mock ledger,
simulated meters and relays) on a virtual clock."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime

import pytest

from payg.web.tenant import qr_svg
from tests.support import wait_until
from tests.support.web_beds import PASSWORD, csrf_of, make_web_bed

# 2027-01-15 23:58:00 UTC: two minutes before a new day
BEFORE_MIDNIGHT = datetime(2027, 1, 15, 23, 58, tzinfo=UTC).timestamp()


@pytest.fixture
def bed(tmp_path):
    b = make_web_bed(tmp_path, timezone="UTC")
    yield b
    b.close()


def boot_of(html: str) -> dict:
    match = re.search(r'<script type="application/json" id="boot">(.*?)</script>', html, re.S)
    assert match, "no boot data in the page"
    return json.loads(match.group(1))


def credit(bed, socket_id: str, tokens: int) -> None:
    bed.rt.ledger.pay(socket_id, tokens)
    bed.rt.watcher.poll()


def journal_rows(bed, socket_id: str) -> list:
    return list(bed.rt.journal.all_entries(socket_id))


def test_the_start_page_links_every_socket_and_the_landlord_view(bed):
    html = bed.client().get("/").get_data(as_text=True)
    for sid, name in (("kitchen", "Kitchen"), ("laundry", "Laundry"), ("office", "Office")):
        assert f'href="/s/{sid}"' in html and name in html
    assert 'href="/landlord"' in html


def test_one_socket_goes_straight_to_its_page(tmp_path):
    b = make_web_bed(tmp_path)
    try:
        only = next(iter(b.rt.metering.sockets))
        for sid in list(b.rt.metering.sockets)[1:]:
            del b.rt.metering.sockets[sid]
        resp = b.client().get("/")
        assert resp.status_code == 302 and resp.headers["Location"] == f"/s/{only}"
    finally:
        b.close()


def test_the_tenant_page_shows_balance_relay_live_figures_and_the_topup(bed):
    credit(bed, "kitchen", 500)
    bed.loop.run_for(3)
    resp = bed.client().get("/s/kitchen")
    assert resp.status_code == 200
    html = resp.get_data(as_text=True)
    boot = boot_of(html)
    view = boot["view"]
    assert boot["socket"] == "kitchen" and view["relay"] == "on" and view["status"] == "on"
    assert view["power_w"] == 800.0 and view["voltage_v"] == 230.0
    assert 490 <= view["balance_tokens"] <= 500
    # energy and time left at the present power: balance / 1 token per Wh, at 800 W
    assert view["energy_left_wh"] == pytest.approx(view["balance"], abs=0.01)
    assert view["time_left_s"] == pytest.approx(view["balance"] / 800 * 3600, rel=0.01)
    assert view["low_credit"] is False
    address = bed.rt.ledger.address_for("kitchen")
    assert address in html and boot["topup"]["address"] == address
    assert boot["topup"]["uris"]["100"] == bed.rt.ledger.payment_uri("kitchen", 100)
    assert 'src="/s/kitchen/qr.svg"' in html
    # values are on the page without scripts too
    assert "Kitchen" in html and str(view["balance_tokens"]) in html.replace(",", "")


def test_low_credit_is_flagged_by_balance_and_by_time_left(bed):
    credit(bed, "kitchen", 150)   # above the 100 token threshold, but 150 Wh at 800 W is 11 min
    bed.loop.run_for(3)
    view = boot_of(bed.client().get("/s/kitchen").get_data(as_text=True))["view"]
    assert view["balance_tokens"] > 100 and view["time_left_s"] < 1800 and view["low_credit"] is True
    credit(bed, "office", 50)     # a small load, but at or below the balance threshold
    bed.loop.run_for(2)
    assert boot_of(bed.client().get("/s/office").get_data(as_text=True))["view"]["low_credit"] is True
    credit(bed, "laundry", 100_000)
    bed.loop.run_for(2)
    assert boot_of(bed.client().get("/s/laundry").get_data(as_text=True))["view"]["low_credit"] is False


def credit_banner(html: str) -> tuple[str, str] | None:
    """The tenant page's credit banner as (its class, its text); None when it is hidden."""
    match = re.search(r'<p id="low" class="banner (\w+)"( hidden)?>(.*?)</p>', html, re.S)
    assert match, "no credit banner on the page"
    return None if match.group(2) else (match.group(1), re.sub(r"<[^>]+>", "", match.group(3)))


def test_the_credit_banner_says_out_of_credit_once_the_power_is_off(bed, landlord):
    _, post = landlord

    def page(sid: str) -> str:
        return bed.client().get(f"/s/{sid}").get_data(as_text=True)

    bed.loop.run_for(2)
    assert credit_banner(page("laundry")) == ("bad", "Not paid for yet. Top up to turn the power on.")   # vacant
    credit(bed, "office", 50)
    bed.loop.run_for(2)
    assert credit_banner(page("office")) == ("warn", "Low credit. Top up soon to keep the power on.")
    credit(bed, "kitchen", 100_000)
    bed.loop.run_for(2)
    assert credit_banner(page("kitchen")) is None
    assert post("/api/sockets/laundry/override", {"mode": "off"}).status_code == 200
    assert credit_banner(page("laundry")) == ("bad", "Not paid for yet. Top up to add credit.")


def test_an_unknown_socket_is_a_404_page(bed):
    resp = bed.client().get("/s/attic")
    assert resp.status_code == 404 and "attic" in resp.get_data(as_text=True)
    assert resp.mimetype == "text/html"
    assert bed.client().get("/s/attic/qr.svg").status_code == 404


def test_the_qr_code_encodes_the_payment_uri_with_the_chosen_amount(bed):
    client = bed.client()
    plain = client.get("/s/kitchen/qr.svg")
    assert plain.status_code == 200 and plain.mimetype == "image/svg+xml"
    assert plain.data == qr_svg(bed.rt.ledger.payment_uri("kitchen", None))
    hundred = client.get("/s/kitchen/qr.svg?amount=100")
    assert hundred.data == qr_svg(bed.rt.ledger.payment_uri("kitchen", 100)) and hundred.data != plain.data
    assert b"<svg" in hundred.data and b"<path" in hundred.data
    for bad in ("0", "-5", "1.5", "abc", str(10**13)):
        assert client.get(f"/s/kitchen/qr.svg?amount={bad}").status_code == 400


def test_pages_carry_security_headers_and_no_inline_script(bed):
    resp = bed.client().get("/s/kitchen")
    csp = resp.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert resp.headers["X-Frame-Options"] == "DENY" and resp.headers["X-Content-Type-Options"] == "nosniff"
    html = resp.get_data(as_text=True)
    for tag in re.findall(r"<script\b[^>]*>", html):
        assert "src=" in tag or 'type="application/json"' in tag, tag
    assert " onclick=" not in html and "style=" not in html


def test_browser_libraries_are_served_from_node_modules_and_nothing_else(bed, tmp_path):
    client = bed.client()
    for name in ("socket.io.min.js", "uPlot.iife.min.js", "uPlot.min.css"):
        resp = client.get(f"/assets/{name}")
        assert resp.status_code == 200 and len(resp.data) > 1000, name
    assert client.get("/assets/package.json").status_code == 404
    assert client.get("/assets/..%2Fpackage.json").status_code == 404
    html = client.get("/s/kitchen").get_data(as_text=True)
    assert "/assets/socket.io.min.js" in html and "http://" not in html.replace("http://www.w3.org", "")


def test_the_landlord_view_needs_a_login(bed):
    client = bed.client()
    resp = client.get("/landlord")
    assert resp.status_code == 302 and resp.headers["Location"].startswith("/landlord/login")
    assert client.get("/landlord/journal.csv").status_code == 302
    bed.landlord(client)
    page = client.get("/landlord")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert all(f'href="/s/{sid}"' in html for sid in ("kitchen", "laundry", "office"))
    assert "views" not in boot_of(html)   # the script's table comes with the first push


def test_a_wrong_password_is_refused(bed):
    client = bed.client()
    token = csrf_of(client)
    resp = client.post("/landlord/login", data={"password": "guess", "csrf_token": token})
    assert resp.status_code == 200 and "Wrong password" in resp.get_data(as_text=True)
    assert client.get("/landlord").status_code == 302


def test_a_login_without_its_csrf_token_is_refused(bed):
    client = bed.client()
    client.get("/landlord/login")
    resp = client.post("/landlord/login", data={"password": PASSWORD})
    assert resp.status_code == 400
    assert client.get("/landlord").status_code == 302


def test_logins_slow_down_per_address_and_the_limit_lapses(bed):
    client = bed.client()
    token = csrf_of(client)

    def attempt(password: str):
        return client.post("/landlord/login", data={"password": password, "csrf_token": token})

    for _ in range(5):  # the first five cost nothing
        assert "Wrong password" in attempt("nope").get_data(as_text=True)
    waits = []
    for _ in range(4):  # each failure after those makes the next wait twice as long
        blocked = attempt(PASSWORD)
        assert blocked.status_code == 429
        waits.append(int(blocked.headers["Retry-After"]))
        bed.clock.advance(waits[-1])
        assert "Wrong password" in attempt("nope").get_data(as_text=True)
    assert waits == [1, 2, 4, 8]
    assert client.get("/landlord").status_code == 302
    other = bed.client()
    other.environ_base["REMOTE_ADDR"] = "10.0.0.7"
    assert bed.landlord(other).get("/landlord").status_code == 200  # another address is not held up
    bed.clock.advance(901)
    ok = attempt(PASSWORD)
    assert ok.status_code == 302 and client.get("/landlord").status_code == 200


def test_failures_from_many_addresses_do_not_lock_the_landlord_out(bed):
    for i in range(60):
        c = bed.client()
        c.environ_base["REMOTE_ADDR"] = f"10.1.0.{i}"
        assert c.post("/landlord/login", data={"password": "x", "csrf_token": csrf_of(c)}).status_code == 200
    fresh = bed.client()
    fresh.environ_base["REMOTE_ADDR"] = "10.2.0.1"
    resp = fresh.post("/landlord/login", data={"password": PASSWORD, "csrf_token": csrf_of(fresh)})
    assert resp.status_code == 302 and fresh.get("/landlord").status_code == 200


def test_the_next_page_after_login_stays_on_this_site(bed):
    for target, expected in (("/landlord/journal.csv", "/landlord/journal.csv"), ("//evil.example/", "/landlord"),
                             ("https://evil.example/", "/landlord"), ("/\\evil.example", "/landlord")):
        client = bed.client()
        resp = client.post("/landlord/login", data={"password": PASSWORD, "csrf_token": csrf_of(client),
                                                    "next": target})
        assert resp.status_code == 302 and resp.headers["Location"] == expected, target


def test_a_session_ends_after_its_hours_even_in_use(bed):
    client = bed.landlord()
    for _ in range(22):  # 11 h, a request every half hour
        bed.clock.advance(1800)
        assert client.get("/landlord").status_code == 200
    bed.clock.advance(2 * 3600)   # 13 h: past the 12 h default
    assert client.get("/landlord").status_code == 302


def test_logout_ends_the_session_and_needs_the_csrf_token(bed):
    client = bed.landlord()
    assert client.post("/landlord/logout").status_code == 400
    assert client.get("/landlord").status_code == 200
    resp = client.post("/landlord/logout", data={"csrf_token": csrf_of(client)})
    assert resp.status_code == 302 and client.get("/landlord").status_code == 302


def test_without_a_password_hash_the_landlord_view_explains_how_to_set_one(tmp_path):
    b = make_web_bed(tmp_path, password_hash=None)
    try:
        client = b.client()
        page = client.get("/landlord")
        assert page.status_code == 503 and "payg password" in page.get_data(as_text=True)
        resp = client.post("/landlord/login", data={"password": "", "csrf_token": csrf_of(client)})
        assert resp.status_code == 503
        assert client.get("/api/sockets").status_code == 401
        assert b.client(token=True).get("/api/sockets").status_code == 200
    finally:
        b.close()


def test_the_session_cookie_is_http_only_and_same_site(bed):
    client = bed.client()
    client.get("/landlord/login")
    resp = client.post("/landlord/login", data={"password": PASSWORD, "csrf_token": csrf_of(client)})
    cookie = resp.headers["Set-Cookie"]
    assert cookie.startswith("payg_session=") and "HttpOnly" in cookie and "SameSite=Lax" in cookie


def snapshot(bed) -> tuple:
    """Everything a request could change: entries other than metered usage, overrides, alarms,
    payments on the mock ledger."""
    j = bed.rt.journal
    return (tuple((sid, [(e.kind, e.amount) for e in journal_rows(bed, sid) if e.kind != "usage"])
                  for sid in bed.rt.metering.sockets),
            tuple(sorted(j.overrides().items())), tuple(sorted(j.open_alarms().items())),
            len(bed.rt.ledger.deposits_since(None)[0]))


def test_a_tenant_can_change_nothing(bed):
    """Every route that takes a state-changing method, sent anonymously with the tenant page's own
    CSRF token and a well-formed body, changes nothing."""
    credit(bed, "kitchen", 40)
    bed.loop.run_for(2)
    client = bed.client()
    client.get("/s/kitchen")
    token = csrf_of(client)
    before = snapshot(bed)
    bodies = {"mode": "off", "amount_tokens": 1000, "reason": "free", "request_id": "abcdefgh1234",
              "socket": "kitchen", "amount": 1000}
    tried = 0
    for rule in bed.app.url_map.iter_rules():
        methods = rule.methods & {"POST", "PUT", "PATCH", "DELETE"}
        if not methods or rule.rule in ("/landlord/login", "/landlord/logout"):
            continue  # these change only the caller's own session
        url = re.sub(r"<(?:[^:>]+:)?socket_id>", "kitchen", rule.rule)
        url = re.sub(r"<[^>]+>", "x", url)
        for method in methods:
            resp = client.open(url, method=method, json=bodies, headers={"X-CSRFToken": token})
            # 409: emergency credit, not offered (off on the embedded default, and the kitchen has credit)
            assert resp.status_code in (400, 401, 404, 405, 409), (method, url, resp.status_code)
            tried += 1
    assert tried >= 12  # the mock payment, the landlord's actions, every trade action, peer messages
    bed.loop.run_for(1)
    assert snapshot(bed) == before
    assert bed.rt.relays["kitchen"].is_closed()


def test_landlord_data_needs_the_session_or_the_token(bed):
    anonymous = bed.client()
    for url in ("/api/sockets", "/api/sockets/kitchen/journal", "/api/sockets/kitchen/events"):
        assert anonymous.get(url).status_code == 401, url
        assert bed.client(token=True).get(url).status_code == 200, url
        assert bed.landlord().get(url).status_code == 200, url
    assert anonymous.get("/api/sockets/kitchen").status_code == 200  # what the tenant page shows
    wrong = bed.client()
    wrong.environ_base["HTTP_AUTHORIZATION"] = "Bearer " + "u" * 43
    assert wrong.get("/api/sockets").status_code == 401


def test_a_landlord_change_without_the_csrf_token_is_refused(bed):
    credit(bed, "kitchen", 40)
    bed.loop.run_for(2)
    client = bed.landlord()
    before = snapshot(bed)
    resp = client.post("/api/sockets/kitchen/override", json={"mode": "off"})
    assert resp.status_code == 400 and "CSRF" in resp.get_json()["message"]
    resp = client.post("/api/sockets/kitchen/override", json={"mode": "off"}, headers={"X-CSRFToken": "forged"})
    assert resp.status_code == 400
    assert snapshot(bed)[1] == before[1] and bed.rt.relays["kitchen"].is_closed()


@pytest.fixture
def landlord(bed):
    client = bed.landlord()
    token = csrf_of(client)

    def post(url: str, body: dict):
        return client.post(url, json=body, headers={"X-CSRFToken": token})

    return client, post


def test_force_off_and_back_to_automatic(bed, landlord):
    _, post = landlord
    credit(bed, "kitchen", 200)
    bed.loop.run_for(2)
    assert bed.rt.relays["kitchen"].is_closed()
    resp = post("/api/sockets/kitchen/override", {"mode": "off"})
    assert resp.status_code == 200 and resp.get_json()["override"] == "off" and resp.get_json()["relay"] == "off"
    assert not bed.rt.relays["kitchen"].is_closed()
    bed.loop.run_for(5)
    assert not bed.rt.relays["kitchen"].is_closed()   # held off whatever the balance
    resp = post("/api/sockets/kitchen/override", {"mode": "auto"})
    assert resp.get_json()["override"] is None and resp.get_json()["relay"] == "on"
    assert bed.rt.relays["kitchen"].is_closed()
    assert post("/api/sockets/kitchen/override", {"mode": "on"}).status_code == 400
    assert post("/api/sockets/attic/override", {"mode": "off"}).status_code == 404
    kinds = [e["detail"] for e in bed.rt.journal.events("kitchen") if e["kind"] == "override"]
    assert kinds == ["auto", "off"]


def test_a_manual_credit_is_journaled_with_its_reason_and_books_once(bed, landlord):
    _, post = landlord
    body = {"amount_tokens": 250, "reason": "refund for the outage", "request_id": "req-0001-abcd"}
    first = post("/api/sockets/office/adjust", body)
    assert first.status_code == 201 and first.get_json()["booked"] is True
    again = post("/api/sockets/office/adjust", body)       # a double submit
    assert again.status_code == 200 and again.get_json()["booked"] is False
    assert bed.rt.journal.balance("office") == 250
    entries = journal_rows(bed, "office")
    assert [(e.kind, e.amount, e.memo) for e in entries] == [("credit", 250, "refund for the outage")]
    assert again.get_json()["view"]["balance_tokens"] == 250
    other = post("/api/sockets/office/adjust", dict(body, amount_tokens=999))
    assert other.status_code == 400 and "already used" in other.get_json()["message"]
    bed.loop.run_for(2)
    assert bed.rt.relays["office"].is_closed()   # the credit turns the socket on


def test_a_manual_debit_may_not_exceed_the_balance(bed, landlord):
    _, post = landlord
    credit(bed, "office", 30)
    too_much = post("/api/sockets/office/adjust", {"amount_tokens": -31, "reason": "x", "request_id": "req-debit-1"})
    assert too_much.status_code == 400 and "more than the balance" in too_much.get_json()["message"]
    ok = post("/api/sockets/office/adjust", {"amount_tokens": -10, "reason": "meter test", "request_id": "req-debit-2"})
    assert ok.status_code == 201 and bed.rt.journal.balance("office") == 20
    assert [e.kind for e in journal_rows(bed, "office")] == ["deposit", "debit"]


@pytest.mark.parametrize("body, fragment", [
    ({"amount_tokens": 0, "reason": "r", "request_id": "abcdefgh"}, "non-zero"),
    ({"amount_tokens": 1.5, "reason": "r", "request_id": "abcdefgh"}, "non-zero"),
    ({"amount_tokens": True, "reason": "r", "request_id": "abcdefgh"}, "non-zero"),
    ({"amount_tokens": 5, "reason": "  ", "request_id": "abcdefgh"}, "reason"),
    ({"amount_tokens": 5, "reason": "r" * 201, "request_id": "abcdefgh"}, "reason"),
    ({"amount_tokens": 5, "reason": "r", "request_id": "short"}, "request_id"),
    ({"amount_tokens": 5, "reason": "r", "request_id": "has spaces here"}, "request_id"),
    ({"amount_tokens": 5, "reason": "r", "request_id": "abcdefgh", "extra": 1}, "unknown field"),
])
def test_bad_adjustments_are_refused_and_book_nothing(bed, landlord, body, fragment):
    _, post = landlord
    resp = post("/api/sockets/office/adjust", body)
    assert resp.status_code == 400 and fragment in resp.get_json()["message"]
    assert journal_rows(bed, "office") == []


def test_alarms_show_until_acknowledged(bed, landlord):
    _, post = landlord
    credit(bed, "laundry", 500)
    bed.loop.run_for(2)
    with bed.rt.journal.transaction() as tx:
        tx.event("laundry", "relay_bypass", "12 W measured 30 s after the relay was opened", bed.clock.now())
        tx.event("laundry", "override", "auto", bed.clock.now())   # not an alarm
    client = bed.client(token=True)
    view = client.get("/api/sockets/laundry").get_json()
    assert view["relay"] == "on"
    bed.web.hub.dashboard.refresh()
    views = {v["id"]: v for v in bed.web.hub.views()}
    assert views["laundry"]["status"] == "alarm" and views["laundry"]["alarms"] == 1
    assert "relay bypass" in views["laundry"]["alarm_detail"]
    assert views["kitchen"]["alarms"] == 0
    acked = post("/api/sockets/laundry/alarms/ack", {})
    assert acked.status_code == 200 and acked.get_json()["alarms"] == 0 and acked.get_json()["status"] == "on"
    assert bed.rt.journal.events("laundry")[0]["kind"] == "alarm_ack"
    with bed.rt.journal.transaction() as tx:
        tx.event("laundry", "implausible_jump", "counter 5 Wh -> 90000 Wh", bed.clock.now())
    assert post("/api/sockets/laundry/alarms/ack", {}).get_json()["alarms"] == 0
    assert bed.rt.journal.open_alarms() == {}
    with bed.rt.journal.transaction() as tx:  # what the Ethereum balance check books (ether a contract moved)
        tx.event("kitchen", "unexplained_funds", "5000000000000 ethereum units at the socket's address that no"
                 " payment explains (1:10-12:0xab:balance), not credited", bed.clock.now())
    bed.web.hub.dashboard.refresh()
    views = {v["id"]: v for v in bed.web.hub.views()}
    assert views["kitchen"]["status"] == "alarm"
    assert "unexplained funds: 5000000000000" in views["kitchen"]["alarm_detail"]


def test_the_journal_exports_as_csv_and_text_cannot_become_a_formula(bed, landlord):
    client, post = landlord
    credit(bed, "kitchen", 20)
    post("/api/sockets/kitchen/adjust", {"amount_tokens": 5, "reason": "=HYPERLINK(\"http://x\")",
                                         "request_id": "req-csv-0001"})
    bed.loop.run_for(40)   # 20 Wh at 800 W: used up, closed into usage entries at the shutdown flush below
    bed.rt.metering.shutdown()
    resp = client.get("/landlord/journal.csv")
    assert resp.status_code == 200 and resp.mimetype == "text/csv"
    assert "attachment" in resp.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(resp.get_data(as_text=True))))
    kitchen = [r for r in rows if r["socket"] == "kitchen"]
    assert [r["kind"] for r in kitchen][:2] == ["deposit", "credit"]
    assert kitchen[1]["memo"] == "'=HYPERLINK(\"http://x\")" and kitchen[1]["amount_tokens"] == "5"
    assert sum(int(r["amount_tokens"]) for r in kitchen) == bed.rt.journal.balance("kitchen")
    used = [r for r in kitchen if r["kind"] == "usage"]
    assert used and sum(float(r["energy_wh"]) for r in used) == pytest.approx(
        bed.rt.meters["kitchen"].true_energy_wh, abs=1.0)
    only = list(csv.DictReader(io.StringIO(client.get("/landlord/journal.csv?socket=office")
                                          .get_data(as_text=True))))
    assert only == []
    assert client.get("/landlord/journal.csv?socket=attic").status_code == 404


def test_energy_today_restarts_at_midnight_and_the_month_keeps_counting(tmp_path):
    b = make_web_bed(tmp_path, start=BEFORE_MIDNIGHT, timezone="UTC")
    try:
        credit(b, "kitchen", 1000)
        b.loop.run_for(110)       # until 23:59:50
        b.web.hub.dashboard.refresh()
        before = b.web.hub.view("kitchen")
        b.loop.run_for(70)        # 00:01:00 the next day; the usage entry closes after midnight
        b.web.hub.dashboard.refresh()
        after = b.web.hub.view("kitchen")
        metered = b.rt.meters["kitchen"].true_energy_wh
        assert before["energy_today_wh"] == pytest.approx(before["energy_month_wh"])
        assert after["energy_month_wh"] == pytest.approx(metered, abs=0.5)
        assert after["energy_today_wh"] < after["energy_month_wh"]
        assert after["revenue_month_tokens"] == 1000 and after["last_topup_tokens"] == 1000
        assert after["last_topup_at"] == pytest.approx(BEFORE_MIDNIGHT, abs=2)
    finally:
        b.close()


def test_a_tenant_page_gets_its_socket_state_after_each_tick_and_only_its_own(bed):
    sio = bed.web.socketio.test_client(bed.app)
    assert sio.is_connected()
    ack = sio.emit("watch", {"socket": "kitchen"}, callback=True)
    assert ack["ok"] is True and ack["view"]["id"] == "kitchen" and set(ack["history"]) == {
        "t", "power_w", "balance_tokens"}
    credit(bed, "kitchen", 30)
    for _ in range(3):
        bed.loop.run_for(1)
        bed.web.hub.flush()
    events = sio.get_received()
    states = [e["args"][0] for e in events if e["name"] == "state"]
    assert len(states) >= 3 and {s["id"] for s in states} == {"kitchen"}
    assert states[-1]["relay"] == "on" and states[-1]["power_w"] == 800.0
    assert sio.emit("watch", {"socket": "attic"}, callback=True) == {"ok": False, "error": "unknown socket 'attic'"}
    sio.emit("watch", {"socket": "office"}, callback=True)   # switching: kitchen's pushes stop
    bed.loop.run_for(1)
    bed.web.hub.flush()
    assert {e["args"][0]["id"] for e in sio.get_received() if e["name"] == "state"} == {"office"}
    sio.disconnect()


def test_the_chart_history_keeps_one_point_per_ten_seconds_for_an_hour(bed):
    credit(bed, "kitchen", 5000)
    for _ in range(120):
        bed.loop.run_for(1)
        bed.web.hub.flush()
    sio = bed.web.socketio.test_client(bed.app)
    history = sio.emit("watch", {"socket": "kitchen"}, callback=True)["history"]
    assert 11 <= len(history["t"]) <= 13
    steps = [b - a for a, b in zip(history["t"], history["t"][1:], strict=False)]
    assert all(s >= 10 for s in steps)
    assert history["balance_tokens"][0] > history["balance_tokens"][-1]   # falling while it draws 800 W
    assert history["power_w"][-1] == 800.0


def test_landlord_pushes_need_the_session(bed):
    anonymous = bed.web.socketio.test_client(bed.app, namespace="/landlord", flask_test_client=bed.client())
    assert not anonymous.is_connected("/landlord")
    client = bed.landlord()
    sio = bed.web.socketio.test_client(bed.app, namespace="/landlord", flask_test_client=client)
    assert sio.is_connected("/landlord")
    sio.disconnect(namespace="/landlord")
    bed.clock.advance(13 * 3600)   # the session has lapsed
    late = bed.web.socketio.test_client(bed.app, namespace="/landlord", flask_test_client=client)
    assert not late.is_connected("/landlord")


def test_a_landlord_connection_ends_when_its_session_does(bed):
    client = bed.landlord()
    sio = bed.web.socketio.test_client(bed.app, namespace="/landlord", flask_test_client=client)
    sio.get_received("/landlord")
    bed.loop.run_for(1)
    bed.web.hub.flush()
    assert [e["name"] for e in sio.get_received("/landlord")] == ["states"]
    bed.clock.advance(12 * 3600 + 1)
    bed.rt.metering.tick()
    bed.web.hub.flush()
    assert not sio.is_connected("/landlord")


def test_landlords_get_one_batched_push_per_tick_with_the_sockets_that_changed(bed):
    client = bed.landlord()
    sio = bed.web.socketio.test_client(bed.app, namespace="/landlord", flask_test_client=client)
    first = sio.get_received("/landlord")
    assert [e["name"] for e in first] == ["states"]          # the table, at once on connect
    assert first[0]["args"][0]["full"] is True
    assert [v["id"] for v in first[0]["args"][0]["views"]] == ["kitchen", "laundry", "office"]
    bed.loop.run_for(1)
    bed.web.hub.flush()
    sio.get_received("/landlord")
    for _ in range(3):                                     # nothing changes: empty pushes, still one a tick
        bed.loop.run_for(1)
        bed.web.hub.flush()
    pushes = [e["args"][0] for e in sio.get_received("/landlord")]
    assert [(p["full"], p["views"]) for p in pushes] == [(False, [])] * 3
    credit(bed, "kitchen", 100)
    changed = []
    for _ in range(10):
        bed.loop.run_for(1)
        bed.web.hub.flush()
    for e in sio.get_received("/landlord"):
        assert e["name"] == "states"
        changed.append([v["id"] for v in e["args"][0]["views"]])
    assert len(changed) == 10 and {sid for ids in changed for sid in ids} == {"kitchen"}
    assert sum(1 for ids in changed if ids) >= 2           # on, then its balance falling at 800 W
    late = bed.web.socketio.test_client(bed.app, namespace="/landlord", flask_test_client=client)
    full = late.get_received("/landlord")[0]["args"][0]
    kitchen = next(v for v in full["views"] if v["id"] == "kitchen")
    assert full["full"] is True and len(full["views"]) == 3 and kitchen["relay"] == "on"
    tenant = bed.web.socketio.test_client(bed.app)
    tenant.emit("watch", {"socket": "laundry"}, callback=True)
    bed.loop.run_for(1)
    bed.web.hub.flush()
    assert [e["name"] for e in tenant.get_received()] == ["state"]   # tenants never get the landlord's table


def test_several_publishes_between_two_pushes_collapse_into_the_latest(bed):
    client = bed.landlord()
    sio = bed.web.socketio.test_client(bed.app, namespace="/landlord", flask_test_client=client)
    sio.get_received("/landlord")
    bed.loop.run_for(3)          # three ticks publish; nobody pushed in between
    assert bed.web.hub.flush() is True and bed.web.hub.flush() is False
    pushes = sio.get_received("/landlord")
    assert len(pushes) == 1 and pushes[0]["args"][0]["at"] == bed.clock.now()


def test_the_hub_pushes_from_its_own_thread_after_a_tick(bed):
    bed.web.hub.start()
    try:
        sio = bed.web.socketio.test_client(bed.app)
        sio.emit("watch", {"socket": "kitchen"}, callback=True)
        credit(bed, "kitchen", 10)
        bed.loop.run_for(1)
        wait_until(lambda: any(e["name"] == "state" and e["args"][0]["balance_tokens"] > 0
                               for e in sio.get_received()), 5, "a push from the hub's thread")
    finally:
        bed.web.hub.stop()


def test_tenant_socket_events_cannot_change_anything(bed):
    credit(bed, "kitchen", 40)
    bed.loop.run_for(2)
    before = snapshot(bed)
    sio = bed.web.socketio.test_client(bed.app)
    for event, data in (("override", {"socket": "kitchen", "mode": "off"}),
                        ("adjust", {"socket": "kitchen", "amount_tokens": 100}),
                        ("watch", "kitchen"), ("watch", None), ("watch", {"socket": ["kitchen"]})):
        sio.emit(event, data, callback=True)
    bed.loop.run_for(1)
    assert snapshot(bed) == before
    assert bed.rt.relays["kitchen"].is_closed()


def test_a_socket_cut_for_lack_of_credit_says_so_even_with_part_of_a_token_kept(bed):
    from dataclasses import replace

    from payg.domain.socket import Balance
    from payg.services.dashboard import socket_view

    state = replace(bed.rt.metering.state("kitchen"), credit_exhausted=True, balance=Balance.of(1, 1))
    view = socket_view(state, bed.web.hub.dashboard, bed.web.hub.settings)
    assert view.credit_exhausted is True and view.low_credit is True
    empty = socket_view(replace(state, balance=Balance.of(0, 1)), bed.web.hub.dashboard, bed.web.hub.settings)
    assert empty.credit_exhausted is False    # simply out of credit
    bed.loop.run_for(2)
    never_paid = bed.web.hub.view("laundry")
    assert never_paid["balance"] == 0 and never_paid["credit_exhausted"] is False and never_paid["low_credit"]


def test_the_history_keeps_missing_readings_as_null():
    from payg.web.live import History

    h = History(span_s=60, step_s=10)
    for i, power in enumerate([100.0, None, 50.5]):
        h.record([{"id": "k", "updated_at": 1000.0 + 10 * i, "power_w": power, "balance_tokens": 7 - i}])
    h.record([{"id": "k", "updated_at": 1025.0, "power_w": 9.0, "balance_tokens": 1}])  # within the step: skipped
    recent = h.of("k", 1020.0)
    assert recent == {"t": [1000.0, 1010.0, 1020.0], "power_w": [100.0, None, 50.5], "balance_tokens": [7, 6, 5]}
    assert all(isinstance(b, int) for b in recent["balance_tokens"])
    for i in range(3, 13):
        h.record([{"id": "k", "updated_at": 1000.0 + 10 * i, "power_w": 1.0, "balance_tokens": 0.5}])
    later = h.of("k", 1120.0)
    assert later["t"][0] == 1060.0 and len(later["t"]) == 7     # only the last minute
    assert later["balance_tokens"][-1] == 0.5
    assert len(h._series["k"][0]) == h.max_points                # and the arrays stay short
