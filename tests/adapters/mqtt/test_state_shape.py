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
OPTIONAL = {"events_through": int}  # once the controller sent an event since it started: the last one's seq


def assert_payload(body: dict) -> None:
    assert set(body) - set(OPTIONAL) == set(PAYLOAD)
    for key, types in (PAYLOAD | {k: t for k, t in OPTIONAL.items() if k in body}).items():
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
    assert "events_through" not in first  # no event sent yet
    events = listeners(user="landlord", topics=("payg/home/events",))
    c.rt.ledger.pay("kitchen", 20)
    c.driver.run_for(3)
    (credit, *_) = wait_until(lambda: events.events_of("credited"), 10, "the second credit")

    def said_through() -> dict | None:
        c.driver.run_ticks(1)  # use moves the balance: a state goes out now and then
        s = ha.last_json(HOME.state("kitchen"))
        return s if s and s.get("events_through", 0) >= credit["seq"] else None

    later = wait_until(said_through, 20, "a state after the credit, saying the controller sent it", interval_s=0.05)
    assert_payload(later)
