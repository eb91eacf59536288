"""The pages on a 390 x 844 phone, measured in headless Chromium against the real controller.

The top-up card is one tap from the first screen (whose order tests/web/test_tenant_phone.py checks);
the chart draws the last hour readably however little history there is (right after a restart, a few
readings, none at all); the landlord's table clips no number and keeps each socket's name in view. Every test saves its
screenshots under its tmp_path and names them in its assertion messages.

Two chart tests replace the Socket.IO client script with a stand-in (FAKE_IO) whose `watch` reply
carries the history the test chose; everything else on the page is the real controller's.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.conftest import NEEDS_CHROMIUM
from tests.support import wait_until
from tests.support.web_beds import PASSWORD

pytestmark = NEEDS_CHROMIUM

PHONE = {"width": 390, "height": 844}
LIVE_S = 10_000   # ms: the page connects its live updates
PUSH_S = 8_000    # ms: a change reaches the page
POWER_RGB = (11, 87, 208)     # the power series' stroke in static/tenant.js
BALANCE_RGB = (161, 64, 0)    # the balance series' stroke
AXIS_RGB = (51, 51, 51)       # the axes' labels

# Pixels of one colour in the chart's canvas, in CSS px relative to uPlot's plotting area (.u-over).
PIXELS = """([rgb, tol]) => {
  const cv = document.querySelector("#chart canvas"), over = document.querySelector("#chart .u-over");
  const c = cv.getBoundingClientRect(), o = over.getBoundingClientRect(), k = cv.width / c.width;
  const px = cv.getContext("2d").getImageData(0, 0, cv.width, cv.height).data;
  let n = 0, left = Infinity, right = -Infinity, top = Infinity, bottom = -Infinity;
  for (let y = 0; y < cv.height; y++) for (let x = 0; x < cv.width; x++) {
    const i = (y * cv.width + x) * 4;
    if (px[i + 3] < 160 || Math.abs(px[i] - rgb[0]) > tol || Math.abs(px[i + 1] - rgb[1]) > tol
        || Math.abs(px[i + 2] - rgb[2]) > tol) continue;
    n++;
    const cx = c.left + x / k - o.left, cy = c.top + y / k - o.top;
    left = Math.min(left, cx); right = Math.max(right, cx + 1 / k);
    top = Math.min(top, cy); bottom = Math.max(bottom, cy + 1 / k);
  }
  return {area: n / (k * k), left, right, top, bottom, width: o.width, height: o.height};
}"""

LEGEND = """() => Object.fromEntries([...document.querySelectorAll("#chart .u-legend .u-series")].map(
  (s) => [s.querySelector(".u-label").textContent.trim(), s.querySelector(".u-value").textContent.trim()]))"""

# A Socket.IO client that connects at once and answers `watch` with window.__reply(view) (set per test).
FAKE_IO = """"use strict";
window.io = function () {
  const on = {};
  const sock = {
    active: true,
    on(ev, f) { (on[ev] = on[ev] || []).push(f); return sock; },
    emit(ev, data, ack) {
      if (ev !== "watch") return;
      const view = JSON.parse(document.getElementById("boot").textContent).view;
      ack(window.__reply(view, Date.now() / 1000));
    },
    connect() {}, disconnect() {},
  };
  setTimeout(() => (on.connect || []).forEach((f) => f()), 30);
  return sock;
};
"""


def phone_context(chromium):
    return chromium.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)


def screenshot(page, tmp_path: Path, name: str, full_page: bool = False) -> Path:
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=full_page)
    return path


def live(page):
    from playwright.sync_api import expect

    expect(page.locator("#live .txt")).to_have_text("Live", timeout=LIVE_S)


FRAMES = "() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))"


def chart_ready(page):
    page.locator("#chart canvas").wait_for()
    # two frames: uPlot draws in a microtask after setData, and a resize's redraw comes within the next frame
    page.evaluate(FRAMES)


def test_the_top_up_card_is_one_tap_from_a_phones_first_screen(chromium, controller, problems, tmp_path):
    """Out of credit (the banner shown): the first screen ends with the top-up button (the state and the balance
    come first: tests/web/test_tenant_phone.py), and that button brings the presets and the whole QR code into
    view from anywhere."""
    context = phone_context(chromium)
    page = problems.watch(context.new_page())
    try:
        page.goto(controller.base + "/s/kitchen")
        live(page)
        page.wait_for_function("(img) => img.complete && img.naturalWidth > 0",
                               arg=page.locator("#qr").element_handle())
        shot = screenshot(page, tmp_path, "tenant-first-screen.png")
        boxes = page.evaluate("""() => Object.fromEntries(["low", "go-topup"].map((id) => {
            const e = document.getElementById(id);
            if (!e) return [id, null];
            const r = e.getBoundingClientRect();
            return [id, {top: r.top + scrollY, bottom: r.bottom + scrollY, shown: r.height > 0}];
        }))""")
        assert boxes["low"]["shown"], f"the out-of-credit banner is not shown ({shot})"
        link = boxes["go-topup"]
        assert link and link["shown"] and link["bottom"] <= PHONE["height"], \
            f"no top-up button in the first screen: {link} ({shot})"
        page.evaluate("window.scrollTo(0, document.documentElement.scrollHeight)")
        page.locator("#go-topup").evaluate("(a) => a.scrollIntoView()")   # where a tenant scrolls back to it
        page.locator("#go-topup").click()
        page.wait_for_function("location.hash === '#topup'")   # the jump made: the frames after it have scrolled
        page.evaluate(FRAMES)
        seen = page.evaluate("""() => ["presets", "qr"].map((id) => {
            const r = document.getElementById(id).getBoundingClientRect();
            return [id, r.top, r.bottom];
        })""")
        after = screenshot(page, tmp_path, "tenant-after-top-up-link.png")
        for part, top, bottom in seen:
            assert top >= 0 and bottom <= PHONE["height"], \
                f"after the link, #{part} is at {top:.0f} to {bottom:.0f} px of the viewport ({after})"
        assert page.evaluate("document.activeElement.id") == "topup", f"the focus did not move to the card ({after})"
    finally:
        context.close()
    problems.check()


def test_the_chart_right_after_a_restart_spans_the_hour_and_shows_the_latest_reading(chromium, controller,
                                                                                     problems, tmp_path):
    controller.deposit("kitchen", 200)   # 800 W for a quarter of an hour
    wait_until(lambda: controller.state("kitchen")["relay"] == "on", 15, "kitchen on")
    assert controller.stop() == 0, controller.output()
    controller.start()
    context = phone_context(chromium)
    page = problems.watch(context.new_page())
    try:
        page.goto(controller.base + "/s/kitchen")
        live(page)
        page.locator("#chart").scroll_into_view_if_needed()
        chart_ready(page)
        from playwright.sync_api import expect
        expect(page.locator("#chart .u-legend")).to_contain_text("800 W", timeout=PUSH_S)
        chart_ready(page)
        shot = screenshot(page, tmp_path, "tenant-chart-after-restart.png")
        history = page.evaluate("""() => new Promise((done) => {
            const s = io();
            s.on("connect", () => s.emit("watch", {socket: "kitchen"}, (a) => { s.disconnect(); done(a.history); }));
        })""")
        power = page.evaluate(PIXELS, [POWER_RGB, 40])
        balance = page.evaluate(PIXELS, [BALANCE_RGB, 40])
        legend = page.evaluate(LEGEND)
        label = page.locator("#chart").get_attribute("aria-label")
    finally:
        context.close()
    problems.check()

    assert len(history["t"]) <= 10, f"more history than a fresh start has: {history}"
    what = f"history {len(history['t'])} points; power pixels {power}; legend {legend} ({shot})"
    assert power["area"] >= 15, f"the latest power reading is not drawn visibly: {what}"
    assert power["right"] <= power["width"] - 1, f"the latest reading is cut by the plot's right edge: {what}"
    assert power["left"] >= 0.9 * power["width"], f"the latest reading is not at the right (now) end: {what}"
    assert balance["area"] >= 15, f"the balance is not drawn: balance pixels {balance} ({shot})"
    assert legend.get("Power") == "800 W" and re.fullmatch(r"[\d,.]+ tokens", legend.get("Balance", "")), \
        f"the legend, not hovered, does not show the latest reading: {what}"
    clock = r"(\d{1,2}):(\d\d)(?:\s*([AP]M))?"
    span = re.search(f"from {clock} to {clock}", label or "")
    assert span, f"the chart's accessible label names no time range: {label!r} ({shot})"
    minutes = (of_day(*span.groups()[3:]) - of_day(*span.groups()[:3])) % 1440
    assert minutes == 60, f"the chart spans {minutes} min, not the last hour: {label!r} ({shot})"


def of_day(hours: str, minutes: str, half: str | None) -> int:
    """Minutes since midnight of a clock time as the page shows it (24 h, or 12 h with AM/PM)."""
    h = int(hours) % 12 + (12 if half == "PM" else 0) if half else int(hours)
    return h * 60 + int(minutes)


def fake_watch(page, reply_js: str) -> None:
    """The tenant page's Socket.IO client replaced by FAKE_IO, its `watch` answered by `reply_js`."""
    page.route("**/assets/socket.io.min.js", lambda route: route.fulfill(
        status=200, content_type="text/javascript", body=FAKE_IO))
    page.add_init_script("window.__reply = " + reply_js + ";")


def test_the_chart_draws_a_few_readings_where_they_fall_in_the_last_hour(chromium, controller, problems, tmp_path):
    """Readings 30 min, 15 min and 1 min ago: the drawn power line runs from the middle of the plot to its
    right end, so the x axis spans about 3600 s ending now; the legend shows the latest reading."""
    context = phone_context(chromium)
    page = problems.watch(context.new_page())
    ago = [1800, 900, 60]
    try:
        fake_watch(page, """(view, now) => ({ok: true, view: Object.assign({}, view, {updated_at: now - 60,
            power_w: 200, balance_tokens: 40}), history: {t: %s.map((s) => now - s), power_w: [400, 800, 200],
            balance_tokens: [60, 50, 40]}})""".replace("%s", json.dumps(ago)))
        page.goto(controller.base + "/s/office")
        live(page)
        page.locator("#chart").scroll_into_view_if_needed()
        chart_ready(page)
        shot = screenshot(page, tmp_path, "tenant-chart-few-readings.png")
        power = page.evaluate(PIXELS, [POWER_RGB, 40])
        legend = page.evaluate(LEGEND)
    finally:
        context.close()
    problems.check()

    what = f"power pixels {power}; legend {legend} ({shot})"
    assert power["area"] >= 40, f"the readings are not drawn: {what}"
    # the stroke runs from the first reading to the last, plus a point's radius (at most 5 px) at each end
    px_per_s = (power["right"] - power["left"] - 10) / (ago[0] - ago[-1])
    span_s = power["width"] / px_per_s
    # an hour, and at its right end room for the latest point (8 px: about 140 s on a 200 px wide plot)
    assert 3400 <= span_s <= 4000, f"the x axis spans {span_s:.0f} s, not the last hour: {what}"
    first_at = power["left"] / power["width"]
    assert 0.44 <= first_at <= 0.54, f"the reading of 30 min ago is at {first_at:.0%} of the plot's width: {what}"
    assert power["right"] <= power["width"] - 1, f"the latest reading is cut by the right edge: {what}"
    assert legend.get("Power") == "200 W" and legend.get("Balance") == "40 tokens", \
        f"the legend, not hovered, does not show the latest reading: {what}"


def test_the_chart_with_no_readings_says_so_and_still_draws_its_axes(chromium, controller, problems, tmp_path):
    from playwright.sync_api import expect

    context = phone_context(chromium)
    page = problems.watch(context.new_page())
    try:
        fake_watch(page, """(view) => ({ok: true, view: Object.assign({}, view, {power_w: null, voltage_v: null,
            current_a: null}), history: {t: [], power_w: [], balance_tokens: []}})""")
        page.goto(controller.base + "/s/office")
        live(page)
        page.locator("#chart").scroll_into_view_if_needed()
        chart_ready(page)
        shot = screenshot(page, tmp_path, "tenant-chart-no-readings.png")
        expect(page.locator("#chart-empty"), f"no 'no readings' note ({shot})").to_have_text(
            re.compile(r"^No (power )?readings (in the last hour )?yet\.?$"))
        expect(page.locator("#chart-empty")).to_be_visible()
        axes = page.evaluate(PIXELS, [AXIS_RGB, 30])
        power = page.evaluate(PIXELS, [POWER_RGB, 40])
        legend = page.evaluate(LEGEND)
    finally:
        context.close()
    problems.check()

    # the axis labels lie outside the plotting area: below it (times) and to its sides (W, tokens)
    assert axes["area"] >= 100 and axes["bottom"] > axes["height"] + 5 and axes["left"] < -5, \
        f"the axes are not labelled: axis-coloured pixels {axes} ({shot})"
    assert power["area"] == 0, f"a power line is drawn without readings: {power} ({shot})"
    assert set(legend) >= {"Power", "Balance"}, f"the legend is not labelled: {legend} ({shot})"


def test_the_landlord_table_on_a_phone_clips_no_number_and_keeps_each_socket_named(chromium, controller,
                                                                                   problems, tmp_path):
    from playwright.sync_api import expect

    controller.deposit("kitchen", 123_456)
    context = phone_context(chromium)
    page = problems.watch(context.new_page())
    cells = """() => {
        const wrap = document.querySelector(".table-wrap").getBoundingClientRect();
        const lo = Math.max(0, wrap.left), hi = Math.min(innerWidth, wrap.right);
        const out = [];
        for (const tr of document.querySelectorAll("#tbl tbody tr, #tbl tfoot tr")) {
          const first = tr.children[0].getBoundingClientRect();
          for (const td of tr.querySelectorAll(".num")) {
            const r = td.getBoundingClientRect();
            const overlap = td !== tr.children[0] && r.left < first.right - 0.5 && first.left < r.right - 0.5
              && r.top < first.bottom - 0.5 && first.top < r.bottom - 0.5;
            out.push({row: tr.dataset.id || tr.id, text: td.textContent.trim(), left: r.left, right: r.right,
                      scroll: td.scrollWidth, client: td.clientWidth, lo, hi, overlap});
          }
        }
        const names = [...document.querySelectorAll("#rows td:first-child a")].map((a) => {
          const r = a.getBoundingClientRect();
          return {name: a.textContent, left: r.left, right: r.right, lo, hi};
        });
        return {out, names};
    }"""
    try:
        page.goto(controller.base + "/landlord/login?next=/landlord")
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(controller.base + "/landlord")
        expect(page.locator("#at")).to_have_text(re.compile("^updated "), timeout=LIVE_S)
        expect(page.locator('#rows tr[data-id="kitchen"] td.num').first).to_contain_text("123,", timeout=PUSH_S)
        shots = [screenshot(page, tmp_path, "landlord-phone.png", full_page=True)]
        sort_label = page.evaluate("getComputedStyle(document.querySelector('#tbl thead tr'), '::before').content")
        seen = [page.evaluate(cells)]
        page.locator(".table-wrap").evaluate("(e) => { e.scrollLeft = e.scrollWidth; }")
        page.wait_for_timeout(100)
        shots.append(screenshot(page, tmp_path, "landlord-phone-scrolled.png", full_page=True))
        seen.append(page.evaluate(cells))
    finally:
        context.close()
    problems.check()

    assert sort_label == '"Sort by"', f"the sortable heads are not labelled on a phone ({shots[0]})"
    for when, got, shot in (("as loaded", seen[0], shots[0]), ("scrolled to the right", seen[1], shots[1])):
        assert len(got["out"]) >= 4 * 5, f"{when}: too few numeric cells found: {got['out']} ({shot})"
        cut = [c for c in got["out"] if c["scroll"] > c["client"] or c["left"] < c["lo"] - 0.5
               or c["right"] > c["hi"] + 0.5 or c["overlap"]]
        assert not cut, f"{when}: {len(cut)} of {len(got['out'])} numbers clipped, e.g. {cut[:3]} ({shot})"
        hidden = [n for n in got["names"] if n["left"] < n["lo"] - 0.5 or n["right"] > n["hi"] + 0.5]
        assert len(got["names"]) == 3 and not hidden, f"{when}: socket names out of view: {hidden} ({shot})"


def test_the_mock_ledger_hint_gives_a_command_that_runs_from_the_repository(controller):
    """The tenant page's hint, run as written in the repository's folder, pays into the mock ledger."""
    import subprocess
    import urllib.request

    from tests.support import ROOT

    with urllib.request.urlopen(controller.base + "/s/office", timeout=5) as resp:
        html = resp.read().decode()
    hint = re.search(r'<code[^>]*id="deposit-hint"[^>]*>(.+?)</code>', html)
    assert hint, "no mock-ledger hint with a command on the tenant page"
    command = re.sub(r"<[^>]+>", "", hint[1]).split()
    assert command[:2] == [".venv/bin/payg", "deposit"] and "--socket" in command and "--amount" in command, command
    assert (ROOT / command[0]).is_file(), f"{command[0]} is not in the repository's folder"
    # run as written, but against the test's controller: its configuration added (the hint's is the default)
    done = subprocess.run(command + ["--config", str(controller.config)], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env=controller.env, check=False)
    assert done.returncode == 0, done.stderr
    wait_until(lambda: controller.state("office")["balance_tokens"] > 0, 15, "the hint's deposit credited")
