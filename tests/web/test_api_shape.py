"""The JSON API's shape as the README's "JSON API" section documents it: every key, and each value's type."""

from __future__ import annotations

NUMBER = (int, float)
OPT_NUMBER = (int, float, type(None))
OPT_STR = (str, type(None))
SOCKET_STATE = {
    "id": str, "name": str, "balance": int, "balance_tokens": NUMBER, "debt": int, "debt_tokens": NUMBER,
    "relay": str, "power_w": OPT_NUMBER, "voltage_v": OPT_NUMBER, "current_a": OPT_NUMBER, "energy_wh": OPT_NUMBER,
    "meter": str, "meter_error": OPT_STR, "relay_error": OPT_STR, "override": OPT_STR, "credit_exhausted": bool,
    "pending_wh": float, "credit_warning_h": OPT_NUMBER, "reading_at": OPT_NUMBER, "updated_at": NUMBER,
    "topup": dict, "currency": OPT_STR, "balance_text": str,  # issue 27: what the amounts are in, the balance written
    "vacant": bool,  # issue 28: never paid for
}
TOPUP = {"address": str, "uri": str, "backend": str, "units_per_token": int}
EVENT = {"id": int, "at": NUMBER, "kind": str, "detail": str}
ENTRY = {"id": int, "socket": str, "at": NUMBER, "kind": str, "amount": int, "energy_wh": OPT_NUMBER,
         "key": OPT_STR, "memo": str}


def assert_shape(body: dict, shape: dict) -> None:
    assert set(body) == set(shape)
    for key, types in shape.items():
        value = body[key]
        assert isinstance(value, types) and (types is bool or not isinstance(value, bool)), (key, value)


def assert_state(st: dict) -> None:
    assert_shape(st, SOCKET_STATE)
    assert_shape(st["topup"], TOPUP)
    assert st["relay"] in ("on", "off")
    assert st["meter"] in ("ok", "offline", "counter_reset", "implausible_jump", "relay_bypass")
    assert st["override"] in (None, "off")


def test_a_socket_state_before_any_reading_and_while_it_runs(bed):
    client = bed.client(token=True)
    first = client.get("/api/sockets/kitchen").get_json()
    assert_state(first)
    assert first["power_w"] is first["energy_wh"] is first["reading_at"] is None and first["meter"] == "offline"
    bed.loop.run_for(2)
    assert client.post("/api/mock/deposits", json={"socket": "kitchen", "amount": 2}).status_code == 201
    bed.loop.run_for(3)
    listed = client.get("/api/sockets").get_json()
    assert [s["id"] for s in listed] == ["kitchen", "laundry", "office"]
    for st in listed:
        assert_state(st)
    kitchen = listed[0]
    assert (kitchen["relay"], kitchen["meter"], kitchen["balance"]) == ("on", "ok", 2)
    assert (kitchen["currency"], kitchen["balance_text"]) == (None, "2 tokens")  # the embedded default: tokens
    assert isinstance(kitchen["power_w"], float) and isinstance(kitchen["reading_at"], float)
    assert client.get("/api/sockets/kitchen").get_json() == kitchen


def test_a_state_used_up_and_held_off(bed):
    client = bed.client(token=True)
    bed.rt.ledger.pay("kitchen", 1)
    bed.loop.run_for(30)  # 1 token at 800 W lasts 4.5 s
    used = client.get("/api/sockets/kitchen").get_json()
    assert_state(used)
    assert used["relay"] == "off" and used["balance"] <= 0
    assert client.post("/api/sockets/kitchen/override", json={"mode": "off"}).status_code == 200
    held = client.get("/api/sockets/kitchen").get_json()
    assert_state(held)
    assert held["override"] == "off" and held["relay"] == "off"


def test_events_journal_and_health(bed):
    client = bed.client(token=True)
    bed.rt.ledger.pay("kitchen", 3)
    bed.loop.run_for(30)            # the 3 tokens run out at 800 W: off for lack of credit, an event
    events = client.get("/api/sockets/kitchen/events").get_json()
    assert set(events) == {"socket", "events"} and events["socket"] == "kitchen" and events["events"]
    for e in events["events"]:
        assert_shape(e, EVENT)
    page = client.get("/api/sockets/kitchen/journal").get_json()
    assert set(page) == {"socket", "entries", "next_before"} and page["next_before"] is None
    assert [e["kind"] for e in page["entries"]] == ["deposit"]
    for e in page["entries"]:
        assert_shape(e, ENTRY)
    assert client.get("/healthz").get_json() == {"status": "ok"}
