"""The tenant page on a 390 x 844 phone, in headless Chromium against the real controller (issue 28, item 1).

The first screen holds, in this order: the socket's name; On/Off with its reason; the balance and the time left;
the one action that matters now (out of credit: emergency credit where it is offered, then top up). A payment is
confirmed there as it arrives, with its amount; the low-credit warning comes when use crosses the threshold, not
after a top-up; the chart's day and month come from the journal, across a restart; the history page lists the
top-ups with their receipts and the use per day. Screenshots are saved under each test's tmp_path.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
from datetime import date, datetime, timedelta
from fractions import Fraction
from pathlib import Path

import pytest

from payg.adapters.journal import SqliteJournal
from tests.conftest import NEEDS_CHROMIUM
from tests.support import terminate, wait_until
from tests.web.conftest import Controller, checker, violations

pytestmark = NEEDS_CHROMIUM

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
LIVE_MS = 10_000
PUSH_MS = 8_000
POWER_RGB = (11, 87, 208)   # the power series' stroke in static/chart.js

BOXES = """(ids) => Object.fromEntries(ids.map((id) => {
  const e = document.getElementById(id);
  const r = e && e.getBoundingClientRect();
  return [id, r && r.height > 0 ? {top: r.top + scrollY, bottom: r.bottom + scrollY, left: r.left, right: r.right}
                                : null];
}))"""

# Where the power line is drawn above its 0 W baseline, as fractions of uPlot's plotting area (.u-over)'s width.
POWER_SPAN = """([rgb, tol]) => {
  const cv = document.querySelector("#chart canvas"), over = document.querySelector("#chart .u-over");
  const c = cv.getBoundingClientRect(), o = over.getBoundingClientRect(), k = cv.width / c.width;
  const px = cv.getContext("2d").getImageData(0, 0, cv.width, cv.height).data;
  let n = 0, left = Infinity, right = -Infinity;
  for (let y = 0; y < cv.height; y++) for (let x = 0; x < cv.width; x++) {
    const i = (y * cv.width + x) * 4;
    if (px[i + 3] < 160 || Math.abs(px[i] - rgb[0]) > tol || Math.abs(px[i + 1] - rgb[1]) > tol
        || Math.abs(px[i + 2] - rgb[2]) > tol) continue;
    const cx = c.left + x / k - o.left, cy = c.top + y / k - o.top;
    if (cx < 0 || cx > o.width || cy > o.height - 4) continue;
    n++; left = Math.min(left, cx); right = Math.max(right, cx);
  }
  return {area: n / (k * k), left: left / o.width, right: right / o.width};
}"""

FRAMES = "() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))"


FRENCH = {"locale": "fr-FR", "extra_http_headers": {"Accept-Language": "fr-FR,fr"}}   # French is longer


def phone(chromium, **options):
    return chromium.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True, **options)


def shot(page, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=True)
    return path


def live(page, word: str = "Live"):
    from playwright.sync_api import expect

    expect(page.locator("#live .txt")).to_have_text(word, timeout=LIVE_MS)


def start(tmp_path: Path, extra: str = "", before=None) -> Controller:
    """The embedded default with `extra` TOML added; `before(controller)` runs before it starts."""
    c = Controller(tmp_path)
    if extra:
        c.config.write_text(c.config.read_text() + "\n" + extra + "\n")
    if before:
        before(c)
    c.start()
    return c


def first_screen(page, actions: list[str]) -> dict:
    """The boxes of the first screen's parts (name, state, figures, then the actions, in order); fails unless each
    is shown, within the first 844 px, below the one before it."""
    ids = ["name", "relay", "why", "bal", "tleft", *actions]
    b = page.evaluate(BOXES, ids)
    state = [x for x in (b["relay"], b["why"]) if x]
    groups = [("the name", [b["name"]]), ("On/Off and why", state),
              ("the balance and time left", [b["bal"], b["tleft"]]), *((f"#{a}", [b[a]]) for a in actions)]
    above = 0.0
    for what, boxes in groups:
        assert all(boxes), f"{what} is not shown: {b}"
        top, bottom = min(x["top"] for x in boxes), max(x["bottom"] for x in boxes)
        assert top >= above - 0.5, f"{what} (at {top:.0f} px) is not below what comes before it ({above:.0f} px): {b}"
        assert bottom <= PHONE["height"], f"{what} ends at {bottom:.0f} px, below the first screen: {b}"
        above = bottom
    return b


@pytest.mark.slow
def test_the_first_screen_in_order_when_paid_and_when_vacant_and_the_desktop_stays_clean(chromium, controller,
                                                                                          problems, tmp_path):
    from playwright.sync_api import expect

    controller.deposit("office", 5000)
    wait_until(lambda: controller.state("office")["relay"] == "on", 15, "office on")
    context = phone(chromium)
    page = problems.watch(context.new_page())
    try:
        page.goto(controller.base + "/s/office")
        live(page)
        expect(page.locator("#relay-t")).to_have_text("On")
        paid = first_screen(page, ["go-topup"])
        s = shot(page, tmp_path, "paid-phone.png")
        assert "primary" in page.locator("#go-topup").get_attribute("class"), f"top up is not the action ({s})"
        assert page.locator("#why").is_hidden() and page.locator("#low").is_hidden(), f"a warning when paid ({s})"
        assert page.locator("#qr").bounding_box()["y"] > paid["go-topup"]["bottom"], f"the QR card is above ({s})"
        page.locator("#go-topup").click()                         # the action leads to the top-up card
        page.wait_for_function("location.hash === '#topup'")
        page.evaluate(FRAMES)
        qr = page.locator("#qr").bounding_box()
        assert qr["y"] >= 0 and qr["y"] + qr["height"] <= PHONE["height"], f"the QR code is not in view: {qr}"

        page.goto(controller.base + "/s/laundry")                  # never paid
        live(page)
        expect(page.locator("#why")).to_have_text("Not paid for yet: a top-up turns it on")
        expect(page.locator("#relay-t")).to_have_text("Off")
        vacant = first_screen(page, ["low", "go-topup"])
        s = shot(page, tmp_path, "vacant-phone.png")
        expect(page.locator("#low-h")).to_have_text("Not paid for yet.")
        assert page.locator("#emergency").is_hidden(), f"emergency credit offered while it is off ({s})"
        print("first screen, paid:", json.dumps(paid), "\nfirst screen, vacant:", json.dumps(vacant))
    finally:
        context.close()

    context = phone(chromium, **FRENCH)                           # the same order with French's longer words
    page = problems.watch(context.new_page())
    try:
        page.goto(controller.base + "/s/office")
        live(page, "En direct")
        expect(page.locator("#relay-t")).to_have_text("Allumée")
        expect(page.locator("#go-topup")).to_have_text("Recharger")
        paid_fr = first_screen(page, ["go-topup"])
        shot(page, tmp_path, "paid-phone-fr.png")
        page.goto(controller.base + "/s/laundry")
        live(page, "En direct")
        expect(page.locator("#why")).to_have_text("Pas encore payée\u00a0: une recharge l’allumera")
        expect(page.locator("#low-t")).to_have_text("Rechargez pour avoir du courant.")
        vacant_fr = first_screen(page, ["low", "go-topup"])
        shot(page, tmp_path, "vacant-phone-fr.png")
        print("in French, paid:", json.dumps(paid_fr), "\nvacant:", json.dumps(vacant_fr))
    finally:
        context.close()

    context = chromium.new_context(viewport=DESKTOP)
    page = problems.watch(context.new_page())
    try:
        page.goto(controller.base + "/s/office")
        live(page)
        b = page.evaluate(BOXES, ["now", "topup", "chart-card", "go-topup"])
        s = shot(page, tmp_path, "paid-desktop.png")
        width = page.evaluate("document.documentElement.scrollWidth")
        print("desktop:", json.dumps(b))
    finally:
        context.close()
    problems.check()
    assert width <= DESKTOP["width"], f"the desktop page scrolls sideways ({s})"
    assert b["go-topup"] is None, f"the top-up button shows beside the top-up card ({s})"
    assert b["topup"]["left"] > b["now"]["right"] and abs(b["topup"]["top"] - b["now"]["top"]) < 2, \
        f"the top-up card is not beside the 'now' card: {b} ({s})"
    assert b["now"]["bottom"] <= DESKTOP["height"] and b["topup"]["top"] < DESKTOP["height"] / 3, f"{b} ({s})"


@pytest.mark.slow
def test_out_of_credit_the_first_screen_offers_emergency_credit_then_top_up(chromium, problems, tmp_path):
    from playwright.sync_api import expect

    c = start(tmp_path, "[protections]\nemergency_credit_tokens = 30\nemergency_below_tokens = 20")
    context = phone(chromium)
    page = problems.watch(context.new_page())
    try:
        c.deposit("kitchen", 3)                                   # 3 Wh at 800 W: gone in seconds
        wait_until(lambda: c.state("kitchen")["relay"] == "on", 15, "kitchen on")
        wait_until(lambda: c.state("kitchen")["relay"] == "off", 30, "kitchen out of credit")
        page.goto(c.base + "/s/kitchen")
        live(page)
        expect(page.locator("#why")).to_have_text(re.compile("^(Out of credit|Credit used up)"))
        expect(page.locator("#emergency-go")).to_have_text("Take 30 tokens of emergency credit")
        b = first_screen(page, ["low", "emergency-go", "go-topup"])
        s = shot(page, tmp_path, "out-of-credit-phone.png")
        print("first screen, out of credit:", json.dumps(b))
        expect(page.locator("#low-t")).to_contain_text("emergency credit")
        assert "primary" in page.locator("#emergency-go").get_attribute("class"), f"({s})"
        assert "primary" not in page.locator("#go-topup").get_attribute("class"), \
            f"two primary actions: emergency credit comes first, then top up ({s})"
        french = phone(chromium, **FRENCH)                        # its longest words: the same order, on screen
        try:
            fr = problems.watch(french.new_page())
            fr.goto(c.base + "/s/kitchen")
            live(fr, "En direct")
            expect(fr.locator("#why")).to_have_text(re.compile("^Crédit (épuisé|consommé)"))
            expect(fr.locator("#emergency-go")).to_have_text("Prendre 30 jetons de crédit de secours")
            b = first_screen(fr, ["low", "emergency-go", "go-topup"])
            s = shot(fr, tmp_path, "out-of-credit-phone-fr.png")
            print("in French, out of credit:", json.dumps(b))
            expect(fr.locator("#low-t")).to_contain_text("crédit de secours")
            assert "primary" not in fr.locator("#go-topup").get_attribute("class"), f"({s})"
        finally:
            french.close()
        page.locator("#emergency-go").click()
        expect(page.locator("#relay-t")).to_have_text("On", timeout=PUSH_MS)
        expect(page.locator("#emergency-go")).to_be_hidden()
        assert "primary" in page.locator("#go-topup").get_attribute("class"), "top up is the action again"
    finally:
        context.close()
        terminate(c.proc, 10)
    problems.check()


def test_a_payment_is_confirmed_live_in_the_first_screen_with_its_amount_and_receipt(chromium, controller, problems,
                                                                                     tmp_path):
    from playwright.sync_api import expect

    context = phone(chromium)
    page = problems.watch(context.new_page())
    try:
        page.goto(controller.base + "/s/office")
        live(page)
        page.evaluate("window.__marker = 1")
        expect(page.locator("#paid")).to_be_hidden()
        controller.deposit("office", 123)
        expect(page.locator("#paid")).to_be_visible(timeout=PUSH_MS)
        expect(page.locator("#paid-h")).to_have_text("Payment received:")
        expect(page.locator("#paid-t")).to_contain_text("+123 tokens.")
        box = page.locator("#paid").bounding_box()
        s = shot(page, tmp_path, "payment-received.png")
        assert box["y"] + box["height"] <= PHONE["height"], f"the confirmation is below the first screen: {box} ({s})"
        assert page.evaluate("window.__marker") == 1, "the page reloaded"
        href = page.locator("#paid-r").get_attribute("href")
        with urllib.request.urlopen(controller.base + "/api/sockets/office/receipts", timeout=5) as resp:
            receipt = json.load(resp)["receipts"][0]
        assert receipt["amount"] == 123 and href == receipt["url"], (href, receipt)
        page.reload()                                   # an old payment is not announced again
        live(page)
        page.wait_for_timeout(1500)
        assert page.locator("#paid").is_hidden(), "a payment made before the page opened is announced as new"
    finally:
        context.close()
    problems.check()


@pytest.mark.slow
def test_low_credit_is_said_when_use_crosses_the_threshold_and_not_after_a_top_up(chromium, problems, tmp_path):
    """A threshold of 1,000 tokens with the kitchen at 1,600 W (1 token a Wh; half an hour is 800 tokens, so it is
    the balance that counts). Paying 1,000 leaves the credit at the threshold: no warning, the tenant has just paid.
    A top-up of 6 lifts it above; use takes it down through 1,000 again some 10 s later: the warning."""
    from playwright.sync_api import expect

    c = Controller(tmp_path)
    c.config.write_text(c.config.read_text().replace("[web]\n", "[web]\nlow_credit_tokens = 1000\n", 1)
                        .replace("load_w = 800 }", "load_w = 1600 }", 1))
    c.start()
    context = phone(chromium)
    page = problems.watch(context.new_page())

    def never_shown(seconds: float, what: str) -> None:
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            assert not page.locator("#low").is_visible(), \
                f"{what}: {page.locator('#low').inner_text()!r} ({shot(page, tmp_path, 'warned.png')})"
            page.wait_for_timeout(200)

    try:
        page.goto(c.base + "/s/kitchen")
        live(page)
        c.deposit("kitchen", 1000)
        expect(page.locator("#relay-t")).to_have_text("On", timeout=PUSH_MS)
        expect(page.locator("#paid-t")).to_contain_text("+1,000 tokens.")
        never_shown(4, "warned right after paying 1,000 tokens, the threshold")
        c.deposit("kitchen", 6)
        expect(page.locator("#paid-t")).to_contain_text("+6 tokens.", timeout=PUSH_MS)
        assert c.state("kitchen")["balance_tokens"] > 1000
        never_shown(2, "warned right after a top-up above the threshold")
        expect(page.locator("#low")).to_be_visible(timeout=45_000)   # use takes it down through 1,000
        expect(page.locator("#low-h")).to_have_text("Low credit.")
        assert c.state("kitchen")["balance_tokens"] <= 1000
        shot(page, tmp_path, "crossed.png")
        c.deposit("kitchen", 50)                           # a top-up: confirmed, and the warning gone
        expect(page.locator("#paid-t")).to_contain_text("+50 tokens.", timeout=PUSH_MS)
        expect(page.locator("#low")).to_be_hidden()
    finally:
        context.close()
        terminate(c.proc, 10)
    problems.check()


def backdate(first: float, hours_of_use: float) -> list[tuple[float, int]]:
    """(at, Wh) usage entries: 10 Wh every 15 min for `hours_of_use` from `first`."""
    return [(first + i * 900, 10) for i in range(int(hours_of_use * 4))]


def local(day: date, hour: int) -> float:
    return datetime(day.year, day.month, day.day, hour).timestamp()


def with_history(*uses: tuple[float, float]):
    """A journal written before the controller first starts: a deposit of 5,000 before the first use, then each
    use (from, hours)."""
    def write(c: Controller) -> None:
        c.data_dir.mkdir(parents=True, exist_ok=True)
        journal = SqliteJournal(c.data_dir / "journal.sqlite")
        try:
            with journal.transaction() as tx:
                tx.credit("office", 5000, "deposit", "backdated:office", min(at for at, _ in uses) - 600)
                for first, hours in uses:
                    for at, wh in backdate(first, hours):
                        tx.debit("office", wh, "usage", at, energy_wh=Fraction(wh))
        finally:
            journal.close()
    return write


def power_span(page, span: str) -> dict:
    from playwright.sync_api import expect

    page.locator(f"#spans button[data-span={span}]").click()
    expect(page.locator(f"#spans button[data-span={span}]")).to_have_attribute("aria-pressed", "true")
    words = {"day": "the last day", "month": "the last 30 days"}[span]
    expect(page.locator("#chart")).to_have_attribute("aria-label", re.compile(words))
    expect(page.locator("#chart")).to_have_attribute("aria-busy", "false")  # the span's history is in
    page.wait_for_function("() => !document.querySelector('#chart-empty') || document.querySelector('#chart-empty')"
                           ".hidden")
    page.evaluate(FRAMES)
    return page.evaluate(POWER_SPAN, [POWER_RGB, 40])


def test_the_charts_day_and_month_come_from_the_journal_and_survive_a_restart(chromium, problems, tmp_path):
    now = time.time()
    c = start(tmp_path, before=with_history((now - 25 * 86_400, 3), (now - 20 * 3600, 4)))
    context = phone(chromium)
    page = problems.watch(context.new_page())
    seen = {}
    try:
        for run in ("first start", "after a restart"):
            page.goto(c.base + "/s/office")
            live(page)
            page.locator("#chart-card").scroll_into_view_if_needed()
            seen[run] = {span: power_span(page, span) for span in ("day", "month")}
            shot(page, tmp_path, f"chart-{run.replace(' ', '-')}.png")
            with urllib.request.urlopen(c.base + "/api/sockets/office/history?span=month", timeout=5) as resp:
                month = json.load(resp)
            if run == "first start":
                page.goto("about:blank")  # the page is loaded again after the restart: no reconnect tries meanwhile
                assert c.stop() == 0, c.output()
                c.start()
    finally:
        context.close()
        terminate(c.proc, 10)
    problems.check()

    assert len(month["t"]) <= 121 and month["step_s"] == 21_600, month
    assert max(p for p in month["power_w"] if p is not None) > 0 and month["balance_tokens"][-2] > 4000, month
    for run, spans in seen.items():
        day, mon = spans["day"], spans["month"]
        # use from 20 h ago for 4 h: about 1/6 into the day; use from 25 days ago: about 1/6 into 30 days
        assert day["area"] > 30 and 0.10 <= day["left"] <= 0.24, f"{run}: the day's power line is at {day}"
        assert mon["area"] > 30 and 0.10 <= mon["left"] <= 0.24, f"{run}: the month's power line is at {mon}"
    for span in ("day", "month"):
        assert seen["first start"][span]["left"] == pytest.approx(seen["after a restart"][span]["left"], abs=0.02), seen


def test_the_history_page_lists_top_ups_with_receipts_and_the_use_per_day(chromium, problems, tmp_path):
    from playwright.sync_api import expect

    today = date.today()
    yesterday, long_ago = today - timedelta(days=1), today - timedelta(days=25)
    c = start(tmp_path, before=with_history((local(long_ago, 8), 3), (local(yesterday, 8), 4)))
    context = phone(chromium)
    page = problems.watch(context.new_page())
    try:
        c.deposit("office", 250)
        wait_until(lambda: c.state("office")["balance_tokens"] > 4720, 15, "the deposit credited")
        page.goto(c.base + "/s/office")
        page.locator("#history-link").click()
        page.wait_for_url(c.base + "/s/office/history")
        rows = page.locator("#topups tbody tr")
        expect(rows).to_have_count(2)                      # today's and the one 25 days ago, newest first
        expect(rows.nth(0)).to_contain_text("250 tokens")
        expect(rows.nth(1)).to_contain_text("5,000 tokens")
        daily = page.locator("#daily tbody tr")
        expect(daily).to_have_count(30)
        cells = {tr.get_attribute("data-day"): [int(td.inner_text().split()[0].replace(",", "")) for td in
                                                tr.locator("td.num").all()] for tr in daily.all()}
        s = shot(page, tmp_path, "history.png")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], f"the history page scrolls sideways ({s})"
        assert cells[long_ago.isoformat()] == [120, 120] and cells[yesterday.isoformat()] == [160, 160], \
            f"the backdated 120 Wh and 160 Wh (a token a Wh) are not what the days show: {cells} ({s})"
        assert all(v == [0, 0] for d, v in cells.items() if d not in (long_ago.isoformat(), yesterday.isoformat(),
                                                                     today.isoformat())), f"{cells} ({s})"
        rows.nth(0).locator("a").click()                   # its receipt
        expect(page.locator("h1")).to_have_text(re.compile(r"^Receipt \d+$"))
        expect(page.locator('[data-field="amount"]')).to_have_text("250 tokens")
        problems.check()
        checking = checker(chromium, PHONE)                # WCAG with AAA contrast, as the other pages
        try:
            other = checking.new_page()
            other.goto(c.base + "/s/office/history")
            assert violations(other) == []
        finally:
            checking.close()
    finally:
        context.close()
        terminate(c.proc, 10)
