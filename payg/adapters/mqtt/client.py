"""One paho-mqtt 2.x client, made the same way for a controller and for the hub.

paho runs its own network thread (`loop_start`), reconnects by itself with a growing delay, and
calls back from that thread; our threads only hand it messages. A message is acknowledged (QoS 1)
when `on_publish` reports its mid.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

MQTT_ERR_SUCCESS, MQTT_ERR_NO_CONN = MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN


@dataclass(frozen=True)
class Connection:
    host: str
    port: int
    client_id: str
    username: str | None = None
    password: str | None = None
    tls_ca_file: Path | None = None
    keepalive_s: int = 60


def make_client(conn: Connection, *, on_connect: Callable[[bool, str], None], on_disconnect: Callable[[str], None],
                on_message: Callable[[str, bytes, bool], None] | None = None,
                on_publish: Callable[[int], None] | None = None,
                will: tuple[str, bytes] | None = None, clean: bool = True) -> paho.Client:
    """A client configured and not yet connected (call `start`). Callbacks get plain values:
    on_connect(ok, reason), on_disconnect(reason), on_message(topic, payload, retained), on_publish(mid)."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=conn.client_id, clean_session=clean,
                         protocol=paho.MQTTv311)
    if conn.username is not None:
        client.username_pw_set(conn.username, conn.password)
    if conn.tls_ca_file is not None:
        client.tls_set(ca_certs=str(conn.tls_ca_file), cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
    if will is not None:
        client.will_set(will[0], will[1], qos=1, retain=True)
    client.reconnect_delay_set(min_delay=1, max_delay=30)
    client.max_inflight_messages_set(100)

    def connected(_c: Any, _u: Any, _flags: Any, reason: Any, _props: Any = None) -> None:
        on_connect(not reason.is_failure, str(reason))

    def disconnected(_c: Any, _u: Any, _flags: Any, reason: Any, _props: Any = None) -> None:
        on_disconnect(str(reason))

    client.on_connect = connected
    client.on_disconnect = disconnected
    if on_message is not None:
        client.on_message = lambda _c, _u, m: on_message(m.topic, bytes(m.payload), bool(m.retain))
    if on_publish is not None:
        client.on_publish = lambda _c, _u, mid, _reason, _props: on_publish(mid)
    return client


def start(client: paho.Client, conn: Connection) -> None:
    """Connect in the background: a broker that is down now is retried until it is up."""
    client.connect_async(conn.host, conn.port, keepalive=conn.keepalive_s)
    client.loop_start()


def stop(client: paho.Client) -> None:
    client.disconnect()
    client.loop_stop()
