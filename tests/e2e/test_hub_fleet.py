"""The fleet view end to end: a real Mosquitto with the fleet's password file and ACL, two controllers
(`app.py --config`, mock ledger, simulated meters drawing nothing so balances hold still) and the hub
(`app.py hub --config`), all subprocesses. The hub sees both controllers and their sockets, a top-up on a
controller's ledger, a SIGKILLed controller go offline (its last will), and a credit sent from the hub
booked once, with the controller's response shown."""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import signal
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from werkzeug.security import generate_password_hash

from payg.adapters.mqtt.acl import mosquitto_acl
from tests.support import free_port, launcher, terminate, wait_until
from tests.support.cli import deposit, journal_rows
from tests.support.mosquitto import Broker

USERS = {"ctl-home": "pw-home", "ctl-shop": "pw-shop", "hub": "pw-hub"}
SOCKETS = {"home": ("kitchen", "hall"), "shop": ("till",)}
PASSWORD = "the landlord of two buildings"


def controller_toml(data_dir: Path, port: int, name: str) -> str:
    sockets = "".join(f'\n[[sockets]]\nid = "{s}"\nmeter = {{ kind = "simulated", load_w = 0 }}\n'
                      f'relay = {{ kind = "simulated" }}\n' for s in SOCKETS[name])
    return f"""
[controller]
data_dir = "{data_dir}"
poll_interval_s = 0.1
deposit_poll_interval_s = 0.1
meter_offline_grace_s = 1.0
[web]
enabled = false
[ledger]
backend = "mock"
[mqtt]
enabled = true
port = {port}
controller = "{name}"
username = "ctl-{name}"
password_env = "PAYG_TEST_MQTT_PASSWORD"
keepalive_s = 5
{sockets}"""


def hub_toml(data_dir: Path, broker_port: int, web_port: int) -> str:
    return f"""
[hub]
data_dir = "{data_dir}"
port = {web_port}
landlord_password_hash_env = "PAYG_TEST_HUB_HASH"
command_timeout_s = 10
[mqtt]
port = {broker_port}
username = "hub"
password_env = "PAYG_TEST_HUB_MQTT"
keepalive_s = 5
"""


def start(args: list[str], cwd: Path, log: Path, env: dict) -> launcher.Process:
    return launcher.start(args, cwd=cwd, stdout=log, env=dict(os.environ, **env), append=True)


class HubApi:
    """The hub's JSON API as a script on its machine uses it: the API token from its data directory."""

    def __init__(self, port: int, data_dir: Path):
        self.base, self.data_dir, self.token = f"http://127.0.0.1:{port}", data_dir, None

    def call(self, path: str, body: dict | None = None) -> tuple[int, dict]:
        if self.token is None:
            self.token = (self.data_dir / "api-token").read_text().strip()
        req = urllib.request.Request(self.base + path, json.dumps(body).encode() if body is not None else None,
                                     {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, json.load(resp)
        except urllib.error.HTTPError as exc:
            return exc.code, json.load(exc)

    def fleet(self) -> dict:
        status, body = self.call("/api/fleet")
        assert status == 200, body
        return body

    def row(self, key: str) -> dict | None:
        return next((r for r in self.fleet()["rows"] if r["key"] == key), None)

    def status_of(self, name: str) -> str | None:
        return next((c["status"] for c in self.fleet()["controllers"] if c["name"] == name), None)


def up(api: HubApi, proc: launcher.Process) -> bool:
    assert proc.poll() is None, "the hub exited"
    try:
        return api.call("/healthz")[0] == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def login_over_http(port: int) -> int:
    """The real login through the real server: the session cookie then opens the API."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    page = opener.open(f"http://127.0.0.1:{port}/login", timeout=10).read().decode()
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    form = urllib.parse.urlencode({"password": PASSWORD, "csrf_token": token, "next": "/"}).encode()
    html = opener.open(f"http://127.0.0.1:{port}/login", form, timeout=10).read().decode()
    assert "home/kitchen" in html or "Fleet" in html
    with opener.open(f"http://127.0.0.1:{port}/api/fleet", timeout=10) as resp:
        return resp.status


def test_the_hub_sees_the_fleet_live_and_its_credit_is_booked_once(tmp_path):
    broker = Broker(tmp_path / "broker", USERS,
                    mosquitto_acl("payg", {"home": "ctl-home", "shop": "ctl-shop"}, ["hub"])).start()
    procs: dict[str, launcher.Process] = {}
    configs: dict[str, Path] = {}
    try:
        hub_port, hub_data = free_port(), tmp_path / "hub-data"
        (tmp_path / "hub.toml").write_text(hub_toml(hub_data, broker.port, hub_port))
        procs["hub"] = start(["hub", "--config", str(tmp_path / "hub.toml")], tmp_path, tmp_path / "hub.log",
                             {"PAYG_TEST_HUB_HASH": generate_password_hash(PASSWORD, method="pbkdf2:sha256:1000"),
                              "PAYG_TEST_HUB_MQTT": USERS["hub"]})
        api = HubApi(hub_port, hub_data)
        wait_until(lambda: up(api, procs["hub"]), 30, "the hub up and on the broker")
        for name in SOCKETS:
            data = tmp_path / f"{name}-data"
            data.mkdir(mode=0o700)
            configs[name] = tmp_path / f"{name}.toml"
            configs[name].write_text(controller_toml(data, broker.port, name))
            procs[name] = start(["--config", str(configs[name])], tmp_path, tmp_path / f"{name}.log",
                                {"PAYG_TEST_MQTT_PASSWORD": USERS[f"ctl-{name}"]})

        # both controllers, every socket, online
        keys = sorted(f"{c}/{s}" for c, sockets in SOCKETS.items() for s in sockets)
        wait_until(lambda: sorted(r["key"] for r in api.fleet()["rows"]) == keys, 60, "every socket at the hub")
        wait_until(lambda: {c["name"]: c["status"] for c in api.fleet()["controllers"]} ==
                   {"home": "online", "shop": "online"}, 30, "both controllers online")
        assert api.fleet()["totals"]["all"]["sockets"] == 3
        assert login_over_http(hub_port) == 200

        # a top-up on home's mock ledger shows as home/kitchen's balance, and in the totals
        before = api.row("home/kitchen")["balance"]
        deposit(configs["home"], "kitchen", 300, tmp_path)
        wait_until(lambda: api.row("home/kitchen")["balance"] == before + 300, 30, "the top-up at the hub")
        assert api.fleet()["totals"]["controllers"]["home"]["balance"] == before + 300 + api.row("home/hall")["balance"]

        # a credit from the hub: answered, booked once, and the controller's state says so
        till = api.row("shop/till")["balance"]
        status, cmd = api.call("/api/commands", {"controller": "shop", "socket": "till", "command": "credit",
                                                 "tokens": 40, "reason": "hub e2e"})
        assert status == 202 and cmd["status"] == "pending", cmd
        rid = cmd["request_id"]
        wait_until(lambda: api.call(f"/api/commands/{rid}")[1]["status"] != "pending", 15, "the response")
        answer = api.call(f"/api/commands/{rid}")[1]
        assert (answer["status"], answer["booked"], answer["error"]) == ("ok", True, None), answer
        wait_until(lambda: api.row("shop/till")["balance"] == till + 40, 15, "the credit in shop/till's state")
        time.sleep(1.5)  # a dozen ticks later, still once
        assert api.row("shop/till")["balance"] == till + 40
        assert journal_rows(tmp_path / "shop-data", "SELECT COUNT(*), SUM(amount) FROM entries WHERE idem_key = ?",
                            (f"manual:{rid}",)) == [(1, 40)]
        assert api.call("/api/commands", {"controller": "shop", "socket": "till", "command": "credit", "tokens": 40,
                                          "reason": "again", "request_id": rid})[0] == 409  # never sent twice
        # home dies without a word: the broker's last will says offline, shop stays online
        procs["home"].send_signal(signal.SIGKILL)
        procs["home"].wait(30)
        wait_until(lambda: api.status_of("home") == "offline", 30, "home offline at the hub")
        assert api.status_of("shop") == "online"
        assert api.row("home/kitchen")["controller_status"] == "offline"  # what it saw last, marked
        status, body = api.call("/api/commands", {"controller": "home", "socket": "kitchen", "command": "force_off"})
        assert status == 409 and "offline" in body["message"]

        assert terminate(procs.pop("hub")) == 0
    finally:
        for proc in procs.values():
            terminate(proc)
        broker.stop()
    hub_log = (tmp_path / "hub.log").read_text()
    assert "Traceback" not in hub_log, hub_log
    assert "payg hub running" in hub_log and "payg hub stopped" in hub_log
