"""The fleet model: fed messages as the MQTT link hands them over, read as the web shows them."""

from __future__ import annotations

import threading

import pytest

from payg.adapters.clocks import ManualClock
from payg.hub.fleet import Fleet, Refused, UnknownTarget, matches, totals

T0 = 1_800_000_000.0


def state(balance: int, relay: str = "on", power_w: float | None = 100.0, at: float = T0, **more) -> dict:
    return {"balance": balance, "balance_tokens": balance, "relay": relay, "power_w": power_w, "meter": "ok",
            "override": None, "credit_exhausted": False, "at": at, **more}


@pytest.fixture
def clock():
    return ManualClock(T0)


@pytest.fixture
def fleet(clock):
    f = Fleet(clock, command_timeout_s=10)
    f.status("home", "online")
    f.state("home", "kitchen", state(500, "on", 60.0))
    f.state("home", "hall", state(0, "off", None))
    f.status("shop", "online")
    f.state("shop", "till", state(1200, "on", 2000.5))
    return f


def test_every_controller_and_socket_with_the_totals_of_what_was_published(fleet):
    snap = fleet.snapshot()
    assert [r["key"] for r in snap["rows"]] == ["home/hall", "home/kitchen", "shop/till"]
    assert [(c["name"], c["status"]) for c in snap["controllers"]] == [("home", "online"), ("shop", "online")]
    assert snap["totals"]["all"] == {"sockets": 3, "on": 2, "off": 1, "power_w": 2060.5, "balance": 1700,
                                     "balance_tokens": 1700, "controllers": 2}
    assert snap["totals"]["controllers"]["home"] == {"sockets": 2, "on": 1, "off": 1, "power_w": 60.0,
                                                     "balance": 500, "balance_tokens": 500}
    assert snap["totals"]["controllers"]["shop"]["balance"] == 1200


def test_a_new_state_replaces_the_old_and_a_cleared_one_removes_the_socket(fleet, clock):
    clock.advance(3)
    fleet.state("home", "kitchen", state(450, at=T0 + 2))
    row = next(r for r in fleet.rows() if r["key"] == "home/kitchen")
    assert (row["balance"], row["at"], row["received_at"]) == (450, T0 + 2, T0 + 3)
    before = fleet.version
    fleet.state("home", "hall", None)
    assert [r["key"] for r in fleet.rows(controller="home")] == ["home/kitchen"]
    assert fleet.changes(before)["removed"] == ["home/hall"]


def test_balances_are_the_published_integers_and_junk_does_not_count(fleet):
    fleet.state("shop", "odd", {"balance": "12", "relay": "on", "power_w": True, "nested": {"x": 1}})
    row = next(r for r in fleet.rows() if r["key"] == "shop/odd")
    assert "nested" not in row
    assert fleet.snapshot()["totals"]["controllers"]["shop"] == {"sockets": 2, "on": 2, "off": 0,
                                                                 "power_w": 2000.5, "balance": 1200,
                                                                 "balance_tokens": 1200}


def test_availability_follows_the_status_topic_and_its_last_will(fleet, clock):
    clock.advance(5)
    fleet.status("shop", "offline")
    shop = next(c for c in fleet.controllers() if c["name"] == "shop")
    assert (shop["status"], shop["status_at"]) == ("offline", T0 + 5)
    fleet.status("shop", None)  # a cleared status: not known
    assert next(c for c in fleet.controllers() if c["name"] == "shop")["status"] is None


@pytest.mark.parametrize("kw, keys", [
    ({"controller": "shop"}, ["shop/till"]),
    ({"relay": "off"}, ["home/hall"]),
    ({"relay": "on", "controller": "home"}, ["home/kitchen"]),
    ({"text": "KIT"}, ["home/kitchen"]),
    ({"text": "home/"}, ["home/hall", "home/kitchen"]),
    ({"text": "nothing"}, []),
])
def test_filters(fleet, kw, keys):
    assert [r["key"] for r in fleet.rows(**kw)] == keys
    assert fleet.snapshot(**kw)["totals"]["all"]["sockets"] == len(keys)


def test_filters_and_totals_as_functions():
    rows = [{"controller": "a", "key": "a/x", "relay": "on", "power_w": 1.5, "balance": 3, "balance_tokens": 1.5},
            {"controller": "b", "key": "b/y", "relay": "off", "power_w": None, "balance": 2, "balance_tokens": 1}]
    assert [r["key"] for r in rows if matches(r, relay="off")] == ["b/y"]
    assert totals(rows)["all"]["balance_tokens"] == 2.5 and totals(rows)["all"]["balance"] == 5


def test_events_are_kept_once_by_id_newest_first(fleet):
    for eid in ("home:1", "home:2", "home:1"):
        fleet.event("home", {"id": eid, "seq": int(eid[-1]), "kind": "credited", "socket": "kitchen", "amount": 5})
    fleet.event("home", {"kind": "no id"})
    assert [e["id"] for e in fleet.events()] == ["home:2", "home:1"]
    assert fleet.counts["duplicate_events"] == 1


def test_a_command_is_answered_by_its_request_id_only(fleet, clock):
    cmd = fleet.begin("home", "kitchen", "credit", 50, "goodwill")
    assert cmd.request_id.startswith("hub-") and cmd.status == "pending"
    other = fleet.begin("home", "kitchen", "force_off")
    assert other.request_id != cmd.request_id  # a fresh id each
    fleet.response("shop", {"request_id": cmd.request_id, "ok": True})           # another controller's topic
    fleet.response("home", {"request_id": "hub-unknown", "ok": True})
    assert fleet.command(cmd.request_id)["status"] == "pending"
    clock.advance(1)
    fleet.response("home", {"request_id": cmd.request_id, "ok": True, "command": "credit", "booked": True})
    got = fleet.command(cmd.request_id)
    assert (got["status"], got["booked"], got["answered_at"], got["late"]) == ("ok", True, T0 + 1, False)
    fleet.response("home", {"request_id": other.request_id, "ok": False, "error": "no such thing"})
    assert (fleet.command(other.request_id)["status"], fleet.command(other.request_id)["error"]) == \
        ("refused", "no such thing")
    fleet.response("home", {"request_id": other.request_id, "ok": True})  # a redelivery changes nothing
    assert fleet.command(other.request_id)["status"] == "refused"


def test_no_answer_in_time_is_a_timeout_and_a_late_answer_still_shows(fleet, clock):
    cmd = fleet.begin("shop", "till", "automatic")
    clock.advance(9.9)
    assert fleet.expire() == 0 and fleet.command(cmd.request_id)["status"] == "pending"
    clock.advance(0.1)
    assert fleet.command(cmd.request_id)["status"] == "timeout"
    assert "within 10 s" in fleet.command(cmd.request_id)["error"]
    fleet.response("shop", {"request_id": cmd.request_id, "ok": True})
    assert (fleet.command(cmd.request_id)["status"], fleet.command(cmd.request_id)["late"]) == ("ok", True)


def test_commands_refused_before_they_are_sent(fleet):
    with pytest.raises(UnknownTarget):
        fleet.begin("nowhere", "kitchen", "force_off")
    with pytest.raises(UnknownTarget):
        fleet.begin("home", "garage", "force_off")
    with pytest.raises(ValueError):
        fleet.begin("home", "kitchen", "explode")
    with pytest.raises(ValueError):
        fleet.begin("home", "kitchen", "force_off", request_id="bad id!")
    fleet.begin("home", "kitchen", "force_off", request_id="page-0123456789")
    with pytest.raises(Refused, match="sent before"):
        fleet.begin("home", "kitchen", "force_off", request_id="page-0123456789")
    fleet.status("home", "offline")
    with pytest.raises(Refused, match="offline"):
        fleet.begin("home", "kitchen", "force_off")


def test_changes_since_a_version_hold_only_what_is_new(fleet):
    v = fleet.version
    fleet.state("shop", "till", state(1100))
    cmd = fleet.begin("home", "hall", "automatic")
    fleet.event("shop", {"id": "shop:9", "kind": "credited"})
    ch = fleet.changes(v)
    assert [r["key"] for r in ch["rows"]] == ["shop/till"]
    assert [c["request_id"] for c in ch["commands"]] == [cmd.request_id]
    assert [e["id"] for e in ch["events"]] == ["shop:9"]
    assert fleet.changes(ch["version"])["rows"] == []


def test_receipts_keep_every_state_message_with_its_at_and_receive_time(clock):
    f = Fleet(clock, receipts_max=2)
    for i in range(3):
        clock.advance(1)
        f.state("home", "kitchen", state(i, at=T0 + i))
    got = f.receipts()
    assert [(r.at, r.received_at) for r in got] == [(T0 + 1, T0 + 2), (T0 + 2, T0 + 3)]


def test_a_waiter_wakes_on_a_change(fleet):
    v = fleet.version
    woke = []
    t = threading.Thread(target=lambda: woke.append(fleet.wait(v, 5)))
    t.start()
    fleet.status("home", "online")
    t.join(5)
    assert woke == [v + 1]
