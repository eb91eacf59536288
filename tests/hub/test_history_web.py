"""The hub's history routes over a real archive (an SQLite file) fed the way the MQTT link feeds it, through the
RecordingSink: the fleet's days and one socket's, as JSON and CSV, behind the landlord's login."""

from __future__ import annotations

import csv
import io
import re

import pytest
from werkzeug.security import generate_password_hash

from payg.adapters.clocks import ManualClock
from payg.adapters.fleet_archive import FleetArchive
from payg.adapters.web_sessions import SqliteSessionStore
from payg.hub.fleet import Fleet
from payg.hub.recording import RecordingSink
from payg.hub.web import HubServices, create_hub_web
from payg.webkit.security import WebSecrets

PASSWORD = "a long landlord password"
TOKEN = "k" * 43
DAY1 = 1_799_971_200.0  # 2027-01-15 00:00 UTC
DAY2 = DAY1 + 86_400


class Bed:
    def __init__(self, tmp_path):
        self.clock = ManualClock(DAY2 + 3600)
        self.fleet = Fleet(self.clock, command_timeout_s=10)
        self.archive = FleetArchive(f"sqlite:///{tmp_path / 'hub-history.sqlite'}", self.clock, flush_s=3600)
        self.archive.start()
        self.sink = RecordingSink(self.fleet, self.archive)
        self.store = SqliteSessionStore(tmp_path / "sessions.sqlite")
        self.web = create_hub_web(HubServices(self.fleet, None, WebSecrets(  # type: ignore[arg-type]  # sends nothing
            "s" * 43, TOKEN, generate_password_hash(PASSWORD, method="pbkdf2:sha256:1000")), self.store, self.clock,
            history=self.archive))
        self.web.app.testing = True

    def state(self, controller, socket, at, counter, balance):
        self.sink.state(controller, socket, {"balance": balance, "balance_tokens": balance, "relay": "on",
                                             "power_w": 60.0, "energy_wh": counter, "meter": "ok", "currency": "GBP",
                                             "at": at})

    def landlord(self):
        c = self.web.app.test_client()
        page = c.get("/login").get_data(as_text=True)
        token = re.search(r'<meta name="csrf-token" content="([^"]+)"', page).group(1)
        assert c.post("/login", data={"password": PASSWORD, "csrf_token": token, "next": "/"}).status_code == 302
        return c

    def close(self):
        self.archive.stop()
        self.store.close()


@pytest.fixture
def bed(tmp_path):
    b = Bed(tmp_path)
    yield b
    b.close()


def test_the_fleet_and_a_socket_by_day_as_json_and_csv(bed):
    # home/kitchen: 1,000 -> 1,400 Wh on day 1, -> 2,000 on day 2; shop/till: 50 -> 80 on day 2 only
    for at, counter, balance in ((DAY1 + 60, 1000, 900), (DAY1 + 7200, 1400, 500), (DAY2 + 600, 2000, 4900)):
        bed.state("home", "kitchen", at, counter, balance)
    bed.state("shop", "till", DAY2 + 60, 50, 300)
    bed.state("shop", "till", DAY2 + 120, 80, 270)
    bed.sink.event("home", {"id": "home:7", "seq": 7, "kind": "credited", "socket": "kitchen", "amount": 5000,
                            "at": DAY2 + 300})
    bed.sink.event("home", {"id": "home:7", "seq": 7, "kind": "credited", "socket": "kitchen", "amount": 5000,
                            "at": DAY2 + 300})  # a redelivery: once in the fleet, once in the history
    assert bed.archive.flush(10)
    assert bed.fleet.counts["duplicate_events"] == 1

    c = bed.landlord()
    kitchen = c.get("/api/history/home/kitchen").get_json()
    assert [(d["day"], d["energy_wh"], d["topups"], d["closing_balance"], d["currency"]) for d in kitchen["days"]] == [
        ("2027-01-15", 400, 0, 500, "GBP"), ("2027-01-16", 600, 5000, 4900, "GBP")]
    fleet = c.get("/api/history?days=2").get_json()
    assert [(d["day"], d["sockets"], d["energy_wh"], d["topups"]) for d in fleet["days"]] == [
        ("2027-01-15", 1, 400, 0), ("2027-01-16", 2, 630, 5000)]
    assert fleet["archive"]["backend"] == "sqlite" and fleet["archive"]["pending_events"] == 0
    assert [d["day"] for d in c.get("/api/history?days=1").get_json()["days"]] == ["2027-01-16"]

    rows = list(csv.DictReader(io.StringIO(c.get("/history/home/kitchen.csv").get_data(as_text=True))))
    assert [(r["day"], r["energy_wh"], r["topups"], r["closing_balance"]) for r in rows] == [
        ("2027-01-15", "400", "0", "500"), ("2027-01-16", "600", "5000", "4900")]
    resp = c.get("/history.csv")
    assert resp.mimetype == "text/csv" and 'filename="fleet-days-' in resp.headers["Content-Disposition"]
    assert list(csv.DictReader(io.StringIO(resp.get_data(as_text=True))))[-1]["energy_wh"] == "630"


def test_the_history_is_the_landlords_and_its_window_is_checked(bed):
    anonymous = bed.web.app.test_client()
    assert anonymous.get("/api/history").status_code == 401
    assert anonymous.get("/history.csv").status_code == 302  # a page: to the login
    c = bed.landlord()
    for days in ("0", "367", "-1", "x"):
        resp = c.get(f"/api/history?days={days}")
        assert resp.status_code == 400 and "days must be" in resp.get_json()["message"], days
    nobody = c.get("/api/history/home/nobody")
    assert nobody.status_code == 200 and nobody.get_json()["days"] == [], nobody.get_json()


def test_a_history_that_cannot_be_read_is_an_error_not_an_empty_table(bed, tmp_path):
    c = bed.landlord()
    bed.archive.stop()
    (tmp_path / "hub-history.sqlite").unlink()
    (tmp_path / "hub-history.sqlite").mkdir()  # where the file was, something no database opens
    resp = c.get("/api/history")
    assert resp.status_code == 503 and "cannot be read" in resp.get_json()["message"]


def test_the_pages_show_the_fleets_days_and_a_sockets_in_its_money(bed):
    for at, counter, balance in ((DAY1 + 60, 1000, 900), (DAY1 + 7200, 1400, 500), (DAY2 + 600, 2000, 4900)):
        bed.state("home", "kitchen", at, counter, balance)
    bed.sink.event("home", {"id": "home:7", "seq": 7, "kind": "credited", "socket": "kitchen", "amount": 5000,
                            "at": DAY2 + 300})
    assert bed.archive.flush(10)
    c = bed.landlord()
    assert 'href="/history"' in c.get("/").get_data(as_text=True)
    page = c.get("/history").get_data(as_text=True)
    rows = re.findall(r'<tr>\s*<th scope="row">([\d-]+)</th>(.*?)</tr>', page, re.S)
    assert [day for day, _ in rows] == ["2027-01-15", "2027-01-16"]
    assert "600 Wh" in rows[1][1] and '<option value="home/kitchen">' in page
    picked = c.get("/history/socket?id=home/kitchen")
    assert picked.status_code == 302 and picked.headers["Location"] == "/history/home/kitchen"
    socket_page = c.get("/history/home/kitchen").get_data(as_text=True)
    assert "£49.00" in socket_page and "£50.00" in socket_page  # the closing balance and the top-up, in pounds
    assert 'href="/history/home/kitchen.csv?days=90"' in socket_page
    assert c.get("/history/home/kitchen.csv").mimetype == "text/csv"  # the CSV, not a page for "kitchen.csv"
    assert c.get("/history/socket?id=nonsense").status_code == 400
