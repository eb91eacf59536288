"""The web pages in a real browser: headless Debian Chromium, driven by playwright, against the real app.

The controller is `app.py --config FILE` in a subprocess on the embedded default (config/default.toml:
kitchen 800 W, laundry, office; the mock ledger), with its data directory in tmp_path, a free
127.0.0.1 port and a landlord password hash in an environment variable. Deposits are made like a
tenant's payment would arrive: `app.py deposit` pays into the mock ledger, the controller's deposit
watcher books it, and the page must show it through its live connection, never by reloading.

Every page fails its test on a console error, an uncaught exception or a CSP violation (test C
allows, narrowly, the failed Socket.IO requests while the controller is down). Screenshots go to
TEST_OUTPUT/browser/ for people to look at.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from werkzeug.security import generate_password_hash

from tests.conftest import CHROMIUM, TEST_OUTPUT
from tests.support import free_port, terminate, wait_until
from tests.web_beds import CHROMIUM_ARGS, HASH_ENV, embedded_default_toml

pytestmark = pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK),
                                reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)")

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "app.py"
SHOTS = TEST_OUTPUT / "browser"
PASSWORD = "correct horse battery staple"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}
LIVE_S = 10_000          # ms: the page connects (or reconnects) its live updates
PUSH_S = 8_000           # ms: a change reaches the page (1 s ticks, 1 s deposit polls, a CLI start)
POSITIVE = re.compile(r"^(?:[1-9][\d,]*(?:\.\d+)?|0\.\d*[1-9]\d*)$")   # the balance as the page formats it
# Records CSP violations as console errors too (Chromium logs most of them itself; this catches all).
CSP_PROBE = ("document.addEventListener('securitypolicyviolation', (e) => console.error("
             "'CSP violation: ' + e.violatedDirective + ' blocked ' + e.blockedURI));")


# --- the controller ----------------------------------------------------------------




class Controller:
    """`app.py --config FILE` in a subprocess (restartable on the same port and data), output in a log."""

    def __init__(self, tmp_path: Path):
        self.cwd = tmp_path
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.data_dir = tmp_path / "var"
        self.config = tmp_path / "payg.toml"
        self.config.write_text(embedded_default_toml(self.data_dir, self.port))
        self.env = dict(os.environ, **{HASH_ENV: generate_password_hash(PASSWORD)})  # scrypt, as `payg password`
        self.log = tmp_path / "controller.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, str(APP), "--config", str(self.config)], cwd=self.cwd,
                                         env=self.env, stdout=out, stderr=subprocess.STDOUT)
        self.wait_ready()

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, timeout_s: float = 30) -> None:
        def healthy() -> bool:
            if self.proc.poll() is not None:
                pytest.fail(f"the controller exited with {self.proc.returncode}:\n{self.output()}")
            try:
                with urllib.request.urlopen(self.base + "/healthz", timeout=2) as resp:
                    return resp.status == 200
            except (urllib.error.URLError, OSError):
                return False

        wait_until(healthy, timeout_s, "the controller's /healthz to answer 200", interval_s=0.05)

    def stop(self, timeout_s: float = 20) -> int:
        """SIGTERM, then kill; the exit status (0 is a clean stop)."""
        if self.proc is None:
            return 0
        status = terminate(self.proc, timeout_s)
        if status is None:
            pytest.fail(f"the controller did not stop within {timeout_s} s of SIGTERM:\n{self.output()}")
        return status

    def deposit(self, socket_id: str, amount: int) -> None:
        """A mock payment of `amount` tokens into the socket's address, by the CLI (like tests/test_cli.py)."""
        result = subprocess.run([sys.executable, str(APP), "deposit", "--socket", socket_id, "--amount", str(amount),
                                 "--config", str(self.config)], cwd=self.cwd, env=self.env, capture_output=True,
                                text=True, timeout=60, check=False)
        assert result.returncode == 0, result.stderr
        assert re.search(r"\bdeposit mock-[0-9a-f]{32}\b", result.stdout), result.stdout

    def state(self, socket_id: str) -> dict:
        """The public JSON of one socket, as the server has it."""
        with urllib.request.urlopen(f"{self.base}/api/sockets/{socket_id}", timeout=5) as resp:
            return json.load(resp)


def settled_off(controller: Controller, socket_id: str, quiet_s: float = 2.5) -> int | float:
    """The balance once the server has the relay off and the balance unchanged for `quiet_s` (> 2 ticks)."""
    seen: dict = {}

    def quiet():
        st = controller.state(socket_id)
        key = (st["relay"], st["balance_tokens"])
        if key != seen.get("key"):
            seen.update(key=key, since=time.monotonic())
        return key[0] == "off" and time.monotonic() - seen["since"] >= quiet_s

    wait_until(quiet, 15, f"{socket_id}'s relay off and its balance settled", interval_s=0.1)
    return seen["key"][1]


@pytest.fixture
def controller(tmp_path: Path):
    c = Controller(tmp_path)
    try:
        c.start()
        yield c
    finally:
        if c.proc is not None:
            terminate(c.proc, 10)


# --- the browser -------------------------------------------------------------------


@pytest.fixture(scope="module")
def chromium():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


class Problems:
    """Console errors, uncaught exceptions and CSP violations of every page of a test."""

    def __init__(self):
        self.items: list[dict] = []

    def watch(self, page):
        page.add_init_script(CSP_PROBE)
        page.on("console", lambda m: m.type == "error" and self.items.append(
            {"at": time.monotonic(), "text": m.text, "url": (m.location or {}).get("url", "")}))
        page.on("pageerror", lambda e: self.items.append({"at": time.monotonic(), "text": f"uncaught: {e}",
                                                          "url": ""}))
        return page

    def check(self, allowed=lambda item: False) -> None:
        bad = [f"{p['text']} ({p['url']})" for p in self.items if not allowed(p)]
        assert not bad, "browser errors:\n" + "\n".join(bad)


@pytest.fixture
def problems():
    return Problems()


def shot(page, name: str, full_page: bool = True) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / name), full_page=full_page)


def mark(page) -> None:
    """A marker that a reload or a navigation would wipe out."""
    page.evaluate("window.__marker = 1")


def assert_fits_width(page) -> None:
    """Nothing makes the whole page scroll sideways (a wide table scrolls in its own box)."""
    widths = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], f"the page is {widths[0]} px wide in a {widths[1]} px viewport"


def assert_not_reloaded(page) -> None:
    assert page.evaluate("window.__marker") == 1, "the page was reloaded or navigated away"


# --- A: a tenant on a phone ------------------------------------------------------------


def test_tenant_page_follows_a_deposit_to_on_and_back_to_off_without_reloading(chromium, controller, problems):
    from playwright.sync_api import expect

    context = chromium.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
    page = problems.watch(context.new_page())
    try:
        page.goto(controller.base + "/s/kitchen")
        expect(page.locator("h1#name")).to_have_text("Kitchen")
        expect(page.locator("#bal")).to_have_text("0")
        expect(page.locator("#relay-t")).to_have_text("Off")
        expect(page.locator("#why")).to_have_text("Out of credit")
        expect(page.locator("#live .txt")).to_have_text("Live", timeout=LIVE_S)
        expect(page.locator("#live")).to_have_attribute("data-state", "on")

        # The QR code: loaded, and a preset switches it and the URI to that amount.
        qr = page.locator("#qr")
        page.wait_for_function("(img) => img.complete && img.naturalWidth > 0", arg=qr.element_handle())
        address = page.locator("#addr").inner_text().strip()
        assert re.fullmatch(r"mock1[0-9a-f]{40}", address), address
        expect(page.locator("#uri-t")).to_have_text(f"payg-mock:{address}")
        shot(page, "tenant-phone-off.png")
        preset = page.locator('#presets button[data-amount="50"]')
        preset.click()
        expect(preset).to_have_attribute("aria-pressed", "true")
        expect(qr).to_have_attribute("src", "/s/kitchen/qr.svg?amount=50")
        expect(page.locator("#uri-t")).to_have_text(f"payg-mock:{address}?amount=50")
        expect(page.locator("#uri")).to_have_attribute("href", f"payg-mock:{address}?amount=50")
        page.wait_for_function("(img) => img.complete && img.naturalWidth > 0 && img.src.includes('amount=50')",
                               arg=qr.element_handle())
        shot(page, "tenant-phone-preset.png")

        # 3 tokens = 3 Wh: about 13.5 s at 800 W.
        mark(page)
        controller.deposit("kitchen", 3)
        deposited = time.monotonic()
        expect(page.locator("#relay-t")).to_have_text("On", timeout=PUSH_S)
        expect(page.locator("#bal")).to_have_text(POSITIVE)
        expect(page.locator("#why")).to_be_hidden()
        expect(page.locator("#pw")).to_have_text("800")
        assert_not_reloaded(page)
        assert_fits_width(page)
        shot(page, "tenant-phone-on.png")

        expect(page.locator("#relay-t")).to_have_text("Off", timeout=30_000)
        on_for = time.monotonic() - deposited
        assert 8 < on_for < 30, f"3 Wh at 800 W lasted {on_for:.1f} s on the page (expected about 13.5 s)"
        # The cut is predicted (the simulated meter counts whole Wh): the last Wh is billed at the next tick,
        # or, when the counter had not rolled over at the cut, 1 token stays for after the next top-up.
        left = settled_off(controller, "kitchen")
        assert left in (0, 1), f"{left} tokens left when the relay opened"
        expect(page.locator("#bal")).to_have_text(str(left), timeout=PUSH_S)
        expect(page.locator("#relay-t")).to_have_text("Off")
        expect(page.locator("#why")).to_have_text(
            "Out of credit" if left == 0 else "Credit used up (what is left is kept for the next top-up)")
        assert_not_reloaded(page)
        shot(page, "tenant-phone-used-up.png")
    finally:
        context.close()
    problems.check()


# --- B: the landlord ------------------------------------------------------------------------


def row(page, socket_id: str):
    return page.locator(f'#rows tr[data-id="{socket_id}"]')


def status_of(page, socket_id: str):
    return row(page, socket_id).locator("td").nth(1).locator(".pill")


def override_button(page, socket_id: str):
    return row(page, socket_id).locator('button[data-act="ov"]')


def test_landlord_logs_in_forces_a_socket_off_and_back_and_credits_it_once(chromium, controller, problems):
    from playwright.sync_api import expect

    context = chromium.new_context(viewport=DESKTOP)
    page = problems.watch(context.new_page())
    try:
        page.goto(controller.base + "/landlord")
        expect(page).to_have_url(controller.base + "/landlord/login?next=/landlord")
        expect(page.locator("h1")).to_have_text("Landlord login")
        shot(page, "login.png")

        page.fill("#password", "not the password")
        page.click("button[type=submit]")
        expect(page.locator("p.banner.bad[role=alert]")).to_have_text("Wrong password.")
        assert "/landlord/login" in page.url
        shot(page, "login-wrong-password.png")

        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        expect(page).to_have_url(controller.base + "/landlord")
        expect(page.locator("#live .txt")).to_have_text("Live", timeout=LIVE_S)
        expect(page.locator("#rows tr")).to_have_count(3)
        assert page.locator("#rows tr").evaluate_all("rs => rs.map(r => r.dataset.id)") == \
            ["kitchen", "laundry", "office"]
        for sid in ("kitchen", "laundry", "office"):
            expect(status_of(page, sid)).to_have_text("Off")
        expect(page.locator("#tot th")).to_have_text("3 sockets")

        # A second tab at phone width sees the same pushes without touching anything.
        phone = problems.watch(context.new_page())
        phone.set_viewport_size(PHONE)
        phone.goto(controller.base + "/landlord")
        expect(phone.locator("#live .txt")).to_have_text("Live", timeout=LIVE_S)
        mark(page)
        mark(phone)

        controller.deposit("kitchen", 100)   # 100 Wh: over 7 minutes at 800 W
        expect(status_of(page, "kitchen")).to_have_text("On", timeout=PUSH_S)
        expect(status_of(phone, "kitchen")).to_have_text("On", timeout=PUSH_S)
        expect(override_button(page, "kitchen")).to_contain_text("Force off")
        expect(row(page, "kitchen").locator("td").nth(3)).to_have_text("800 W")
        shot(page, "landlord-desktop.png")

        override_button(page, "kitchen").click()
        expect(status_of(page, "kitchen")).to_have_text("Off")
        expect(override_button(page, "kitchen")).to_contain_text("Automatic")
        expect(row(page, "kitchen").locator("td").nth(1)).to_contain_text("forced off")
        # The other tab only has the push to go by.
        expect(status_of(phone, "kitchen")).to_have_text("Off", timeout=PUSH_S)
        expect(override_button(phone, "kitchen")).to_contain_text("Automatic")
        server = controller.state("kitchen")
        assert (server["override"], server["relay"]) == ("off", "off"), server
        assert_fits_width(phone)
        shot(page, "landlord-forced-off.png")
        shot(phone, "landlord-phone.png")

        # A manual credit while the relay is held open: nothing is used, so the balance moves by exactly it.
        before = controller.state("kitchen")["balance_tokens"]
        assert isinstance(before, int) and 0 < before <= 100, before
        expect(row(page, "kitchen").locator("td").nth(2).locator("span")).to_have_text(str(before), timeout=PUSH_S)
        row(page, "kitchen").locator('button[data-act="adj"]').click()
        dialog = page.locator("dialog#adj")
        expect(dialog).to_be_visible()
        expect(page.locator("#adj-who")).to_contain_text(f"Kitchen (kitchen) · balance {before} tokens")
        reason = f"refund for the broken kettle {os.getpid()}"
        page.fill("#adj-amt", "25")
        page.fill("#adj-why", reason)
        expect(page.locator("#adj-go")).to_have_text("Credit 25 tokens")
        shot(page, "landlord-credit-dialog.png", full_page=False)
        page.locator("#adj-go").dblclick()   # a double submit books once (one request id per opening)
        expect(dialog).to_be_hidden()
        expect(page.locator("#msg")).to_have_text("Kitchen: credited 25 tokens.")
        expect(row(page, "kitchen").locator("td").nth(2).locator("span")).to_have_text(str(before + 25))
        expect(row(phone, "kitchen").locator("td").nth(2).locator("span")).to_have_text(str(before + 25),
                                                                                       timeout=PUSH_S)
        assert controller.state("kitchen")["balance_tokens"] == before + 25

        journal = page.request.get(controller.base + "/api/sockets/kitchen/journal?limit=50")
        assert journal.ok, journal.status
        credits = [e for e in journal.json()["entries"] if e.get("memo") == reason]
        assert len(credits) == 1, credits
        resp = page.request.get(controller.base + "/landlord/journal.csv")
        assert resp.ok and resp.headers["content-type"].startswith("text/csv"), (resp.status, resp.headers)
        rows = list(csv.DictReader(io.StringIO(resp.text())))
        mine = [r for r in rows if r["memo"] == reason]
        assert len(mine) == 1, mine
        assert (mine[0]["socket"], mine[0]["kind"], mine[0]["amount_tokens"]) == ("kitchen", "credit", "25"), mine
        assert sum(1 for r in rows if r["socket"] == "kitchen" and r["kind"] == "deposit") == 1, rows
        anonymous = context.browser.new_context()
        try:   # the CSV is the landlord's: without the session cookie it redirects to the login
            resp = anonymous.request.get(controller.base + "/landlord/journal.csv", max_redirects=0)
            assert resp.status == 302 and "/landlord/login" in resp.headers["location"], resp.status
        finally:
            anonymous.close()

        override_button(page, "kitchen").click()
        expect(override_button(page, "kitchen")).to_contain_text("Force off")
        expect(status_of(page, "kitchen")).to_have_text("On", timeout=PUSH_S)
        expect(status_of(phone, "kitchen")).to_have_text("On", timeout=PUSH_S)
        server = controller.state("kitchen")
        assert (server["override"], server["relay"]) == (None, "on"), server
        assert_not_reloaded(page)
        assert_not_reloaded(phone)
    finally:
        context.close()

    problems.check()


# --- C: the controller restarts under an open page ----------------------------------------------


def test_tenant_page_reconnects_after_a_controller_restart_and_shows_a_later_deposit(chromium, controller,
                                                                                     problems):
    from playwright.sync_api import expect

    context = chromium.new_context(viewport=PHONE)
    page = problems.watch(context.new_page())
    down: list[float] = []
    try:
        page.goto(controller.base + "/s/office")
        expect(page.locator("#live .txt")).to_have_text("Live", timeout=LIVE_S)
        expect(page.locator("#bal")).to_have_text("0")
        mark(page)

        refused: list[str] = []
        page.on("requestfailed", lambda r: "/socket.io/" in r.url and refused.append(r.failure or ""))
        down.append(time.monotonic())
        assert controller.stop() == 0, controller.output()
        expect(page.locator("#live .txt")).to_have_text("Reconnecting…", timeout=PUSH_S)
        expect(page.locator("#live")).to_have_attribute("data-state", "wait")
        shot(page, "tenant-reconnecting.png")
        # Stay down until the client has tried at least once and found nothing listening.
        deadline = time.monotonic() + 10
        while not refused and time.monotonic() < deadline:
            page.wait_for_timeout(100)
        assert refused, "the page never tried to reconnect while the controller was down"
        expect(page.locator("#live .txt")).to_have_text("Reconnecting…")
        controller.start()
        expect(page.locator("#live .txt")).to_have_text("Live", timeout=LIVE_S)
        down.append(time.monotonic())
        assert_not_reloaded(page)

        controller.deposit("office", 500)   # 500 Wh: hours at the office's 40 to 250 W
        expect(page.locator("#relay-t")).to_have_text("On", timeout=PUSH_S)
        expect(page.locator("#bal")).to_have_text(POSITIVE)
        balance = float(page.locator("#bal").inner_text().replace(",", ""))
        assert 490 <= balance <= 500, balance
        assert_not_reloaded(page)
        shot(page, "tenant-reconnected.png")
    finally:
        context.close()

    def while_down(p: dict) -> bool:
        """The Socket.IO client's requests that find nothing listening while the controller is down."""
        return (len(down) == 2 and down[0] <= p["at"] <= down[1]
                and p["url"].startswith((controller.base + "/socket.io/", controller.base.replace("http", "ws", 1)
                                         + "/socket.io/"))
                and bool(re.search(r"ERR_CONNECTION_REFUSED|ERR_CONNECTION_RESET|ERR_EMPTY_RESPONSE|"
                                   r"WebSocket connection to '[^']*' failed", p["text"])))

    problems.check(allowed=while_down)
