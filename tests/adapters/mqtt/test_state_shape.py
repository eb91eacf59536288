"""The retained state payload's shape, as the README's MQTT table documents it: its keys and their types."""

from __future__ import annotations

from payg.adapters.mqtt.topics import Topics
from tests.support import wait_until

HOME = Topics("payg", "home")
OPT_NUMBER = (int, float, type(None))
PAYLOAD = {"name": str, "balance": int, "balance_tokens": (int, float), "relay": str, "power_w": OPT_NUMBER,
           "voltage_v": OPT_NUMBER, "current_a": OPT_NUMBER, "energy_wh": OPT_NUMBER, "meter": str,
           "override": (str, type(None)), "credit_exhausted": bool, "at": (int, float),
           "currency": (str, type(None))}  # issue 27: [tariff] currency, None for tokens


def assert_payload(body: dict) -> None:
    assert set(body) == set(PAYLOAD)
    for key, types in PAYLOAD.items():
        value = body[key]
        assert isinstance(value, types) and (types is bool or not isinstance(value, bool)), (key, value)


def test_the_state_payload_before_a_reading_and_while_it_runs(controllers, listeners):
    ha = listeners(user="landlord", topics=("payg/home/kitchen/state",))
    c = controllers(("kitchen",))
    c.rt.site.metering.publish()
    first = wait_until(lambda: ha.last_json(HOME.state("kitchen")), 10, "the first state")
    assert_payload(first)
    c.rt.ledger.pay("kitchen", 500)
    c.driver.run_for(2)
    running = wait_until(lambda: (s := ha.last_json(HOME.state("kitchen"))) and s["relay"] == "on" and s, 10,
                         "the credited state")
    assert_payload(running)
    assert running["meter"] == "ok" and isinstance(running["power_w"], float) and running["balance"] > 0
