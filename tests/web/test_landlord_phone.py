"""The landlord's pages on a 390 x 844 phone, in Chromium: the overview's toolbar leaves the first socket in the first
screen (its sort is one select, not a row of eight chips), and a socket's page never scrolls sideways. Screenshots go
to each test's tmp_path and are named in the assertion messages."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import NEEDS_CHROMIUM
from tests.support.served_bed import log_in, pay, served_bed
from tests.web.conftest import checker, violations

pytestmark = NEEDS_CHROMIUM

PHONE = {"width": 390, "height": 844}
PUSH_MS = 8_000

BOX = """(sel) => { const r = document.querySelector(sel).getBoundingClientRect();
  return {top: r.top + scrollY, bottom: r.bottom + scrollY, height: r.height}; }"""


@pytest.fixture
def served(tmp_path):
    with served_bed(tmp_path) as (bed, base):
        yield bed, base


def phone(chromium):
    return chromium.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)


def snap(page, tmp_path: Path, name: str, full_page: bool = False) -> Path:
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=full_page)
    return path


def test_the_overviews_first_socket_is_in_a_phones_first_screen_and_the_sort_select_sorts(chromium, served,
                                                                                          problems, tmp_path):
    from playwright.sync_api import expect

    bed, base = served
    pay(bed, "office", 500)
    bed.loop.run_for(2)
    context = phone(chromium)
    page = problems.watch(context.new_page())
    try:
        log_in(page, base, "/landlord")
        expect(page.locator("#at")).to_have_text(re.compile("^updated "), timeout=PUSH_MS)
        shot = snap(page, tmp_path, "landlord-phone-first-screen.png")
        row = page.evaluate(BOX, "#rows tr")
        toolbar = page.evaluate(BOX, "#filters")
        chips = page.locator("#tbl thead").is_visible()
        assert row["bottom"] <= PHONE["height"], \
            f"the first socket spans {row['top']:.0f} to {row['bottom']:.0f} px, not within {PHONE['height']} ({shot})"
        assert row["top"] <= 0.4 * PHONE["height"], f"the toolbar ends at {row['top']:.0f} px ({shot})"
        assert toolbar["height"] <= 140, f"the toolbar is {toolbar['height']:.0f} px high ({shot})"
        assert not chips, f"the sort chips still show on a phone ({shot})"
        assert page.evaluate("[document.documentElement.scrollWidth, innerWidth]") == [390, 390], shot

        # The one select sorts as the heads do: by balance, then the other way round.
        expect(page.locator("#sort")).to_be_visible()
        expect(page.locator("label[for=sort]")).to_have_text("Sort by")
        page.select_option("#sort", "balance")
        order = lambda: page.locator("#rows tr").evaluate_all("(rs) => rs.map((r) => r.dataset.id)")  # noqa: E731
        assert order()[-1] == "office", order()
        page.locator("#sort-dir").click()
        expect(page.locator("#sort-dir")).to_have_attribute("aria-pressed", "true")
        assert order()[0] == "office", order()
        expect(page.locator('#tbl th[data-sort="balance"]')).to_have_attribute("aria-sort", "descending")
        assert row["top"] > 0
        print(f"first screen at 390x844: toolbar {toolbar['top']:.0f}-{toolbar['bottom']:.0f} px, "
              f"first socket {row['top']:.0f}-{row['bottom']:.0f} px")
    finally:
        context.close()
    problems.check()


def test_a_sockets_page_has_no_sideways_scroll_on_a_phone_and_passes_the_accessibility_checks(chromium, served,
                                                                                              problems, tmp_path):
    from playwright.sync_api import expect

    bed, base = served
    pay(bed, "kitchen", 1000)
    bed.rt.landlord.adjust("kitchen", 25, "a refund for the broken kettle in the kitchen, with a long reason",
                           "refund-0002")
    bed.loop.run_for(3600)
    bed.rt.meters["kitchen"].reset_counter()
    bed.loop.run_for(10)   # an alarm in the events
    context = checker(chromium, PHONE)   # axe-core in the page, as tests/web/test_browser.py checks the others
    page = problems.watch(context.new_page())
    try:
        log_in(page, base, "/landlord/sockets/kitchen")
        expect(page.locator("#live .txt")).to_have_text("Live", timeout=PUSH_MS)
        expect(page.locator("#ev-rows tr")).not_to_have_count(0)
        expect(page.locator("#j-rows tr")).not_to_have_count(0)
        shot = snap(page, tmp_path, "socket-page-phone.png", full_page=True)
        widths = page.evaluate("[document.documentElement.scrollWidth, innerWidth]")
        wide = page.evaluate("""() => [...document.querySelectorAll("main *")].filter((e) => {
            const r = e.getBoundingClientRect();
            return r.width > 0 && (r.right > innerWidth + 0.5 || r.left < -0.5) && !e.closest(".sr-only, dialog");
          }).map((e) => e.tagName + (e.id ? "#" + e.id : "") + " " + e.getBoundingClientRect().right)""")
        found = violations(page)
        page.locator('#actions button[data-act="adj"]').click()
        expect(page.locator("dialog#adj")).to_be_visible()
        found += violations(page)
    finally:
        context.close()
    problems.check()
    assert widths == [390, 390], f"the page is {widths[0]} px wide at {widths[1]} ({shot})"
    assert not wide, f"parts of the page reach past its edges: {wide[:5]} ({shot})"
    assert not found, "accessibility violations:\n" + "\n".join(found)
