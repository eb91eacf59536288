"""Receipts and statements in Chromium: a tenant opens a receipt, the landlord prints every socket's statement to
PDF through Chromium's own printing (headless `page.pdf()`), one page per socket, with the page chrome left off."""

from __future__ import annotations

import json
import re
import urllib.request

from tests.conftest import NEEDS_CHROMIUM, TEST_OUTPUT
from tests.support import wait_until
from tests.support.web_beds import PASSWORD

pytestmark = NEEDS_CHROMIUM


def pdf_pages(pdf: bytes) -> int:
    """Page objects in a PDF (Chromium writes its object dictionaries uncompressed)."""
    return len(re.findall(rb"/Type\s*/Page(?![a-zA-Z])", pdf))


def test_a_receipt_opens_and_every_sockets_statement_prints_to_pdf_a_page_each(chromium, controller, problems):
    controller.deposit("kitchen", 500)
    wait_until(lambda: controller.state("kitchen")["balance"] > 0, 20, "the deposit to be credited")
    with urllib.request.urlopen(f"{controller.base}/api/sockets/kitchen/receipts", timeout=5) as resp:
        receipt = json.load(resp)["receipts"][0]
    assert receipt["method"] == "deposit" and receipt["amount"] == 500

    context = chromium.new_context(viewport={"width": 1024, "height": 800})
    try:
        page = problems.watch(context.new_page())
        page.goto(controller.base + "/s/kitchen")                     # from the tenant page, as a tenant would
        page.click("#receipts-link")
        page.click(f"a[href='{receipt['url']}']")
        page.wait_for_url(controller.base + receipt["url"])
        assert page.locator("h1").inner_text() == f"Receipt {receipt['id']}"
        assert page.locator('[data-field="amount"]').inner_text() == "500 tokens"
        assert page.locator('[data-field="method"]').inner_text() == "Deposit"

        page.goto(controller.base + "/landlord/login?next=/landlord")
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(controller.base + "/landlord")
        page.click("a[href='/landlord/statements']")                 # from the landlord view
        page.wait_for_url(controller.base + "/landlord/statements")
        assert page.locator("article.statement").count() == 3
        assert page.locator("header.top").is_visible() and page.locator("nav.doc-nav").is_visible()
        page.emulate_media(media="print")
        assert not page.locator("header.top").is_visible() and not page.locator("nav.doc-nav").is_visible()
        assert page.locator("article.statement").first.evaluate("e => getComputedStyle(e).breakAfter") == "page"
        pdf = page.pdf(format="A4", print_background=False)
        (TEST_OUTPUT / "statements.pdf").write_bytes(pdf)
        assert pdf.startswith(b"%PDF-") and pdf.rstrip().endswith(b"%%EOF")
        assert pdf_pages(pdf) == 3, f"{pdf_pages(pdf)} pages for 3 sockets"

        page.emulate_media(media="screen")
        page.goto(controller.base + "/landlord/statements/kitchen")
        assert page.locator("article.statement").count() == 1
        assert page.locator('[data-figure="credits"]').inner_text() == "500 tokens"
        assert pdf_pages(page.pdf(format="A4")) == 1
        problems.check()
    finally:
        context.close()
