"""MQTT test beds: the users and ACL of a small fleet on a real Mosquitto, a listener that collects what
the broker delivers (and drops duplicate events by id, as any subscriber should), and a controller's
configuration with [mqtt] on."""

from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from pathlib import Path

from payg.adapters.mqtt import client as mqtt_client
from payg.adapters.mqtt.acl import mosquitto_acl
from payg.adapters.mqtt.client import Connection
from tests.support import wait_until
from tests.support.mosquitto import Broker

PASSWORDS = {"ctl-home": "pw-home", "ctl-shop": "pw-shop", "landlord": "pw-landlord", "intruder": "pw-intruder"}


def fleet_broker(directory: Path) -> Broker:
    """home and shop log in as their own users; the landlord may command both; the intruder is a valid
    broker user with no rights on payg's topics."""
    acl = mosquitto_acl("payg", {"home": "ctl-home", "shop": "ctl-shop"}, ["landlord"])
    return Broker(directory, PASSWORDS, acl).start()


def controller_toml(data_dir: Path, port: int, *, controller: str = "home", sockets: tuple[str, ...] = ("kitchen",),
                    load_w: float = 800, password_env: str = "PAYG_TEST_MQTT_PASSWORD", enabled: bool = True,
                    ledger_path: Path | None = None, extra: str = "") -> str:
    socket_tables = "".join(f"""
[[sockets]]
id = "{s}"
meter = {{ kind = "simulated", load_w = {load_w} }}
relay = {{ kind = "simulated" }}
""" for s in sockets)
    ledger = f'\npath = "{ledger_path}"' if ledger_path else ""
    return f"""
[controller]
data_dir = "{data_dir}"
[web]
enabled = false
[ledger]
backend = "mock"{ledger}
[mqtt]
enabled = {str(enabled).lower()}
port = {port}
controller = "{controller}"
username = "ctl-{controller}"
password_env = "{password_env}"
keepalive_s = 5
{extra}
{socket_tables}"""


class Listener:
    """A subscriber on its own connection. `clean=False` with a fixed client id keeps its session (and its
    QoS 1 messages) across its own and the broker's restarts."""

    def __init__(self, port: int, user: str = "landlord", topics: tuple[str, ...] = ("payg/#", "homeassistant/#"),
                 client_id: str = "listener", clean: bool = True):
        self.messages: list[tuple[str, bytes, bool]] = []
        self.events: dict[str, dict] = {}  # by id: each event once
        self.duplicates = 0
        self._lock = threading.Lock()
        self.connected = threading.Event()
        self.connections = 0
        self.topics = topics
        self.conn = Connection("127.0.0.1", port, client_id, user, PASSWORDS[user], keepalive_s=5)
        self.client = mqtt_client.make_client(self.conn, on_connect=self._on_connect, on_disconnect=self._on_disconnect,
                                              on_message=self._on_message, clean=clean)
        mqtt_client.start(self.client, self.conn)
        wait_until(self.connected.is_set, 10, "the listener to connect")

    def _on_connect(self, ok: bool, reason: str) -> None:
        if ok:
            for topic in self.topics:
                self.client.subscribe(topic, qos=1)
            with self._lock:
                self.connections += 1
            self.connected.set()

    def _on_disconnect(self, reason: str) -> None:
        self.connected.clear()

    def _on_message(self, topic: str, payload: bytes, retained: bool) -> None:
        with self._lock:
            self.messages.append((topic, payload, retained))
            if topic.endswith("/events"):
                body = json.loads(payload)
                if body["id"] in self.events:
                    self.duplicates += 1
                else:
                    self.events[body["id"]] = body

    def on(self, topic: str) -> list[bytes]:
        with self._lock:
            return [p for t, p, _ in self.messages if t == topic]

    def last_json(self, topic: str) -> dict | None:
        payloads = self.on(topic)
        return json.loads(payloads[-1]) if payloads and payloads[-1] else None

    def in_arrival_order(self) -> list[dict]:
        """Each event once, in the order it first arrived."""
        with self._lock:
            return list(self.events.values())

    def events_of(self, kind: str | None = None) -> list[dict]:
        """Each event once (of `kind`, or all), in the order of their seq."""
        return sorted((e for e in self.in_arrival_order() if kind is None or e["kind"] == kind),
                      key=lambda e: e["seq"])

    def send(self, topic: str, body: dict | bytes, retain: bool = False) -> None:
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    def close(self) -> None:
        mqtt_client.stop(self.client)


@contextmanager
def served_hub(hub, broker: Broker):
    """A hub from `build_hub` served on a thread of its own (the hub and the thread), then its server, its link and
    the broker stopped."""
    thread = threading.Thread(target=hub.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hub, thread
    finally:
        hub.server.shutdown()
        hub.close()
        broker.stop()
