"""The web tests' shared rigs: the in-process web bed (`bed`), and for the browser tests the controller as a
subprocess, Chromium, and the pages' console problems.

The controller is `app.py --config FILE` in a subprocess on the embedded default (config/default.toml:
kitchen 800 W, laundry, office; the mock ledger), with its data directory in tmp_path, a free
127.0.0.1 port and a landlord password hash in an environment variable.
"""

from __future__ import annotations

import functools
import json
import os
import re
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from werkzeug.security import generate_password_hash

from tests.conftest import CHROMIUM
from tests.support import ROOT, free_port, launcher, terminate, wait_until
from tests.support.web_beds import CHROMIUM_ARGS, HASH_ENV, PASSWORD, embedded_default_toml, make_web_bed

# Records CSP violations as console errors too (Chromium logs most of them itself; this catches all).
CSP_PROBE = ("document.addEventListener('securitypolicyviolation', (e) => console.error("
             "'CSP violation: ' + e.violatedDirective + ' blocked ' + e.blockedURI));")


@pytest.fixture
def bed(tmp_path):
    """The controller's web app in-process on the embedded default (a module may override it)."""
    b = make_web_bed(tmp_path)
    yield b
    b.close()


@functools.cache
def scrypt_hash() -> str:
    """The landlord password's hash as `payg password` makes it (scrypt, slow on purpose), made once per process."""
    return generate_password_hash(PASSWORD)


class Controller:
    """`app.py --config FILE` as a process of its own (restartable on the same port and data), output in a log."""

    def __init__(self, tmp_path: Path):
        self.cwd = tmp_path
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.data_dir = tmp_path / "var"
        self.config = tmp_path / "payg.toml"
        self.config.write_text(embedded_default_toml(self.data_dir, self.port))
        self.env = dict(os.environ, **{HASH_ENV: scrypt_hash()})
        self.log = tmp_path / "controller.log"
        self.proc: launcher.Process | None = None

    def start(self) -> None:
        self.proc = launcher.start(["--config", str(self.config)], cwd=self.cwd, env=self.env, stdout=self.log,
                                   append=True)
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
        """A mock payment of `amount` tokens into the socket's address, by the CLI (like tests/e2e/test_cli.py)."""
        result = launcher.run("deposit", "--socket", socket_id, "--amount", str(amount), "--config", str(self.config),
                              cwd=self.cwd, env=self.env)
        assert result.returncode == 0, result.stderr
        assert re.search(r"\bdeposit mock-[0-9a-f]{32}\b", result.stdout), result.stdout

    def state(self, socket_id: str) -> dict:
        """The public JSON of one socket, as the server has it."""
        with urllib.request.urlopen(f"{self.base}/api/sockets/{socket_id}", timeout=5) as resp:
            return json.load(resp)


def running(c: Controller):
    """A fixture's body: start `c`, hand it to the test, stop it (however the test ended)."""
    try:
        c.start()
        yield c
    finally:
        if c.proc is not None:
            terminate(c.proc, 10)


@pytest.fixture
def controller(tmp_path: Path):
    yield from running(Controller(tmp_path))


@pytest.fixture(scope="package")
def chromium():
    """One Chromium for all of tests/web (launching one takes seconds); each test makes its own contexts, which
    share nothing. Not one per session: while it runs, playwright's sync API leaves its asyncio loop marked
    running in the main thread, where a later test's asyncio.run() would fail (tests/web has none)."""
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


AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"   # from npm (package.json devDependencies)
# WCAG 2.2 A and AA with AAA's contrast, as the other pages are held to (tests/web/test_browser.py)
AXE_RUN = """async () => {
  const r = await axe.run(document, {
    runOnly: {type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]},
    rules: {"color-contrast-enhanced": {enabled: true}},
    resultTypes: ["violations"],
  });
  return r.violations.map((v) => v.id + ": " + v.help + " at " + v.nodes.map((n) => n.target.join(" ")).join(", "));
}"""


def checker(chromium, viewport: dict):
    """A context whose pages carry axe-core from their first script on: `bypass_csp` lets it past the policy
    (which rightly refuses it), and an init script spares sending it to each page again."""
    assert AXE.is_file(), f"{AXE} is missing: `make test` installs it with npm (package.json devDependencies)"
    context = chromium.new_context(viewport=viewport, bypass_csp=True)
    context.add_init_script(path=str(AXE))
    return context


def violations(page) -> list[str]:
    if not page.evaluate("typeof axe !== 'undefined'"):
        page.add_script_tag(path=str(AXE))
    return page.evaluate(AXE_RUN)
