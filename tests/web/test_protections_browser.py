"""The tenant protections on the pages, in a real browser against the real controller (a subprocess).

The controller runs the embedded default (kitchen 800 W, laundry a washing machine, office
40-250 W) with a [protections] table low enough to trigger within a test and a [codes] step of 25 tokens:

- warn_hours = [744, 1]: office, paid 20,000 tokens before the start (80 h or more), lasts less than
  744 h; kitchen, paid 400 (half an hour at 800 W), less than 1 h;
- flag_off_hours = 1e-9 (3.6 microseconds): a socket off for lack of credit at all is flagged, so the
  landlord view's first reading of its 7 days already exceeds it (the view reads those hours at most once a
  minute per socket, payg/services/dashboard.py, hence the long timeout); a socket never paid is vacant, not
  off for lack of credit, and never flagged; sockets paid before the controller's first start were never off
  for lack of credit;
- every day a friendly-credit day, and debt_recovery_percent = 50: a heater added for the test (3,600 W:
  a token a second), paid 3 tokens, runs out within seconds and stays on, its usage owed; a top-up then
  repays at most half of what is owed.

Screenshots go to each test's tmp_path and are named in the assertion messages.
"""

from __future__ import annotations

import json
import re
import sqlite3
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import NEEDS_CHROMIUM
from tests.support import terminate, wait_until
from tests.support.web_beds import PASSWORD
from tests.web.conftest import AXE, Controller, checker, violations  # axe: WCAG 2.2 AA with AAA's contrast

pytestmark = NEEDS_CHROMIUM

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}
LIVE_S = 10_000    # ms: the page connects its live updates
PUSH_S = 8_000     # ms: a change reaches the page
FLAG_S = 20_000    # ms: the view reads the hours off again as soon as a socket goes off for lack of credit

PROTECTIONS = """
[protections]
warn_hours = [744, 1]
flag_off_hours = 1e-9
debt_recovery_percent = 50

[protections.friendly_credit]
days = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]

[codes]
tokens_per_unit = 25
"""

FLAG_TITLE = re.compile(r"off for lack of credit.*last 7 days", re.I | re.S)
FLAG_TEXT = re.compile(r"^Off (< 3 min|\d+ min|\d+ h) in 7 days$")
HEATER = """
[[sockets]]
id = "heater"
name = "Heater"
meter = { kind = "simulated", load_w = 3600 }
relay = { kind = "simulated" }
"""
UNFRIENDLY_HEATER = HEATER.replace('relay = { kind = "simulated" }',
                                   'relay = { kind = "simulated" }\nfriendly_credit = false')
OWED = re.compile(r"You owe (\d[\d,]*(\.\d+)?) tokens?\.")


@pytest.fixture
def start(tmp_path: Path):
    """start(deposits, extra): the controller with PROTECTIONS (and `extra` TOML), the mock payments made
    before its first start."""
    made: list[Controller] = []

    def run(deposits: dict[str, int], extra: str = "") -> Controller:
        c = Controller(tmp_path)
        c.config.write_text(c.config.read_text() + PROTECTIONS + extra)
        for socket_id, amount in deposits.items():
            c.deposit(socket_id, amount)
        made.append(c)
        c.start()
        return c

    try:
        yield run
    finally:
        for c in made:
            if c.proc is not None:
                terminate(c.proc, 10)


def snap(page, tmp_path: Path, name: str, full_page: bool = True) -> Path:
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=full_page)
    return path


def api_post(c: Controller, path: str, body: dict) -> dict:
    """A landlord action with the controller's own API token (as the CLI uses it)."""
    token = (c.data_dir / "api-token").read_text().strip()
    req = urllib.request.Request(c.base + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.load(resp)
    except urllib.error.HTTPError as exc:
        pytest.fail(f"POST {path} answered {exc.code}: {exc.read()!r}")


def credit_offs(c: Controller) -> dict[str, int]:
    conn = sqlite3.connect(str(c.data_dir / "journal.sqlite"), timeout=30)
    try:
        return dict(conn.execute("SELECT socket_id, count(*) FROM events WHERE kind = 'credit_off' "
                                 "GROUP BY socket_id").fetchall())
    finally:
        conn.close()


def log_in(page, c: Controller) -> None:
    from playwright.sync_api import expect

    page.goto(c.base + "/landlord/login?next=/landlord")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(c.base + "/landlord")
    expect(page.locator("#at")).to_have_text(re.compile("^updated "), timeout=LIVE_S)


def assert_accessible(chromium, c: Controller, path: str, shown: str, tmp_path: Path,
                      log_in_first: bool = False) -> None:
    """The page at WCAG's reflow width (320 px), with `shown` visible: no axe violation, no sideways scroll."""
    from playwright.sync_api import expect

    assert AXE.is_file(), f"{AXE} is missing: `make test` installs it with npm"
    context = checker(chromium, {"width": 320, "height": 640})   # axe, let past the policy
    try:
        page = context.new_page()
        if log_in_first:
            log_in(page, c)
        else:
            page.goto(c.base + path)
        expect(page.locator(shown)).to_be_visible(timeout=PUSH_S)
        bad = violations(page)
        shot = snap(page, tmp_path, "a11y" + path.replace("/", "-") + ".png")
        wide = page.evaluate("document.documentElement.scrollWidth")
    finally:
        context.close()
    assert not bad, f"{path}: accessibility violations ({shot}):\n" + "\n".join(bad)
    assert wide <= 320, f"{path} is {wide} px wide in a 320 px viewport ({shot})"


@pytest.mark.slow
def test_the_tenant_page_says_how_many_hours_of_credit_are_left_and_what_is_owed(chromium, start, problems,
                                                                                tmp_path):
    from playwright.sync_api import expect

    c = start({"office": 20_000, "kitchen": 400, "heater": 3}, HEATER)
    context = chromium.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
    page = problems.watch(context.new_page())
    shots = []
    try:
        # office: 20,000 tokens at 40-250 W last 80 h to 500 h, less than the first level (744 h)
        page.goto(c.base + "/s/office")
        expect(page.locator("#live .txt")).to_have_text("Live", timeout=LIVE_S)
        low = page.locator("#low")
        expect(low).to_have_text("Low credit. Less than 744 hours of credit left at the present power. "
                                 "Top up soon to keep the power on.", timeout=PUSH_S)
        expect(low).to_have_class("banner warn")
        expect(page.locator("#debt")).to_be_hidden()
        shots.append(snap(page, tmp_path, "tenant-warn-744.png"))

        # kitchen: 400 tokens at 800 W last half an hour, less than the second level: one hour, singular
        page.goto(c.base + "/s/kitchen")
        expect(page.locator("#live .txt")).to_have_text("Live", timeout=LIVE_S)
        expect(low).to_have_text("Low credit. Less than 1 hour of credit left at the present power. "
                                 "Top up soon to keep the power on.", timeout=PUSH_S)
        shots.append(snap(page, tmp_path, "tenant-warn-1.png"))

        # heater: its 3 tokens run out within seconds on a friendly-credit day: still on, and what it uses is owed
        page.goto(c.base + "/s/heater")
        expect(page.locator("#live .txt")).to_have_text("Live", timeout=LIVE_S)
        debt = page.locator("#debt")
        expect(debt).to_be_visible(timeout=30_000)
        expect(debt).to_contain_text(OWED)
        expect(debt).to_contain_text("Your next top-ups repay it.")
        expect(debt).not_to_contain_text("part of each top-up")
        expect(page.locator("#relay-t")).to_have_text("On")
        expect(low).to_have_text("Out of credit. The power stays on for now (friendly-credit hours), and what it "
                                 "uses is owed: top up to keep it on.")
        expect(low).to_have_class("banner bad")
        shots.append(snap(page, tmp_path, "tenant-owes.png"))
        wait_until(lambda: c.state("heater")["debt"] >= 8, 60, "the heater to owe 8 tokens", interval_s=0.1)
        owed = float(OWED.search(debt.inner_text()).group(1).replace(",", ""))
        assert owed > 0, debt.inner_text()

        # a top-up of 12 with the plan (50 %): 6 repay debt, 6 are credit at once (6 s); the rest is owed
        c.deposit("heater", 12)
        expect(debt).to_contain_text("With your repayment plan, part of each top-up repays it; the rest is credit "
                                     "you can use at once.", timeout=PUSH_S)
        expect(debt).to_contain_text(OWED)
        server = c.state("heater")   # read before the screenshot: the credit lasts seconds
        assert server["debt"] > 0 and server["balance"] > 0, server
        expect(page.locator("#bal")).not_to_have_text(re.compile(r"^(0|-.*)$"))
        shots.append(snap(page, tmp_path, "tenant-owes-plan.png"))
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], \
            f"the page scrolls sideways ({shots[-1]})"
    finally:
        context.close()
    problems.check()
    assert_accessible(chromium, c, "/s/heater", "#debt", tmp_path)


@pytest.mark.slow
def test_the_landlord_view_flags_a_socket_long_off_for_lack_of_credit_not_a_paid_or_vacant_one(chromium, start,
                                                                                    problems, tmp_path):
    from playwright.sync_api import expect

    # the heater (no friendly credit) runs out of its one token at once; the laundry was never paid: vacant
    c = start({"office": 20_000, "kitchen": 400, "heater": 1}, UNFRIENDLY_HEATER)
    wait_until(lambda: credit_offs(c).get("heater", 0) >= 1, 20, "the heater to go off for lack of credit")
    offs = credit_offs(c)
    assert set(offs) == {"heater"}, f"the premise: only the heater has been off for lack of credit: {offs}"

    for viewport, name in ((DESKTOP, "desktop"), (PHONE, "phone")):
        context = chromium.new_context(viewport=viewport)
        page = problems.watch(context.new_page())
        try:
            log_in(page, c)
            flag = page.locator('#rows tr[data-id="heater"] .needs-help')
            expect(flag, f"no flag on the heater ({name})").to_be_visible(timeout=FLAG_S)
            expect(flag).to_have_text(FLAG_TEXT)
            assert FLAG_TITLE.search(flag.get_attribute("title") or ""), flag.get_attribute("title")
            for other in ("kitchen", "office", "laundry"):   # paid and on, or vacant: never flagged
                expect(page.locator(f'#rows tr[data-id="{other}"] .needs-help'), f"{other} flagged").to_be_hidden()
            expect(page.locator('#rows tr[data-id="laundry"] .pill.st-vacant')).to_have_text("Vacant")
            expect(page.locator("#help-note")).to_contain_text("in the last 7 days")
            shot = snap(page, tmp_path, f"landlord-flag-{name}.png")
            # the flag is beside the status, which it leaves alone: totals and the status filter as before
            expect(page.locator('#rows tr[data-id="heater"] .pill.st-off')).to_have_text("Off")
            expect(page.locator("#tot th")).to_have_text("4 sockets")
            page.select_option("#st", "off")
            expect(page.locator("#count")).to_have_text("Showing 1 of 4 sockets")
            expect(page.locator('#rows tr[data-id="heater"]')).to_be_visible()
            page.select_option("#st", "vacant")
            expect(page.locator("#count")).to_have_text("Showing 1 of 4 sockets")
            expect(page.locator('#rows tr[data-id="laundry"]')).to_be_visible()
            page.select_option("#st", "on")
            expect(page.locator("#count")).to_have_text("Showing 2 of 4 sockets")
            expect(page.locator('#rows tr[data-id="heater"]')).to_be_hidden()
            page.select_option("#st", "")
            box = flag.bounding_box()
            assert box and 0 <= box["x"] and box["x"] + box["width"] <= viewport["width"], \
                f"the flag is cut off ({name}: {box}; {shot})"
        finally:
            context.close()

    # the rows as the server renders them (no live updates): the flag is there too
    context = chromium.new_context(viewport=DESKTOP)
    page = problems.watch(context.new_page())
    try:
        page.route("**/assets/socket.io.min.js", lambda route: route.fulfill(
            status=200, content_type="text/javascript", body="/* no live updates in this test */"))
        page.goto(c.base + "/landlord/login?next=/landlord")
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(c.base + "/landlord")
        flag = page.locator('#rows tr[data-id="heater"] .needs-help')
        expect(flag).to_have_text(FLAG_TEXT)
        assert FLAG_TITLE.search(flag.get_attribute("title") or ""), flag.get_attribute("title")
        expect(page.locator('#rows tr:not([data-id="heater"]) .needs-help')).to_have_count(0)
    finally:
        context.close()
    problems.check()
    assert_accessible(chromium, c, "/landlord", '#rows tr[data-id="heater"] .needs-help', tmp_path, log_in_first=True)


def test_the_make_a_code_dialog_uses_the_configured_step(chromium, start, problems, tmp_path):
    from playwright.sync_api import expect

    c = start({})
    context = chromium.new_context(viewport=DESKTOP)
    page = problems.watch(context.new_page())
    try:
        log_in(page, c)
        page.locator('#rows tr[data-id="office"] button[data-act="code"]').click()
        expect(page.locator("dialog#mk")).to_be_visible()
        hint, box = page.locator("#mk-hint"), page.locator("#mk-tok")
        expect(hint).to_contain_text("25 tokens")
        expect(hint).to_contain_text("24,875")
        expect(hint).not_to_contain_text("9,950")
        assert (box.get_attribute("step"), box.get_attribute("min"), box.get_attribute("max")) == \
            ("25", "25", "24875")
        shot = snap(page, tmp_path, "landlord-code-step.png", full_page=False)

        # an amount off the step still reaches the controller, whose message says what fits
        page.fill("#mk-tok", "30")
        page.locator("#mk-go").click()
        expect(page.locator("#mk-err")).to_contain_text("multiple of 25", timeout=PUSH_S)
        page.fill("#mk-tok", "75")
        page.locator("#mk-go").click()
        expect(page.locator("#mk-code")).to_have_text(re.compile(r"^\d{3} \d{3} \d{3}$"), timeout=PUSH_S)
        expect(page.locator("#mk-for")).to_contain_text("75 tokens")
    finally:
        context.close()
    problems.check(allowed=lambda item: item["url"].endswith("/api/sockets/office/codes")
                   and "status of 400 " in item["text"])
    assert shot.exists()
