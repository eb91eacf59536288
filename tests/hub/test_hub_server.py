"""`payg hub` is served by the controller's server with the same guarantees, its limits from [hub.server]: a
request that once ended the process is refused, and one address cannot take every live slot. The hub in-process
on a real Mosquitto, raw sockets on 127.0.0.1."""

from __future__ import annotations

import socket

import pytest
from werkzeug.security import generate_password_hash

from payg.adapters.mqtt.acl import mosquitto_acl
from payg.domain.hub_settings import HubConfig
from payg.domain.settings import MqttConfig, SecretRef, ServerConfig
from payg.wiring.hub import build_hub
from tests.support.mosquitto import Broker
from tests.support.mqtt_beds import served_hub

USERS = {"hub": "pw-hub"}


@pytest.fixture
def hub(tmp_path, monkeypatch):
    broker = Broker(tmp_path / "broker", USERS, mosquitto_acl("payg", {}, ["hub"])).start()
    monkeypatch.setenv("PAYG_TEST_HUB_HASH", generate_password_hash("pw", method="pbkdf2:sha256:1000"))
    monkeypatch.setenv("PAYG_TEST_HUB_MQTT", USERS["hub"])
    config = HubConfig(path=tmp_path / "hub.toml", data_dir=tmp_path / "hub-data",
                       mqtt=MqttConfig(enabled=True, port=broker.port, username="hub", client_id="payg-hub",
                                       password=SecretRef(env="PAYG_TEST_HUB_MQTT", key="mqtt.password_env")),
                       landlord_password=SecretRef(env="PAYG_TEST_HUB_HASH", key="hub.landlord_password_hash_env"),
                       server=ServerConfig(workers=2, max_live_per_client=2))
    with served_hub(build_hub(config, port=0), broker) as served:
        yield served


def exchange(port: int, raw: bytes, source: str = "127.0.0.1") -> tuple[socket.socket, bytes]:
    s = socket.socket()
    s.bind((source, 0))
    s.settimeout(5)
    s.connect(("127.0.0.1", port))
    s.sendall(raw)
    return s, s.recv(12)


def test_the_hub_refuses_what_once_stopped_it_and_limits_live_pages_per_address(hub):
    h, thread = hub
    port = h.server.port
    assert h.server.limits.workers == 2 and h.server.limits.max_live_per_client == 2
    s, status = exchange(port, b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: \xb2\r\n\r\nab")
    s.close()
    assert status == b"HTTP/1.1 400" and thread.is_alive()
    upgrade = (f"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
               "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
               "Sec-WebSocket-Version: 13\r\n\r\n").encode()
    opened = [exchange(port, upgrade, "127.0.0.2") for _ in range(3)]
    try:
        assert [status for _, status in opened] == [b"HTTP/1.1 101", b"HTTP/1.1 101", b"HTTP/1.1 503"]
        other, status = exchange(port, upgrade, "127.0.0.3")
        other.close()
        assert status == b"HTTP/1.1 101"
    finally:
        for s, _ in opened:
            s.close()
    s, status = exchange(port, b"GET /login HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    s.close()
    assert status == b"HTTP/1.1 200"
