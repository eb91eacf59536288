"""The whole controller (`app.py --config ...` in a subprocess) on two emulated PZEM-004T meters sharing one
Modbus RTU bus (a pty; see tests/support/modbus_emulator.py), with simulated relays, the mock ledger and the web API.
Every wait is a poll with a deadline."""

from __future__ import annotations

import json
import signal
import sqlite3
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from payg.adapters.secrets import API_TOKEN_FILE
from tests.support import ROOT, free_port, launcher, wait_until
from tests.support.modbus_emulator import ModbusEmulator

APP = ROOT / "app.py"
POLL_S = 0.2
MAX_POWER_W = 36000.0  # 10 Wh per second: the test may step the counter quickly and stay plausible
DEPOSIT = 20
STEP_WH = 2


def config_text(data_dir: Path, port: str, web_port: int) -> str:
    sockets = "".join(f"""
[[sockets]]
id = "{sid}"
max_power_w = {MAX_POWER_W}
meter = {{ kind = "modbus", profile = "pzem004t", port = "{port}", address = {address}, baud = 9600, timeout_s = 0.1 }}
relay = {{ kind = "simulated" }}
""" for sid, address in (("a", 1), ("b", 2)))
    return f"""
[controller]
data_dir = "{data_dir}"
poll_interval_s = {POLL_S}
meter_offline_grace_s = 2
deposit_poll_interval_s = {POLL_S}
usage_entry_s = 0

[web]
host = "127.0.0.1"
port = {web_port}

[ledger]
backend = "mock"
{sockets}"""


class Api:
    """The controller's JSON API with the token a `payg` command on its machine would send."""

    def __init__(self, port: int, data_dir: Path):
        self.base = f"http://127.0.0.1:{port}"
        self.data_dir = data_dir

    def headers(self) -> dict:
        return {"Authorization": "Bearer " + (self.data_dir / API_TOKEN_FILE).read_text().strip(),
                "Content-Type": "application/json"}

    def get(self, path: str):
        with urllib.request.urlopen(urllib.request.Request(self.base + path, headers=self.headers()),
                                    timeout=5) as resp:
            return json.load(resp)

    def post(self, path: str, body: dict):
        request = urllib.request.Request(self.base + path, data=json.dumps(body).encode(), method="POST",
                                         headers=self.headers())
        with urllib.request.urlopen(request, timeout=5) as resp:
            assert resp.status == 201
            return json.load(resp)

    def sockets(self) -> dict[str, dict]:
        return {s["id"]: s for s in self.get("/api/sockets")}

    def answering(self) -> bool:
        try:
            self.get("/api/sockets")
        except (urllib.error.URLError, OSError):  # FileNotFoundError too: no token before the first start
            return False
        return True


@pytest.fixture
def emulator():
    with ModbusEmulator({1: "pzem004t", 2: "pzem004t"}) as emu:
        yield emu


@pytest.fixture
def controller_process(tmp_path: Path):
    started: list[launcher.Process] = []

    def start(config: Path) -> tuple[launcher.Process, Path]:
        log = tmp_path / "controller.log"
        proc = launcher.start(["--config", str(config)], cwd=tmp_path, stdout=log)
        started.append(proc)
        return proc, log

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_two_modbus_sockets_on_one_bus_bill_exactly_and_cut_off_at_zero(tmp_path: Path, emulator,
                                                                         controller_process):
    emu = emulator
    emu.set_pzem(1, voltage_v=230.1, current_a=0, power_w=0, energy_wh=1000)
    emu.set_pzem(2, voltage_v=228.8, current_a=0.25, power_w=0, energy_wh=5000)
    data_dir = tmp_path / "state"
    web_port = free_port()
    config = tmp_path / "payg.toml"
    config.write_text(config_text(data_dir, emu.port, web_port))
    proc, log = controller_process(config)
    api = Api(web_port, data_dir)

    def running() -> bool:
        if proc.poll() is not None:
            pytest.fail(f"the controller exited with {proc.returncode}:\n{log.read_text()}")
        return api.answering()

    wait_until(running, 30, "the controller's API")
    wait_until(lambda: all(s["meter"] == "ok" and s["energy_wh"] is not None for s in api.sockets().values()),
               10, "both meters read")

    def check_b(voltage_v: float) -> None:
        b = api.sockets()["b"]
        assert (b["relay"], b["balance"], b["meter"], b["meter_error"]) == ("off", 0, "ok", None), b
        assert (b["energy_wh"], b["voltage_v"], b["current_a"], b["power_w"]) == (5000, voltage_v, 0.25, 0.0), b

    a = api.sockets()["a"]
    assert (a["relay"], a["balance"], a["energy_wh"], a["voltage_v"]) == ("off", 0, 1000, 230.1), a
    check_b(228.8)

    api.post("/api/mock/deposits", {"socket": "a", "amount": DEPOSIT})
    wait_until(lambda: api.sockets()["a"]["relay"] == "on", 10, "socket a to switch on")
    assert api.sockets()["a"]["balance"] == DEPOSIT

    counter = 1000
    step_s = STEP_WH * 3600 / MAX_POWER_W
    stepped_at = time.monotonic()
    b_voltage = 228.8
    while counter < 1000 + DEPOSIT:
        state = api.sockets()["a"]
        assert state["relay"] == "on", state  # credit left: on
        # A plausible step: no faster than max_power_w allows since the previous one.
        wait_until(lambda since=stepped_at: time.monotonic() - since >= step_s, 2, "a plausible step")
        counter += STEP_WH
        emu.set_pzem(1, energy_wh=counter, power_w=1000.0, current_a=4.348)
        stepped_at = time.monotonic()
        expected = DEPOSIT - (counter - 1000)
        wait_until(lambda c=counter, e=expected: (s := api.sockets()["a"])["energy_wh"] == c and s["balance"] == e,
                   5, f"balance {expected} at counter {counter}")
        if counter == 1010:  # meter b changes too; its socket shows its own values only
            b_voltage = 231.2
            emu.set_pzem(2, voltage_v=b_voltage)
            wait_until(lambda v=b_voltage: api.sockets()["b"]["voltage_v"] == v, 5, "b's new voltage")
        check_b(b_voltage)

    wait_until(lambda: api.sockets()["a"]["relay"] == "off", 5, "socket a to switch off at zero credit")
    emu.set_pzem(1, power_w=0, current_a=0)  # the relay is open: nothing flows any more
    a = api.sockets()["a"]
    assert (a["balance"], a["energy_wh"], a["debt"]) == (0, 1000 + DEPOSIT, 0), a
    check_b(b_voltage)
    time.sleep(3 * POLL_S)  # a few more ticks change nothing
    assert api.sockets()["a"]["relay"] == "off" and api.sockets()["a"]["balance"] == 0
    assert emu.requests(1) > 10 and abs(emu.requests(1) - emu.requests(2)) <= 2  # both polled every tick

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0, log.read_text()
    output = log.read_text()
    assert "Traceback" not in output and "relay bypass" not in output, output

    conn = sqlite3.connect(str(data_dir / "journal.sqlite"))
    try:
        rows = dict(conn.execute("SELECT socket_id, SUM(amount) FROM entries GROUP BY socket_id").fetchall())
        usage = conn.execute("SELECT SUM(-amount), SUM(CAST(energy_wh AS INTEGER)) FROM entries"
                             " WHERE socket_id = 'a' AND kind = 'usage'").fetchone()
        state = conn.execute("SELECT socket_id, counter_wh, pending_units FROM meter_state ORDER BY socket_id"
                             ).fetchall()
        events = conn.execute("SELECT socket_id, kind FROM events").fetchall()
    finally:
        conn.close()
    assert rows == {"a": 0}  # b has no entries at all
    assert usage == (DEPOSIT, DEPOSIT)  # tokens debited == Wh counted
    assert state == [("a", "1020", 0), ("b", "5000", 0)]
    assert [e for e in events if e[1] not in ("credit_off", "credit_on")] == []  # no alarm
    # the record of times off for lack of credit: a was paid, used it up and was cut; b was never paid: vacant,
    # which is not off for lack of credit
    assert [k for sid, k in events if sid == "a"][-1] == "credit_off"
    assert [k for sid, k in events if sid == "b"] == []
