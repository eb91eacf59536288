"""Running payg as its users do, each command and controller a process of its own (`app.py` with a config,
started by tests/support/launcher.py), and what the tests read back."""

from __future__ import annotations

import json
import re
import signal
import sqlite3
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from payg.adapters import config as cfg
from payg.adapters.secrets import API_TOKEN_FILE
from tests.support import ROOT, free_port, launcher, wait_until

APP = ROOT / "app.py"
POLL_S = 0.05

KITCHEN_W = 3600.0  # one token (1 Wh) per second: a small deposit runs out quickly
OFFICE_W = 60.0  # one token a minute: a deposit keeps its relay on for the whole test
CSV_FIELDS = ["id", "at", "kind", "amount", "energy_wh", "key", "memo"]


def config_text(data_dir: Path, *, port: int | None = None, web: bool = True,
                sockets: tuple[tuple[str, str, float], ...] = (("kitchen", "Kitchen", KITCHEN_W),
                                                             ("office", "Office", OFFICE_W))) -> str:
    lines = [
        "[controller]",
        f'data_dir = "{data_dir}"',
        f"poll_interval_s = {POLL_S}",
        f"deposit_poll_interval_s = {POLL_S}",
        "meter_offline_grace_s = 1.0",
        "usage_entry_s = 0",
        "",
        "[web]",
        f"enabled = {'true' if web else 'false'}",
        'host = "127.0.0.1"',
        f"port = {port if port is not None else free_port()}",
        "",
        "[ledger]",
        'backend = "mock"',
        "",
    ]
    for socket_id, name, load_w in sockets:
        lines += ["[[sockets]]", f'id = "{socket_id}"', f'name = "{name}"',
                  f'meter = {{ kind = "simulated", load_w = {load_w} }}', 'relay = { kind = "simulated" }', ""]
    return "\n".join(lines)


def write_config(path: Path, data_dir: Path, **kwargs) -> Path:
    path.write_text(config_text(data_dir, **kwargs))
    return path


def payg(*args: str, cwd: Path, timeout: float = 60, env: dict[str, str] | None = None,
         fresh: bool = False) -> subprocess.CompletedProcess:
    """`payg ARGS` (app.py) to its end, its output captured; `fresh`: in a new interpreter, not a warm fork."""
    return launcher.run(*args, cwd=cwd, env=env, timeout=timeout, fresh=fresh)


TOKENS: dict[int, str] = {}  # port -> the API token of the controller serving it (read from its data dir)


def get_json(port: int, path: str) -> object:
    headers = {"Authorization": f"Bearer {TOKENS[port]}"} if port in TOKENS else {}
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers)
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.status == 200
        return json.load(resp)


def socket_state(port: int, socket_id: str) -> dict:
    return next(s for s in get_json(port, "/api/sockets") if s["id"] == socket_id)


def tree(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def ledger_payments(data_dir: Path) -> list[tuple[str, str, int]]:
    path = data_dir / "mock-ledger.sqlite"
    if not path.exists():
        return []
    conn = sqlite3.connect(str(path))
    try:
        return conn.execute("SELECT deposit_id, address, amount FROM payments ORDER BY seq").fetchall()
    finally:
        conn.close()


def journal_rows(data_dir: Path, query: str, params: tuple = ()) -> list[tuple]:
    path = data_dir / "journal.sqlite"
    if not path.exists():
        return []
    conn = sqlite3.connect(str(path), timeout=30)
    try:
        return conn.execute(query, params).fetchall()
    except sqlite3.OperationalError:  # the controller is still creating its tables
        return []
    finally:
        conn.close()


def deposit(config: Path, socket_id: str, amount: int, cwd: Path) -> str:
    result = payg("deposit", "--socket", socket_id, "--amount", str(amount), "--config", str(config), cwd=cwd)
    assert result.returncode == 0, result.stderr
    match = re.search(r"\bdeposit (mock-[0-9a-f]{32})\b", result.stdout)
    assert match, result.stdout
    return match.group(1)


def table(stdout: str) -> tuple[list[str], dict[str, list[str]]]:
    """The header and the rows (by first column) of a table printed by `payg status`."""
    lines = [line for line in stdout.splitlines() if line.strip()]
    start = next(i for i, line in enumerate(lines) if line.split()[:1] == ["socket"])
    header = lines[start].split()
    rows = {}
    for line in lines[start + 1:]:
        cells = line.split()
        rows[cells[0]] = cells
    return header, rows


class Controller:
    """`app.py --config FILE` as a process of its own, its output in a log file; `fresh`: in a new interpreter."""

    def __init__(self, config: Path, cwd: Path, port: int | None, name: str = "controller", fresh: bool = False):
        self.config = config
        self.cwd = cwd
        self.port = port
        self.log = cwd / f"{name}.log"
        self.proc = launcher.start(["--config", str(config)], cwd=cwd, stdout=self.log, fresh=fresh)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, timeout_s: float = 30) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:
                pytest.fail(f"the controller exited with {self.proc.returncode}:\n{self.output()}")
            if "payg running" not in self.output():
                return False
            if self.port is None:
                return True
            data_dir = cfg.load(self.config).controller.data_dir
            token = (data_dir if data_dir.is_absolute() else self.cwd / data_dir) / API_TOKEN_FILE
            TOKENS[self.port] = token.read_text().strip()
            try:
                get_json(self.port, "/api/sockets")
            except (urllib.error.URLError, OSError):
                return False
            return True

        wait_until(ready, timeout_s, "the controller to start")

    def stop(self, signum: int = signal.SIGTERM, timeout_s: float = 30) -> int:
        self.proc.send_signal(signum)
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"the controller did not stop within {timeout_s} s of {signal.Signals(signum).name}:\n"
                        f"{self.output()}")

    def cleanup(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


ETH_MNEMONIC = "test test test test test test test test test test test junk"
IOTA_MNEMONIC = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about"


def set_key(text: str, key: str, value: str) -> str:
    """Replace `key = ...` (up to a comment) in a TOML text; the key must be there."""
    new, count = re.subn(rf"(?m)^{re.escape(key)} = [^#\n]*", f"{key} = {value}", text)
    assert count == 1, key
    return new


def example(name: str, tmp_path: Path, **keys: str) -> Path:
    text = (ROOT / "config" / name).read_text()
    assert "mnemonic_env" in text and not re.search(r"(?m)^mnemonic\s*=", text)  # no key in the file
    text = set_key(text, "data_dir", f'"{tmp_path / "data"}"')
    text = set_key(text, "port", str(free_port()))
    text = set_key(text, "poll_interval_s", "0.1")
    text = set_key(text, "deposit_poll_interval_s", "0.1")
    for key, value in keys.items():
        text = set_key(text, key, value)
    path = tmp_path / name
    path.write_text(text)
    return path
