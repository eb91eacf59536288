"""A socket's landlord page (/landlord/sockets/<id>) in Chromium, on the embedded default served in-process: the test
drives the controller (payments, the virtual clock, the simulated meter) and reads the page as the landlord does.

Its live state follows the socket without a reload; it offers only the actions that apply, and they work; its journal
filter narrows the rows (and its CSV); the alarms the controller recorded are listed and acknowledged; the statement
and receipt links lead to those pages; codes made from it are numbered 1, 2, 3; its chart is the journal's history."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pytest

from tests.conftest import NEEDS_CHROMIUM
from tests.support.served_bed import log_in, pay, served_bed

pytestmark = NEEDS_CHROMIUM

DESKTOP = {"width": 1280, "height": 900}
PUSH_MS = 8_000   # a change reaches the page
PAGE = "/landlord/sockets/kitchen"


@pytest.fixture
def served(tmp_path):
    with served_bed(tmp_path) as (bed, base):
        yield bed, base


def snap(page, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=True)
    return path


def shown_actions(page) -> list[str]:
    return page.locator("#actions button[data-act]").evaluate_all(
        "(bs) => bs.filter((b) => !b.hidden && b.offsetParent !== null).map((b) => b.dataset.act)")


def test_the_page_follows_the_socket_live_and_offers_only_the_actions_that_apply(chromium, served, problems,
                                                                                  tmp_path):
    from playwright.sync_api import expect

    bed, base = served
    bed.loop.run_for(2)   # the first readings
    context = chromium.new_context(viewport=DESKTOP)
    page = problems.watch(context.new_page())
    try:
        log_in(page, base, PAGE)
        expect(page.locator("#live .txt")).to_have_text("Live", timeout=PUSH_MS)
        page.evaluate("window.__marker = 1")
        expect(page.locator("#relay")).to_have_text("Off")
        expect(page.locator("#status-t")).to_have_text("Vacant")
        expect(page.locator("#why")).to_contain_text("Not paid for yet")
        assert shown_actions(page) == ["off", "adj", "code"], snap(page, tmp_path, "vacant.png")

        pay(bed, "kitchen", 1000)
        bed.loop.run_for(30)   # the meter's counter moves: 800 W
        expect(page.locator("#relay")).to_have_text("On", timeout=PUSH_MS)
        expect(page.locator("#status-t")).to_have_text("On")
        expect(page.locator("#pw")).to_have_text("800 W", timeout=PUSH_MS)
        expect(page.locator("#why")).to_be_hidden()
        balance = bed.rt.metering.state("kitchen").balance.tokens
        expect(page.locator("#bal")).to_have_text(f"{balance:,} tokens", timeout=PUSH_MS)

        meter = bed.rt.meters["kitchen"]
        meter.offline = True
        bed.loop.run_for(15)   # past [metering] meter_offline_grace_s
        expect(page.locator("#status-t")).to_have_text("Offline", timeout=PUSH_MS)
        expect(page.locator("#why")).to_contain_text("Meter offline")
        meter.offline = False
        bed.loop.run_for(2)
        expect(page.locator("#status-t")).to_have_text("On", timeout=PUSH_MS)

        # The meter's counter goes back to zero: the controller records an alarm, and the page offers its
        # acknowledgement as soon as the push comes.
        meter.reset_counter()
        bed.loop.run_for(10)   # the reset confirmed by three readings
        expect(page.locator("#alarms")).to_have_text("1", timeout=PUSH_MS)
        expect(page.locator('#actions button[data-act="ack"]')).to_be_visible()
        assert shown_actions(page) == ["off", "adj", "code", "ack"], snap(page, tmp_path, "alarm.png")
        assert page.evaluate("window.__marker") == 1, "the page was reloaded"

        page.reload()
        alarm = page.locator('#ev-rows tr[data-kind="counter_reset"]')
        expect(alarm).to_have_count(1)
        expect(alarm).to_contain_text("Meter counter reset")
        expect(alarm).to_contain_text("open alarm")
        expect(page.locator("#live .txt")).to_have_text("Live", timeout=PUSH_MS)
        page.locator('#actions button[data-act="ack"]').click()
        expect(page.locator("#msg")).to_have_text("Kitchen: alarms acknowledged.")
        expect(page.locator('#actions button[data-act="ack"]')).to_be_hidden()
        expect(alarm).to_contain_text("acknowledged")
        expect(alarm).not_to_contain_text("open alarm")
        assert [e["kind"] for e in bed.rt.journal.events("kitchen", 5)][0] == "alarm_ack"

        # Force off: the relay opens, and the action gives way to its opposite.
        page.locator('#actions button[data-act="off"]').click()
        expect(page.locator("#relay")).to_have_text("Off", timeout=PUSH_MS)
        expect(page.locator("#ov")).to_have_text("Forced off")
        expect(page.locator("#why")).to_contain_text("Held off by the landlord")
        expect(page.locator('#actions button[data-act="auto"]')).to_be_focused()
        assert shown_actions(page) == ["auto", "adj", "code"], snap(page, tmp_path, "forced-off.png")
        state = bed.rt.metering.state("kitchen")
        assert (state.override, state.relay_on) == ("off", False)
        page.locator('#actions button[data-act="auto"]').click()
        expect(page.locator("#relay")).to_have_text("On", timeout=PUSH_MS)
        assert bed.rt.metering.state("kitchen").override is None
        snap(page, tmp_path, "socket-page.png")
    finally:
        context.close()
    problems.check()


def test_in_french_the_scripts_write_the_live_state_and_the_answers_in_french(chromium, served, problems, tmp_path):
    """What the page's scripts write (why the socket is off, the time of the last push, an action's answer, the
    credit dialog's button) comes from the French strings the page carries: none of it is in the server's HTML."""
    from playwright.sync_api import expect

    bed, base = served
    bed.loop.run_for(2)
    context = chromium.new_context(viewport=DESKTOP, locale="fr-FR", extra_http_headers={"Accept-Language": "fr-FR,fr"})
    page = problems.watch(context.new_page())
    try:
        log_in(page, base, PAGE)
        expect(page.locator("html")).to_have_attribute("lang", "fr")
        expect(page.locator("#live .txt")).to_have_text("En direct", timeout=PUSH_MS)
        expect(page.locator("#at")).to_have_text(re.compile("^Mis à jour à "), timeout=PUSH_MS)
        expect(page.locator("#status-t")).to_have_text("Inoccupée")
        expect(page.locator("#why")).to_have_text("Pas encore payée\u00a0: une recharge l’allumera")

        page.locator('#actions button[data-act="off"]').click()
        expect(page.locator("#msg")).to_have_text("Kitchen\u00a0: arrêt forcé.")
        expect(page.locator("#ov")).to_have_text("Arrêt forcé")
        expect(page.locator("#why")).to_have_text(
            "Coupée par le propriétaire\u202f; pas encore payée\u00a0: une recharge l’allumera")

        page.locator('#actions button[data-act="adj"]').click()
        page.fill("#adj-amt", "-20")
        expect(page.locator("#adj-go")).to_have_text("Débiter 20 jetons")
        page.fill("#adj-amt", "25")
        page.fill("#adj-why", "un remboursement")
        expect(page.locator("#adj-go")).to_have_text("Créditer 25 jetons")
        page.locator("#adj-go").click()
        expect(page.locator("#msg")).to_have_text("Kitchen\u00a0: crédit de 25 jetons enregistré.")
        expect(page.locator("#bal")).to_have_text("25 jetons", timeout=PUSH_MS)
        snap(page, tmp_path, "socket-page-fr.png")
    finally:
        context.close()
    problems.check()


def test_the_journal_filter_narrows_the_rows_and_its_csv(chromium, served, problems, tmp_path):
    from playwright.sync_api import expect

    bed, base = served
    pay(bed, "kitchen", 300)
    pay(bed, "kitchen", 200)
    bed.rt.landlord.adjust("kitchen", 25, "a refund", "refund-0001")
    bed.loop.run_for(3 * 3600)   # usage entries and a standing charge or two
    pay(bed, "office", 50)       # another socket's: never on this page
    context = chromium.new_context(viewport=DESKTOP)
    page = problems.watch(context.new_page())
    try:
        with page.expect_response(lambda r: "/api/sockets/kitchen/history?span=day" in r.url) as day:
            log_in(page, base, PAGE)
        # the chart draws the day from the journal (3 h of usage), the same chart as the tenant's page
        drawn = [w for w in day.value.json()["power_w"] if w is not None]
        assert len(drawn) == 12 and max(drawn) > 0, drawn  # 3 h in 15-minute buckets; it drew until the credit ran out
        expect(page.locator("#chart-card")).to_be_visible()
        expect(page.locator("#chart canvas")).to_have_count(1)
        expect(page.locator('#spans [data-span="day"]')).to_have_attribute("aria-pressed", "true")
        with page.expect_response(lambda r: "/api/sockets/kitchen/history?span=month" in r.url):
            page.locator('#spans [data-span="month"]').click()
        expect(page.locator('#spans [data-span="month"]')).to_have_attribute("aria-pressed", "true")
        rows = page.locator("#j-rows tbody tr")
        every = rows.evaluate_all("(rs) => rs.map((r) => r.dataset.kind)")
        assert every.count("deposit") == 2 and "credit" in every and len(set(every)) >= 3, every
        ids = [int(i) for i in rows.evaluate_all("(rs) => rs.map((r) => r.dataset.id)")]
        assert ids == sorted(ids, reverse=True), f"not newest first: {ids}"

        page.select_option("#j-kind", "deposit")
        page.locator("#j-go").click()
        expect(page).to_have_url(re.compile(r"kind=deposit"))
        expect(rows).to_have_count(2)
        assert set(rows.evaluate_all("(rs) => rs.map((r) => r.dataset.kind)")) == {"deposit"}
        expect(page.locator("#j-kind")).to_have_value("deposit")
        shot = snap(page, tmp_path, "journal-deposits.png")

        href = page.locator("#j-csv").get_attribute("href")
        assert "kind=deposit" in href and "socket=kitchen" in href, (href, shot)
        got = page.request.get(base + href)
        assert got.ok and got.headers["content-type"].startswith("text/csv"), got.status
        table = list(csv.DictReader(io.StringIO(got.text())))
        assert [(r["socket"], r["kind"], r["amount_tokens"]) for r in table] == \
            [("kitchen", "deposit", "300"), ("kitchen", "deposit", "200")], table
        whole = list(csv.DictReader(io.StringIO(page.request.get(base + "/landlord/journal.csv").text())))
        assert len(whole) > len(table) and {r["socket"] for r in whole} == {"kitchen", "office"}

        # The day before any entry: nothing; the day of them: the two deposits again.
        page.fill("#j-from", "2027-01-14")
        page.fill("#j-to", "2027-01-14")
        page.locator("#j-go").click()
        expect(page.locator("#j-none")).to_have_text("No entries match these filters.")
        page.fill("#j-to", "2027-01-15")
        page.locator("#j-go").click()
        expect(rows).to_have_count(2)
        page.locator("#journal a", has_text="Clear").click()
        expect(rows).to_have_count(len(every))
    finally:
        context.close()
    problems.check()


def test_statement_and_receipt_links_lead_to_those_pages(chromium, served, problems):
    from playwright.sync_api import expect

    bed, base = served
    pay(bed, "kitchen", 120)
    receipt_id = bed.rt.journal.entries("kitchen", 1)[0].id
    context = chromium.new_context(viewport=DESKTOP)
    page = problems.watch(context.new_page())
    try:
        log_in(page, base, PAGE)
        link = page.locator(f'#latest-receipts a[href="/s/kitchen/receipts/{receipt_id}"]')
        expect(link).to_have_count(1)
        link.click()
        expect(page).to_have_url(f"{base}/s/kitchen/receipts/{receipt_id}")
        expect(page.locator("main")).to_contain_text("120 tokens")
        page.go_back()
        page.locator("#stmt").click()
        expect(page).to_have_url(f"{base}/landlord/statements/kitchen")
        expect(page.locator("main")).to_contain_text("Kitchen")
        expect(page.locator("main")).to_contain_text("120")
        page.go_back()
        page.locator("#receipts").click()
        expect(page).to_have_url(f"{base}/s/kitchen/receipts")
        expect(page.locator(f'a[href="/s/kitchen/receipts/{receipt_id}"]')).to_have_count(1)
    finally:
        context.close()
    problems.check()


def test_codes_made_on_the_page_are_numbered_1_2_3(chromium, served, problems, tmp_path):
    from playwright.sync_api import expect

    bed, base = served
    context = chromium.new_context(viewport=DESKTOP)
    page = problems.watch(context.new_page())
    said = []
    try:
        log_in(page, base, PAGE)
        page.locator('#actions button[data-act="code"]').click()
        for _ in range(3):
            page.fill("#mk-tok", "50")
            page.locator("#mk-go").click()
            expect(page.locator("#mk-code")).to_have_text(re.compile(r"^\d{3} \d{3} \d{3}$"), timeout=PUSH_MS)
            said.append(page.locator("#mk-for").inner_text())
            page.locator("#mk-again").click()
        snap(page, tmp_path, "codes.png")
        page.keyboard.press("Escape")
        page.reload()
        made = page.locator('#ev-rows tr[data-kind="code_issued"]').all_inner_texts()
    finally:
        context.close()
    problems.check()
    assert said == [f"50 tokens for Kitchen (kitchen), code {n}:" for n in (1, 2, 3)], said
    assert [re.search(r"code (\d+) for 50 tokens", t).group(1) for t in made] == ["3", "2", "1"], made
    assert not any("#" in t for t in said + made), (said, made)
