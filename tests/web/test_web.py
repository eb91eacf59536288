"""The JSON API through Flask's test client, on the real objects of the embedded default."""

from __future__ import annotations

import pytest

from tests.support.web_beds import make_web_bed


@pytest.fixture
def rig(tmp_path):
    bed = make_web_bed(tmp_path)
    yield bed.rt, bed.loop, bed.client(token=True), bed.health
    bed.close()


def test_sockets_list_has_live_figures_and_topup(rig):
    rt, loop, client, _ = rig
    loop.run_for(3)
    body = client.get("/api/sockets").get_json()
    assert [s["id"] for s in body] == ["kitchen", "laundry", "office"]
    kitchen = body[0]
    for key in ("id", "name", "balance", "balance_tokens", "relay", "power_w", "voltage_v", "current_a",
                "energy_wh", "meter", "topup"):
        assert key in kitchen
    assert kitchen["relay"] == "off" and kitchen["meter"] == "ok" and kitchen["balance"] == 0
    assert kitchen["voltage_v"] == 230.0 and kitchen["power_w"] == 0.0
    assert kitchen["topup"]["address"] == rt.ledger.address_for("kitchen")
    assert kitchen["topup"]["uri"].startswith("payg-mock:" + kitchen["topup"]["address"])


def test_mock_deposit_turns_the_socket_on_and_usage_turns_it_off(rig):
    rt, loop, client, _ = rig
    loop.run_for(2)
    resp = client.post("/api/mock/deposits", json={"socket": "kitchen", "amount": 2})
    assert resp.status_code == 201
    assert resp.get_json()["deposit_id"].startswith("mock-")
    loop.run_for(1)
    st = client.get("/api/sockets/kitchen").get_json()
    assert st["relay"] == "on" and st["balance"] == 2
    loop.run_for(1)
    st = client.get("/api/sockets/kitchen").get_json()
    assert st["power_w"] == 800.0
    assert st["current_a"] == pytest.approx(800 / 230, abs=0.001)
    loop.run_for(11)  # 2 Wh at 800 W last 9 s
    st = client.get("/api/sockets/kitchen").get_json()
    assert st["relay"] == "off"
    assert rt.meters["kitchen"].true_energy_wh == pytest.approx(2.0, abs=0.1)


def test_journal_pages(rig):
    rt, loop, client, _ = rig
    for _ in range(5):
        rt.ledger.pay("office", 3)
    loop.run_for(2)
    first = client.get("/api/sockets/office/journal?limit=2").get_json()
    assert [e["kind"] for e in first["entries"]] == ["deposit", "deposit"]
    assert first["entries"][0]["amount"] == 3 and first["next_before"] is not None
    rest = client.get(f"/api/sockets/office/journal?limit=10&before={first['next_before']}").get_json()
    assert len(rest["entries"]) == 3 and rest["next_before"] is None


@pytest.mark.parametrize("url", ["/api/sockets/nope", "/api/sockets/nope/journal"])
def test_unknown_socket_is_a_json_404(rig, url):
    resp = rig[2].get(url)
    assert resp.status_code == 404 and "nope" in resp.get_json()["message"]


def test_unknown_route_under_api_is_json(rig):
    resp = rig[2].get("/api/nothing")
    assert resp.status_code == 404 and resp.get_json()["error"] == "Not Found"


@pytest.mark.parametrize("kwargs, status, fragment", [
    ({"data": "{not json", "content_type": "application/json"}, 400, "not valid JSON"),
    ({"data": "socket=kitchen", "content_type": "application/x-www-form-urlencoded"}, 400, "expected a JSON body"),
    ({"json": ["kitchen", 5]}, 400, "JSON object"),
    ({"json": {"socket": "kitchen", "amount": 0}}, 400, "positive integer"),
    ({"json": {"socket": "kitchen", "amount": 1.5}}, 400, "positive integer"),
    ({"json": {"socket": "kitchen", "amount": True}}, 400, "positive integer"),
    ({"json": {"socket": "kitchen", "amount": 5, "extra": 1}}, 400, "unknown field"),
    ({"json": {"socket": "attic", "amount": 5}}, 404, "attic"),
])
def test_bad_deposits_are_refused_with_a_message_and_pay_nothing(rig, kwargs, status, fragment):
    rt, loop, client, _ = rig
    resp = client.post("/api/mock/deposits", **kwargs)
    assert resp.status_code == status
    assert fragment in resp.get_json()["message"]
    assert rt.ledger.deposits_since(None)[0] == []


def test_bad_journal_paging_is_a_400(rig):
    client = rig[2]
    assert client.get("/api/sockets/kitchen/journal?limit=0").status_code == 400
    assert client.get("/api/sockets/kitchen/journal?limit=abc").status_code == 400
    assert client.get("/api/sockets/kitchen/journal?before=-1").status_code == 400


def test_healthz_reports_the_loop(rig):
    _, _, client, health = rig
    assert client.get("/healthz").status_code == 200
    health["status"] = "stalled"
    assert client.get("/healthz").status_code == 503


def test_the_mock_route_exists_only_with_the_mock_ledger(tmp_path):
    bed = make_web_bed(tmp_path, payer=False)
    try:
        resp = bed.client(token=True).post("/api/mock/deposits", json={"socket": "kitchen", "amount": 5})
        assert resp.status_code in (404, 405)
    finally:
        bed.close()


def test_index_lists_the_sockets(rig):
    rt, loop, client, _ = rig
    loop.run_for(1)
    html = client.get("/").get_data(as_text=True)
    assert "Kitchen" in html and "Laundry" in html and "Office" in html
