"""The hub's MQTT link on a real Mosquitto with the fleet's ACL: what a controller publishes reaches the
fleet model, the hub's commands reach the controller's command topic, and a controller's last will shows."""

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

USERS = {"ctl-home": "pw-home", "hub": "pw-hub", "nobody": "pw-nobody"}


class Controller:
    """A stand-in controller: its own broker user, its last will, and the commands it is sent."""

    def __init__(self, port: int, name: str = "home", user: str = "ctl-home"):
        self.name, self.commands = name, []
        self.ready = threading.Event()
        self.conn = Connection("127.0.0.1", port, f"fake-{name}", user, USERS[user], keepalive_s=5)
        self.client = mqtt_client.make_client(self.conn, on_connect=self._connected, on_disconnect=lambda r: None,
                                              on_message=lambda t, p, r: self.commands.append(json.loads(p)),
                                              will=(f"payg/{name}/status", b"offline"))
        mqtt_client.start(self.client, self.conn)
        wait_until(self.ready.is_set, 10, "the fake controller connected")

    def _connected(self, ok: bool, reason: str) -> None:
        self.client.subscribe(f"payg/{self.name}/command", qos=1)
        self.ready.set()

    def publish(self, what: str, body, retain: bool = False) -> None:
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.client.publish(f"payg/{self.name}/{what}", payload, qos=1, retain=retain).wait_for_publish(5)


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path / "broker", USERS, mosquitto_acl("payg", {"home": "ctl-home"}, ["hub"])).start()
    yield b
    b.stop()


def hub_link(port: int, fleet: Fleet, user: str = "hub") -> HubLink:
    link = HubLink(Connection("127.0.0.1", port, f"hub-{user}", user, USERS[user], keepalive_s=5), "payg", fleet)
    link.start()
    return link


def test_the_fleet_sees_what_a_controller_publishes_and_its_last_will(broker):
    ctl = Controller(broker.port)
    ctl.publish("status", b"online", retain=True)
    ctl.publish("kitchen/state", {"balance": 70, "relay": "on", "at": 1.0}, retain=True)  # before the hub
    fleet = Fleet(SystemClock())
    link = hub_link(broker.port, fleet)
    try:
        wait_until(lambda: fleet.rows(), 10, "the retained state at the hub")
        assert fleet.rows()[0]["balance"] == 70 and fleet.controllers()[0]["status"] == "online"
        ctl.publish("kitchen/state", {"balance": 65, "relay": "on", "at": 2.0}, retain=True)
        ctl.publish("kitchen/state", b"{not json", retain=False)
        ctl.publish("events", {"id": "home:a", "seq": 1, "kind": "credited", "socket": "kitchen"})
        ctl.publish("events", {"id": "home:a", "seq": 1, "kind": "credited", "socket": "kitchen"})
        wait_until(lambda: fleet.rows()[0]["balance"] == 65 and fleet.events() and link.ignored == 1, 10,
                   "the new state, the event and the bad payload")
        assert [e["id"] for e in fleet.events()] == ["home:a"]
        ctl.publish("hall/state", {"balance": 1, "relay": "off", "at": 3.0}, retain=True)
        wait_until(lambda: len(fleet.rows()) == 2, 10, "the second socket")
        ctl.publish("hall/state", b"", retain=True)  # the socket is gone
        wait_until(lambda: len(fleet.rows()) == 1, 10, "the cleared socket removed")
        ctl.client._sock.close()  # the connection dies without a DISCONNECT: the broker sends the will
        wait_until(lambda: fleet.controllers()[0]["status"] == "offline", 20, "the last will at the hub")
    finally:
        link.stop()
        mqtt_client.stop(ctl.client)


def test_a_command_reaches_the_controller_and_its_response_the_command(broker):
    ctl = Controller(broker.port)
    ctl.publish("kitchen/state", {"balance": 70, "relay": "on"}, retain=True)
    fleet = Fleet(SystemClock())
    link = hub_link(broker.port, fleet)
    try:
        wait_until(lambda: link.ready.is_set() and fleet.rows(), 10, "the hub subscribed")
        cmd = fleet.begin("home", "kitchen", "credit", 25, "refund")
        link.send_command("home", "credit", "kitchen", cmd.request_id, 25, "refund")
        wait_until(lambda: ctl.commands, 10, "the command at the controller")
        assert ctl.commands == [{"command": "credit", "socket": "kitchen", "request_id": cmd.request_id,
                                 "tokens": 25, "reason": "refund"}]
        ctl.publish("response", {"request_id": cmd.request_id, "ok": True, "command": "credit",
                                 "socket": "kitchen", "booked": True})
        wait_until(lambda: fleet.command(cmd.request_id)["status"] == "ok", 10, "the response matched")
        with pytest.raises(ValueError, match="reason"):  # the controllers' own parser, before anything is sent
            link.send_command("home", "credit", "kitchen", "hub-x1", 5, " ")
        assert len(ctl.commands) == 1
    finally:
        link.stop()
        mqtt_client.stop(ctl.client)


def test_no_broker_no_command(tmp_path):
    from tests.support import free_port

    fleet = Fleet(SystemClock())
    link = hub_link(free_port(), fleet)
    try:
        with pytest.raises(ConnectionError):
            link.send_command("home", "force_off", "kitchen", "hub-abc12345")
        assert not fleet.broker_connected
    finally:
        link.stop()


def test_a_user_the_acl_lets_read_nothing_sees_nothing(broker):
    ctl = Controller(broker.port)
    ctl.publish("kitchen/state", {"balance": 70, "relay": "on"}, retain=True)
    fleet = Fleet(SystemClock())
    link = hub_link(broker.port, fleet, user="nobody")
    try:
        wait_until(lambda: link.connected, 10, "the connection")
        ctl.publish("kitchen/state", {"balance": 71, "relay": "on"}, retain=True)
        link.send_command("home", "force_off", "kitchen", "hub-abc12345")  # the broker drops it (ACL)
        hub = hub_link(broker.port, Fleet(SystemClock()))
        try:
            wait_until(lambda: hub.sink.rows(), 10, "an allowed subscriber's view")
        finally:
            hub.stop()
        assert fleet.rows() == [] and ctl.commands == []
    finally:
        link.stop()
        mqtt_client.stop(ctl.client)
