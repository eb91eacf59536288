"""`payg hub` with `[hub] database` on a real PostgreSQL (started by the test on 127.0.0.1): a controller's
state and event published on a real Mosquitto reach the history through the link, and the hub's own HTTP
server answers them from PostgreSQL."""

from __future__ import annotations

import json
import threading
import time
import urllib.request

import pytest
from werkzeug.security import generate_password_hash

from payg.adapters.mqtt import client as mqtt_client
from payg.adapters.mqtt.client import Connection
from payg.adapters.secrets import API_TOKEN_FILE
from payg.domain.hub_settings import HubConfig
from payg.domain.settings import MqttConfig, SecretRef
from payg.wiring.hub import build_hub
from tests.support import wait_until
from tests.support.mqtt_beds import PASSWORDS, fleet_broker, served_hub
from tests.support.postgres import BIN, NO_POSTGRES, Postgres

pytestmark = pytest.mark.skipif(BIN is None, reason=NO_POSTGRES)


def test_a_hub_with_a_postgresql_database_keeps_what_the_broker_brings(tmp_path, monkeypatch):
    broker = fleet_broker(tmp_path / "broker")
    monkeypatch.setenv("PAYG_TEST_HUB_HASH", generate_password_hash("pw", method="pbkdf2:sha256:1000"))
    monkeypatch.setenv("PAYG_TEST_HUB_MQTT", PASSWORDS["landlord"])
    with Postgres() as pg:
        config = HubConfig(path=tmp_path / "hub.toml", data_dir=tmp_path / "hub-data", database=pg.create_database(),
                           mqtt=MqttConfig(enabled=True, port=broker.port, username="landlord", client_id="payg-hub",
                                           password=SecretRef(env="PAYG_TEST_HUB_MQTT", key="mqtt.password_env")),
                           landlord_password=SecretRef(env="PAYG_TEST_HUB_HASH", key="hub.landlord_password_hash_env"))
        with served_hub(build_hub(config, port=0), broker) as (hub, _):
            assert hub.archive is not None and hub.archive.status()["backend"] == "postgresql"
            wait_until(hub.link.ready.is_set, 10, "the hub subscribed")
            conn = Connection("127.0.0.1", broker.port, "ctl-home", "ctl-home", PASSWORDS["ctl-home"], keepalive_s=5)
            connected = threading.Event()
            ctl = mqtt_client.make_client(conn, on_connect=lambda ok, _r: ok and connected.set(),
                                          on_disconnect=lambda _r: None)
            mqtt_client.start(ctl, conn)
            try:
                wait_until(connected.is_set, 10, "the controller connected")
                now = time.time()
                for i, counter in enumerate((1000, 1250)):
                    ctl.publish("payg/home/kitchen/state", json.dumps(
                        {"balance": 700 - i, "balance_tokens": 700 - i, "relay": "on", "power_w": 60.0,
                         "energy_wh": counter, "meter": "ok", "currency": None, "at": now + i}), qos=1, retain=True)
                ctl.publish("payg/home/events", json.dumps(
                    {"id": "home:1", "seq": 1, "controller": "home", "socket": "kitchen", "kind": "credited",
                     "amount": 300, "at": now}), qos=1)
                wait_until(lambda: len(hub.fleet.events()) == 1 and hub.fleet.counts["states"] >= 2, 10,
                           "the state and the event at the hub")
            finally:
                mqtt_client.stop(ctl)
            assert hub.archive.flush(10)
            token = (config.data_dir / API_TOKEN_FILE).read_text().strip()
            request = urllib.request.Request(f"http://127.0.0.1:{hub.server.port}/api/history/home/kitchen",
                                             headers={"Authorization": f"Bearer {token}"})
            with urllib.request.urlopen(request, timeout=5) as resp:
                days = json.load(resp)["days"]
            assert [(d["energy_wh"], d["topups"], d["closing_balance"]) for d in days] == [(250, 300, 699)]
