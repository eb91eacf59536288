"""Money on the controller's edges (issue 27): amounts written in `[tariff] currency` for its locale, tokens without
one. The formatter (payg/webkit/money.py), the JSON API's `currency` and `balance_text`, the pages as the server
renders them, and `payg status`."""

from __future__ import annotations

import dataclasses
import io
from decimal import Decimal

import pytest

from payg.cli.accounts import cmd_status
from payg.domain.money import MoneyUnit
from payg.domain.tariff_settings import TariffConfig
from payg.webkit import money
from tests.support.web_beds import embedded_config, make_web_bed

GBP = MoneyUnit("GBP", 2, "en_GB")
NARROW_NBSP, NBSP = "\u202f", "\xa0"


def test_the_formatter_writes_a_currency_for_its_locale_and_tokens_as_before():
    assert money.text(1234, GBP) == "£12.34" and money.text(-5, GBP) == "-£0.05" and money.text(0, GBP) == "£0.00"
    assert money.text(123456, MoneyUnit("EUR", 2, "fr_FR")) == f"1{NARROW_NBSP}234,56{NBSP}€"
    assert money.text(1234, MoneyUnit("JPY", 0, "ja_JP")) == "￥1,234"
    assert money.text(1234) == "1,234 tokens" and money.text(1) == "1 token" and money.text(2.5) == "2.50 tokens"
    assert money.figure(1234) == "1,234" and money.figure(1234, GBP) == "£12.34" and money.figure(None, GBP) == "—"
    assert (money.word(), money.word(GBP)) == ("tokens", "GBP")
    assert money.page(GBP) == {"currency": "GBP", "minor": 2, "locale": "en-GB"}
    assert GBP.major(1234) == Decimal("12.34") and GBP.major(-5) == Decimal("-0.05")
    with pytest.raises(TypeError):
        money.text(12.5, GBP)  # a currency's amount is whole minor units: a float is a bug, not a rounding
    assert money.of("KES", "en_GB") == MoneyUnit("KES", 2, "en_GB") and money.of(None, "en_GB") == money.TOKENS
    assert money.of("XYZ", "en_GB") == money.TOKENS  # an unknown code from a broker is not trusted as a currency


def gbp_config(tmp_path):
    config = embedded_config(tmp_path / "gbp")  # a data directory of its own: a journal keeps its unit
    tariff = TariffConfig(currency="GBP", minor=2, locale="en_GB", unit_rate=Decimal("0.25"))
    return dataclasses.replace(config, tariff=tariff)


@pytest.fixture
def gbp_bed(tmp_path):
    """The web bed of tests/web/conftest.py on the embedded default priced in pounds (25p per kWh)."""
    b = make_web_bed(tmp_path, config=gbp_config(tmp_path))
    yield b
    b.close()


def test_the_api_gives_the_currency_and_the_balance_written_for_the_locale(gbp_bed):
    client = gbp_bed.client(token=True)
    assert client.post("/api/mock/deposits", json={"socket": "kitchen", "amount": 1234}).status_code == 201
    gbp_bed.loop.run_for(1)
    state = client.get("/api/sockets/kitchen").get_json()
    assert state["currency"] == "GBP" and state["balance_tokens"] == state["balance"]  # pence, as before
    assert state["balance_text"] == money.text(state["balance"], GBP) and state["balance_text"].startswith("£12.")
    listed = client.get("/api/sockets").get_json()
    assert [(s["currency"], s["balance_text"]) for s in listed][1:] == [("GBP", "£0.00")] * 2


def test_the_pages_show_pounds_with_a_currency_and_tokens_without(gbp_bed, bed):
    gbp_bed.rt.ledger.pay("kitchen", 1234)
    gbp_bed.loop.run_for(1)
    tenant = gbp_bed.client().get("/s/kitchen").get_data(as_text=True)
    assert '<span id="bal">£12.' in tenant and '<span class="unit">tokens</span>' not in tenant
    assert '"money": {"currency": "GBP", "locale": "en-GB", "minor": 2}' in tenant  # the script's boot data
    landlord = gbp_bed.landlord().get("/landlord").get_data(as_text=True)
    assert '<td class="num" data-label="Balance">£12.' in landlord and "Balance and revenue in GBP." in landlord
    assert 'step="0.01"' in landlord  # the landlord types pounds and pence
    plain = bed.client().get("/s/kitchen").get_data(as_text=True)
    assert '<span id="bal">0</span> <span class="unit">tokens</span>' in plain and '"currency": null' in plain
    assert "Balance and revenue in tokens." in bed.landlord().get("/landlord").get_data(as_text=True)


def test_payg_status_prints_money_with_a_currency_and_tokens_without(tmp_path):
    live = [{"id": "kitchen", "name": "Kitchen", "relay": "on", "meter": "ok", "balance": 1234, "balance_tokens": 1234,
             "power_w": 800.0, "energy_wh": 12}]
    out = io.StringIO()
    assert cmd_status(gbp_config(tmp_path), None, live, out) == 0
    assert "£12.34" in out.getvalue() and "1234" not in out.getvalue()
    plain = io.StringIO()
    assert cmd_status(embedded_config(tmp_path / "var"), None, live, plain) == 0
    assert " 1234 " in plain.getvalue() and "£" not in plain.getvalue()
