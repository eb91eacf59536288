"""The hub fills a gap in a controller's events over a real Mosquitto with the fleet's ACL: it asks for the
missing seq on the controller's command topic, once, and again only when nothing came within the timeout. The
controller is played here by a paho client that answers the replay as the contract says."""

from __future__ import annotations

import json
import threading

import pytest

from payg.adapters.clocks import SystemClock
from payg.adapters.mqtt import client as mqtt_client
from payg.adapters.mqtt.acl import mosquitto_acl
from payg.adapters.mqtt.client import Connection
from payg.adapters.mqtt.hub_link import HubLink
from payg.hub.fleet import Fleet
from tests.support import wait_until
from tests.support.mosquitto import Broker

USERS = {"ctl-home": "pw-home", "hub": "pw-hub"}


class Controller:
    """The controller "home" as far as the hub can tell: its broker user, the commands it is sent."""

    def __init__(self, port: int):
        self.commands: list[dict] = []
        self.ready = threading.Event()
        self.conn = Connection("127.0.0.1", port, "fake-home", "ctl-home", USERS["ctl-home"], keepalive_s=5)
        self.client = mqtt_client.make_client(self.conn, on_connect=self._connected, on_disconnect=lambda r: None,
                                              on_message=lambda t, p, r: self.commands.append(json.loads(p)))
        mqtt_client.start(self.client, self.conn)
        wait_until(self.ready.is_set, 10, "the fake controller connected")

    def _connected(self, ok: bool, reason: str) -> None:
        self.client.subscribe("payg/home/command", qos=1)
        self.ready.set()

    def publish(self, what: str, body: dict) -> None:
        self.client.publish(f"payg/home/{what}", json.dumps(body).encode(), qos=1).wait_for_publish(5)


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path / "broker", USERS, mosquitto_acl("payg", {"home": "ctl-home"}, ["hub"])).start()
    yield b
    b.stop()


def event(seq: int) -> dict:
    return {"id": f"home:e{seq}", "seq": seq, "controller": "home", "socket": "kitchen", "kind": "credited",
            "at": 1000.0 + seq, "tokens": seq}


def replays(ctl: Controller) -> list[dict]:
    return [c for c in ctl.commands if c.get("command") == "replay"]


def start_hub(port: int, fleet: Fleet, check_s: float = 1.0) -> HubLink:
    link = HubLink(Connection("127.0.0.1", port, "hub-replay", "hub", USERS["hub"], keepalive_s=5), "payg", fleet,
                   replay_check_s=check_s)
    link.start()
    wait_until(link.ready.is_set, 10, "the hub subscribed")
    return link


def test_the_hub_asks_for_exactly_the_missing_seq_and_ends_complete(broker):
    ctl = Controller(broker.port)
    fleet = Fleet(SystemClock(), command_timeout_s=30)
    link = start_hub(broker.port, fleet)
    try:
        for seq in (1, 2, 4):
            ctl.publish("events", event(seq))
        wait_until(lambda: replays(ctl), 10, "the replay command at the controller")
        ask = replays(ctl)[0]
        assert ask["from_seq"] == 3 and set(ask) == {"command", "from_seq", "request_id"}
        home = fleet.controllers()[0]
        assert (home["complete_through"], home["missing"], home["replaying"]) == (2, 1, True)
        ctl.publish("response", {"request_id": ask["request_id"], "ok": True, "command": "replay", "from_seq": 3,
                                 "oldest_seq": 1, "last_seq": 4, "replayed": 2})
        ctl.publish("events", event(3))
        ctl.publish("events", event(4))  # a replay re-publishes from 3 on: 4 again, the same id
        wait_until(lambda: fleet.controllers()[0]["complete_through"] == 4 and fleet.counts["duplicate_events"], 10,
                   "the gap filled, and the replayed 4 dropped")
        home = fleet.controllers()[0]
        assert (home["missing"], home["lost"], home["replays"], home["replaying"]) == (0, 0, 1, False)
        assert sorted(e["seq"] for e in fleet.events()) == [1, 2, 3, 4]
        assert fleet.snapshot()["events_complete"] == {"complete": True, "controllers": 1, "controllers_complete": 1,
                                                       "missing": 0, "lost": 0}
        assert fleet.counts["unmatched_responses"] == 0  # the replay's answer was the hub's own
        ctl.publish("events", event(5))
        wait_until(lambda: fleet.controllers()[0]["complete_through"] == 5, 10, "the next event")
        assert len(replays(ctl)) == 1  # asked once, for seq 3 only
    finally:
        link.stop()
        mqtt_client.stop(ctl.client)


def test_no_answer_within_the_timeout_asks_again_and_a_lost_event_is_given_up(broker):
    ctl = Controller(broker.port)
    fleet = Fleet(SystemClock(), command_timeout_s=0.5)
    link = start_hub(broker.port, fleet, check_s=0.1)
    try:
        for seq in (7, 8, 11):
            ctl.publish("events", event(seq))
        wait_until(lambda: len(replays(ctl)) >= 2, 10, "the replay asked again")  # the first one goes unanswered
        first, second = replays(ctl)[:2]
        assert first["from_seq"] == second["from_seq"] == 9 and first["request_id"] != second["request_id"]
        ctl.publish("response", {"request_id": second["request_id"], "ok": True, "command": "replay", "from_seq": 9,
                                 "oldest_seq": 10, "last_seq": 11, "replayed": 2})  # 9 is past its retention
        ctl.publish("events", event(10))
        wait_until(lambda: fleet.controllers()[0]["complete_through"] == 11, 10, "the gap closed")
        home = fleet.controllers()[0]
        assert (home["missing"], home["lost"], home["baseline_seq"]) == (0, 1, 7)
        asked = len(replays(ctl))
        ctl.publish("events", event(12))
        wait_until(lambda: fleet.controllers()[0]["complete_through"] == 12, 10, "the next event")
        assert len(replays(ctl)) == asked and {r["from_seq"] for r in replays(ctl)} <= {9, 10}
    finally:
        link.stop()
        mqtt_client.stop(ctl.client)
