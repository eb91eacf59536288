"""The hub's web app with Flask's and Socket.IO's test clients, over a fleet fed by hand and a sender that
records the commands instead of publishing them."""

from __future__ import annotations

import csv
import io
import re

import pytest
from werkzeug.security import generate_password_hash

from payg.adapters.clocks import ManualClock
from payg.adapters.web_sessions import SqliteSessionStore
from payg.hub.fleet import Fleet
from payg.hub.live import NAMESPACE
from payg.hub.web import COOKIE, HubServices, create_hub_web
from payg.webkit.security import WebSecrets

PASSWORD = "a long landlord password"
TOKEN = "k" * 43
T0 = 1_800_000_000.0


class Sender:
    """Records what the hub would publish; `connected` and `refuse` play the broker and the contract."""

    def __init__(self):
        self.sent: list[tuple] = []
        self.connected = True
        self.refuse: str | None = None

    def send_command(self, controller, command, socket, request_id, tokens=None, reason=None):
        if self.refuse:
            raise ValueError(self.refuse)
        if not self.connected:
            raise ConnectionError("the hub is not connected to the broker")
        self.sent.append((controller, command, socket, request_id, tokens, reason))


class Bed:
    def __init__(self, tmp_path):
        self.clock = ManualClock(T0)
        self.fleet = Fleet(self.clock, command_timeout_s=10)
        self.sender = Sender()
        self.store = SqliteSessionStore(tmp_path / "sessions.sqlite")
        self.web = create_hub_web(HubServices(self.fleet, self.sender, WebSecrets(
            "s" * 43, TOKEN, generate_password_hash(PASSWORD, method="pbkdf2:sha256:1000")), self.store, self.clock))
        self.web.app.testing = True
        for name, sockets in (("home", {"kitchen": (500, "on", 60.0), "hall": (0, "off", None)}),
                              ("shop", {"till": (1200, "on", 2000.0)})):
            self.fleet.status(name, "online")
            for sid, (bal, relay, power) in sockets.items():
                self.fleet.state(name, sid, {"balance": bal, "balance_tokens": bal, "relay": relay,
                                             "power_w": power, "meter": "ok", "at": T0})

    def client(self, token: bool = False):
        c = self.web.app.test_client()
        if token:
            c.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {TOKEN}"
        return c

    def landlord(self):
        c = self.client()
        resp = c.post("/login", data={"password": PASSWORD, "csrf_token": csrf(c, "/login"), "next": "/"})
        assert resp.status_code == 302 and resp.headers["Location"] == "/"
        return c


def csrf(client, path: str = "/") -> str:
    match = re.search(r'<meta name="csrf-token" content="([^"]+)"', client.get(path).get_data(as_text=True))
    assert match
    return match.group(1)


@pytest.fixture
def bed(tmp_path):
    b = Bed(tmp_path)
    yield b
    b.store.close()


@pytest.mark.parametrize("path", ["/", "/fleet.csv", "/events.csv"])
def test_pages_need_the_login(bed, path):
    resp = bed.client().get(path)
    assert resp.status_code == 302 and resp.headers["Location"].startswith("/login?next=/")
    assert COOKIE + "=" not in (resp.headers.get("Set-Cookie") or "")


@pytest.mark.parametrize("method, path", [("GET", "/api/fleet"), ("GET", "/api/commands"),
                                          ("POST", "/api/commands")])
def test_the_api_needs_the_login_or_the_token(bed, method, path):
    resp = bed.client().open(path, method=method, json={})
    assert resp.status_code == 401
    assert bed.sender.sent == []


def test_a_wrong_password_is_refused_and_a_right_one_opens_the_fleet(bed):
    c = bed.client()
    resp = c.post("/login", data={"password": "wrong password!", "csrf_token": csrf(c, "/login")})
    assert resp.status_code == 401 and "Wrong password" in resp.get_data(as_text=True)
    assert c.get("/api/fleet").status_code == 401
    c = bed.landlord()
    html = c.get("/").get_data(as_text=True)
    assert "home/kitchen" in html and "shop/till" in html
    assert c.get("/api/fleet").status_code == 200
    c.post("/logout", data={"csrf_token": csrf(c)})
    assert c.get("/api/fleet").status_code == 401


def test_a_login_without_the_csrf_token_is_refused(bed):
    c = bed.client()
    c.get("/login")
    assert c.post("/login", data={"password": PASSWORD}).status_code == 400
    assert c.get("/api/fleet").status_code == 401


def test_the_hubs_pages_carry_the_security_headers_and_only_its_own_pages_are_kept_from_caches(bed):
    c = bed.landlord()
    for path in ("/login", "/", "/api/fleet", "/nope", "/static/hub.css"):
        resp = c.get(path)
        assert resp.headers["Content-Security-Policy"] == (
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
            "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"), path
        assert (resp.headers["X-Frame-Options"], resp.headers["X-Content-Type-Options"],
                resp.headers["Referrer-Policy"]) == ("DENY", "nosniff", "same-origin"), path
        assert (resp.headers.get("Cache-Control") == "no-store") == (not path.startswith("/static/")), path
    page = c.get("/").get_data(as_text=True)
    assert '<a class="brand" href="/">payg hub</a>' in page and 'href="/static/hub.css"' in page
    assert c.get("/assets/uPlot.iife.min.js").status_code == 404  # the fleet page has no chart to serve it for


def test_the_json_has_every_socket_totals_and_filters(bed):
    c = bed.client(token=True)
    snap = c.get("/api/fleet").get_json()
    assert [r["key"] for r in snap["rows"]] == ["home/hall", "home/kitchen", "shop/till"]
    assert snap["totals"]["all"]["balance"] == 1700 and snap["totals"]["controllers"]["home"]["on"] == 1
    assert [r["key"] for r in c.get("/api/fleet?controller=home&relay=on").get_json()["rows"]] == ["home/kitchen"]
    assert [r["key"] for r in c.get("/api/fleet?q=TILL").get_json()["rows"]] == ["shop/till"]
    assert c.get("/api/fleet?relay=sideways").status_code == 400


def test_the_csv_holds_what_was_seen_filtered_and_safe_for_spreadsheets(bed):
    bed.fleet.state("shop", "evil", {"balance": 5, "relay": "off", "meter": "=HYPERLINK(\"x\")", "at": T0})
    c = bed.landlord()
    rows = list(csv.DictReader(io.StringIO(c.get("/fleet.csv").get_data(as_text=True))))
    assert [(r["controller"], r["socket"], r["balance"]) for r in rows] == [
        ("home", "hall", "0"), ("home", "kitchen", "500"), ("shop", "evil", "5"), ("shop", "till", "1200")]
    assert rows[2]["meter"].startswith("'=")
    assert rows[1]["at_utc"] == "2027-01-15T08:00:00+00:00"
    off = list(csv.DictReader(io.StringIO(c.get("/fleet.csv?relay=off&controller=home").get_data(as_text=True))))
    assert [r["socket"] for r in off] == ["hall"]
    bed.fleet.event("home", {"id": "home:1", "seq": 1, "kind": "credited", "socket": "kitchen", "amount": 50,
                             "at": T0})
    events = list(csv.DictReader(io.StringIO(c.get("/events.csv").get_data(as_text=True))))
    assert [(e["id"], e["kind"], e["details"]) for e in events] == [("home:1", "credited", "amount=50")]


def post(c, body, token=False):
    headers = {} if token else {"X-CSRFToken": csrf(c)}
    return c.post("/api/commands", json=body, headers=headers)


def test_an_action_sends_the_command_and_shows_the_controllers_answer(bed):
    c = bed.landlord()
    resp = post(c, {"controller": "home", "socket": "kitchen", "command": "credit", "tokens": 50,
                    "reason": "  broken   meter "})
    assert resp.status_code == 202
    cmd = resp.get_json()
    assert cmd["status"] == "pending"
    assert bed.sender.sent == [("home", "credit", "kitchen", cmd["request_id"], 50, "broken meter")]
    bed.fleet.response("home", {"request_id": cmd["request_id"], "ok": True, "command": "credit", "booked": True})
    got = c.get(f"/api/commands/{cmd['request_id']}").get_json()
    assert (got["status"], got["booked"]) == ("ok", True)
    second = post(c, {"controller": "shop", "socket": "till", "command": "force_off"}).get_json()
    assert second["request_id"] != cmd["request_id"]
    assert [x["request_id"] for x in c.get("/api/commands").get_json()] == [second["request_id"], cmd["request_id"]]


def test_an_action_without_an_answer_times_out(bed):
    c = bed.client(token=True)
    rid = post(c, {"controller": "shop", "socket": "till", "command": "automatic"}, token=True).get_json()["request_id"]
    bed.clock.advance(10)
    got = c.get(f"/api/commands/{rid}").get_json()
    assert got["status"] == "timeout" and "no response from shop" in got["error"]


def test_an_action_needs_the_csrf_token_with_a_session(bed):
    c = bed.landlord()
    assert c.post("/api/commands", json={"controller": "home", "socket": "kitchen",
                                         "command": "force_off"}).status_code == 400
    assert bed.sender.sent == []


def test_a_repeated_request_id_is_sent_once(bed):
    c = bed.client(token=True)
    body = {"controller": "home", "socket": "kitchen", "command": "credit", "tokens": 5, "reason": "x",
            "request_id": "0123456789abcdef"}
    assert post(c, body, token=True).status_code == 202
    assert post(c, body, token=True).status_code == 409
    assert len(bed.sender.sent) == 1


@pytest.mark.parametrize("body, status", [
    ({"controller": "home", "socket": "kitchen", "command": "credit", "tokens": 0, "reason": "x"}, 400),
    ({"controller": "home", "socket": "kitchen", "command": "credit", "tokens": 5}, 400),
    ({"controller": "home", "socket": "kitchen", "command": "credit", "tokens": 1.5, "reason": "x"}, 400),
    ({"controller": "home", "socket": "kitchen", "command": "force_off", "tokens": 5}, 400),
    ({"controller": "home", "socket": "kitchen", "command": "reboot"}, 400),
    ({"controller": "home", "socket": "garage", "command": "force_off"}, 404),
    ({"controller": "barn", "socket": "kitchen", "command": "force_off"}, 404),
])
def test_bad_actions_are_refused_and_nothing_is_sent(bed, body, status):
    assert post(bed.client(token=True), body, token=True).status_code == status
    assert bed.sender.sent == [] and bed.fleet.commands() == []


def test_no_action_for_an_offline_controller_or_without_the_broker(bed):
    c = bed.client(token=True)
    bed.fleet.status("shop", "offline")
    assert post(c, {"controller": "shop", "socket": "till", "command": "force_off"}, token=True).status_code == 409
    bed.sender.connected = False
    resp = post(c, {"controller": "home", "socket": "kitchen", "command": "force_off"}, token=True)
    assert resp.status_code == 503 and "not connected" in resp.get_json()["message"]
    bed.sender.connected, bed.sender.refuse = True, "a credit needs a reason (1 to 200 characters)"
    resp = post(c, {"controller": "home", "socket": "kitchen", "command": "automatic"}, token=True)
    assert resp.status_code == 400 and "reason" in resp.get_json()["message"]
    assert bed.sender.sent == [] and bed.fleet.commands() == []


def test_live_pushes_need_the_login_and_bring_the_fleet_then_its_changes(bed):
    sio = bed.web.socketio
    anonymous = sio.test_client(bed.web.app, namespace=NAMESPACE, flask_test_client=bed.client())
    assert not anonymous.is_connected(NAMESPACE)
    c = bed.landlord()
    live = sio.test_client(bed.web.app, namespace=NAMESPACE, flask_test_client=c)
    assert live.is_connected(NAMESPACE)
    first = live.get_received(NAMESPACE)
    assert len(first) == 1 and first[0]["args"][0]["full"] is True
    assert len(first[0]["args"][0]["rows"]) == 3
    bed.web.pusher.push()  # what the page already has is not sent again
    live.get_received(NAMESPACE)
    bed.fleet.state("shop", "till", {"balance": 900, "balance_tokens": 900, "relay": "on", "at": T0 + 1})
    bed.fleet.status("home", "offline")
    assert bed.web.pusher.push() is True
    pushed = [m["args"][0] for m in live.get_received(NAMESPACE)]
    assert len(pushed) == 1 and pushed[0]["full"] is False
    assert [(r["key"], r["balance"]) for r in pushed[0]["rows"]] == [("shop/till", 900)]
    assert {c["name"]: c["status"] for c in pushed[0]["controllers"]} == {"home": "offline", "shop": "online"}
    assert bed.web.pusher.push() is False  # nothing new


def test_with_no_page_open_a_push_makes_no_changes_and_a_page_opened_later_gets_the_whole_fleet(bed, monkeypatch):
    # (10,000 sockets change every second: the changes, made four times a second for nobody, cost the hub CPU)
    def no_changes(since):
        raise AssertionError("changes made with no page to send them to")

    monkeypatch.setattr(bed.fleet, "changes", no_changes)
    bed.fleet.state("shop", "till", {"balance": 900, "balance_tokens": 900, "relay": "on", "at": T0 + 1})
    assert bed.web.pusher.push() is False and bed.web.pusher.pushes == 0
    monkeypatch.undo()
    live = bed.web.socketio.test_client(bed.web.app, namespace=NAMESPACE, flask_test_client=bed.landlord())
    (first,) = [m["args"][0] for m in live.get_received(NAMESPACE)]
    assert first["full"] is True and ("shop/till", 900) in [(r["key"], r["balance"]) for r in first["rows"]]
    bed.fleet.state("shop", "till", {"balance": 899, "balance_tokens": 899, "relay": "on", "at": T0 + 2})
    assert bed.web.pusher.push() is True
    (pushed,) = [m["args"][0] for m in live.get_received(NAMESPACE)]
    assert [(r["key"], r["balance"]) for r in pushed["rows"]] == [("shop/till", 899)]


def test_a_timeout_is_pushed_without_a_message(bed):
    c = bed.landlord()
    live = bed.web.socketio.test_client(bed.web.app, namespace=NAMESPACE, flask_test_client=c)
    rid = post(c, {"controller": "home", "socket": "hall", "command": "automatic"}).get_json()["request_id"]
    bed.web.pusher.push()
    live.get_received(NAMESPACE)
    bed.clock.advance(11)
    assert bed.web.pusher.push() is True
    (msg,) = [m["args"][0] for m in live.get_received(NAMESPACE)]
    assert [(x["request_id"], x["status"]) for x in msg["commands"]] == [(rid, "timeout")]


def test_logout_closes_the_live_connection(bed):
    c = bed.landlord()
    live = bed.web.socketio.test_client(bed.web.app, namespace=NAMESPACE, flask_test_client=c)
    assert live.is_connected(NAMESPACE)
    c.post("/logout", data={"csrf_token": csrf(c)})
    assert not live.is_connected(NAMESPACE)


def test_health_says_whether_the_broker_is_there(bed):
    assert bed.client().get("/healthz").get_json() == {"status": "ok", "broker_connected": True}
    bed.sender.connected = False
    assert bed.client().get("/healthz").status_code == 503


def test_a_state_without_the_contracts_keys_shows_empty_cells_not_an_error_page(bed):
    bed.fleet.state("odd", "s1", {"at": T0})  # an older controller, or another publisher on the broker
    c = bed.landlord()
    resp = c.get("/")
    assert resp.status_code == 200 and '<tr data-key="odd/s1">' in resp.get_data(as_text=True)


def test_the_page_says_when_events_are_missing_here_and_stops_saying_it_once_they_came(bed):
    c = bed.landlord()
    gaps = re.compile(r'<p id="gaps"[^>]*>([^<]*)</p>')

    def banner() -> tuple[bool, str]:
        tag = gaps.search(c.get("/").get_data(as_text=True))
        assert tag is not None
        return " hidden" not in tag.group(0), tag.group(1)

    assert banner()[0] is False  # no event seen yet: nothing missing
    for seq in (1, 2, 5):  # 3 and 4 missing
        bed.fleet.event("home", {"id": f"home:{seq}", "seq": seq, "kind": "credited", "socket": "kitchen"})
    shown, text = banner()
    assert shown and text.startswith("2 events are missing here")
    assert bed.fleet.snapshot()["events_complete"]["missing"] == 2  # what the live pushes carry for the script
    for seq in (3, 4):
        bed.fleet.event("home", {"id": f"home:{seq}", "seq": seq, "kind": "credited", "socket": "kitchen"})
    assert banner()[0] is False
