"""A controller on a real Mosquitto (password file + ACL): what Home Assistant and the hub see, and
what commands do, delivered through the broker."""

from __future__ import annotations

import json

from payg.adapters.mqtt import discovery
from payg.adapters.mqtt.topics import Topics
from tests.support import wait_until

HOME = Topics("payg", "home")


def discovered(listener, controller="home") -> dict[str, dict]:
    """What a Home Assistant-style listener has: the newest non-empty config per discovery topic."""
    configs: dict[str, dict] = {}
    for topic, payload, _ in list(listener.messages):
        if topic.startswith("homeassistant/") and discovery.socket_of("homeassistant", controller, topic):
            if payload:
                configs[topic] = json.loads(payload)
            else:
                configs.pop(topic, None)
    return configs


def test_sockets_appear_in_discovery_and_a_top_up_is_a_state_change_and_one_event(controllers, listeners):
    ha = listeners(user="landlord")
    c = controllers(("kitchen", "hall"))
    c.driver.run_ticks(3)
    configs = wait_until(lambda: (d := discovered(ha)) and len(d) == 12 and d, 10, "12 discovery configs")
    devices = {json.dumps(p["device"]["identifiers"]) for p in configs.values()}
    assert len(devices) == 2  # one device per socket
    # every entity's state topic carries what its template reads
    state = wait_until(lambda: ha.last_json(HOME.state("kitchen")), 10, "the kitchen's state")
    for payload in configs.values():
        assert payload["state_topic"] in (HOME.state("kitchen"), HOME.state("hall"))
        key = payload["value_template"].split("value_json.")[1].split(" ")[0]
        assert key in state
    assert ha.on(HOME.status)[-1] == b"online"
    assert (state["relay"], state["balance"]) == ("off", 0)

    c.rt.ledger.pay("kitchen", 500)
    c.driver.run_for(2)  # the watcher polls every second and credits it
    wait_until(lambda: (s := ha.last_json(HOME.state("kitchen"))) and s["balance"] > 0 and s["relay"] == "on", 10,
               "the credited state")
    credited = wait_until(lambda: ha.events_of("credited"), 10, "the credited event")
    assert len(credited) == 1 and credited[0]["amount"] == 500 and credited[0]["entry"] == "deposit"
    assert credited[0]["socket"] == "kitchen" and credited[0]["controller"] == "home"
    assert ha.duplicates == 0


def test_a_state_is_sent_on_change_only(controllers, listeners):
    ha = listeners(user="landlord", topics=("payg/home/hall/state",))
    c = controllers(("hall",), load_w=0)
    c.driver.run_ticks(2)
    wait_until(lambda: ha.on(HOME.state("hall")), 10, "the hall's state")
    import time
    time.sleep(0.6)
    before = len(ha.on(HOME.state("hall")))
    for _ in range(10):  # nothing draws power, no credit: nothing changes but the time
        c.driver.run_ticks(1)
        time.sleep(0.05)
    time.sleep(0.6)
    assert len(ha.on(HOME.state("hall"))) == before


def test_commands_from_the_landlord_are_applied_once_and_answered(controllers, listeners):
    landlord = listeners(user="landlord")
    c = controllers(("kitchen",))
    c.driver.run_ticks(1)
    credit = {"command": "credit", "socket": "kitchen", "tokens": 40, "reason": "welcome", "request_id": "hub-1"}
    landlord.send(HOME.command, credit)
    landlord.send(HOME.command, credit)  # a repeat (a retry, a second click): books once
    replies = wait_until(lambda: len(r := [json.loads(p) for p in landlord.on(HOME.response)]) == 2 and r, 10,
                         "two replies")
    assert [(r["ok"], r.get("booked")) for r in replies] == [(True, True), (True, False)]
    assert c.balance("kitchen") == 40
    landlord.send(HOME.command, {"command": "force_off", "socket": "kitchen"})
    wait_until(lambda: c.rt.metering.socket("kitchen").override == "off", 10, "the override")
    c.driver.run_ticks(1)
    assert c.rt.relays["kitchen"].is_closed() is False
    assert c.rt.journal.overrides() == {"kitchen": "off"}  # journaled like the landlord view's action
    landlord.send(HOME.command, {"command": "automatic", "socket": "kitchen"})
    wait_until(lambda: c.rt.metering.socket("kitchen").override is None, 10, "automatic again")
    kinds = [e["kind"] for e in c.rt.journal.events("kitchen", 10)]
    assert kinds.count("override") == 2 and "manual" in kinds


def test_bad_payloads_are_refused_on_the_response_topic_and_the_controller_goes_on(controllers, listeners):
    landlord = listeners(user="landlord")
    c = controllers(("kitchen",))
    landlord.send(HOME.command, b"{not json")
    landlord.send(HOME.command, {"command": "credit", "socket": "kitchen", "tokens": 10**12, "reason": "x",
                                 "request_id": "big"})
    landlord.send(HOME.command, {"command": "credit", "socket": "garage", "tokens": 1, "reason": "x",
                                 "request_id": "g"})
    landlord.send(HOME.command, {"command": "credit", "socket": "kitchen", "tokens": 7, "reason": "ok",
                                 "request_id": "fine"})
    replies = wait_until(lambda: len(r := [json.loads(p) for p in landlord.on(HOME.response)]) == 4 and r, 10,
                         "four replies")
    assert [r["ok"] for r in replies] == [False, False, False, True]
    assert "not JSON" in replies[0]["error"] and replies[1]["request_id"] == "big"
    assert c.balance("kitchen") == 7


def test_another_broker_user_cannot_command_and_a_retained_command_is_not_run(controllers, listeners):
    intruder = listeners(user="intruder", topics=("payg/#",), client_id="intruder")
    landlord = listeners(user="landlord", client_id="landlord")
    landlord.send(HOME.command, {"command": "credit", "socket": "kitchen", "tokens": 5, "reason": "r",
                                 "request_id": "retained"}, retain=True)  # it would come again on every connect
    c = controllers(("kitchen",))
    wait_until(lambda: c.bridge.status()["connected"], 10, "the controller connected")
    intruder.send(HOME.command, {"command": "credit", "socket": "kitchen", "tokens": 999, "reason": "free",
                                 "request_id": "evil"})  # the broker's ACL drops it
    landlord.send(HOME.command, {"command": "credit", "socket": "kitchen", "tokens": 3, "reason": "r",
                                 "request_id": "after"})
    wait_until(lambda: c.balance("kitchen") == 3, 10, "the landlord's credit")
    import time
    time.sleep(0.5)
    assert c.balance("kitchen") == 3
    assert [json.loads(p)["request_id"] for p in landlord.on(HOME.response)] == ["after"]
    assert intruder.on(HOME.state("kitchen")) == []  # and it may not read payg's topics either


def test_a_socket_removed_from_the_config_loses_its_entities(controllers, listeners):
    ha = listeners(user="landlord")
    first = controllers(("kitchen", "hall"))
    wait_until(lambda: len(discovered(ha)) == 12, 10, "both sockets discovered")
    first.rt.close()
    controllers(("kitchen",))
    wait_until(lambda: len(discovered(ha)) == 6, 10, "the hall's entities removed")
    assert all("/kitchen_" in t for t in discovered(ha))
    wait_until(lambda: ha.on(HOME.state("hall"))[-1:] == [b""], 10, "the hall's retained state cleared")
    # a new subscriber (Home Assistant restarting) is told of the kitchen only
    fresh = listeners(user="landlord", topics=("homeassistant/#",), client_id="fresh")
    wait_until(lambda: len(discovered(fresh)) == 6, 10, "the retained configs")
    import time
    time.sleep(0.3)
    assert {t.split("/")[3].rsplit("_", 1)[0] for t in discovered(fresh)} == {"kitchen"}


def test_a_stopped_controller_says_offline(controllers, listeners):
    ha = listeners(user="landlord", topics=("payg/home/status",))
    c = controllers(("kitchen",))
    wait_until(lambda: ha.on(HOME.status) and ha.on(HOME.status)[-1] == b"online", 10, "online")
    c.rt.close()
    wait_until(lambda: ha.on(HOME.status)[-1] == b"offline", 10, "offline")


def test_a_burst_of_changes_is_sent_as_at_most_one_state_per_poll_interval(controllers, listeners):
    ha = listeners(user="landlord", topics=("payg/home/kitchen/state",))
    c = controllers(("kitchen",))
    wait_until(lambda: ha.on(HOME.state("kitchen")), 10, "the first state")
    import time
    before = len(ha.on(HOME.state("kitchen")))
    started = time.monotonic()
    for i in range(30):  # 30 credits, each re-deciding and publishing at once
        c.rt.landlord.adjust("kitchen", 1, "burst", f"burst-{i}")
    elapsed = time.monotonic() - started
    wait_until(lambda: (ha.last_json(HOME.state("kitchen")) or {}).get("balance") == 30, 10, "the last balance")
    sent = len(ha.on(HOME.state("kitchen"))) - before
    interval = c.bridge.min_interval_s
    assert 1 <= sent <= int((time.monotonic() - started) / interval) + 2 and sent < 30, (sent, elapsed)


def test_after_an_event_its_sockets_state_says_it_was_sent_even_when_nothing_else_changes(controllers, listeners):
    # A hub that missed the event learns of it from this state ("events_through"), with no later event needed.
    ha = listeners(user="landlord", topics=("payg/home/hall/state", "payg/home/events"))
    c = controllers(("hall",), load_w=0)
    c.rt.ledger.pay("hall", 100)
    c.driver.run_for(3)  # credited, the relay on; nothing draws power: nothing changes after this
    (first,) = wait_until(lambda: ha.events_of("credited"), 10, "the first credit")
    wait_until(lambda: (ha.last_json(HOME.state("hall")) or {}).get("events_through", 0) >= first["seq"], 10,
               "a state after the first credit")
    c.rt.ledger.pay("hall", 5)
    c.driver.run_for(2)
    second = wait_until(lambda: [e for e in ha.events_of("credited") if e["seq"] > first["seq"]], 10,
                        "the second credit")[0]
    state = wait_until(lambda: (s := ha.last_json(HOME.state("hall"))) and s.get("events_through", 0) >= second["seq"]
                       and s, 5, "a state saying the second credit was sent, with no tick since")
    assert state["balance"] == 105 and state["relay"] == "on"
