"""The MQTT contract without a broker: the [mqtt] section, command payloads, state payloads, and the Home
Assistant discovery payloads checked against the keys Home Assistant documents."""

from __future__ import annotations

import json
from dataclasses import replace
from fractions import Fraction

import pytest

from payg.adapters.mqtt import discovery
from payg.adapters.mqtt.acl import mosquitto_acl
from payg.adapters.mqtt.topics import BadCommand, Topics, parse_command, parse_topic, state_payload
from payg.domain.billing import MeterReading
from payg.domain.money import MoneyUnit
from payg.domain.settings import MqttConfig
from payg.domain.socket import Balance, SocketSnapshot
from payg.errors import ConfigError
from tests.support.configs import MINIMAL, load_text

# Home Assistant's documented configuration variables (MQTT discovery, full names): the sensor and select
# platforms, the shared device, availability and origin maps.
HA_SENSOR_KEYS = {"availability", "availability_mode", "availability_template", "availability_topic", "device",
                  "device_class", "default_entity_id", "enabled_by_default", "encoding", "entity_category",
                  "entity_picture", "expire_after", "force_update", "icon", "json_attributes_template",
                  "json_attributes_topic", "last_reset_value_template", "name", "object_id", "options",
                  "payload_available", "payload_not_available", "platform", "qos", "state_class", "state_topic",
                  "suggested_display_precision", "unique_id", "unit_of_measurement", "value_template", "origin"}
HA_SELECT_KEYS = {"availability", "availability_mode", "availability_template", "availability_topic",
                  "command_template", "command_topic", "device", "default_entity_id", "enabled_by_default",
                  "encoding", "entity_category", "entity_picture", "icon", "json_attributes_template",
                  "json_attributes_topic", "name", "object_id", "optimistic", "options", "platform", "qos", "retain",
                  "state_topic", "unique_id", "value_template", "origin"}
HA_DEVICE_KEYS = {"configuration_url", "connections", "hw_version", "identifiers", "manufacturer", "model",
                  "model_id", "name", "serial_number", "suggested_area", "sw_version", "via_device"}
HA_AVAILABILITY_KEYS = {"payload_available", "payload_not_available", "topic", "value_template"}
HA_ORIGIN_KEYS = {"name", "sw_version", "support_url"}
HA_ENERGY_UNITS = {"Wh", "kWh", "MWh", "GJ", "MJ"}  # what the energy device class accepts (the Energy dashboard)

TOPICS = Topics("payg", "home")


def mqtt_section(tmp_path, body: str):
    return load_text(tmp_path, MINIMAL + "[mqtt]\n" + body).mqtt


def test_mqtt_is_off_by_default_and_the_defaults_are_documented_ones(tmp_path):
    m = load_text(tmp_path, MINIMAL).mqtt
    assert m == MqttConfig()
    assert (m.enabled, m.host, m.port, m.topic_prefix, m.keepalive_s, m.client) == \
        (False, "127.0.0.1", 1883, "payg", 60, "payg-payg")


def test_the_mqtt_section_reads_every_key(tmp_path, monkeypatch):
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    m = mqtt_section(tmp_path, f'enabled = true\nhost = "broker.lan"\ncontroller = "block-a"\nusername = "ctl"\n'
                     f'password_env = "MQTT_PW"\ntls_ca_file = "{ca}"\ntopic_prefix = "estate/payg"\n'
                     f'keepalive_s = 30\ncommand_users = ["landlord", "homeassistant"]\ndiscovery = false\n')
    assert m.enabled and m.host == "broker.lan" and m.port == 8883  # TLS: the MQTT-over-TLS port by default
    assert (m.controller, m.client, m.username, m.password.env) == ("block-a", "payg-block-a", "ctl", "MQTT_PW")
    assert (m.tls_ca_file, m.topic_prefix, m.keepalive_s) == (ca, "estate/payg", 30)
    assert m.command_users == ("landlord", "homeassistant") and m.discovery is False


@pytest.mark.parametrize("body, key, says", [
    ('password = "hunter2"', "mqtt.password", "no password in the configuration file"),
    ('username = "u"\npassword_env = "A"\npassword_file = "f"', "mqtt.password_file", "only one of"),
    ('password_env = "A"', "mqtt.username", "a broker user name"),
    ('username = "u"\npassword_env = "not a name"', "mqtt.password_env", "environment variable"),
    ('controller = "a/b"', "mqtt.controller", "a topic level"),
    ('controller = "home+"', "mqtt.controller", "a topic level"),
    ('topic_prefix = "payg/#"', "mqtt.topic_prefix", "a topic level"),
    ('port = 0', "mqtt.port", ""),
    ('keepalive_s = 1', "mqtt.keepalive_s", ""),
    ('command_users = "landlord"', "mqtt.command_users", "a list of broker user names"),
    ('comand_users = ["x"]', "mqtt.comand_users", "command_users"),
])
def test_a_bad_mqtt_section_names_the_key(tmp_path, body, key, says):
    with pytest.raises(ConfigError) as caught:
        mqtt_section(tmp_path, body)
    assert caught.value.key == key and says in str(caught.value)


def test_a_password_never_shows_in_the_error(tmp_path):
    with pytest.raises(ConfigError) as caught:
        mqtt_section(tmp_path, 'password = "hunter2"')
    assert "hunter2" not in str(caught.value)


def test_state_payload_has_the_keys_and_debt_only_when_owed():
    state = SocketSnapshot(id="kitchen", name="Kitchen", balance=Balance.of(500, 1), relay_on=True,
                           reading=MeterReading(12, 800.0, 230.0, 3.5, 4.0), reading_at=4.0, meter="ok",
                           meter_error=None, relay_error=None, override=None, credit_exhausted=False,
                           pending_wh=Fraction(1, 2), credit_warning_h=None, updated_at=5.0)
    body = state_payload(state)
    assert body == {"name": "Kitchen", "balance": 500, "balance_tokens": 500, "relay": "on", "power_w": 800.0,
                    "voltage_v": 230.0, "current_a": 3.5, "energy_wh": 12, "meter": "ok", "override": None,
                    "credit_exhausted": False, "currency": None}
    assert state_payload(state, "GBP")["currency"] == "GBP"
    owed = state_payload(replace(state, balance=Balance.of(-40, 1)))
    assert (owed["debt"], owed["debt_tokens"], owed["balance"]) == (40, 40, -40)
    planned = state_payload(replace(state, balance=Balance.of(-10, 2, deferred=30)))  # 30 of debt set aside
    assert (planned["balance"], planned["balance_tokens"], planned["debt"], planned["debt_tokens"]) == (20, 10, 30, 15)


@pytest.mark.parametrize("payload, reason", [
    (b"\xff\xfe", "not JSON"),
    (b"[1, 2]", "not a JSON object"),
    (b'{"command": "explode", "socket": "kitchen"}', "command must be one of"),
    (b'{"command": "force_off", "socket": "garage"}', "socket must be the id"),
    (b'{"command": "force_off", "socket": "kitchen", "tokens": 5}', "takes no tokens"),
    (b'{"command": "credit", "socket": "kitchen", "tokens": 5, "reason": "x"}', "needs a request_id"),
    (b'{"command": "credit", "socket": "kitchen", "tokens": 0, "reason": "x", "request_id": "r"}', "tokens must"),
    (b'{"command": "credit", "socket": "kitchen", "tokens": 2.5, "reason": "x", "request_id": "r"}', "tokens must"),
    (b'{"command": "credit", "socket": "kitchen", "tokens": true, "reason": "x", "request_id": "r"}', "tokens must"),
    (b'{"command": "credit", "socket": "kitchen", "tokens": 5, "reason": " ", "request_id": "r"}', "needs a reason"),
    (b'{"command": "credit", "socket": "kitchen", "tokens": 5, "reason": "x", "request_id": "a b"}', "request_id"),
    (b'{"command": "force_off", "socket": "kitchen", "sudo": true}', "unknown field"),
    (b'{"command": "replay", "request_id": "r"}', "needs from_seq"),
    (b'{"command": "replay", "from_seq": -1}', "needs from_seq"),
    (b'{"command": "replay", "from_seq": 9223372036854775808}', "needs from_seq"),
    (b'{"command": "replay", "from_seq": 1, "socket": "kitchen"}', "takes no socket"),
    (b'{"command": "replay", "from_seq": 1, "tokens": 5}', "takes no socket"),
    (b'{"command": "force_off", "socket": "kitchen", "from_seq": 1}', "takes no from_seq"),
])
def test_a_bad_command_is_refused_with_a_reason(payload, reason):
    with pytest.raises(BadCommand) as caught:
        parse_command(payload, {"kitchen"})
    assert reason in caught.value.reason


def test_a_refusal_echoes_a_usable_request_id_only():
    with pytest.raises(BadCommand) as caught:
        parse_command(b'{"command": "credit", "socket": "kitchen", "request_id": "r-1"}', {"kitchen"})
    assert (caught.value.request_id, caught.value.command, caught.value.socket) == ("r-1", "credit", "kitchen")


def test_good_commands_parse():
    assert parse_command(b'{"command": "force_off", "socket": "kitchen"}', {"kitchen"}).command == "force_off"
    c = parse_command(b'{"command": "credit", "socket": "kitchen", "tokens": -20.0, "reason": " refund ",'
                      b' "request_id": "hub:1"}', {"kitchen"})
    assert (c.tokens, c.reason, c.request_id) == (-20, "refund", "hub:1")


def test_topics_parse_back():
    assert parse_topic("payg", TOPICS.state("kitchen")) == ("home", "state", "kitchen")
    assert parse_topic("payg", TOPICS.status) == ("home", "status", None)
    assert parse_topic("payg", "payg/home/kitchen/other") is None and parse_topic("payg", "other/home/status") is None


def test_discovery_payloads_use_only_home_assistants_documented_keys():
    found = discovery.announcements(TOPICS, "homeassistant", "kitchen", "Kitchen", "0.1.0")
    assert {a.topic for a in found} == set(discovery.all_topics("homeassistant", "home", "kitchen"))
    for a in found:
        component = a.topic.split("/")[1]
        keys = HA_SELECT_KEYS if component == "select" else HA_SENSOR_KEYS
        assert set(a.payload) <= keys, (a.topic, set(a.payload) - keys)
        assert set(a.payload["device"]) <= HA_DEVICE_KEYS and a.payload["device"]["identifiers"]
        assert set(a.payload["origin"]) <= HA_ORIGIN_KEYS and "name" in a.payload["origin"]
        for item in a.payload["availability"]:
            assert set(item) <= HA_AVAILABILITY_KEYS and "topic" in item
        assert a.payload["unique_id"] and a.payload["state_topic"] == TOPICS.state("kitchen")
        json.dumps(a.payload)  # it is JSON
    ids = [a.payload["unique_id"] for a in found]
    assert len(set(ids)) == len(ids)


def test_with_a_currency_the_balance_is_a_monetary_sensor_in_the_major_unit():
    from jinja2 import Template  # Home Assistant renders value templates with Jinja

    def balance(money=None):
        args = (TOPICS, "homeassistant", "kitchen", "Kitchen", "0.1.0") + ((money,) if money else ())
        return next(a.payload for a in discovery.announcements(*args) if a.topic.endswith("kitchen_balance/config"))

    tokens = balance()
    assert (tokens["unit_of_measurement"], tokens["state_class"], "device_class" in tokens) == ("tokens",
                                                                                                "measurement", False)
    assert tokens["value_template"] == "{{ value_json.balance_tokens }}"
    gbp = balance(MoneyUnit("GBP", 2, "en_GB"))
    assert (gbp["device_class"], gbp["unit_of_measurement"], gbp["state_class"]) == ("monetary", "GBP", "total")
    assert set(gbp) <= HA_SENSOR_KEYS
    assert [Template(gbp["value_template"]).render(value_json={"balance": b}) for b in (1234, -5, 0)] == \
        ["12.34", "-0.05", "0.0"]
    jpy = balance(MoneyUnit("JPY", 0, "ja_JP"))
    assert Template(jpy["value_template"]).render(value_json={"balance": 1234}) == "1234"


def test_the_energy_sensor_is_one_the_energy_dashboard_accepts():
    by_entity = {a.topic.split("/")[3]: a.payload
                 for a in discovery.announcements(TOPICS, "homeassistant", "kitchen", "Kitchen", "0.1.0")}
    energy = by_entity["kitchen_energy"]
    assert (energy["device_class"], energy["state_class"]) == ("energy", "total_increasing")
    assert energy["unit_of_measurement"] in HA_ENERGY_UNITS and "energy_wh" in energy["value_template"]
    power = by_entity["kitchen_power"]
    assert (power["device_class"], power["unit_of_measurement"]) == ("power", "W")
    assert by_entity["kitchen_voltage"]["device_class"] == "voltage"
    assert by_entity["kitchen_current"]["device_class"] == "current"
    mode = by_entity["kitchen_mode"]
    assert mode["options"] == ["automatic", "force_off"] and mode["command_topic"] == TOPICS.command
    # the select's command, rendered as Home Assistant renders {{ value }}, is a valid command
    for option in mode["options"]:
        rendered = mode["command_template"].replace("{{ value }}", option).encode()
        assert parse_command(rendered, {"kitchen"}).command == option


def test_discovery_topics_name_their_socket_and_nothing_else():
    topic = discovery.config_topic("homeassistant", "sensor", "home", "hall_2", "energy")
    assert discovery.socket_of("homeassistant", "home", topic) == ("hall_2", "energy")
    assert discovery.socket_of("homeassistant", "shop", topic) is None
    assert discovery.socket_of("homeassistant", "home", "homeassistant/sensor/payg_home/hall_bogus/config") is None


def test_the_acl_lets_a_controller_write_only_its_own_topics():
    acl = mosquitto_acl("payg", {"home": "ctl-home"}, ["landlord"])
    home = acl.split("user ctl-home")[1].split("user ")[0]
    assert "topic read payg/home/command" in home and "topic readwrite payg/home/+/state" in home
    assert "payg/+/command" not in home
    assert "topic write payg/+/command" in acl.split("user landlord")[1]


def test_payg_mqtt_acl_prints_the_lines_for_this_controller(tmp_path, capsys):
    from payg import bootstrap as app

    path = tmp_path / "c.toml"
    path.write_text(MINIMAL + '[mqtt]\ncontroller = "block-a"\nusername = "payg-block-a"\n'
                    'command_users = ["landlord"]\n')
    assert app.main(["mqtt-acl", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "user payg-block-a\ntopic write payg/block-a/status" in out
    assert "topic read payg/block-a/command" in out and "user landlord\ntopic read payg/#" in out
    path.write_text(MINIMAL + '[mqtt]\ncontroller = "block-a"\n')
    assert app.main(["mqtt-acl", "--config", str(path)]) == 2
    assert "mqtt.username" in capsys.readouterr().err
