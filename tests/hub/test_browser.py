"""The fleet page in a real browser (headless Debian Chromium, playwright): the hub in-process on the real
server and a real Mosquitto, a stand-in controller publishing states and answering commands. The page must
show a change through its live connection (never a reload), filter, and show an action's answer; any
console error, uncaught exception or CSP violation fails the test. Money (issue 27): two real controllers built
in-process (a virtual clock), one priced in pounds and one in tokens, each row in its own unit."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from werkzeug.security import generate_password_hash

from payg import bootstrap
from payg.adapters import config as cfg
from payg.adapters.clocks import ManualClock
from payg.adapters.mqtt import client as mqtt_client
from payg.adapters.mqtt.acl import mosquitto_acl
from payg.adapters.mqtt.client import Connection
from payg.adapters.virtual import VirtualDriver
from payg.domain.hub_settings import HubConfig
from payg.domain.settings import MqttConfig, SecretRef
from payg.wiring.hub import build_hub
from payg.wiring.mqtt import start_bridge
from tests.conftest import CHROMIUM, NEEDS_CHROMIUM, TEST_OUTPUT
from tests.support import wait_until
from tests.support.mosquitto import Broker
from tests.support.mqtt_beds import controller_toml, served_hub
from tests.support.web_beds import CHROMIUM_ARGS

pytestmark = NEEDS_CHROMIUM

USERS = {"ctl-home": "pw-home", "ctl-shop": "pw-shop", "hub": "pw-hub"}
PASSWORD = "the fleet's landlord password"
CSP_PROBE = ("document.addEventListener('securitypolicyviolation', (e) => console.error("
             "'CSP violation: ' + e.violatedDirective + ' blocked ' + e.blockedURI));")


class FakeController:
    """Publishes like a controller and answers every command with ok (what the bridge does); force_off and
    automatic change the socket's published override, as a controller's next state would."""

    def __init__(self, port: int):
        self.commands: list[dict] = []
        self.states: dict[str, dict] = {}
        self.conn = Connection("127.0.0.1", port, "fake-home", "ctl-home", USERS["ctl-home"], keepalive_s=5)
        self.ready = threading.Event()
        self.client = mqtt_client.make_client(self.conn, on_connect=self._connected, on_disconnect=lambda r: None,
                                              on_message=self._command, will=("payg/home/status", b"offline"))
        mqtt_client.start(self.client, self.conn)
        wait_until(self.ready.is_set, 10, "the stand-in controller connected")

    def _connected(self, ok, reason):
        self.client.subscribe("payg/home/command", qos=1)
        self.ready.set()

    def _command(self, topic, payload, retained):
        body = json.loads(payload)
        self.commands.append(body)
        self.client.publish("payg/home/response", json.dumps({"request_id": body["request_id"], "ok": True,
                            "command": body["command"], "socket": body["socket"]}).encode(), qos=1)
        last = self.states.get(body["socket"])
        if last is not None and body["command"] in ("force_off", "automatic"):
            self._publish(body["socket"], {**last, "override": "off" if body["command"] == "force_off" else None,
                                           "relay": "off" if body["command"] == "force_off" else "on"}, wait=False)

    def state(self, socket: str, balance: int, relay: str = "on", name: str | None = None,
              override: str | None = None) -> None:
        body = {"balance": balance, "balance_tokens": balance, "relay": relay, "power_w": 42.0, "meter": "ok",
                "override": override, "at": time.time()}
        if name is not None:
            body["name"] = name
        self._publish(socket, body)

    def _publish(self, socket: str, body: dict, wait: bool = True) -> None:
        self.states[socket] = body
        sent = self.client.publish(f"payg/home/{socket}/state", json.dumps(body).encode(), qos=1, retain=True)
        if wait:  # (not from paho's own thread, where a wait would block the send)
            sent.wait_for_publish(5)


@pytest.fixture
def hub(tmp_path, monkeypatch):
    acl = mosquitto_acl("payg", {"home": "ctl-home", "shop": "ctl-shop"}, ["hub"])
    broker = Broker(tmp_path / "broker", USERS, acl).start()
    monkeypatch.setenv("PAYG_TEST_HUB_HASH", generate_password_hash(PASSWORD, method="pbkdf2:sha256:1000"))
    monkeypatch.setenv("PAYG_TEST_HUB_MQTT", USERS["hub"])
    config = HubConfig(path=tmp_path / "hub.toml", data_dir=tmp_path / "hub-data",
                       mqtt=MqttConfig(enabled=True, port=broker.port, username="hub", client_id="payg-hub",
                                       password=SecretRef(env="PAYG_TEST_HUB_MQTT", key="mqtt.password_env")),
                       landlord_password=SecretRef(env="PAYG_TEST_HUB_HASH", key="hub.landlord_password_hash_env"))
    with served_hub(build_hub(config, port=0), broker) as (h, _):
        yield h


@contextmanager
def fleet_page(hub) -> Iterator:
    """A Chromium page logged in to the hub's fleet page, its live connection up; any console error, uncaught
    exception or CSP violation while it was open fails the test."""
    from playwright.sync_api import expect, sync_playwright

    problems: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.add_init_script(CSP_PROBE)
            page.on("console", lambda m: m.type == "error" and problems.append(m.text))
            page.on("pageerror", lambda e: problems.append(f"uncaught: {e}"))
            base = f"http://127.0.0.1:{hub.server.port}"
            page.goto(base + "/")
            assert page.url.startswith(base + "/login")
            page.fill("#password", PASSWORD)
            page.click("button[type=submit]")
            expect(page.locator("#live .txt")).to_have_text("Live", timeout=10_000)
            yield page
        finally:
            browser.close()
    assert problems == []


def test_the_fleet_page_is_live_filters_and_shows_an_actions_answer(hub):
    from playwright.sync_api import expect

    ctl = FakeController(hub.config.mqtt.port)
    try:
        ctl.client.publish("payg/home/status", b"online", qos=1, retain=True).wait_for_publish(5)
        ctl.state("kitchen", 120)
        ctl.state("hall", 0, "off")
        wait_until(lambda: len(hub.fleet.rows()) == 2, 10, "the states at the hub")
        with fleet_page(hub) as page:
            rows = page.locator("#rows tr")
            expect(rows).to_have_count(2)
            kitchen = page.locator('#rows tr[data-key="home/kitchen"]')
            expect(kitchen.locator("td").nth(2)).to_contain_text("120")
            expect(page.locator('#ctl-rows tr[data-name="home"]')).to_contain_text("Online")

            ctl.state("kitchen", 95)  # live, no reload
            expect(kitchen.locator("td").nth(2)).to_contain_text("95", timeout=5_000)
            expect(page.locator("#ctl-tot")).to_contain_text("95")

            page.select_option("#fr", "off")
            expect(rows).to_have_count(1)
            expect(page.locator("#count")).to_have_text("1 of 2 sockets")
            assert "relay=off" in page.get_attribute("#csv", "href")
            page.select_option("#fr", "")

            kitchen.locator("button[data-act=credit]").click()
            page.fill("#credit-tok", "30")
            page.fill("#credit-why", "browser test")
            page.click("#credit-go")
            expect(page.locator("#cmd-rows tr").first).to_contain_text("Done", timeout=10_000)
            expect(page.locator("#cmd-rows tr").first).to_contain_text("Credit 30 (browser test)")  # tokens
            (TEST_OUTPUT / "hub").mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(TEST_OUTPUT / "hub" / "fleet.png"), full_page=True)  # for people to look at
            assert [(c["command"], c["tokens"], c["reason"]) for c in ctl.commands] == [
                ("credit", 30, "browser test")]
            page.set_viewport_size({"width": 390, "height": 844})  # a phone: the tables have no sort buttons
            labels = page.evaluate("[...document.querySelectorAll('table.sockets thead tr')].map("
                                   "(tr) => getComputedStyle(tr, '::before').content)")
            assert labels == ["none"] * 3, f"a 'Sort by' label over a table that does not sort: {labels}"
    finally:
        mqtt_client.stop(ctl.client)


@dataclass
class RealController:
    """A controller built by the composition root in-process, its bridge on the broker, its loop on a virtual
    clock (nothing happens between the test's steps)."""

    rt: bootstrap.Runtime
    driver: VirtualDriver


def real_controller(tmp_path: Path, port: int, name: str, socket: str, tariff: str, monkeypatch) -> RealController:
    env = f"PAYG_TEST_MQTT_{name.upper()}"
    monkeypatch.setenv(env, USERS[f"ctl-{name}"])
    text = controller_toml(tmp_path / f"{name}-data", port, controller=name, sockets=(socket,), load_w=0,
                           password_env=env, extra=tariff)  # drawing nothing: the balances hold still
    path = tmp_path / f"{name}.toml"
    path.write_text(text.replace("[controller]\n", "[controller]\npoll_interval_s = 0.2\n", 1))
    clock = ManualClock(time.time())
    rt = bootstrap.build(cfg.load(path), clock)
    try:
        rt.site.start()
        bridge = start_bridge(rt)
        assert bridge is not None and bridge.online.wait(10), f"{name} did not come online"
    except BaseException:
        rt.close()
        raise
    return RealController(rt, VirtualDriver(rt.site, clock))


def test_each_row_in_its_controller_s_money_the_totals_in_one_currency_or_none(hub, tmp_path, monkeypatch):
    """Issue 27: a controller priced in pounds (its journal in pence) beside one in tokens. Each row is written in
    its own unit; a total over both is "—", over the pounds alone pounds; the credit dialog takes pounds and
    pence and the controller books pence."""
    from playwright.sync_api import expect

    port = hub.config.mqtt.port
    home = real_controller(tmp_path, port, "home", "kitchen", '[tariff]\ncurrency = "GBP"\nunit_rate = "0.25"',
                           monkeypatch)
    try:
        shop = real_controller(tmp_path, port, "shop", "till", "", monkeypatch)
        try:
            home.rt.ledger.pay("kitchen", 1234)  # 1,234 pence
            shop.rt.ledger.pay("till", 40)  # 40 tokens
            for c in (home, shop):
                c.driver.run_for(2)  # the deposit watcher credits it, a tick publishes the state
            wait_until(lambda: {r["key"]: (r["balance"], r["currency"]) for r in hub.fleet.rows()} ==
                       {"home/kitchen": (1234, "GBP"), "shop/till": (40, None)}, 10, "both states at the hub")
            with fleet_page(hub) as page:
                kitchen, till = (page.locator(f'#rows tr[data-key="{k}"] td').nth(2) for k in ("home/kitchen",
                                                                                               "shop/till"))
                expect(kitchen).to_have_text("£12.34")
                expect(till).to_have_text("40")
                total = page.locator("#tot td").nth(1)  # the row's <th> is its first cell: balance is td 1
                expect(total).to_have_text("—")  # pence and tokens are never added up
                expect(page.locator("#ctl-tot td").last).to_have_text("—")
                expect(page.locator('#ctl-rows tr[data-name="home"] td').last).to_have_text("£12.34")
                expect(page.locator('#ctl-rows tr[data-name="shop"] td').last).to_have_text("40")
                page.select_option("#fc", "home")  # the shown rows in one currency: their total is money
                expect(total).to_have_text("£12.34")
                expect(page.locator("#ctl-tot td").last).to_have_text("£12.34")

                page.locator('#rows tr[data-key="home/kitchen"] button[data-act=credit]').click()
                expect(page.locator("#credit-who")).to_have_text("home/kitchen · balance £12.34")
                expect(page.locator('label[for="credit-tok"]')).to_have_text("Amount in GBP")
                page.fill("#credit-tok", "1.50")
                page.fill("#credit-why", "pounds from the hub")
                page.click("#credit-go")
                expect(page.locator("#cmd-rows tr").first).to_contain_text("Done", timeout=10_000)
                expect(page.locator("#cmd-rows tr").first).to_contain_text("Credit £1.50 (pounds from the hub)")
                events = page.locator("#events")
                expect(events).to_contain_text("home/kitchen: credited £1.50", timeout=5_000)
                expect(events).to_contain_text("home/kitchen: credited £12.34")
                expect(events).to_contain_text("shop/till: credited 40")
                manual = [(e.kind, e.amount) for e in home.rt.journal.all_entries("kitchen")
                          if (e.idem_key or "").startswith("manual:")]
                assert manual == [("credit", 150)]  # 150 pence, booked once
                home.driver.run_for(1)  # a tick: the new state goes out
                expect(kitchen).to_have_text("£13.84", timeout=5_000)
                expect(total).to_have_text("£13.84")
                (TEST_OUTPUT / "hub").mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(TEST_OUTPUT / "hub" / "fleet-money.png"), full_page=True)
        finally:
            shop.rt.close()
    finally:
        home.rt.close()


# Issue 28, the hub's defects, measured in the page as the browser laid it out.
HEADERS_VS_CELLS = """(id) => {
  const px = (el, side) => parseFloat(getComputedStyle(el).getPropertyValue('padding-' + side));
  const heads = [...document.querySelectorAll('#' + id + ' thead th')];
  const cells = [...document.querySelector('#' + id + ' tbody tr').children];
  const textBottom = (el) => { const r = document.createRange(); r.selectNodeContents(el);
                               return r.getBoundingClientRect().bottom; };
  return heads.map((th, i) => ({text: th.textContent.trim(), left: px(th, 'left'), right: px(th, 'right'),
    top: px(th, 'top'), cellLeft: px(cells[i], 'left'), cellRight: px(cells[i], 'right'),
    cellTop: px(cells[i], 'top'), bottom: textBottom(th)}));
}"""
VISIBLE_ACTIONS = """(key) => [...document.querySelector('#rows tr[data-key="' + key + '"]').querySelectorAll('button')]
  .filter((b) => b.offsetParent !== null).map((b) => b.textContent)"""
CARD_LABELS = """(sel) => [...document.querySelectorAll(sel + ' td')].filter((td) => td.offsetParent !== null)
  .map((td) => [getComputedStyle(td, '::before').content, td.textContent.trim()])"""


def check_headers(page, table: str) -> None:
    """Each header is padded as the cells under it, and every header's text ends on one line (a baseline)."""
    found = page.evaluate(HEADERS_VS_CELLS, table)
    assert found and all(h["left"] > 0 for h in found), f"{table}: unpadded headers {found}"
    wrong = [h for h in found if (h["left"], h["right"], h["top"]) != (h["cellLeft"], h["cellRight"], h["cellTop"])]
    assert wrong == [], f"{table}: headers padded unlike their column's cells: {wrong}"
    bottoms = [h["bottom"] for h in found]
    assert max(bottoms) - min(bottoms) < 0.5, f"{table}: headers not on one baseline: {found}"


def test_headers_line_up_names_show_and_each_row_offers_only_the_actions_that_apply(hub):
    from playwright.sync_api import expect

    ctl = FakeController(hub.config.mqtt.port)
    try:
        ctl.client.publish("payg/home/status", b"online", qos=1, retain=True).wait_for_publish(5)
        ctl.state("kitchen", 120, name="Kitchen")
        ctl.state("hall", 0, "off", name="Hall and stairs", override="off")
        ctl.state("attic", 5)  # a controller from before names were published: its id stands in
        wait_until(lambda: len(hub.fleet.rows()) == 3, 10, "the states at the hub")
        with fleet_page(hub) as page:
            kitchen = page.locator('#rows tr[data-key="home/kitchen"]')
            expect(kitchen.locator("td").first.locator(".name")).to_have_text("Kitchen")
            expect(kitchen.locator("td").first.locator("small.id")).to_have_text("home/kitchen")
            expect(page.locator('#rows tr[data-key="home/hall"] .name')).to_have_text("Hall and stairs")
            expect(page.locator('#rows tr[data-key="home/attic"] .name')).to_have_text("attic")
            name_box = kitchen.locator(".name").bounding_box()
            id_box = kitchen.locator("small.id").bounding_box()
            assert name_box["y"] + name_box["height"] <= id_box["y"] + 0.5, "the id is not beneath the name"
            page.fill("#fq", "stairs")  # the text filter finds a name too
            expect(page.locator("#rows tr")).to_have_count(1)
            page.fill("#fq", "")

            for table in ("ctls", "tbl"):
                check_headers(page, table)

            assert page.evaluate(VISIBLE_ACTIONS, "home/kitchen") == ["Force off", "Credit\u2026"]
            assert page.evaluate(VISIBLE_ACTIONS, "home/hall") == ["Automatic", "Credit\u2026"]
            kitchen.locator("button[data-act=force_off]").click()
            expect(page.locator("#cmd-rows tr").first).to_contain_text("Done", timeout=10_000)
            expect(kitchen.locator("button[data-act=automatic]")).to_be_visible(timeout=5_000)  # live, no reload
            expect(kitchen.locator("button[data-act=force_off]")).to_be_hidden()
            expect(kitchen.locator("td").nth(1)).to_contain_text("forced off")
            assert page.evaluate(VISIBLE_ACTIONS, "home/kitchen") == ["Automatic", "Credit\u2026"]
            kitchen.locator("button[data-act=automatic]").click()
            expect(kitchen.locator("button[data-act=force_off]")).to_be_visible(timeout=5_000)
            expect(kitchen.locator("button[data-act=automatic]")).to_be_hidden()
            assert [(c["command"], c["socket"]) for c in ctl.commands] == [("force_off", "kitchen"),
                                                                          ("automatic", "kitchen")]
            check_headers(page, "cmds")  # the actions table, now that it has rows
            (TEST_OUTPUT / "hub").mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(TEST_OUTPUT / "hub" / "fleet-names.png"), full_page=True)
    finally:
        mqtt_client.stop(ctl.client)


def kitchen_on_and_hall_off(hub) -> FakeController:
    """A controller "home" online with two named sockets, Kitchen on at 120 and Hall off at 0, seen by the hub."""
    ctl = FakeController(hub.config.mqtt.port)
    ctl.client.publish("payg/home/status", b"online", qos=1, retain=True).wait_for_publish(5)
    ctl.state("kitchen", 120, name="Kitchen")
    ctl.state("hall", 0, "off", name="Hall")
    wait_until(lambda: len(hub.fleet.rows()) == 2, 10, "the states at the hub")
    return ctl


def test_on_a_phone_the_cards_are_labelled_unindented_and_nothing_says_sort_by(hub):
    ctl = kitchen_on_and_hall_off(hub)
    try:
        with fleet_page(hub) as page:
            page.set_viewport_size({"width": 390, "height": 844})
            page.wait_for_function("matchMedia('(max-width: 640px)').matches")
            pseudo = page.evaluate("[...document.querySelectorAll('*')].flatMap((el) => ['::before', '::after']"
                                   ".map((p) => getComputedStyle(el, p).content)).filter((c) => /sort/i.test(c))")
            assert "Sort by" not in page.inner_text("body") and pseudo == [], pseudo
            assert page.evaluate(CARD_LABELS, "#ctl-tot") == [
                ['"Sockets"', "2"], ['"On"', "1"], ['"Off"', "1"], ['"Power"', "84 W"], ['"Balance"', "120"]]
            assert page.evaluate(CARD_LABELS, '#ctl-rows tr[data-name="home"]')[1:] == [
                ['"Sockets"', "2"], ['"On"', "1"], ['"Off"', "1"], ['"Power"', "84 W"], ['"Balance"', "120"]]
            assert page.evaluate(CARD_LABELS, "#tot") == [
                ['"Relay"', "1 on, 1 off"], ['"Balance"', "120"], ['"Power"', "84 W"]]
            card = page.locator('#rows tr[data-key="home/kitchen"]')
            labels = page.evaluate(CARD_LABELS, '#rows tr[data-key="home/kitchen"]')
            assert [label for label, _ in labels[1:5]] == ['"Relay"', '"Balance"', '"Power"', '"Meter"']
            meter, balance = card.locator("td").nth(4), card.locator("td").nth(2)
            pad = "(el) => getComputedStyle(el).paddingLeft"
            assert meter.evaluate(pad) == balance.evaluate(pad) == "0px", "the Meter field is indented"
            # the Meter card field starts where the one above it in its grid column starts
            assert abs(meter.bounding_box()["x"] - balance.bounding_box()["x"]) < 0.5
            (TEST_OUTPUT / "hub").mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(TEST_OUTPUT / "hub" / "fleet-phone.png"), full_page=True)
    finally:
        mqtt_client.stop(ctl.client)


def test_in_french_the_fleet_page_and_its_script_speak_french_and_fit_a_phone(hub):
    ctl = kitchen_on_and_hall_off(hub)
    try:
        with fleet_page(hub) as page:
            from playwright.sync_api import expect

            page.set_viewport_size({"width": 390, "height": 844})
            page.click(".langs a[hreflang=fr]")                      # the switcher: a link, back to this page
            expect(page.locator("h1")).to_have_text("Parc")
            assert page.locator("html").get_attribute("lang") == "fr"
            expect(page.locator("#live .txt")).to_have_text("En direct", timeout=10_000)
            expect(page.locator("#count")).to_have_text("2 prises")  # written by hub.js from the page's strings
            expect(page.locator("#tot td").first).to_have_text("1 en marche, 1 à l’arrêt")
            assert page.locator('#rows tr[data-key="home/hall"] .pill').inner_text() == "Coupée"
            assert page.evaluate("document.documentElement.scrollWidth") <= 390
    finally:
        mqtt_client.stop(ctl.client)
