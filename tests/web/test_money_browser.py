"""Money in a real browser (issue 27): a controller priced in pounds shows pounds on the tenant page and in the
landlord view, written by the page's script (Intl) as the server writes them (Babel), and the landlord types
pounds and pence that are booked as pence."""

from __future__ import annotations

import re

import pytest

from tests.conftest import NEEDS_CHROMIUM
from tests.support import wait_until
from tests.support.web_beds import PASSWORD
from tests.web.conftest import Controller, running

pytestmark = NEEDS_CHROMIUM
LIVE_S, PUSH_S = 10_000, 8_000


@pytest.fixture
def pounds(tmp_path):
    """The embedded default as a subprocess, priced in pounds: 25p per kWh, its amounts in pence."""
    c = Controller(tmp_path)
    text, n = re.subn(r"(?m)^tokens_per_wh = 1$", 'currency = "GBP"\nunit_rate = "0.25"', c.config.read_text())
    assert n == 1
    c.config.write_text(text)
    yield from running(c)


def test_the_tenant_page_and_the_landlord_view_show_pounds(chromium, pounds, problems):
    from playwright.sync_api import expect

    pounds.deposit("kitchen", 1234)  # 1,234 pence: £12.34
    wait_until(lambda: pounds.state("kitchen")["balance_text"].startswith("£12."), 15, "the deposit in pounds")
    context = chromium.new_context(viewport={"width": 1280, "height": 800})
    page = problems.watch(context.new_page())
    try:
        page.goto(pounds.base + "/s/laundry")
        expect(page.locator("#live .txt")).to_have_text("Live", timeout=LIVE_S)
        expect(page.locator("#bal")).to_have_text("£0.00")  # the script's Intl text, after the server's Babel one
        expect(page.locator(".balance .unit")).to_have_count(0)
        expect(page.locator("#presets")).to_have_attribute("aria-label", "Amount in GBP")

        page.goto(pounds.base + "/landlord")
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        expect(page.locator("#live .txt")).to_have_text("Live", timeout=LIVE_S)
        laundry = page.locator('#rows tr[data-id="laundry"] td').nth(2).locator("span")
        expect(laundry).to_have_text("£0.00")
        expect(page.locator("p.legend")).to_contain_text("Balance and revenue in GBP.")
        page.locator('#rows tr[data-id="laundry"] button[data-act="adj"]').click()
        expect(page.locator("#adj-who")).to_contain_text("balance £0.00")
        expect(page.locator('label[for="adj-amt"]')).to_have_text("Amount in GBP")
        page.fill("#adj-amt", "12.34")
        page.fill("#adj-why", "pounds and pence")
        expect(page.locator("#adj-go")).to_have_text("Credit £12.34")
        page.locator("#adj-go").click()
        expect(page.locator("#msg")).to_have_text("Laundry: credited £12.34.")
        assert pounds.state("laundry")["balance"] >= 1234 - 100  # 1,234 pence booked (the socket draws a little)
        expect(laundry).to_have_text(re.compile(r"^£12\.\d\d$"), timeout=PUSH_S)
    finally:
        context.close()
    assert not problems.items, problems.items
