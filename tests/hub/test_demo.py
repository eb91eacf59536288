"""`make hub-demo` (payg/wiring/hub_demo.py) as a newcomer runs it: one process that brings up a real Mosquitto,
two controllers and the hub, prints the address and the login, serves the fleet page with both controllers'
sockets, and stops all of it on Ctrl-C (SIGINT). And `payg hub --help` says what the hub reads."""

from __future__ import annotations

import contextlib
import http.cookiejar
import io
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from payg.cli.parser import parse_args
from tests.support.mosquitto import MOSQUITTO, require_mosquitto

ROOT = Path(__file__).resolve().parents[2]


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_make_hub_demo_starts_serves_both_controllers_and_stops_on_ctrl_c(tmp_path):
    require_mosquitto()
    assert re.search(r"^hub-demo:.*\n\t.*-m payg\.wiring\.hub_demo", (ROOT / "Makefile").read_text(), re.M)
    started = time.monotonic()
    demo = subprocess.Popen([sys.executable, "-m", "payg.wiring.hub_demo", "--port", "0", "--dir",
                             str(tmp_path / "demo")], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, "PAYG_MOSQUITTO": MOSQUITTO})
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in demo.stdout], daemon=True)
    reader.start()
    out: list[str] = []
    try:
        while not any(line.startswith("Ctrl-C") for line in out):
            try:
                out.append(lines.get(timeout=max(0.1, 20 - (time.monotonic() - started))))
            except queue.Empty:
                pytest.fail(f"the demo did not say it was up within 20 s: {''.join(out)}")
        text = "".join(out)
        url = re.search(r"The hub:\s+(http://127\.0\.0\.1:(\d+)/)", text)
        password = re.search(r"password (\S+)", text)
        assert url and password, text
        port = int(url.group(2))

        # the landlord logs in with what was printed, as in a browser (the form's CSRF token, the session cookie)
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        login = opener.open(url.group(1) + "login", timeout=5).read().decode()
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', login).group(1)
        form = urllib.parse.urlencode({"csrf_token": csrf, "username": "landlord", "password": password.group(1),
                                       "next": "/"}).encode()
        page = opener.open(url.group(1) + "login", data=form, timeout=5)
        assert page.url == url.group(1), page.url
        html = page.read().decode()
        for key, name in (("home/kitchen", "Kitchen"), ("home/laundry", "Laundry"), ("shop/till", "Till"),
                          ("shop/cold-room", "Cold room")):
            assert f'data-key="{key}"' in html and f'<span class="name">{name}</span>' in html, key
        broker_port = int(re.search(r"listener (\d+)", (tmp_path / "demo" / "broker" / "mosquitto.conf")
                                    .read_text()).group(1))
        assert listening(port) and listening(broker_port)
        assert time.monotonic() - started < 20

        demo.send_signal(signal.SIGINT)  # Ctrl-C
        assert demo.wait(15) == 0
        reader.join(5)
        while not lines.empty():
            out.append(lines.get())
        assert "payg hub demo: stopped" in "".join(out)
        assert not listening(port) and not listening(broker_port)
        logs = {name: (tmp_path / "demo" / f"{name}.log").read_text() for name in ("hub", "home", "shop")}
        assert "payg hub stopped" in logs["hub"]
        assert all("controller stopped" in logs[c] for c in ("home", "shop")), logs
        assert "terminating" in (tmp_path / "demo" / "mosquitto.log").read_text()
    finally:
        if demo.poll() is None:
            demo.send_signal(signal.SIGTERM)
            try:
                demo.wait(15)
            except subprocess.TimeoutExpired:
                demo.kill()
                demo.wait()


def test_payg_hub_help_names_the_hub_s_own_file_not_the_controller_s():
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        parse_args(["hub", "--help"])
    text = out.getvalue()
    assert "config/default.toml" not in text and "default:" not in text
    assert "config/hub.example.toml" in text and "make hub-demo" in text
    assert parse_args(["hub"]).config is None  # and indeed no default is read
