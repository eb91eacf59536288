"""Home Assistant MQTT discovery: each socket a device, its entities announced with retained configs.

Topics are `<discovery_prefix>/<component>/payg_<controller>/<socket>_<entity>/config`: the node id is
the controller, so one subscription (`<discovery_prefix>/+/payg_<controller>/+/config`) finds every
entity this controller ever announced, and a socket removed from the config gets its entities
removed (an empty retained config) without a list kept anywhere but the broker.

Keys are Home Assistant's documented full names (no abbreviations): see the MQTT integration's
discovery docs and the sensor and select platforms. The energy sensor is device class energy with
state class total_increasing in Wh, which the Energy dashboard accepts (a meter replaced or reset
reads as a new cycle, not as negative energy). With `[tariff] currency` the balance is a monetary sensor in
that currency (state class total, as Home Assistant requires for the class), in the major unit.
"""

from __future__ import annotations

from dataclasses import dataclass

from payg.adapters.mqtt.topics import OFFLINE, ONLINE, Topics
from payg.domain.money import TOKENS, MoneyUnit

# entity -> (component, name, state key, unit, device class, state class)
SENSORS = {
    "energy": ("Energy", "energy_wh", "Wh", "energy", "total_increasing"),
    "power": ("Power", "power_w", "W", "power", "measurement"),
    "voltage": ("Voltage", "voltage_v", "V", "voltage", "measurement"),
    "current": ("Current", "current_a", "A", "current", "measurement"),
    "balance": ("Balance", "balance_tokens", "tokens", None, "measurement"),
}
MODE = "mode"
MODE_OPTIONS = ["automatic", "force_off"]
ENTITIES = (*SENSORS, MODE)


@dataclass(frozen=True)
class Announcement:
    topic: str
    payload: dict


def major_template(minor: int) -> str:
    """The balance in the currency's major unit from the state payload's minor units, rounded to its digits."""
    if minor == 0:
        return "{{ value_json.balance }}"
    return f"{{{{ (value_json.balance / {10 ** minor}) | round({minor}) }}}}"


def node_id(controller: str) -> str:
    return f"payg_{controller}"


def config_topic(discovery_prefix: str, component: str, controller: str, socket_id: str, entity: str) -> str:
    return f"{discovery_prefix}/{component}/{node_id(controller)}/{socket_id}_{entity}/config"


def subscription(discovery_prefix: str, controller: str) -> str:
    return f"{discovery_prefix}/+/{node_id(controller)}/+/config"


def socket_of(discovery_prefix: str, controller: str, topic: str) -> tuple[str, str] | None:
    """(socket id, entity) of one of this controller's config topics, else None."""
    parts = topic.split("/")
    if (len(parts) != len(discovery_prefix.split("/")) + 4 or not topic.startswith(discovery_prefix + "/")
            or parts[-3] != node_id(controller) or parts[-1] != "config"):
        return None
    socket_id, _, entity = parts[-2].rpartition("_")
    return (socket_id, entity) if socket_id and entity in ENTITIES else None


def announcements(topics: Topics, discovery_prefix: str, socket_id: str, socket_name: str,
                  version: str, money: MoneyUnit = TOKENS) -> list[Announcement]:
    """The retained configs of one socket's entities. With a currency (`money`) the balance is a `monetary`
    sensor in its code, its state the payload's balance (minor units) in the major unit (1234 pence: 12.34)."""
    c = topics.controller
    state = topics.state(socket_id)
    device = {"identifiers": [f"{node_id(c)}_{socket_id}"], "name": socket_name, "manufacturer": "payg",
              "model": "prepaid socket", "sw_version": version, "suggested_area": socket_name}
    origin = {"name": "payg", "sw_version": version}
    common_availability = {"topic": topics.status, "payload_available": ONLINE, "payload_not_available": OFFLINE}
    out = []
    for entity, (name, key, unit, device_class, state_class) in SENSORS.items():
        availability = [common_availability]
        if key != "balance_tokens":  # a reading goes missing while the meter is silent; the balance never does
            availability.append({"topic": state, "value_template":
                                 f"{{{{ 'online' if value_json.{key} is not none else 'offline' }}}}"})
        payload = {"name": name, "unique_id": f"{node_id(c)}_{socket_id}_{entity}",
                   "state_topic": state,
                   "value_template": f"{{{{ value_json.{key} }}}}", "unit_of_measurement": unit,
                   "state_class": state_class, "availability": availability, "availability_mode": "all",
                   "device": device, "origin": origin}
        if device_class is not None:
            payload["device_class"] = device_class
        if entity == "balance":
            payload["icon"] = "mdi:cash"
            if money.currency is not None:  # Home Assistant's monetary class takes state class total, not measurement
                payload.update(device_class="monetary", state_class="total", unit_of_measurement=money.currency,
                               value_template=major_template(money.minor))
        out.append(Announcement(config_topic(discovery_prefix, "sensor", c, socket_id, entity), payload))
    out.append(Announcement(config_topic(discovery_prefix, "select", c, socket_id, MODE), {
        "name": "Mode", "unique_id": f"{node_id(c)}_{socket_id}_{MODE}",
        "state_topic": state, "value_template": "{{ 'force_off' if value_json.override == 'off' else 'automatic' }}",
        "command_topic": topics.command,
        "command_template": f'{{"command": "{{{{ value }}}}", "socket": "{socket_id}"}}',
        "options": MODE_OPTIONS, "availability": [common_availability], "device": device, "origin": origin,
        "icon": "mdi:power-socket-eu"}))
    return out


def all_topics(discovery_prefix: str, controller: str, socket_id: str) -> list[str]:
    """Every config topic a socket may have, for clearing them."""
    return [config_topic(discovery_prefix, "select" if e == MODE else "sensor", controller, socket_id, e)
            for e in ENTITIES]
