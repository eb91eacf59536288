"""Top-up codes in a real browser on a 390 x 844 phone, against the real controller (a subprocess).

A tenant types a code on the socket's page and sees the power come on without a reload, and the same
code again refused in words; a landlord makes a code with the button in the landlord view and reads it
off the page, and that code is real (it credits the socket once through the tenant's API). Screenshots
go to each test's tmp_path and are named in the assertion messages.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from pathlib import Path

from tests.conftest import NEEDS_CHROMIUM
from tests.support.web_beds import PASSWORD
from tests.web.conftest import AXE, checker, violations

pytestmark = NEEDS_CHROMIUM

PHONE = {"width": 390, "height": 844}
LIVE_S = 10_000   # ms: the page connects its live updates
PUSH_S = 8_000    # ms: a change reaches the page
SPACED = re.compile(r"^\d{3} \d{3} \d{3}$")


def phone(chromium, **extra):
    return chromium.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True, **extra)


def snap(page, tmp_path: Path, name: str, full_page: bool = True) -> Path:
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=full_page)
    return path


def post_json(url: str, body: dict, headers: dict) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def make_code(controller, socket_id: str, tokens: int) -> dict:
    """A code from the landlord's API with the controller's own API token (as `payg code` uses it)."""
    token = (controller.data_dir / "api-token").read_text().strip()
    status, made = post_json(f"{controller.base}/api/sockets/{socket_id}/codes", {"tokens": tokens},
                             {"Authorization": f"Bearer {token}"})
    assert status == 201 and made["tokens"] == tokens, (status, made)
    return made


def redeem(controller, socket_id: str, code: str) -> tuple[int, dict]:
    """A code entered the way the tenant page sends it: same-origin JSON, no cookie."""
    return post_json(f"{controller.base}/api/sockets/{socket_id}/redeem", {"code": code},
                     {"Origin": controller.base})


def refusal(path: str, status: int):
    """Chromium logs a fetch's 4xx answer as a console error: allowed for the refusals a test provokes."""
    return lambda item: item["url"].endswith(path) and f"status of {status} " in item["text"]


def fits_width(page) -> tuple[int, int]:
    return tuple(page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]"))


def test_a_tenant_enters_a_code_on_a_phone_and_the_power_comes_on_without_a_reload(chromium, controller, problems,
                                                                                  tmp_path):
    from playwright.sync_api import expect

    made = make_code(controller, "kitchen", 200)   # 200 Wh: a quarter of an hour at 800 W
    context = phone(chromium)
    page = problems.watch(context.new_page())
    sent = []
    page.on("request", lambda r: r.method == "POST" and "/redeem" in r.url and sent.append(r.url))
    try:
        page.goto(controller.base + "/s/kitchen")
        expect(page.locator("#live .txt")).to_have_text("Live", timeout=LIVE_S)
        expect(page.locator("#relay-t")).to_have_text("Off")
        expect(page.locator("#bal")).to_have_text("0")
        box = page.locator("#code-in")
        expect(box, "no code box on the tenant page").to_be_visible()
        assert box.get_attribute("inputmode") == "numeric" and box.get_attribute("autocomplete") == "one-time-code"
        label = page.locator("label[for=code-in]")
        expect(label).to_have_count(1)
        page.evaluate("window.__marker = 1")
        shots = [snap(page, tmp_path, "tenant-code-before.png")]

        # The top-up card, first on a phone, leads to the code box below it.
        page.locator("#go-code a").click()
        expect(page.locator("#code-card")).to_be_focused()
        seen = page.locator("#code-f").evaluate(
            "(f) => { const r = f.getBoundingClientRect(); return [r.top, r.bottom]; }")
        shots.append(snap(page, tmp_path, "tenant-code-link.png", full_page=False))
        assert 0 <= seen[0] and seen[1] <= PHONE["height"], f"the code form is at {seen} after the link ({shots[-1]})"

        # Too few digits: said at once, and not sent (a wrong code would count against the socket).
        box.fill("123 456")
        box.press("Enter")
        expect(page.locator("#code-out")).to_contain_text("9 digits")
        assert sent == [], f"a code of 6 digits was sent to the controller: {sent}"

        # The landlord's code, typed with dashes.
        box.fill(made["code"][:3] + "-" + made["code"][3:6] + "-" + made["code"][6:])
        page.locator("#code-go").click()
        expect(page.locator("#code-out")).to_have_text(re.compile(r"^\+200 tokens added\b"), timeout=PUSH_S)
        expect(page.locator("#relay-t")).to_have_text("On", timeout=PUSH_S)
        expect(page.locator("#bal")).to_have_text(re.compile(r"^(1\d\d|200)$"))
        expect(page.locator("#why")).to_be_hidden()
        expect(box).to_have_value("")
        shots.append(snap(page, tmp_path, "tenant-code-added.png"))
        assert page.evaluate("window.__marker") == 1, f"the page was reloaded ({shots[-1]})"
        assert fits_width(page)[0] <= PHONE["width"], f"the page scrolls sideways ({shots[-1]})"
        server = controller.state("kitchen")
        assert server["relay"] == "on" and 0 < server["balance_tokens"] <= 200, server

        # The same code again: refused with the server's words; nothing more is credited.
        box.fill(made["spaced"])
        box.press("Enter")
        expect(page.locator("#code-out")).to_contain_text("used already", timeout=PUSH_S)
        shots.append(snap(page, tmp_path, "tenant-code-used.png"))
        assert len(sent) == 2, sent
        assert controller.state("kitchen")["balance_tokens"] <= 200
        expect(page.locator("#relay-t")).to_have_text("On")
        assert page.evaluate("window.__marker") == 1, f"the page was reloaded ({shots[-1]})"
    finally:
        context.close()
    problems.check(allowed=refusal("/api/sockets/kitchen/redeem", 400))

    # Without live updates at all (no Socket.IO client), the answer alone turns the page on.
    other = make_code(controller, "office", 50)
    context = phone(chromium)
    page = problems.watch(context.new_page())
    try:
        page.route("**/assets/socket.io.min.js", lambda route: route.fulfill(
            status=200, content_type="text/javascript", body="/* no live updates in this test */"))
        page.goto(controller.base + "/s/office")
        expect(page.locator("#relay-t")).to_have_text("Off")
        page.locator("#code-in").fill(other["spaced"])
        page.locator("#code-go").click()
        expect(page.locator("#code-out")).to_have_text(re.compile(r"^\+50 tokens added\b"), timeout=PUSH_S)
        expect(page.locator("#relay-t")).to_have_text("On")
        expect(page.locator("#bal")).not_to_have_text("0")
        shot = snap(page, tmp_path, "tenant-code-no-live.png")
        assert page.locator("#live").get_attribute("data-state") == "off", f"live updates were on ({shot})"
    finally:
        context.close()
    problems.check(allowed=refusal("/api/sockets/kitchen/redeem", 400))   # the first page's, seen above


def test_a_landlord_makes_a_code_with_the_button_on_a_phone_and_it_is_real(chromium, controller, problems,
                                                                           tmp_path):
    from playwright.sync_api import expect

    context = phone(chromium, permissions=["clipboard-read", "clipboard-write"])
    page = problems.watch(context.new_page())
    try:
        page.goto(controller.base + "/landlord/login?next=/landlord")
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(controller.base + "/landlord")
        expect(page.locator("#at")).to_have_text(re.compile("^updated "), timeout=LIVE_S)
        button = page.locator('#rows tr[data-id="laundry"] button[data-act="code"]')
        expect(button, "no 'Make a code' button in the laundry row").to_be_visible()
        expect(button).to_contain_text("code")
        button.click()
        dialog = page.locator("dialog#mk")
        expect(dialog).to_be_visible()
        expect(page.locator("#mk-tok")).to_be_focused()
        expect(page.locator("#mk-who")).to_contain_text("Laundry")

        # An amount a code cannot carry: the controller's message, in the dialog, and no code.
        page.fill("#mk-tok", "15")
        page.locator("#mk-go").click()
        expect(page.locator("#mk-err")).to_contain_text("multiple of 10")
        expect(page.locator("#mk-code")).to_be_hidden()
        shots = [snap(page, tmp_path, "landlord-code-error.png", full_page=False)]

        page.fill("#mk-tok", "120")
        page.locator("#mk-go").click()
        code = page.locator("#mk-code")
        expect(code).to_have_text(SPACED, timeout=PUSH_S)
        expect(page.locator("#mk-err")).to_be_hidden()
        expect(page.locator("#mk-done")).to_contain_text("120 tokens")
        shots.append(snap(page, tmp_path, "landlord-code-made.png", full_page=False))
        spaced = code.inner_text().strip()
        look = code.evaluate("""(e) => { const r = e.getBoundingClientRect(), s = getComputedStyle(e);
            return {size: parseFloat(s.fontSize), left: r.left, right: r.right}; }""")
        assert look["size"] >= 28, f"the code is set in {look['size']} px, too small to read out ({shots[-1]})"
        assert 0 <= look["left"] and look["right"] <= PHONE["width"], f"the code is cut: {look} ({shots[-1]})"

        page.locator("#mk-copy").click()
        expect(page.locator("#mk-copied")).to_have_text("Copied")
        assert page.evaluate("navigator.clipboard.readText()").replace(" ", "") == spaced.replace(" ", "")

        page.keyboard.press("Escape")
        expect(dialog).to_be_hidden()
        expect(button).to_be_focused()
    finally:
        context.close()
    problems.check(allowed=refusal("/api/sockets/laundry/codes", 400))

    assert controller.state("laundry")["balance_tokens"] == 0
    status, done = redeem(controller, "laundry", spaced)
    assert status == 200 and done["tokens"] == 120 and done["booked"] is True, (status, done)
    assert done["view"]["relay"] == "on", done
    status, again = redeem(controller, "laundry", spaced)
    assert status == 400 and again["reason"] == "used", (status, again)


def test_wrong_codes_make_the_tenant_page_say_how_long_to_wait_and_hold_the_next_try(chromium, controller,
                                                                                     problems, tmp_path):
    """After five wrong codes the controller answers 429: the page shows its message with the wait, and a
    try within that wait is answered by the page itself (nothing sent, so nothing more counted).

    Real time would race a loaded machine twice: the controller's first wait is 1 s, and the page's hold is
    measured with Date.now(). So the test lengthens the controller's wait the way a guesser would (wrong codes
    sent as each wait lapses, from the same address, outside the page) and stops the page's Date.now()."""
    import time

    from playwright.sync_api import expect

    context = phone(chromium)
    page = problems.watch(context.new_page())
    sent = []
    page.on("request", lambda r: r.method == "POST" and "/redeem" in r.url and sent.append(r.url))
    try:
        page.goto(controller.base + "/s/office")
        box, out = page.locator("#code-in"), page.locator("#code-out")
        for i in range(5):
            box.fill(f"{555000001 + i}")
            box.press("Enter")
            expect(out).to_contain_text("not a code for this socket")
            expect(page.locator("#code-go")).not_to_have_attribute("aria-busy", "true")
        guesses = []
        while True:
            status, answer = redeem(controller, "office", f"{555000100 + len(guesses)}")
            guesses.append(status)
            assert status in (400, 429) and len(guesses) < 10, guesses
            if status == 429 and answer["retry_after_s"] >= 4:
                break
            if status == 429:
                time.sleep(answer["retry_after_s"])
        assert 400 in guesses, f"the wait never lapsed between guesses: {guesses}"
        page.clock.set_fixed_time(page.evaluate("Date.now()"))
        box.fill("555 000 099")
        box.press("Enter")
        expect(out).to_have_text(re.compile(r"^Too many wrong codes\. Wait \d+ s and try again\.$"))
        assert len(sent) == 6, sent
        box.press("Enter")
        page.wait_for_timeout(300)
        expect(out).to_contain_text("Wait")
        shot = snap(page, tmp_path, "tenant-code-wait.png")
        assert len(sent) == 6, f"a code was sent within the wait the controller asked for ({shot})"
    finally:
        context.close()
    problems.check(allowed=lambda item: item["url"].endswith("/api/sockets/office/redeem")
                   and re.search(r"status of (400|429) ", item["text"]))


def test_the_code_box_its_answers_and_the_code_dialog_pass_wcag_with_aaa_contrast(chromium, controller, tmp_path):
    """At WCAG's reflow width (320 px): the tenant's code box with a refusal and with a credit, and the
    landlord's dialog with its error and with a code; nothing scrolls the page sideways."""
    from playwright.sync_api import expect

    assert AXE.is_file(), f"{AXE} is missing: `make test` installs it with npm"
    made = make_code(controller, "laundry", 30)
    context = checker(chromium, {"width": 320, "height": 640})   # axe, let past the policy
    found = {}
    try:
        page = context.new_page()
        page.goto(controller.base + "/s/laundry")
        expect(page.locator("#code-in")).to_be_visible()
        page.locator("#code-in").fill("111 111 111")
        page.locator("#code-in").press("Enter")
        expect(page.locator("#code-out")).to_contain_text("not a code for this socket")
        found["tenant, refused"] = (violations(page), snap(page, tmp_path, "a11y-tenant-refused.png"),
                                    fits_width(page))
        page.locator("#code-in").fill(made["code"])
        page.locator("#code-in").press("Enter")
        expect(page.locator("#code-out")).to_contain_text("+30 tokens added")
        found["tenant, added"] = (violations(page), snap(page, tmp_path, "a11y-tenant-added.png"), fits_width(page))

        page.goto(controller.base + "/landlord/login?next=/landlord")
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(controller.base + "/landlord")
        expect(page.locator("#at")).to_have_text(re.compile("^updated "), timeout=LIVE_S)
        page.locator('#rows tr[data-id="office"] button[data-act="code"]').click()
        page.fill("#mk-tok", "99999")
        page.locator("#mk-go").click()
        expect(page.locator("#mk-err")).to_be_visible()
        found["landlord, error"] = (violations(page), snap(page, tmp_path, "a11y-landlord-error.png", False),
                                    fits_width(page))
        page.fill("#mk-tok", "40")
        page.locator("#mk-go").click()
        expect(page.locator("#mk-code")).to_have_text(SPACED)
        expect(page.locator("#mk-copy")).to_be_focused()
        found["landlord, code"] = (violations(page), snap(page, tmp_path, "a11y-landlord-code.png", False),
                                   fits_width(page))
    finally:
        context.close()
    for what, (bad, shot, (wide, view)) in found.items():
        assert not bad, f"{what}: accessibility violations ({shot}):\n" + "\n".join(bad)
        assert wide <= view, f"{what}: the page is {wide} px wide in a {view} px viewport ({shot})"
