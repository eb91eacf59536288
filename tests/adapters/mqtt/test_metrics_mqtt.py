"""The MQTT bridge in GET /metrics, on a controller wired as `payg run` wires it, with a real Mosquitto.

What matters: a landlord's Prometheus sees the broker connection drop, the events waiting in the outbox while it
is down, and both recover once it is back; with MQTT off there are no such series (tests/web/test_metrics.py)."""

from __future__ import annotations

from payg import bootstrap as app
from payg.web import create_web
from payg.webkit.security import WebSecrets
from tests.support import wait_until
from tests.support.prometheus import Scrape
from tests.support.web_beds import TOKEN


def metrics_of(c):
    """The controller's web app, made from its runtime as app.py makes it; a function that scrapes it."""
    web = create_web(app.web_services(c.rt, WebSecrets("s" * 43, TOKEN, None)))
    web.app.testing = True
    client = web.app.test_client()

    def scrape() -> Scrape:
        resp = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert resp.status_code == 200, resp.get_data(as_text=True)
        return Scrape(resp.get_data(as_text=True))
    return scrape


def test_the_connection_and_the_outbox_follow_a_broker_outage(controllers, broker):
    c = controllers(("kitchen",))
    scrape = metrics_of(c)
    c.driver.step()
    wait_until(lambda: scrape()("payg_mqtt_messages_total", kind="states") >= 1, 10, "a state published")
    wait_until(lambda: scrape()("payg_mqtt_outbox_events") == 0, 10, "the start's events delivered")
    m = scrape()
    assert m.types["payg_mqtt_connected"] == "gauge" and m("payg_mqtt_connected") == 1
    assert m("payg_mqtt_messages_total", kind="refused") == 0

    broker.stop()
    wait_until(lambda: scrape()("payg_mqtt_connected") == 0, 10, "the disconnection seen")
    c.rt.ledger.pay("kitchen", 30)
    for _ in range(10):
        c.driver.step()
    waiting = scrape()("payg_mqtt_outbox_events")
    assert waiting >= 1, "the credit's event waits in the outbox"
    events_before = scrape()("payg_mqtt_messages_total", kind="events")

    broker.start()
    wait_until(lambda: scrape()("payg_mqtt_connected") == 1, 30, "the reconnection seen")
    wait_until(lambda: scrape()("payg_mqtt_outbox_events") == 0, 30, "the outbox delivered")
    assert scrape()("payg_mqtt_messages_total", kind="events") >= events_before + waiting


def test_a_scrape_after_the_bridge_stopped_still_answers(controllers):
    c = controllers(("kitchen",))
    scrape = metrics_of(c)
    c.bridge.stop()
    m = scrape()
    assert m("payg_mqtt_connected") == 0 and not m.has("payg_mqtt_outbox_events")
