"""Web figures: what the pages weigh, how the live pushes go with 200 sockets, what one push costs, and the web
server under load and under attack.

1. Page weight on first load (needs Debian's Chromium, driven by playwright; skipped with a message
   when it is absent): /s/kitchen and /landlord (logged in) on the embedded default (3 sockets), and
   /landlord with --sockets sockets, each in a fresh browser context (cold cache). Every response of
   the load is summed from the DevTools protocol (Network.loadingFinished encodedDataLength: bytes
   received, response headers included); "gzip" is what the body would be gzipped (werkzeug sends
   none; a reverse proxy in front could). The Socket.IO handshake (long-polling requests) is listed
   with the rest; WebSocket frames received until the page has its first live data (the landlord's
   push on connect; the tenant's watch answer) are a separate row. "repeat
   visit" is a reload in the same context (warm cache). The login happens through the context's
   request API, so the login page does not warm the cache.
   Then the landlord page with --sockets sockets in Chromium for --seconds of live pushes, once as is
   and once with the CPU slowed 4x (DevTools' CPU throttling, standing in for a slow phone or tablet):
   time to a full live table, the main thread's busy time per push (DevTools Performance metrics:
   all tasks, script, layout and style), long tasks over 50 ms, and what a sort click and a filter
   keystroke cost (the handler and the layout it forces).
2. Server pushes with --sockets simulated sockets: `app.py --config <generated>` as a subprocess
   (varied constant loads, poll_interval_s = 1.0, the mock ledger), every socket credited with one
   POST /api/mock/deposits (the API token of the data directory). A python-socketio client logs in
   as the landlord (login form, session cookie) and counts the `states` events on /landlord for
   --seconds: pushes per second, interval p50/p95/max, tick-to-client delay (the push's "at", the
   controller's clock, to its arrival), payload size (compact JSON, as sent), sockets per push (only
   those that changed since the previous push; the full table comes once on connect), and
   the controller's CPU over the window (/proc/<pid>/stat utime + stime). Then --tenants clients on
   the default namespace each `watch` a different socket for another window: `state` events per
   second per client (min / median / max) and the controller's CPU with them.
3. In-process cost of one push for --sockets sockets: the web app built like tests/support/web_beds.py
   (app.build on a ManualClock, create_web), every socket credited and ticked; then, over --reps
   repetitions, one tick (untimed) and `hub.publish(states)` + `hub.flush()` timed (the dashboard
   refresh, the views, the chart history, and the emits), with no client, with one landlord
   Socket.IO test client, and with one landlord and --tenants watching tenants (a test client
   also decodes what it gets, so these slightly overstate the server's part); the JSON encoding of
   the landlord's payload alone; and the memory of one hour of chart history for --sockets sockets
   (History.record 360 times, 10 s apart, fresh power and balance values each time, one
   timestamp per batch like a tick's; tracemalloc).
4. The web server under load and under attack, before and after: the embedded default built in this process as
   app.py's serve does it (app.build on the system clock, create_web with its live pushes, the real loop on
   payg.adapters.scheduler.SchedulerDriver, 1 s ticks; the kitchen credited), served in turn by each of
   --servers (make_web_server: "before", payg's HttpServer as it was at git revision --before, default c5df74b:
   its server.py and http1.py taken from `git show` and imported under names of their own, so both versions run
   in one process; "after", the working tree's payg.webkit.server; "werkzeug", Werkzeug's development server as
   app.py ran it before payg had a server; each with the configured limits), the same app in the same run. For
   /s/kitchen and /api/sockets/kitchen, --clients clients (default 50) for --server-seconds (default 25) each:
   threads of one spawned process (the load's GIL is not the server's), each with one http.client.HTTPConnection
   reused (keep-alive; a server that closes after each response makes them reconnect, counted). Requests per
   second, latency p50/p99/max of the 200s, errors (another status or a failed request), after/before in
   requests per second, and the tick from the real loop: each Site.tick start and end recorded (the Site's tick
   wrapped before the driver starts), against the driver's 1 s grid: how late the worst tick started and
   finished, the longest gap between two starts, grid points without a tick. A quiet window with no server
   first, for reference. A server that cannot be built (the working tree's mid-rewrite) is skipped with a
   message.
   Then, every server's load done, each of --attacks for --attack-seconds (default 15), from a spawned process
   whose connections all come from 127.0.0.2 (so limits per client address fall on it), each connection reopened
   when the server closes it, the whole bounded in time: slowloris (200 request heads, one byte a second),
   slow-readers (24 connections with a 4 KB receive buffer, each pipelining GETs of the largest asset and reading
   nothing), websockets (100 raw upgrades to /socket.io/, held), chunks (4 chunked POSTs in 1-byte chunks, as fast
   as they go) and bodies (200 POSTs with all but the last byte of a body one under the limit). Meanwhile a second
   process, the legitimate client, opens a fresh connection from 127.0.0.1 and GETs /api/sockets/kitchen every
   100 ms: p50/p95 (a failed GET counts as slower than any) and max; with the tick's lateness as above, and this
   process's threads and RSS (the server is in it). During the WebSocket flood, whether one python-socketio client
   from 127.0.0.1 still connects; under the held bodies, the RSS before, at the peak and 5 s after.

Prints figures; exits 1 after printing when a goal is clearly missed: the landlord client gets
fewer than 0.8 pushes per second or does not end up holding every socket, a tenant client fewer
than 0.8 `state` per second, one push costs more than 100 ms in-process, the landlord page's
main thread is busy more than a quarter of the time, or (only the after server is judged; before and
werkzeug are the reference) under load the server had an error, a tick was missed or two ticks started
over 2.5 s apart, it served /s/kitchen at under 0.80 of before's requests per second, or under an
attack the legitimate GET's p95 was 100 ms or more, a tick finished over 1.2 s after its grid point
or one was missed.
Run from the repository root: `.venv/bin/python bench/web.py` (about 10 min on 2 cores);
--seconds N (the push windows, default 20), --sockets N (default 200), --tenants N (default 20),
--reps N (default 200), --no-browser (skip part 1), --server-seconds N (part 4's load windows, default
25), --clients N (default 50), --servers (of werkzeug,before,after; default before,after), --before REV
(default c5df74b), --attacks (of slowloris,slow-readers,websockets,chunks,bodies; default all),
--attack-seconds N (default 15), --no-attacks, --no-server (skip part 4), --server-only (part 4 alone,
about 6 min).
"""

from __future__ import annotations

import argparse
import base64
import gzip
import itertools
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from report import finish, proc_cpu_s, proc_rss_mib  # noqa: E402  (bench/report.py, next to this script)

from tests.support import free_port, terminate  # noqa: E402
from tests.support.web_beds import CHROMIUM_ARGS, HASH_ENV, embedded_default_toml  # noqa: E402

CHROMIUM = Path(os.environ.get("PAYG_CHROMIUM", "/usr/bin/chromium"))
PASSWORD = "bench landlord password"
LOADS_W = (5, 40, 60, 150, 400, 800, 1200, 2000, 2800)
ROOMS = ("kitchen", "living room", "bathroom", "hall")
MIN_RATE = 0.8        # pushes (or tenant states) per second below this: a goal missed
MAX_PUSH_MS = 100.0   # in-process cost of one push above this: a goal missed
PUSH_FRAME = re.compile(r'42(/landlord,)?\["states?"')   # a Socket.IO frame carrying a push to a page
MAX_PAGE_BUSY = 0.25  # the landlord page's main thread busier than this share of the time: a goal missed


def percentile(values, p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(p / 100.0 * len(s)) - 1))]


def kb(n: float) -> str:
    return f"{n / 1000:.1f}"


def many_sockets(data_dir: Path, port: int, n: int) -> str:
    """n simulated sockets with constant loads from 5 W to 3.6 kW, named like flats' rooms."""
    lines = ["[controller]", f'data_dir = "{data_dir}"', "poll_interval_s = 1.0", "meter_offline_grace_s = 10",
             'log_level = "warning"', "", "[web]", 'host = "127.0.0.1"', f"port = {port}",
             f'landlord_password_hash_env = "{HASH_ENV}"', "", "[ledger]", 'backend = "mock"', "", "[tariff]",
             "tokens_per_wh = 1", ""]
    for i in range(n):
        load = round(LOADS_W[i % len(LOADS_W)] * (1 + (i % 7) / 20), 1)
        lines += ["[[sockets]]", f'id = "s{i:03d}"', f'name = "Flat {i // len(ROOMS) + 1} {ROOMS[i % len(ROOMS)]}"',
                  f'meter = {{ kind = "simulated", load_w = {load} }}', 'relay = { kind = "simulated" }', ""]
    return "\n".join(lines)


def password_env() -> dict:
    from werkzeug.security import generate_password_hash

    return dict(os.environ, **{HASH_ENV: generate_password_hash(PASSWORD)})


class Controller:
    def __init__(self, tmp: Path, name: str, text_of, env: dict):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.data_dir = tmp / name
        self.config = tmp / f"{name}.toml"
        self.config.write_text(text_of(self.data_dir, self.port))
        self.log = tmp / f"{name}.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--config", str(self.config)],
                                         cwd=tmp, env=env, stdout=out, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        import requests

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"the controller exited with {self.proc.returncode}:\n"
                                 f"{self.log.read_text(errors='replace')}")
            try:
                if requests.get(self.base + "/healthz", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise SystemExit(f"/healthz did not answer 200 within {timeout_s} s")

    @property
    def token(self) -> str:
        return (self.data_dir / "api-token").read_text().strip()

    def stop(self) -> int:
        terminate(self.proc, 20)
        return self.proc.returncode


def landlord_session(base: str):
    """A requests session logged in as the landlord through the login form."""
    import requests

    s = requests.Session()
    html = s.get(base + "/landlord/login", timeout=10).text
    csrf = re.search(r'<meta name="csrf-token" content="([^"]+)"', html).group(1)
    resp = s.post(base + "/landlord/login", data={"password": PASSWORD, "csrf_token": csrf, "next": "/landlord"},
                  allow_redirects=False, timeout=10)
    assert resp.status_code == 302, (resp.status_code, resp.text[:300])
    return s


def credit_all(c: Controller, ids: list[str], amount: int) -> None:
    """One mock deposit per socket, then wait until every relay is on."""
    import requests

    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {c.token}"
    for sid in ids:
        resp = s.post(c.base + "/api/mock/deposits", json={"socket": sid, "amount": amount}, timeout=10)
        assert resp.status_code == 201, (resp.status_code, resp.text)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        states = s.get(c.base + "/api/sockets", timeout=10).json()
        if all(st["relay"] == "on" for st in states):
            return
        time.sleep(0.5)
    raise SystemExit("not every relay came on after the deposits")


def logged_in_context(browser, base: str, viewport: dict):
    """A fresh browser context with the landlord's session (logged in through the context's request API)."""
    context = browser.new_context(viewport=viewport)
    html = context.request.get(base + "/landlord/login").text()
    csrf = re.search(r'<meta name="csrf-token" content="([^"]+)"', html).group(1)
    resp = context.request.post(base + "/landlord/login", max_redirects=0,
                                form={"password": PASSWORD, "csrf_token": csrf, "next": "/landlord"})
    assert resp.status == 302, resp.status
    return context


def page_weight(browser, base: str, path: str, viewport: dict, login: bool) -> dict:
    """Every response of a first load in a fresh context (cold cache), and of a reload (warm)."""
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import expect

    context = logged_in_context(browser, base, viewport) if login else browser.new_context(viewport=viewport)
    try:
        page = context.new_page()
        cdp = context.new_cdp_session(page)
        cdp.send("Network.enable")
        reqs: dict[str, dict] = {}
        ws = {"frames": 0, "bytes": 0, "pushes": 0, "counting": True}

        def sent(e):
            reqs[e["requestId"]] = {"url": e["request"]["url"], "type": e.get("type", "?"), "bytes": 0,
                                    "status": None, "done": False}

        def received(e):
            r = reqs.get(e["requestId"])
            if r is not None:
                r["status"] = e["response"]["status"]
                r["mime"] = e["response"].get("mimeType", "")

        def finished(e):
            r = reqs.get(e["requestId"])
            if r is not None:
                r["bytes"], r["done"] = e["encodedDataLength"], True

        def frame(e):
            if ws["counting"]:
                data = e["response"]["payloadData"]
                ws["frames"] += 1
                ws["bytes"] += len(data.encode())
                ws["pushes"] += bool(PUSH_FRAME.match(data))

        cdp.on("Network.requestWillBeSent", sent)
        cdp.on("Network.responseReceived", received)
        cdp.on("Network.loadingFinished", finished)
        cdp.on("Network.webSocketFrameReceived", frame)

        def load(action) -> tuple[list[dict], dict]:
            reqs.clear()
            ws.update(frames=0, bytes=0, pushes=0, counting=True)
            action()
            expect(page.locator("#live .txt")).to_have_text("Live", timeout=20_000)
            if login:   # the landlord page shows when the first push (the one on connect) came
                expect(page.locator("#at")).to_have_text(re.compile("^updated "), timeout=20_000)
            else:       # the tenant page: its watch answer comes right after the connect
                page.wait_for_timeout(300)
            ws["counting"] = False
            page.wait_for_load_state("networkidle")
            rows = []
            for rid, r in list(reqs.items()):
                if not r["done"]:
                    continue
                body_gz = None
                try:
                    got = cdp.send("Network.getResponseBody", {"requestId": rid})

                    body = base64.b64decode(got["body"]) if got.get("base64Encoded") else got["body"].encode()
                    body_gz = len(gzip.compress(body, 6)) if body else 0
                except PlaywrightError:  # no body (a 304, or one Chromium did not keep)
                    body, body_gz = b"", None
                boot = re.search(rb'<script type="application/json" id="boot">(.*?)</script>', body, re.DOTALL)
                rows.append(dict(r, gz=body_gz, boot=len(boot.group(1)) if boot else None))
            return rows, dict(ws)

        cold = load(lambda: page.goto(base + path, wait_until="load"))
        warm = load(lambda: page.reload(wait_until="load"))
        return {"cold": cold, "warm": warm}
    finally:
        context.close()


def short_url(url: str, base: str) -> str:
    u = url.removeprefix(base)
    if u.startswith("/socket.io/"):
        return "/socket.io/ " + ("(long-polling: " + re.sub(r"&t=[^&]+|&sid=[^&]+", "", u.split("?", 1)[1]) + ")")
    return u


def print_weight(title: str, result: dict, base: str) -> tuple[float, float]:
    rows, ws = result["cold"]
    print(f"\n  {title}")
    print(f"    {'resource':<58} {'status':>6} {'KB':>8} {'gzip KB':>8}")
    total = total_gz = 0
    for r in rows:
        gz = r["gz"]
        print(f"    {short_url(r['url'], base)[:58]:<58} {r['status'] or '-':>6} {kb(r['bytes']):>8} "
              f"{kb(gz) if gz is not None else '-':>8}")
        if r.get("boot"):
            print(f"    {'  of which the boot JSON (for the script)':<58} {'':>6} {kb(r['boot']):>8}")
        total += r["bytes"]
        total_gz += gz if gz is not None else r["bytes"]
    label = f"socket.io WebSocket: {ws['frames']} frames in, {ws['pushes']} of them pushes"
    print(f"    {label:<58} {'':>6} {kb(ws['bytes']):>8}")
    print(f"    {'first load, total (HTTP responses + WebSocket frames)':<58} {'':>6} "
          f"{kb(total + ws['bytes']):>8} {kb(total_gz + ws['bytes']):>8}")
    wrows, wws = result["warm"]
    wtotal = sum(r["bytes"] for r in wrows) + wws["bytes"]
    codes = sorted({str(r["status"]) for r in wrows})
    print(f"    {'repeat visit (reload, warm cache), total':<58} {'/'.join(codes):>6} {kb(wtotal):>8}   "
          f"({len(wrows)} responses)")
    return total + ws["bytes"], wtotal


# Long tasks (over 50 ms on the main thread: what a user feels as a stutter), recorded by the page.
LONG_TASKS = ("window.__long = []; new PerformanceObserver((l) => { for (const e of l.getEntries()) "
              "window.__long.push(e.duration); }).observe({type: 'longtask', buffered: true});")
# One synchronous action on the landlord page and the layout it forces, in ms of main thread.
TIMED = """([sel, how]) => {
  const e = document.querySelector(sel), t = performance.now();
  if (how === "click") e.click();
  else { e.value = e.value ? "" : "flat 1"; e.dispatchEvent(new Event("input")); }
  document.body.offsetHeight;
  return performance.now() - t;
}"""


def landlord_page_cost(browser, base: str, n: int, seconds: float, throttle: float, failures: list[str]) -> None:
    """The landlord page's main thread in Chromium while pushes for n sockets arrive (CDP Performance)."""
    from playwright.sync_api import expect

    context = logged_in_context(browser, base, {"width": 1280, "height": 800})
    try:
        page = context.new_page()
        page.add_init_script(LONG_TASKS)
        cdp = context.new_cdp_session(page)
        cdp.send("Performance.enable")
        if throttle > 1:
            cdp.send("Emulation.setCPUThrottlingRate", {"rate": throttle})
        cdp.send("Network.enable")
        pushes = []

        def frame(e):
            if PUSH_FRAME.match(e["response"]["payloadData"]):
                pushes.append(1)

        cdp.on("Network.webSocketFrameReceived", frame)
        t0 = time.monotonic()
        page.goto(base + "/landlord", wait_until="load")
        expect(page.locator("#rows tr")).to_have_count(n, timeout=60_000)
        expect(page.locator("#at")).to_have_text(re.compile("^updated "), timeout=60_000)
        first_table_s = time.monotonic() - t0
        page.wait_for_timeout(2000)

        def metrics() -> dict:
            return {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}

        page.evaluate("window.__long.length = 0")
        pushes.clear()
        m0, w0 = metrics(), time.monotonic()
        page.wait_for_timeout(seconds * 1000)
        m1, w1 = metrics(), time.monotonic()
        got, wall = len(pushes), w1 - w0
        long_tasks = page.evaluate("window.__long.slice()")
        busy = {k: (m1[k] - m0[k]) * 1e3 for k in ("TaskDuration", "ScriptDuration", "LayoutDuration",
                                                     "RecalcStyleDuration")}
        acts = {}
        for name, sel, how in (("sort by balance (click)", 'th[data-sort="balance"] button', "click"),
                               ("sort back by name (click)", 'th[data-sort="name"] button', "click"),
                               ("filter (type, then clear)", "#q", "type")):
            acts[name] = [page.evaluate(TIMED, [sel, how]) for _ in range(10)]
        heap = metrics()["JSHeapUsedSize"]
        per = max(got, 1)
        rows = [
            ("first load to a full live table", f"{first_table_s:.1f} s"),
            (f"pushes received in {wall:.0f} s", f"{got} ({got / wall:.2f}/s)"),
            ("main thread busy per push: all / script / layout + style",
             f"{busy['TaskDuration'] / per:.1f} / {busy['ScriptDuration'] / per:.1f} / "
             f"{(busy['LayoutDuration'] + busy['RecalcStyleDuration']) / per:.1f} ms"),
            ("main thread busy, share of the window", f"{busy['TaskDuration'] / (wall * 1e3) * 100:.1f} %"),
            ("long tasks (> 50 ms) in the window: count / longest",
             f"{len(long_tasks)} / {max(long_tasks):.0f} ms" if long_tasks else "0"),
        ]
        for name, ms in acts.items():
            rows.append((f"{name}, median / max of 10", f"{statistics.median(ms):.1f} / {max(ms):.1f} ms"))
        rows.append(("JS heap in use", f"{heap / 1e6:.1f} MB"))
        for name, value in rows:
            print(f"    {name:<58} {value}")
        if got / wall < MIN_RATE:
            failures.append(f"the landlord page (CPU x{throttle:g}) got {got / wall:.2f} pushes per second")
        if busy["TaskDuration"] / (wall * 1e3) > MAX_PAGE_BUSY:
            failures.append(f"the landlord page's main thread (CPU x{throttle:g}) was busy "
                            f"{busy['TaskDuration'] / (wall * 1e3) * 100:.0f} % of the time "
                            f"(goal: at most {MAX_PAGE_BUSY * 100:.0f} %)")
    finally:
        context.close()


def part_pages(tmp: Path, env: dict, big: Controller | None, n: int, seconds: float,
               failures: list[str]) -> None:
    print("\n1. Page weight on first load (Chromium, cold cache; KB = 1000 bytes received, headers included)")
    print("   (Engine.IO gzips long-polling answers; WebSocket frames go uncompressed: the landlord's push on\n"
          "   connect weighs far less when it happens to come before the upgrade to WebSocket)")
    if not os.access(CHROMIUM, os.X_OK):
        print(f"   SKIPPED: no Chromium at {CHROMIUM} (apt-get install chromium, or PAYG_CHROMIUM=/path)")
        return
    from playwright.sync_api import sync_playwright

    small = Controller(tmp, "default", embedded_default_toml, env)
    try:
        small.wait_ready()
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            print(f"   Chromium {browser.version}")
            try:
                print_weight("/s/kitchen (embedded default, phone 390x844)",
                             page_weight(browser, small.base, "/s/kitchen", {"width": 390, "height": 844}, False),
                             small.base)
                print_weight("/landlord, logged in (embedded default: 3 sockets, 1280x800)",
                             page_weight(browser, small.base, "/landlord", {"width": 1280, "height": 800}, True),
                             small.base)
                if big is not None:
                    print_weight(f"/landlord, logged in ({n} sockets, every relay on, 1280x800)",
                                 page_weight(browser, big.base, "/landlord", {"width": 1280, "height": 800}, True),
                                 big.base)
                    for throttle in (1, 4):
                        print(f"\n  the landlord page in Chromium with {n} sockets, {seconds:.0f} s of pushes, CPU "
                              + ("as is" if throttle == 1 else f"slowed {throttle}x (a slow phone or tablet)"))
                        landlord_page_cost(browser, big.base, n, seconds, throttle, failures)
            finally:
                browser.close()
    finally:
        small.stop()


def part_pushes(big: Controller, ids: list[str], seconds: float, tenants: int, failures: list[str]) -> None:
    import socketio

    print(f"\n2. Server pushes with {len(ids)} sockets (app.py subprocess, poll 1 Hz; python-socketio clients)")
    session = landlord_session(big.base)
    cookie = "; ".join(f"{k}={v}" for k, v in session.cookies.get_dict().items())
    got: list[tuple[float, float, int, int]] = []  # (arrival, at, json bytes, sockets)
    table: dict[str, dict] = {}                    # what the landlord page holds: the full push, then changes
    fulls: list[int] = []
    lock = threading.Lock()
    landlord = socketio.Client(reconnection=False)

    @landlord.on("states", namespace="/landlord")
    def _states(data):
        now = time.time()
        size = len(json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode())
        with lock:
            if data.get("full"):
                fulls.append(len(data.get("views", ())))
            else:
                got.append((now, data.get("at") or now, size, len(data.get("views", ()))))
            for v in data.get("views", ()):
                table[v["id"]] = v

    landlord.connect(big.base, namespaces=["/landlord"], headers={"Cookie": cookie}, wait_timeout=10)
    time.sleep(2.5)  # past the connect's own push and the upgrade to WebSocket

    def window(secs: float) -> tuple[list, float, float]:
        with lock:
            got.clear()
        cpu0, t0 = proc_cpu_s(big.proc.pid), time.monotonic()
        time.sleep(secs)
        cpu1, t1 = proc_cpu_s(big.proc.pid), time.monotonic()
        with lock:
            pushes = list(got)
        return pushes, t1 - t0, (cpu1 - cpu0) / (t1 - t0) * 100

    def report(pushes: list, wall: float, cpu: float) -> None:
        arrivals = [p[0] for p in pushes]
        gaps = [(b - a) * 1e3 for a, b in itertools.pairwise(arrivals)]
        delays = [(p[0] - p[1]) * 1e3 for p in pushes]
        sizes = [p[2] for p in pushes]
        counts = [p[3] for p in pushes]
        rate = len(pushes) / wall
        rows = [
            ("window (wall)", f"{wall:.1f} s"),
            ("`states` pushes received / per second", f"{len(pushes)} / {rate:.2f}"),
            ("interval p50 / p95 / max", f"{percentile(gaps, 50):.0f} / {percentile(gaps, 95):.0f} / "
                                         f"{max(gaps):.0f} ms" if gaps else "-"),
            ("tick-to-client delay p50 / p95 / max", f"{percentile(delays, 50):.0f} / {percentile(delays, 95):.0f}"
                                                     f" / {max(delays):.0f} ms" if delays else "-"),
            ("payload (compact JSON) median / max", f"{kb(statistics.median(sizes))} / {kb(max(sizes))} KB"
                                                    if sizes else "-"),
            ("  = landlord traffic", f"{kb(sum(sizes) / wall)} KB/s, {sum(sizes) / wall * 3600 / 1e6:.0f} MB/h"
                                     if sizes else "-"),
            ("sockets per push (those that changed) median / max",
             f"{statistics.median(counts):.0f} / {max(counts)}" if counts else "-"),
            ("sockets the landlord client holds (full push on connect + changes)", f"{len(table)}"),
            ("controller CPU over the window (one core = 100 %)", f"{cpu:.1f} %"),
        ]
        for name, value in rows:
            print(f"    {name:<52} {value}")
        if rate < MIN_RATE:
            failures.append(f"the landlord client got {rate:.2f} pushes per second (goal: at least {MIN_RATE})")
        if fulls != [len(ids)] or sorted(table) != sorted(ids):
            failures.append(f"the landlord client got full pushes of {fulls} sockets and holds {len(table)} "
                            f"(expected one full push and all {len(ids)})")

    try:
        print(f"\n  one landlord client (transport: {landlord.transport()}), {seconds:.0f} s")
        report(*window(seconds))

        clients, counts = [], {}
        for i in range(tenants):
            sid = ids[(i * len(ids)) // max(tenants, 1)]
            c = socketio.Client(reconnection=False)
            counts[sid] = 0

            def on_state(v, sid=sid):
                if v.get("id") == sid:
                    with lock:
                        counts[sid] += 1

            c.on("state", on_state)
            c.connect(big.base, wait_timeout=10)
            ack = c.call("watch", {"socket": sid}, timeout=10)
            assert ack and ack.get("ok"), ack
            clients.append(c)
        time.sleep(2.5)
        with lock:
            for sid in counts:
                counts[sid] = 0
        print(f"\n  the landlord client and {tenants} tenant clients (each watches another socket), {seconds:.0f} s")
        pushes, wall, cpu = window(seconds)
        with lock:
            per_s = sorted(n / wall for n in counts.values())
        report(pushes, wall, cpu)
        if per_s:
            print(f"    {'tenant `state` per second: min / median / max':<52} "
                  f"{per_s[0]:.2f} / {statistics.median(per_s):.2f} / {per_s[-1]:.2f}")
            if per_s[0] < MIN_RATE:
                failures.append(f"a tenant client got {per_s[0]:.2f} `state` per second (goal: at least {MIN_RATE})")
        for c in clients:
            c.disconnect()
    finally:
        landlord.disconnect()


def part_in_process(tmp: Path, n: int, reps: int, tenants: int, failures: list[str]) -> None:
    from payg import bootstrap as composition
    from payg.adapters import config as cfg
    from payg.adapters.clocks import ManualClock
    from payg.web import create_web
    from payg.web.live import History
    from payg.webkit.security import WebSecrets
    from tests.support.web_beds import PASSWORD as BED_PASSWORD
    from tests.support.web_beds import PASSWORD_HASH, TOKEN, csrf_of

    print(f"\n3. In-process cost of one push for {n} sockets (ManualClock; {reps} repetitions per row)")
    data_dir = tmp / "inproc"
    path = tmp / "inproc.toml"
    path.write_text(many_sockets(data_dir, free_port(), n))
    config = cfg.load(path)
    clock = ManualClock(1_800_000_000.0)
    rt = composition.build(config, clock)
    rt.site.start()
    web = create_web(composition.web_services(rt, WebSecrets("s" * 43, TOKEN, PASSWORD_HASH)))
    web.app.testing = True
    hub = web.hub
    ctl = rt.metering
    clients = []
    received: dict = {}
    try:
        for sid in ctl.sockets:
            rt.ledger.pay(sid, 1_000_000)
        rt.watcher.poll()
        for _ in range(3):
            clock.advance(1.0)
            ctl.tick()
        on = sum(1 for st in ctl.states() if st.relay_on)

        def timed() -> list[float]:
            ms = []
            for _ in range(reps):
                clock.advance(1.0)
                ctl.tick()   # the hub is not subscribed: the tick itself is not timed
                states = ctl.states()
                t0 = time.perf_counter()
                hub.publish(states)
                hub.flush()
                ms.append((time.perf_counter() - t0) * 1e3)
                for c in clients:   # drain what the test clients got (counted, then dropped)
                    received[c] = received.get(c, 0) + len(c.get_received(c.namespace))
            return ms

        rows = []
        ms = timed()
        rows.append(("no client (refresh, views, history)", ms))
        flask_client = web.app.test_client()
        flask_client.get("/landlord/login")
        resp = flask_client.post("/landlord/login", data={"password": BED_PASSWORD, "csrf_token": csrf_of(flask_client),
                                                          "next": "/landlord"})
        assert resp.status_code == 302
        landlord = web.socketio.test_client(web.app, namespace="/landlord", flask_test_client=flask_client)
        assert landlord.is_connected("/landlord")
        landlord.namespace = "/landlord"
        clients.append(landlord)
        ms = timed()
        rows.append(("1 landlord client (+ JSON, emit, test-client decode)", ms))
        sids = list(ctl.sockets)
        for i in range(tenants):
            t = web.socketio.test_client(web.app)
            t.namespace = "/"
            t.emit("watch", {"socket": sids[(i * n) // max(tenants, 1)]}, callback=True)
            clients.append(t)
        ms = timed()
        rows.append((f"1 landlord + {tenants} tenant clients", ms))
        got = [received.get(c, 0) for c in clients]

        print(f"    ({on} of {n} relays on; pushes counted by the hub: {hub.pushes})")
        print(f"    {'per push':<52} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'max pushes/s':>13}")
        for name, ms in rows:
            p50 = percentile(ms, 50)
            print(f"    {name:<52} {p50:>8.2f} {percentile(ms, 95):>8.2f} {max(ms):>8.2f} {1000 / p50:>13.0f}")
            if p50 > MAX_PUSH_MS:
                failures.append(f"one push for {n} sockets ({name}) costs {p50:.1f} ms (goal: at most {MAX_PUSH_MS})")
        views = hub.views(ctl.states())
        payload = {"at": clock.now(), "views": views}
        enc = []
        for _ in range(reps):
            t0 = time.perf_counter()
            body = json.dumps(payload, separators=(",", ":"))
            enc.append((time.perf_counter() - t0) * 1e3)
        t0 = time.perf_counter()
        for _ in range(reps):
            hub.views(ctl.states())
        views_ms = (time.perf_counter() - t0) * 1e3 / reps
        print(f"    {'  of which: views of the states (+ states())':<52} {views_ms:>8.2f}")
        print(f"    {'  of which: JSON of the landlord payload':<52} {percentile(enc, 50):>8.2f}"
              f"   ({kb(len(body))} KB, {kb(len(body) / n * 1000)} B per socket)")
        print(f"    {'  (events queued at the test clients)':<52} landlord {got[0]}, tenants "
              f"{min(got[1:] or [0])} to {max(got[1:] or [0])}")

        # One hour of chart history: 360 points, 10 s apart, per socket; fresh values each time.
        import random

        rnd = random.Random(1)
        base = [(v["id"], v["power_w"] or 0.0) for v in views]
        history = History()
        t = 1_800_000_000.0
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for k in range(360):
            t += 10.0
            history.record([{"id": sid, "updated_at": t, "power_w": w * (0.95 + 0.1 * rnd.random()),
                             "balance_tokens": 1_000_000 - 3 * k - rnd.randrange(1000)} for sid, w in base])
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        one = history.of(base[0][0], t)
        print(f"    {'one hour of chart history, ' + str(n) + ' sockets':<52} {(after - before) / 1e6:>8.2f} MB"
              f"   ({len(one['t'])} points per socket, {(after - before) / n / len(one['t']):.0f} B per point)")
        label = "  one socket's hour, as the watch answer sends it"
        print(f"    {label:<52} {kb(len(json.dumps(one, separators=(',', ':')))):>8} KB")
    finally:
        for c in clients:
            if c.is_connected(c.namespace):
                c.disconnect(c.namespace)
        rt.close()


BEFORE_REV = "c5df74b"  # main before the h11 rewrite of payg/web/server.py
SERVERS = {"werkzeug": "Werkzeug's development server (make_server, threaded), what app.py ran before payg's server",
           "before": "payg's HttpServer as of --before (payg/web/server.py and http1.py from git show)",
           "after": "payg's HttpServer of the working tree (payg/webkit/server.py)"}
LOAD_PATHS = ("/s/kitchen", "/api/sockets/kitchen")
MAX_TICK_GAP_S = 2.5  # two tick starts further apart than this (with the after server under load): a goal missed
MIN_PAGE_RATIO = 0.80  # the tenant page's req/s, after over before, below this: a goal missed

PIPELINED = 64  # GETs a slow reader sends at once: 3.3 MB of answers, more than loopback's socket buffers take

ATTACKS = {  # name: (connections, what each does)
    "slowloris": (200, "a request head sent one byte a second, never finished"),
    "slow-readers": (24, f"{PIPELINED} pipelined GETs of the largest asset, a 4 KB receive buffer, nothing read"),
    "websockets": (100, "a raw WebSocket upgrade to /socket.io/, held open, nothing answered"),
    "chunks": (4, "a chunked POST to /api/peer/vouchers in 1-byte chunks, as fast as it goes"),
    "bodies": (200, "a POST with Content-Length one under the body limit, all but its last byte sent, then nothing"),
}
ATTACKER_ADDRESS = "127.0.0.2"  # so limits per client address fall on the attacker, not on the prober (127.0.0.1)
BIG_ASSET = "/assets/uPlot.iife.min.js"  # the largest file the pages load (51 KB; the Socket.IO client is 47 KB)
# Between a close and the reopening: a server that refuses at once is not met with a connect flood instead.
REOPEN_PAUSE_S = {"slowloris": 1.0, "slow-readers": 0.2, "websockets": 0.5, "chunks": 0.05, "bodies": 1.0}
ATTACK_RAMP_S = 5.0     # the attacker's time to get every connection going before the window opens
PROBE_PATH = "/api/sockets/kitchen"
PROBE_EVERY_S = 0.1
PROBE_TIMEOUT_S = 5.0
MAX_PROBE_P95_MS = 100.0  # under attack, the legitimate GET's p95 at or over this (the after server): a goal missed
MAX_TICK_LATE_S = 1.2     # under attack, a tick finishing later than this after its grid point, or none for a point


def before_server(rev: str, tmp: Path):
    """payg's server as it was at git revision `rev`: payg/web/server.py and http1.py from `git show`, written to
    tmp as payg_before_server.py and payg_before_http1.py (the server's import of payg.web.http1 pointed at the
    latter) and imported under those names, so both versions run in one process."""
    import importlib.util

    if "payg_before_server" in sys.modules:
        return sys.modules["payg_before_server"]
    folder = tmp / "before-server"
    folder.mkdir(exist_ok=True)
    module = None
    for name in ("http1", "server"):
        shown = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:payg/web/{name}.py"], capture_output=True,
                               text=True)
        if shown.returncode != 0:
            raise ImportError(f"git show {rev}:payg/web/{name}.py: {shown.stderr.strip()}")
        text = shown.stdout
        if name == "server":
            if "from payg.web.http1 import" not in text:
                raise ImportError(f"payg/web/server.py at {rev} does not import payg.web.http1")
            text = text.replace("from payg.web.http1 import", "from payg_before_http1 import")
        path = folder / f"payg_before_{name}.py"
        path.write_text(text)
        spec = importlib.util.spec_from_file_location(f"payg_before_{name}", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # before it runs: its dataclasses look their module up there
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[spec.name]
            raise
    return module


def make_web_server(kind: str, wsgi_app, host: str, port: int, web_config, tmp: Path, before_rev: str = BEFORE_REV):
    """The web server the bench puts in front of the app: "werkzeug" (what app.py served with before payg's own),
    "before" (payg's HttpServer at git revision before_rev) or "after" (the working tree's), both built as app.py's
    serve_web builds them, with the limits of the configuration. Each is bound when returned and has .port,
    serve_forever(), shutdown() and server_close(). An exception means that server cannot be built."""
    if kind == "werkzeug":
        from werkzeug.serving import make_server

        return make_server(host, port, wsgi_app, threaded=True)
    if kind == "before":
        mod = before_server(before_rev, tmp)
        return mod.HttpServer(wsgi_app, host, port, mod.ServerLimits.of(web_config.server))
    if kind == "after":
        from payg.webkit.server import HttpServer, ServerLimits

        return HttpServer(wsgi_app, host, port, ServerLimits.of(web_config.server))  # as app.serve_web makes it
    raise ValueError(f"unknown server {kind!r} (one of {', '.join(SERVERS)})")


def load_clients(port: int, path: str, clients: int, seconds: float, out) -> None:
    """The load process: `clients` threads, each with its own keep-alive http.client.HTTPConnection, GET `path`
    in a loop for `seconds`. Puts (window start, window end, latencies of the 200s in ms, errors by kind,
    connections opened) on `out`; times are time.time() so the server's process can line its ticks up."""
    import http.client
    from collections import Counter

    barrier = threading.Barrier(clients + 1)
    lock = threading.Lock()
    latencies: list[float] = []
    errors: Counter = Counter()
    opened = [0]
    window = {}

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        mine, bad = [], Counter()
        connects = 0
        try:
            conn.connect()
            connects += 1
        except OSError as exc:
            bad[f"connect: {type(exc).__name__}"] += 1
        barrier.wait()
        end = window["end"]
        while time.time() < end:
            if conn.sock is None:
                connects += 1  # http.client connects again on the next request
            t0 = time.perf_counter()
            try:
                conn.request("GET", path)
                resp = conn.getresponse()
                resp.read()
            except (OSError, http.client.HTTPException) as exc:
                bad[type(exc).__name__] += 1
                conn.close()
                continue
            ms = (time.perf_counter() - t0) * 1e3
            if resp.status == 200:
                mine.append(ms)
            else:
                bad[f"HTTP {resp.status}"] += 1
            if resp.will_close:
                conn.close()
        conn.close()
        with lock:
            latencies.extend(mine)
            errors.update(bad)
            opened[0] += connects

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    window["start"] = time.time()
    window["end"] = window["start"] + seconds
    barrier.wait()
    for t in threads:
        t.join(seconds + 30)
    out.put((window["start"], time.time(), latencies, dict(errors), opened[0]))


def attacker(attack: str, port: int, body_limit: int, seconds: float, stop_event, out) -> None:
    """An attack process: ATTACKS[attack]'s count of threads, each holding one connection from ATTACKER_ADDRESS to
    127.0.0.1:port that does the attack and is opened again (after REOPEN_PAUSE_S) when the server closes it.
    Puts ("ready", slots going, seconds) once every slot got going (or after ATTACK_RAMP_S), then ("done", counts)
    when stop_event is set or, whatever the bench does, its own deadline has passed. An exception in a slot is
    counted and the slot goes on; every socket is closed at the end."""
    import select
    import socket
    from collections import Counter

    started = time.monotonic()
    deadline = started + ATTACK_RAMP_S + seconds + 30  # the prober's start-up and some slack past its window
    slots, _ = ATTACKS[attack]
    pause = REOPEN_PAUSE_S[attack]
    stop = threading.Event()
    lock = threading.Lock()
    counts: Counter = Counter()     # opened, closed (an end of stream or an answer from the server), reset, bytes
    answers: Counter = Counter()    # the status lines the server sent
    errors: Counter = Counter()
    live: set = set()
    going: set = set()
    all_going = threading.Event()

    def note(key: str, n: int = 1) -> None:
        with lock:
            counts[key] += n

    def got_going(i: int) -> None:
        with lock:
            going.add(i)
            if len(going) == slots:
                all_going.set()

    def answered(data: bytes) -> None:
        m = re.match(rb"HTTP/1\.[01] (\d{3})", data)
        with lock:
            answers[m.group(1).decode() if m else "(not HTTP)"] += 1
            counts["closed"] += 1

    def readable(s, timeout_s: float) -> bool:
        p = select.poll()
        p.register(s, select.POLLIN)
        return bool(p.poll(timeout_s * 1e3))

    def send_head(s, data: bytes) -> None:
        s.sendall(data)
        note("bytes", len(data))

    def send_all(i: int, s, data: bytes) -> bool:
        """True once all is sent; a server that stops reading makes the slot count as going (it holds what it has)."""
        view = memoryview(data)
        while view and not stop.is_set():
            try:
                n = s.send(view[:65536])
            except TimeoutError:
                got_going(i)
                continue
            view = view[n:]
            note("bytes", n)
        return not view

    def closed(s) -> None:
        """The server answered (and closes) or closed: note which."""
        data = s.recv(65536)
        if data:
            answered(data)
        else:
            note("closed")

    def wait_for_close(s) -> None:
        while not stop.is_set():
            if readable(s, 1.0):
                closed(s)
                return

    def slowloris(i: int, s) -> None:
        head = b"GET /s/kitchen HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"a" * 100_000
        for k in range(len(head)):
            if stop.is_set():
                return
            s.send(head[k:k + 1])
            note("bytes")
            got_going(i)
            if readable(s, 1.0):  # the server answered (408, say) or closed
                closed(s)
                return

    def slow_reader(i: int, s) -> None:
        send_head(s, b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % BIG_ASSET.encode() * PIPELINED)
        got_going(i)
        p = select.poll()
        p.register(s, select.POLLRDHUP)  # not POLLIN: the answers stay unread; a close (or reset) still shows
        while not stop.is_set():
            if p.poll(500):
                note("closed")
                return

    def websocket(i: int, s) -> None:
        key = base64.b64encode(os.urandom(16))
        send_head(s, b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                     b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                     b"Sec-WebSocket-Version: 13\r\n\r\n" % (port, key))
        got = b""
        while b"\r\n\r\n" not in got and not stop.is_set():
            if readable(s, 1.0):
                data = s.recv(65536)
                if not data:
                    note("closed")
                    return
                got += data
        if stop.is_set():
            return
        m = re.match(rb"HTTP/1\.[01] (\d{3})", got)
        with lock:
            answers[m.group(1).decode() if m else "(not HTTP)"] += 1
        got_going(i)
        while not stop.is_set():  # held: Engine.IO's open packet and pings are read and left unanswered
            if readable(s, 1.0) and not s.recv(65536):
                note("closed")
                return

    def chunks(i: int, s) -> None:
        send_head(s, b"POST /api/peer/vouchers HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        burst = b"1\r\nx\r\n" * 2048
        while not stop.is_set():
            send_all(i, s, burst)
            got_going(i)
            if readable(s, 0):  # answered (413, say) and closed
                closed(s)
                return

    def held_body(i: int, s) -> None:
        length = body_limit - 1
        send_head(s, b"POST /api/peer/vouchers HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n" % length)
        if send_all(i, s, b" " * (length - 1)):
            got_going(i)
            wait_for_close(s)

    behave = {"slowloris": slowloris, "slow-readers": slow_reader, "websockets": websocket, "chunks": chunks,
              "bodies": held_body}[attack]

    def slot(i: int) -> None:
        while not stop.is_set() and time.monotonic() < deadline:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            with lock:
                live.add(s)
            try:
                if attack == "slow-readers":
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: the window it offers
                s.bind((ATTACKER_ADDRESS, 0))
                s.settimeout(3.0)
                try:
                    s.connect(("127.0.0.1", port))
                except OSError as exc:
                    with lock:
                        errors[f"connect: {type(exc).__name__}"] += 1
                    continue
                note("opened")
                s.settimeout(2.0)
                behave(i, s)
            except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError):
                note("reset")
            except Exception as exc:  # counted, not fatal: the slot opens another connection
                with lock:
                    errors[type(exc).__name__] += 1
            finally:
                with lock:
                    live.discard(s)
                s.close()
                stop.wait(pause)

    threading.stack_size(256 * 1024)
    threads = [threading.Thread(target=slot, args=(i,), name=f"{attack} {i}", daemon=True) for i in range(slots)]
    try:
        for t in threads:
            t.start()
        all_going.wait(ATTACK_RAMP_S)
        out.put(("ready", len(going), time.monotonic() - started))
        while not stop_event.is_set() and time.monotonic() < deadline:
            stop_event.wait(0.2)
    finally:
        stop.set()
        join_by = time.monotonic() + 8
        for t in threads:
            t.join(max(0.0, join_by - time.monotonic()))
        with lock:
            for s in list(live):
                s.close()
            out.put(("done", {"counts": dict(counts), "answers": dict(answers), "errors": dict(errors),
                              "going": len(going), "stuck": sum(t.is_alive() for t in threads)}))


def prober(port: int, seconds: float, socketio_check: bool, go, out) -> None:
    """The legitimate client during an attack, from 127.0.0.1, once `go` is set: a fresh connection and one GET
    PROBE_PATH every PROBE_EVERY_S for `seconds` (each bounded by PROBE_TIMEOUT_S). With socketio_check, one
    python-socketio client (WebSocket transport only) connects a third of the way in and watches the kitchen.
    Puts (window start, end, latencies in ms with a failed GET as inf, errors by kind, (ok, detail) or None)."""
    import http.client
    from collections import Counter

    if socketio_check:
        import socketio
    latencies: list[float] = []
    errors: Counter = Counter()
    sio: dict = {}

    def check_socketio() -> None:
        client = socketio.Client(reconnection=False)
        t0 = time.perf_counter()
        try:
            client.connect(f"http://127.0.0.1:{port}", transports=["websocket"], wait_timeout=5)
            reply = client.call("watch", {"socket": "kitchen"}, timeout=5)
            ok = bool(reply and reply.get("ok"))
            sio["result"] = (ok, f"connected over {client.transport()} in {(time.perf_counter() - t0) * 1e3:.0f} ms,"
                                 f" watch {'answered' if ok else 'refused'}")
        except Exception as exc:
            sio["result"] = (False, f"{type(exc).__name__}: {str(exc)[:80]} after "
                                    f"{(time.perf_counter() - t0) * 1e3:.0f} ms")
        finally:
            try:
                client.disconnect()
            except Exception:
                pass

    go.wait(120)
    start = time.time()
    end = start + seconds
    checker = None
    if socketio_check:
        checker = threading.Timer(seconds / 3, check_socketio)
        checker.daemon = True
        checker.start()
    next_at = time.monotonic()
    while time.time() < end:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=PROBE_TIMEOUT_S, source_address=("127.0.0.1", 0))
        t0 = time.perf_counter()
        try:
            conn.request("GET", PROBE_PATH)
            resp = conn.getresponse()
            resp.read()
            if resp.status == 200:
                latencies.append((time.perf_counter() - t0) * 1e3)
            else:
                errors[f"HTTP {resp.status}"] += 1
                latencies.append(math.inf)
        except (OSError, http.client.HTTPException) as exc:
            errors[type(exc).__name__] += 1
            latencies.append(math.inf)
        finally:
            conn.close()
        next_at = max(next_at + PROBE_EVERY_S, time.monotonic())
        time.sleep(max(0.0, min(next_at - time.monotonic(), end - time.time())))
    stopped = time.time()
    if checker is not None:
        checker.join(20)
    out.put((start, stopped, latencies, dict(errors), sio.get("result", (False, "no answer")) if checker else None))


def tick_lateness(ticks: list[tuple[float, float]], anchor: float, interval: float, t0: float, t1: float) -> dict:
    """The ticks of the grid points (anchor + k * interval) in [t0, t1]: the worst start and finish after the grid
    point each belongs to (the last one at or before its start), the longest gap between two starts, and grid
    points with no tick (APScheduler skips a run that comes while the previous one still runs, and coalesces late
    ones: a tick more than one interval late counts for the later point)."""
    first, last = math.ceil((t0 - anchor) / interval), math.floor((t1 - anchor) / interval)
    runs = []
    for s, e in ticks:
        k = math.floor((s - anchor) / interval)
        if first <= k <= last:
            runs.append((k, s - (anchor + k * interval), e - (anchor + k * interval), s))
    if not runs:
        return {"n": 0, "start": math.inf, "end": math.inf, "gap": math.inf, "missed": last - first + 1}
    gaps = [b[3] - a[3] for a, b in itertools.pairwise(runs)]
    return {"n": len(runs), "start": max(r[1] for r in runs), "end": max(r[2] for r in runs),
            "gap": max(gaps, default=0.0), "missed": (last - first + 1) - len({r[0] for r in runs})}


class Sampler:
    """This process's thread count (threading.active_count()) and RSS (VmRSS) every 0.1 s, while it runs."""

    def __init__(self):
        self.samples: list[tuple[float, int, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench sampler", daemon=True)

    def now(self) -> tuple[int, float]:
        return threading.active_count(), proc_rss_mib(os.getpid())

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.time(), *self.now()))
            self._stop.wait(0.1)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(2)

    def between(self, t0: float, t1: float) -> list[tuple[float, int, float]]:
        return [s for s in self.samples if t0 <= s[0] <= t1] or [(t1, *self.now())]


def receive(q, proc, timeout_s: float):
    """The next thing child process `proc` puts on `q`; None after timeout_s, or once it has exited without one."""
    import queue

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            return q.get(timeout=0.5)
        except queue.Empty:
            if not proc.is_alive():
                try:
                    return q.get(timeout=1)  # what it put just before it exited
                except queue.Empty:
                    return None
    return None


def attack_window(ctx, attack: str, port: int, seconds: float, body_limit: int, sampler: Sampler) -> dict:
    """One attack on the server at `port`, the prober measuring meanwhile (see attacker and prober)."""
    stop, go = ctx.Event(), ctx.Event()
    attack_out, probe_out = ctx.Queue(), ctx.Queue()
    threads0, rss0 = sampler.now()
    began = time.time()
    attack_proc = ctx.Process(target=attacker, args=(attack, port, body_limit, seconds, stop, attack_out), daemon=True)
    probe_proc = ctx.Process(target=prober, args=(port, seconds, attack == "websockets", go, probe_out), daemon=True)
    attack_proc.start()
    probe_proc.start()
    result = {"attack": attack, "ready": None, "stats": None, "probe": None}
    try:
        msg = receive(attack_out, attack_proc, ATTACK_RAMP_S + 60)
        if msg is not None and msg[0] == "ready":
            result["ready"] = msg[1:]
        elif msg is not None:
            result["stats"] = msg[1]
        go.set()
        result["probe"] = receive(probe_out, probe_proc, seconds + 60)
    finally:
        stop.set()
        go.set()
        if result["stats"] is None:
            while (msg := receive(attack_out, attack_proc, 30)) is not None and msg[0] != "done":
                pass
            result["stats"] = msg[1] if msg is not None else None
        for proc in (attack_proc, probe_proc):
            proc.join(15)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
    gone = time.time()
    during = sampler.between(began, gone)
    window_end = result["probe"][1] if result["probe"] else gone
    result["threads"] = (threads0, min(during, key=lambda s: abs(s[0] - window_end))[1], max(s[1] for s in during))
    result["rss"] = (rss0, max(s[2] for s in during), None)
    if attack == "bodies":
        time.sleep(5)  # the attackers gone 5 s: what the server kept
        result["rss"] = (rss0, result["rss"][1], sampler.now()[1])
    result["busy_after"] = settle()
    return result


def settle(max_s: float = 20.0, idle: float = 0.25) -> float:
    """Wait (up to max_s) until this process uses under `idle` of a core over half a second: a server still working
    off what an attack left (chunks already received, say) would otherwise slow the next window. Returns the wait."""
    t0 = time.time()
    while time.time() - t0 < max_s:
        cpu0 = proc_cpu_s(os.getpid())
        time.sleep(0.5)
        if proc_cpu_s(os.getpid()) - cpu0 < idle * 0.5:
            break
    return time.time() - t0


def part_server(tmp: Path, kinds: list[str], clients: int, seconds: float, attacks: list[str], attack_seconds: float,
                before_rev: str, failures: list[str]) -> list[str]:
    """Prints the tables; returns the servers measured (one that cannot be built is skipped with a message)."""
    import logging
    import multiprocessing
    import urllib.request

    from payg import bootstrap as composition
    from payg.adapters.clocks import SystemClock
    from payg.adapters.scheduler import SchedulerDriver
    from payg.web import create_web
    from payg.webkit.security import WebSecrets
    from tests.support.web_beds import PASSWORD_HASH, TOKEN

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # as app.serve does: no line per request
    print(f"\n4. The web server under load: {clients} concurrent clients for {seconds:.0f} s per row, each with one "
          f"keep-alive\n   connection (http.client.HTTPConnection, reused), all in one separate process (spawned, "
          f"its own GIL);\n   the server, the app and the real loop (app.build on the system clock, SchedulerDriver, "
          f"1 s ticks) in this one.\n   Latency is per request as the client sees it (200s only); errors: any "
          f"other status, or a failed request.\n   Tick late: how long after its 1 s grid point a tick started / "
          f"finished, worst in the window; gap: the\n   longest time between two tick starts; missed: grid points "
          f"with no tick. {os.cpu_count()} CPUs, shared with the load.\n   before: payg's server at {before_rev}; "
          f"after: the working tree's.")
    data_dir = tmp / "server-bench" / "var"
    data_dir.parent.mkdir(parents=True)
    config_path = data_dir.parent / "default.toml"
    config_path.write_text(embedded_default_toml(data_dir, free_port()))
    config = composition.load_config(config_path)
    body_limit = config.web.server.max_body_kib * 1024
    rt = composition.build(config, SystemClock())
    driver = None
    hub = None
    rows = []
    hits: list[tuple[str, dict]] = []   # (server, attack_window's result)
    try:
        rt.site.start()
        web = create_web(composition.web_services(rt, WebSecrets("s" * 43, TOKEN, PASSWORD_HASH)),
                         **composition.web_dirs())
        hub = web.hub
        rt.publishers.subscribe(hub)
        hub.start()
        rt.ledger.pay("kitchen", 1_000_000)  # the kitchen's relay on: a tick meters and bills as it would
        ticks: list[tuple[float, float]] = []
        tick = rt.site.tick

        def timed_tick() -> None:
            started = time.time()
            tick()
            ticks.append((started, time.time()))

        rt.site.tick = timed_tick  # Site.jobs() hands the driver self.tick: this one
        anchor = time.time()       # SchedulerDriver.start() sets the grid at its now, just after this
        driver = SchedulerDriver(rt.site)
        driver.start()
        interval = rt.site.poll_interval_s
        time.sleep(3)
        quiet = min(10.0, seconds)
        t0 = time.time()
        time.sleep(quiet)
        rows.append(("-", f"no load ({quiet:.0f} s)", None, (t0, time.time())))
        ctx = multiprocessing.get_context("spawn")
        skipped: set[str] = set()

        def load(kind: str, port: int) -> None:
            for path in LOAD_PATHS:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
                    assert resp.status == 200, (kind, path, resp.status)   # warm: templates compiled
                out = ctx.Queue()
                proc = ctx.Process(target=load_clients, args=(port, path, clients, seconds, out))
                proc.start()
                cpu0 = proc_cpu_s(os.getpid())
                try:
                    start, end, ms, errors, opened = out.get(timeout=seconds + 120)
                finally:
                    proc.join(30)
                    if proc.is_alive():
                        proc.kill()
                cpu = proc_cpu_s(os.getpid()) - cpu0
                rows.append((kind, path, (ms, errors, opened, end - start, cpu), (start, end)))
                time.sleep(2)   # the load's connections closed, their handlers gone; the last tick in

        def attack(kind: str, port: int) -> None:
            for name in attacks:
                try:
                    hits.append((kind, attack_window(ctx, name, port, attack_seconds, body_limit, sampler)))
                except Exception as exc:  # a fault of the bench's own: the other attacks still run
                    print(f"   {kind} under {name}: not measured ({type(exc).__name__}: {exc})")

        # Every server's load first, then every server's attacks: no server's load runs after another's attacks.
        with Sampler() as sampler:
            for phase in (load, attack) if attacks else (load,):
                for kind in kinds:
                    try:
                        server = make_web_server(kind, web.app, "127.0.0.1", 0, config.web, tmp, before_rev)
                    except Exception as exc:  # the working tree's server mid-rewrite, or a revision git lacks
                        if kind not in skipped:
                            skipped.add(kind)
                            print(f"   {kind}: SKIPPED: the server cannot be built ({type(exc).__name__}: {exc})")
                        continue
                    serving = threading.Thread(target=server.serve_forever, name=f"{kind} server", daemon=True)
                    serving.start()
                    try:
                        phase(kind, server.port)
                    finally:
                        server.shutdown()
                        server.server_close()
                        serving.join(10)
        time.sleep(1.5)  # the last window's last tick
        rows = [(kind, path, load, tick_lateness(ticks, anchor, interval, *window))
                for kind, path, load, window in rows]
        hits = [(kind, dict(hit, late=tick_lateness(ticks, anchor, interval, *hit["probe"][:2]) if hit["probe"]
                            else None)) for kind, hit in hits]
    finally:
        if driver is not None:
            driver.shutdown()
        if hub is not None:
            hub.stop()
        rt.close()

    print(f"\n    {'server':<10} {'path':<22} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'errors':>7} "
          f"{'conns':>6} {'CPU %':>6} {'tick late start/end ms':>23} {'gap s':>6} {'missed':>6}")
    rates = {}
    for kind, path, load, late in rows:
        tick_cols = (f"{late['start'] * 1e3:>11.0f} /{late['end'] * 1e3:>9.0f} {late['gap']:>6.2f} "
                     f"{late['missed'] if late['missed'] is not None else '-':>6}")
        if load is None:
            print(f"    {kind:<10} {path:<22} {'':>7} {'':>7} {'':>7} {'':>7} {'':>7} {'':>6} {'':>6} {tick_cols}")
            continue
        ms, errors, opened, wall, cpu = load
        n_err = sum(errors.values())
        rates[kind, path] = len(ms) / wall
        p = (f"{percentile(ms, 50):>7.1f} {percentile(ms, 99):>7.1f} {max(ms):>7.0f}" if ms
             else f"{'-':>7} {'-':>7} {'-':>7}")
        print(f"    {kind:<10} {path:<22} {len(ms) / wall:>7.0f} {p} {n_err:>7} {opened:>6} "
              f"{cpu / wall * 100:>6.0f} {tick_cols}")
        if errors:
            print(f"    {'':<10} errors: {', '.join(f'{k} x{v}' for k, v in sorted(errors.items()))}")
        if kind == "after":
            if n_err:
                failures.append(f"the after server: {n_err} errors for {path} with {clients} clients "
                                f"({', '.join(f'{k} x{v}' for k, v in sorted(errors.items()))})")
            if late["gap"] > MAX_TICK_GAP_S or late["missed"]:
                failures.append(f"with the after server under load on {path} the tick's longest gap was "
                                f"{late['gap']:.2f} s and {late['missed']} ticks were missed "
                                f"(goal: none missed, no gap over {MAX_TICK_GAP_S} s)")
    for path in LOAD_PATHS:
        if ("before", path) in rates and ("after", path) in rates:
            ratio = rates["after", path] / rates["before", path] if rates["before", path] else math.inf
            goal = f"  (goal: at least {MIN_PAGE_RATIO:.2f})" if path == "/s/kitchen" else ""
            print(f"    after/before req/s on {path}: {ratio:.2f}{goal}")
            if goal and ratio < MIN_PAGE_RATIO:
                failures.append(f"the after server serves {path} at {ratio:.2f} of the before server's req/s "
                                f"(goal: at least {MIN_PAGE_RATIO:.2f})")
    measured = [k for k in kinds if any(row[0] == k for row in rows) or any(h[0] == k for h in hits)]
    for kind in measured:
        print(f"    {kind}: {SERVERS[kind]}")
    for kind, path, load, _ in rows:
        if load is not None and load[2] > 2 * clients:
            print(f"    {kind} on {path}: {load[2]} connections for {len(load[0]) + sum(load[1].values())} requests: "
                  f"the server closed the connection after each response (Connection: close), keep-alive did not "
                  f"hold")
    print("    (conns: TCP connections the clients opened, 1 each when keep-alive holds; CPU: this process, "
          "one core = 100 %)")
    if hits:
        print_attacks(hits, attack_seconds, body_limit, failures)
    return measured


def print_attacks(hits: list[tuple[str, dict]], seconds: float, body_limit: int, failures: list[str]) -> None:
    print(f"\n   Under attack, {seconds:.0f} s each, from one spawned process whose connections all come from "
          f"{ATTACKER_ADDRESS},\n   each reopened when the server closes it; meanwhile a legitimate client (another "
          f"process, 127.0.0.1)\n   opens a fresh connection and GETs {PROBE_PATH} every {PROBE_EVERY_S * 1e3:.0f} ms "
          f"(a failed GET counts as\n   slower than any in p50/p95; max is of the 200s). threads and RSS: this "
          f"process's (the server's), peak.\n   Goals (judged for after only): p95 under {MAX_PROBE_P95_MS:.0f} ms, "
          f"no tick finishing over {MAX_TICK_LATE_S} s after its grid point, none missed.")
    print(f"\n    {'server':<10} {'GETs':>5} {'p50 ms':>7} {'p95 ms':>7} {'max ms':>7} {'errors':>6} "
          f"{'tick late start/end ms':>23} {'gap s':>6} {'missed':>6} {'threads':>7} {'RSS MB':>7}  goals")

    def ms(v: float) -> str:
        return "fail" if math.isinf(v) else f"{v:.1f}"

    for attack in ATTACKS:
        mine = [(kind, hit) for kind, hit in hits if hit["attack"] == attack]
        if not mine:
            continue
        count, what = ATTACKS[attack]
        print(f"    {attack} x{count}: {what}")
        for kind, hit in mine:
            probe, late = hit["probe"], hit["late"]
            missed = []
            if probe and probe[2]:
                lat, errors = probe[2], probe[3]
                ok = [v for v in lat if not math.isinf(v)]
                p95 = percentile(lat, 95)
                cols = (f"{len(lat):>5} {ms(percentile(lat, 50)):>7} {ms(p95):>7} "
                        f"{f'{max(ok):.0f}' if ok else '-':>7} {sum(errors.values()):>6}")
            else:
                errors, p95 = {}, math.inf
                cols = f"{0:>5} {'-':>7} {'-':>7} {'-':>7} {'-':>6}"
            if not p95 < MAX_PROBE_P95_MS:
                missed.append(f"p95 {ms(p95)} ms")
            if late is None:
                tick_cols = f"{'-':>11} /{'-':>9} {'-':>6} {'-':>6}"
                missed.append("no window")
            else:
                tick_cols = (f"{late['start'] * 1e3:>11.0f} /{late['end'] * 1e3:>9.0f} {late['gap']:>6.2f} "
                             f"{late['missed']:>6}")
                if late["end"] > MAX_TICK_LATE_S or late["missed"]:
                    missed.append(f"a tick {late['end']:.2f} s late, {late['missed']} missed")
            print(f"      {kind:<8} {cols} {tick_cols} {hit['threads'][2]:>7} {hit['rss'][1]:>7.0f}  "
                  f"{'MISSED' if missed else 'met'}")
            if errors:
                print(f"      {'':<8} prober errors: {', '.join(f'{k} x{v}' for k, v in sorted(errors.items()))}")
            stats, ready = hit["stats"], hit["ready"]
            if stats is None:
                print(f"      {'':<8} attacker: no report (it did not start or did not stop)")
            else:
                c = stats["counts"]
                line = (f"attacker: {stats['going']}/{count} going"
                        + (f" after {ready[1]:.1f} s" if ready else "") + f", {c.get('opened', 0)} connections, "
                        f"{c.get('closed', 0)} closed and {c.get('reset', 0)} reset by the server, "
                        f"{c.get('bytes', 0) / 1e6:.1f} MB sent")
                if stats["answers"]:
                    line += "; answers " + ", ".join(f"{k} x{v}" for k, v in sorted(stats["answers"].items()))
                if stats["errors"]:
                    line += "; errors " + ", ".join(f"{k} x{v}" for k, v in sorted(stats["errors"].items()))
                if stats["stuck"]:
                    line += f"; {stats['stuck']} threads did not stop"
                if hit["busy_after"] >= 1.5:
                    line += f"; the server still busy {hit['busy_after']:.0f} s after it left"
                print(f"      {'':<8} {line}")
            if attack == "websockets":
                sio = probe[4] if probe else None
                print(f"      {'':<8} a Socket.IO client from 127.0.0.1 over WebSocket: "
                      f"{('yes' if sio[0] else 'no') + ' (' + sio[1] + ')' if sio else 'not tried'}; threads "
                      f"{hit['threads'][0]} before, {hit['threads'][1]} at the window's end, {hit['threads'][2]} peak")
            if attack == "bodies":
                rss = hit["rss"]
                print(f"      {'':<8} RSS {rss[0]:.0f} MB before, {rss[1]:.0f} MB at the peak, "
                      f"{rss[2]:.0f} MB 5 s after the attackers left (held bodies of {body_limit - 2} bytes)")
            if kind == "after" and missed:
                failures.append(f"the after server under {attack} x{count}: {'; '.join(missed)} (goal: the legitimate "
                                f"GET's p95 under {MAX_PROBE_P95_MS:.0f} ms, no tick later than {MAX_TICK_LATE_S} s)")


def server_verdict(measured: list[str], attacked: bool) -> str:
    if "after" not in measured:
        return "the after server not measured (part 4 printed why)"
    held = ["answered every request under load"]
    if "before" in measured:
        held.append("kept up with before")
    if attacked:
        held.append("held under attack")
    return "the after server " + ", ".join(held)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="each push window, in seconds (default 20)")
    parser.add_argument("--sockets", type=int, default=200, help="sockets of the large case (default 200)")
    parser.add_argument("--tenants", type=int, default=20, help="tenant clients (default 20)")
    parser.add_argument("--reps", type=int, default=200, help="in-process pushes per row (default 200)")
    parser.add_argument("--no-browser", action="store_true", help="skip the page weights (part 1)")
    parser.add_argument("--server-seconds", type=float, default=25.0,
                        help="each load window of part 4, in seconds (default 25)")
    parser.add_argument("--clients", type=int, default=50, help="concurrent clients of part 4 (default 50)")
    parser.add_argument("--servers", default="before,after",
                        help=f"the servers part 4 compares, in order, of {','.join(SERVERS)} (default before,after)")
    parser.add_argument("--before", default=BEFORE_REV, metavar="REV",
                        help=f"the git revision whose payg/web/server.py is the before server (default {BEFORE_REV})")
    parser.add_argument("--attacks", default=",".join(ATTACKS),
                        help=f"the attacks of part 4, in order (default all: {','.join(ATTACKS)})")
    parser.add_argument("--no-attacks", action="store_true", help="part 4 without the attacks")
    parser.add_argument("--attack-seconds", type=float, default=15.0,
                        help="each attack window of part 4, in seconds (default 15)")
    parts = parser.add_mutually_exclusive_group()
    parts.add_argument("--no-server", action="store_true", help="skip the server under load (part 4)")
    parts.add_argument("--server-only", action="store_true", help="only the server under load (part 4)")
    args = parser.parse_args(argv)
    kinds = [k.strip() for k in args.servers.split(",") if k.strip()]
    unknown = sorted(set(kinds) - set(SERVERS))
    if unknown or not kinds:
        parser.error(f"--servers: unknown {', '.join(unknown) or '(none given)'}; choose from {', '.join(SERVERS)}")
    failures: list[str] = []
    attacks = [] if args.no_attacks else [a.strip() for a in args.attacks.split(",") if a.strip()]
    unknown = sorted(set(attacks) - set(ATTACKS))
    if unknown:
        parser.error(f"--attacks: unknown {', '.join(unknown)}; choose from {', '.join(ATTACKS)}")
    server_args = (kinds, args.clients, args.server_seconds, attacks, args.attack_seconds, args.before, failures)
    started = time.perf_counter()
    print(f"payg web bench: {args.sockets} sockets, {args.tenants} tenant clients, windows of {args.seconds:.0f} s; "
          f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory(prefix="payg-web-bench-") as tmp_name:
        tmp = Path(tmp_name)
        if args.server_only:
            print("\n1.-3. skipped (--server-only)")
            measured = part_server(tmp, *server_args)
            print()
            return finish(started, failures, server_verdict(measured, bool(attacks)))
        env = password_env()
        ids = [f"s{i:03d}" for i in range(args.sockets)]
        big = Controller(tmp, "many", lambda d, p: many_sockets(d, p, args.sockets), env)
        try:
            big.wait_ready()
            credit_all(big, ids, 1_000_000)
            if args.no_browser:
                print("\n1. Page weight: skipped (--no-browser)")
            else:
                part_pages(tmp, env, big, args.sockets, args.seconds, failures)
            part_pushes(big, ids, args.seconds, args.tenants, failures)
        finally:
            rc = big.stop()
        if rc != 0:
            failures.append(f"the {args.sockets}-socket controller exited {rc} on SIGTERM")
        part_in_process(tmp, args.sockets, args.reps, args.tenants, failures)
        measured = []
        if args.no_server:
            print("\n4. The web server under load: skipped (--no-server)")
        else:
            measured = part_server(tmp, *server_args)
    print()
    return finish(started, failures, "one push a second to each page, the landlord's table complete; pushes are cheap"
                                     + ("" if args.no_server else f"; {server_verdict(measured, bool(attacks))}"))


if __name__ == "__main__":
    sys.exit(main())
