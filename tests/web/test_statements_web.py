"""Receipts (the tenant's, open like the socket's page) and statements (the landlord's) through the Flask test
client, on the embedded default's sockets priced in pounds with a standing charge and VAT."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import replace
from decimal import Decimal

import pytest

from payg.domain.tariff_settings import TariffConfig
from tests.support.web_beds import embedded_config, make_web_bed

START = 1_800_000_000.0  # 2027-01-15 08:00 UTC
POUNDS = TariffConfig(currency="GBP", minor=2, unit_rate=Decimal("0.2450"), standing_charge=Decimal("0.5324"),
                      vat_percent=Decimal(5), vat_included=False)


@pytest.fixture(scope="module")
def bed(tmp_path_factory):
    """One controller for the module (its tests only read): a month's first fortnight of top-ups and usage."""
    tmp_path = tmp_path_factory.mktemp("statements")
    config = replace(embedded_config(tmp_path / "var", timezone="Europe/London"), tariff=POUNDS)
    b = make_web_bed(tmp_path, start=START, config=config)
    b.loop.run_ticks(1)
    b.rt.ledger.pay("kitchen", 500)                          # £5.00
    b.loop.run_for(90)                                       # credited; the kitchen's 800 W draws
    b.rt.landlord.adjust("kitchen", 150, "goodwill", "req-credit-1")
    b.rt.landlord.adjust("kitchen", -20, "broken plug", "req-debit-1")
    b.rt.ledger.pay("office", 300)
    b.loop.run_for(900)                                      # past the first quarter hour: a usage entry each
    yield b
    b.close()


def test_the_receipts_of_a_socket_are_open_to_anyone_newest_first_with_the_balance_after(bed):
    resp = bed.client().get("/api/sockets/kitchen/receipts")
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["currency"] == "GBP" and body["minor"] == 2
    got = [(r["method"], r["amount"]) for r in body["receipts"]]
    assert got == [("manual credit", 150), ("deposit", 500)]
    for r in body["receipts"]:
        through = [e for e in bed.rt.journal.all_entries("kitchen") if e.id <= r["id"]]
        assert r["balance_after"] == sum(e.amount for e in through)
        assert r["url"] == f"/s/kitchen/receipts/{r['id']}" and set(r) == {"id", "at", "amount", "method",
                                                                          "balance_after", "url"}
    assert len(bed.client().get("/api/sockets/kitchen/receipts?limit=1").get_json()["receipts"]) == 1
    for bad in ("0", "501", "x", "-1"):
        assert bed.client().get(f"/api/sockets/kitchen/receipts?limit={bad}").status_code == 400
    assert bed.client().get("/api/sockets/garage/receipts").status_code == 404
    assert bed.client().post("/api/sockets/kitchen/receipts", json={}).status_code in (401, 405)


def test_a_receipt_page_shows_the_money_and_prints_and_refuses_what_is_not_a_top_up_of_that_socket(bed):
    receipts = bed.client().get("/api/sockets/kitchen/receipts").get_json()["receipts"]
    deposit = receipts[-1]
    page = bed.client().get(deposit["url"])
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert '<link rel="stylesheet" href="/static/print.css">' in html
    assert re.search(r'data-field="amount">£5\.00<', html) and re.search(r'data-field="method">Deposit<', html)
    after = Decimal(deposit["balance_after"]) / 100
    assert f'data-field="balance_after">£{after:.2f}<' in html
    assert "@media print" in bed.client().get("/static/print.css").get_data(as_text=True)
    standing = next(e for e in bed.rt.journal.all_entries("kitchen") if e.kind == "standing")
    office = bed.client().get("/api/sockets/office/receipts").get_json()["receipts"][0]
    for url in (f"/s/kitchen/receipts/{standing.id}", f"/s/kitchen/receipts/{office['id']}",
                "/s/kitchen/receipts/999999", "/s/garage/receipts/1", "/s/kitchen/receipts/x"):
        assert bed.client().get(url).status_code == 404, url
    listing = bed.client().get("/s/kitchen/receipts").get_data(as_text=True)
    assert listing.count('href="/s/kitchen/receipts/') == 2


def test_statements_are_the_landlords_only(bed):
    for url in ("/landlord/statements/kitchen", "/landlord/statements/kitchen.csv", "/landlord/statements",
                "/landlord/statements.csv?month=2027-01"):
        resp = bed.client().get(url)
        assert resp.status_code == 302 and resp.headers["Location"].startswith("/landlord/login?next=/landlord/"), url
    assert "next=/landlord/statements.csv%3Fmonth%3D2027-01" in bed.client().get(
        "/landlord/statements.csv?month=2027-01").headers["Location"]


def test_a_statement_reconciles_with_the_journal_as_html_and_as_csv(bed):
    landlord = bed.landlord()
    resp = landlord.get("/landlord/statements/kitchen.csv?month=2027-01")
    assert resp.status_code == 200 and resp.mimetype == "text/csv"
    assert 'filename="payg-statement-kitchen-2027-01-01-2027-01-31.csv"' in resp.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(resp.get_data(as_text=True))))
    by = {r["section"]: r for r in rows}
    pending = bed.rt.journal.meter_state("kitchen").pending_units
    closing = Decimal(by["closing"]["amount"]) * 100
    assert closing - pending == bed.rt.journal.balance("kitchen")
    summed = sum(Decimal(r["amount"]) for r in rows if r["section"] in ("opening", "top-up", "energy", "standing",
                                                                        "adjustment"))
    assert summed == Decimal(by["closing"]["amount"])
    assert [(r["item"], r["amount"]) for r in rows if r["section"] == "top-up"] == [("deposit", "5.00"),
                                                                                   ("manual credit", "1.50")]
    assert [r["item"] for r in rows if r["section"] == "adjustment"] == ["debit: broken plug"]
    assert by["standing"]["rate"] == "0.55902" and by["standing"]["amount"] == "-0.56"
    assert by["energy"]["rate"] == "0.25725" and by["energy"]["band"] == "standard"

    html = landlord.get("/landlord/statements/kitchen?month=2027-01").get_data(as_text=True)
    assert html.count('<article class="card doc statement"') == 1
    assert f'data-figure="closing">£{closing / 100:.2f}<' in html
    assert 'data-figure="standing">−£0.56<' in html and "£0.25725" in html and "broken plug" in html


def test_every_sockets_statement_at_once_and_a_bad_period(bed):
    landlord = bed.landlord()
    html = landlord.get("/landlord/statements?from=2027-01-01&to=2027-01-31").get_data(as_text=True)
    assert re.findall(r'data-socket="([^"]+)"', html) == ["kitchen", "laundry", "office"]
    rows = list(csv.DictReader(io.StringIO(landlord.get("/landlord/statements.csv").get_data(as_text=True))))
    closing = {r["socket"]: Decimal(r["amount"]) * 100 for r in rows if r["section"] == "closing"}
    assert set(closing) == {"kitchen", "laundry", "office"}
    for socket_id, units in closing.items():
        state = bed.rt.journal.meter_state(socket_id)
        assert units - (state.pending_units if state else 0) == bed.rt.journal.balance(socket_id)
    assert landlord.get("/landlord/statements/kitchen?month=2027-13").status_code == 400
    assert landlord.get("/landlord/statements/kitchen.csv?from=2027-02-01&to=2027-01-01").status_code == 400
    assert landlord.get("/landlord/statements/garage").status_code == 404
    earlier = list(csv.DictReader(io.StringIO(landlord.get("/landlord/statements/kitchen.csv?month=2026-12")
                                              .get_data(as_text=True))))
    assert [(r["section"], r["amount"]) for r in earlier if r["section"] in ("opening", "closing")] == [
        ("opening", "0.00"), ("closing", "0.00")]
