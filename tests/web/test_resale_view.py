"""A controller with a tariff per socket and a supply price: each socket billed at its own schedule, the resale
prices above the supply's logged at start and shown to the landlord, and nothing shown when all are within."""

from __future__ import annotations

import logging
from decimal import Decimal

from payg import bootstrap as composition
from payg.adapters import config as cfg
from payg.adapters.clocks import ManualClock
from payg.web import create_web
from payg.webkit.security import WebSecrets
from tests.support import ROOT
from tests.support.web_beds import PASSWORD, PASSWORD_HASH, TOKEN, csrf_of

TARIFFS = '''
[tariff]
currency = "GBP"
unit_rate = "0.2450"

[tariff.supply]
unit_rate = "0.2400"
bands = [{ name = "night", hours = "00:30-07:30", unit_rate = "0.1000" }]

[tariffs.ev]
unit_rate = "0.2000"
bands = [{ name = "cheap", hours = "00:30-04:30", unit_rate = "0.0900" }]
'''


def controller(tmp_path, tariffs: str):
    text = (ROOT / "config" / "default.toml").read_text()
    start = text.index("[tariff]")
    end = text.index("[[sockets]]")
    text = text[:start] + tariffs + "\n" + text[end:]
    text = text.replace('data_dir = "var"', f'data_dir = "{tmp_path / "var"}"', 1)
    text = text.replace('id = "laundry"', 'id = "laundry"\ntariff = "ev"', 1)
    path = tmp_path / "payg.toml"
    path.write_text(text)
    rt = composition.build(cfg.load(path), ManualClock(1_800_000_000.0))
    web = create_web(composition.web_services(rt, WebSecrets("s" * 43, TOKEN, PASSWORD_HASH)))
    return rt, web


def landlord_page(web) -> str:
    c = web.app.test_client()
    c.get("/landlord/login")
    assert c.post("/landlord/login", data={"password": PASSWORD, "csrf_token": csrf_of(c),
                                           "next": "/landlord"}).status_code == 302
    return c.get("/landlord").get_data(as_text=True)


def test_each_socket_has_its_tariff_and_prices_above_the_supply_are_warned_and_shown(tmp_path, caplog):
    assert "[tariff]" in (ROOT / "config" / "default.toml").read_text()
    with caplog.at_level(logging.WARNING, logger="payg"):
        rt, web = controller(tmp_path, TARIFFS)
    try:
        schedules = rt.metering.schedules
        assert [r.unit_rate for r in schedules["laundry"].rates()] == [Decimal("0.2"), Decimal("0.09")]
        assert schedules["kitchen"] is schedules["office"] is not schedules["laundry"]
        # [tariff]'s 24.50p is above the supply's 24p by day and 10p by night; the ev tariff's 20p is above the
        # supply's night from 04:30, when its own cheap band has ended
        assert rt.resale_warnings == (
            "Every day 00:00-00:30: band 'standard' sells at 0.245 GBP/kWh with VAT, above the supply's 'standard' "
            "at 0.24",
            "Every day 00:30-07:30: band 'standard' sells at 0.245 GBP/kWh with VAT, above the supply's 'night' at 0.1",
            "Every day 07:30-24:00: band 'standard' sells at 0.245 GBP/kWh with VAT, above the supply's 'standard' "
            "at 0.24",
            "Every day 04:30-07:30: band 'standard' sells at 0.2 GBP/kWh with VAT, above the supply's 'night' at 0.1")
        assert [r.getMessage() for r in caplog.records if "resale" in r.getMessage()][0].endswith(
            rt.resale_warnings[0])
        html = landlord_page(web)
        assert "Prices above what you pay for the energy" in html and rt.resale_warnings[0] in html.replace(
            "&#39;", "'")
    finally:
        rt.close()


def test_no_warning_when_every_price_is_within_the_supplys(tmp_path):
    rt, web = controller(tmp_path, TARIFFS.replace('unit_rate = "0.2400"', 'unit_rate = "0.3000"')
                         .replace('unit_rate = "0.1000"', 'unit_rate = "0.2500"'))
    try:
        assert rt.resale_warnings == ()
        assert "Prices above what you pay" not in landlord_page(web)
    finally:
        rt.close()
