"""The command line and the process life cycle, through real subprocesses.

Every command runs as `app.py ...` (the same code as the `payg` console
script), a process of its own with the working directory in tmp_path, so
nothing can touch the repository's own data directory. Most start from the
test launcher's warm interpreter (tests/support/launcher.py); those about the
entry itself (signals, pipes, time zones) start a fresh `sys.executable app.py`.
Controllers serve on a free 127.0.0.1 port and use short poll intervals;
every wait is a poll with a deadline.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from ledgers.mock import mock_address
from payg.adapters.journal import SqliteJournal
from payg.adapters.journal_schema import JOURNAL
from tests.support import ROOT, free_port, wait_until
from tests.support.cli import (
    APP,
    CSV_FIELDS,
    OFFICE_W,
    POLL_S,
    config_text,
    deposit,
    get_json,
    journal_rows,
    ledger_payments,
    payg,
    socket_state,
    table,
    tree,
    write_config,
)


def _bad_configs(data_dir: Path) -> dict[str, tuple[str | None, str]]:
    """name -> (file content or None for a missing file, text the message must contain besides the file)."""
    good = config_text(data_dir, port=5999)
    kitchen_again = good + '\n[[sockets]]\nid = "kitchen"\nmeter = { kind = "simulated", load_w = 10 }\n' \
                           'relay = { kind = "simulated" }\n'
    no_ledger = good.replace('[ledger]\nbackend = "mock"\n', "")
    assert no_ledger != good
    syntax = good.replace("poll_interval_s = 0.05", "poll_interval_s = ")
    syntax_line = syntax.splitlines().index("poll_interval_s = ") + 1
    return {
        "unknown key": (good.replace("usage_entry_s = 0", "usage_entry_s = 0\ncolour = \"blue\""),
                        "controller.colour"),
        "wrong type": (good.replace("poll_interval_s = 0.05", 'poll_interval_s = "fast"'),
                       "controller.poll_interval_s"),
        "duplicate socket id": (kitchen_again, "sockets[2].id"),
        "missing section": (no_ledger, "[ledger]"),
        "toml syntax error": (syntax, f"line {syntax_line}"),
        "missing file": (None, "not found"),
    }


BAD_CONFIGS = list(_bad_configs(Path("/x")))
COMMANDS = {
    "run (default)": [],
    "run": ["run"],
    "status": ["status"],
    "deposit": ["deposit", "--socket", "kitchen", "--amount", "5"],
    "journal": ["journal", "--socket", "kitchen", "--csv"],
}


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("case", BAD_CONFIGS)
def test_bad_config_exits_2_names_file_and_key_and_touches_nothing(tmp_path: Path, case: str, command: str):
    data_dir = tmp_path / "state"
    content, expected = _bad_configs(data_dir)[case]
    config = tmp_path / "payg.toml"
    if content is not None:
        config.write_text(content)
    before = tree(tmp_path)
    args = COMMANDS[command]
    # The option goes before the command for the default run, after it otherwise: both are accepted.
    argv = ["--config", str(config), *args] if command == "run (default)" else [*args, "--config", str(config)]

    result = payg(*argv, cwd=tmp_path)

    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert str(config) in result.stderr, result.stderr
    assert expected in result.stderr, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stdout == ""
    assert not data_dir.exists()
    assert tree(tmp_path) == before


def test_deposit_pays_into_the_mock_ledger_and_prints_the_deposit_id(tmp_path: Path):
    data_dir = tmp_path / "state"
    config = write_config(tmp_path / "payg.toml", data_dir, web=False)

    first = deposit(config, "kitchen", 7, tmp_path)
    result = payg("--config", str(config), "deposit", "--socket", "office", "--amount", "12", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "12" in result.stdout and "office" in result.stdout
    second = re.search(r"\bdeposit (mock-[0-9a-f]{32})\b", result.stdout).group(1)

    assert first != second
    assert ledger_payments(data_dir) == [(first, mock_address("kitchen"), 7), (second, mock_address("office"), 12)]


def test_deposit_to_an_unknown_socket_fails_clearly_and_pays_nothing(tmp_path: Path):
    data_dir = tmp_path / "state"
    config = write_config(tmp_path / "payg.toml", data_dir, web=False)

    result = payg("deposit", "--socket", "garage", "--amount", "5", "--config", str(config), cwd=tmp_path)

    assert result.returncode != 0
    assert "unknown socket" in result.stderr and "garage" in result.stderr, result.stderr
    assert "kitchen" in result.stderr, "the message lists the configured sockets"
    assert "Traceback" not in result.stderr
    assert ledger_payments(data_dir) == []


@pytest.mark.parametrize("amount", ["0", "-3", "2.5", "ten", ""])
def test_deposit_of_a_non_positive_or_non_integer_amount_fails_clearly(tmp_path: Path, amount: str):
    data_dir = tmp_path / "state"
    config = write_config(tmp_path / "payg.toml", data_dir, web=False)

    result = payg("deposit", "--socket", "kitchen", f"--amount={amount}", "--config", str(config), cwd=tmp_path)

    assert result.returncode != 0
    assert "positive integer" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert ledger_payments(data_dir) == []
    assert not data_dir.exists()


def test_journal_and_status_before_any_controller_ran(tmp_path: Path):
    data_dir = tmp_path / "state"
    config = write_config(tmp_path / "payg.toml", data_dir)

    result = payg("journal", "--socket", "kitchen", "--csv", "--config", str(config), cwd=tmp_path)
    assert result.returncode != 0
    assert "no journal" in result.stderr, result.stderr

    result = payg("status", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "controller not answering" in result.stdout
    header, rows = table(result.stdout)
    assert header == ["socket", "name", "relay", "meter", "balance", "power_w", "energy_today_wh"]
    assert set(rows) == {"kitchen", "office"}
    assert rows["kitchen"][:5] == ["kitchen", "Kitchen", "-", "-", "0"]
    assert rows["office"][:5] == ["office", "Office", "-", "-", "0"]


def test_journal_csv_lists_the_credited_deposit(tmp_path: Path, controllers):
    data_dir = tmp_path / "state"
    config = write_config(tmp_path / "payg.toml", data_dir, web=False)
    controller = controllers(config, tmp_path, None)
    controller.wait_ready()
    deposit_id = deposit(config, "office", 500, tmp_path)
    wait_until(lambda: journal_rows(data_dir, "SELECT id FROM entries WHERE idem_key = ?", (f"mock:{deposit_id}",)),
               10, "the deposit to be credited")
    assert controller.stop() == 0, controller.output()

    result = payg("journal", "--socket", "office", "--csv", "--config", str(config), cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[0] == CSV_FIELDS
    assert all(len(row) == len(CSV_FIELDS) for row in rows[1:])
    records = [dict(zip(CSV_FIELDS, row, strict=True)) for row in rows[1:]]
    deposits = [r for r in records if r["kind"] == "deposit"]
    assert len(deposits) == 1, records
    assert deposits[0]["amount"] == "500"
    assert deposits[0]["key"] == f"mock:{deposit_id}"
    assert deposits[0]["energy_wh"] == ""
    assert deposit_id in deposits[0]["memo"]
    assert all(r["kind"] == "usage" and int(r["amount"]) <= 0 for r in records if r is not deposits[0])
    # The CSV holds the whole journal: its amounts add up to the balance `status` shows.
    balance = sum(int(r["amount"]) for r in records)
    result = payg("status", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    _, status_rows = table(result.stdout)
    assert status_rows["office"][4] == str(balance)

    result = payg("journal", "--socket", "garage", "--config", str(config), cwd=tmp_path)
    assert result.returncode != 0
    assert "unknown socket" in result.stderr and "garage" in result.stderr


def test_running_controller_serves_sockets_and_switches_relays_on_deposits(tmp_path: Path, controllers):
    data_dir = tmp_path / "state"
    port = free_port()
    config = write_config(tmp_path / "payg.toml", data_dir, port=port)
    controller = controllers(config, tmp_path, port)
    controller.wait_ready()

    states = get_json(port, "/api/sockets")
    assert [(s["id"], s["name"]) for s in states] == [("kitchen", "Kitchen"), ("office", "Office")]
    assert all(s["relay"] == "off" and s["balance"] == 0 for s in states), states
    wait_until(lambda: all(s["meter"] == "ok" for s in get_json(port, "/api/sockets")), 10, "healthy meters")

    # A deposit on an empty socket: its relay closes within about one tick of the payment.
    amount = 3
    deposit(config, "kitchen", amount, tmp_path)
    paid_at = time.monotonic()
    wait_until(lambda: socket_state(port, "kitchen")["relay"] == "on", 10, "the kitchen relay to close")
    latency_s = time.monotonic() - paid_at
    assert latency_s < 2 * POLL_S + 1.0, f"relay closed {latency_s:.2f} s after the payment"
    assert socket_state(port, "office")["relay"] == "off"

    # 3 tokens at 3.6 kW last about 3 s; then the relay opens again.
    on_at = time.monotonic()
    wait_until(lambda: socket_state(port, "kitchen")["relay"] == "off", 20, "the kitchen relay to open")
    on_for_s = time.monotonic() - on_at
    assert on_for_s > 1.0, f"the relay opened after {on_for_s:.2f} s with {amount} Wh of credit at 3.6 kW"
    time.sleep(3 * POLL_S)
    assert socket_state(port, "kitchen")["relay"] == "off"
    assert controller.stop() == 0, controller.output()

    # Cut off when the credit ran out: within a fraction of a Wh of it, and all of it billed.
    saved = json.loads((data_dir / "simulated" / "kitchen.json").read_text())
    assert amount - 0.5 < saved["energy_wh"] < amount + 0.5, saved
    ((counter_wh, pending_units),) = journal_rows(
        data_dir, "SELECT counter_wh, pending_units FROM meter_state WHERE socket_id = 'kitchen'")
    assert int(counter_wh) == saved["counter_wh"] and pending_units == 0
    ((balance,),) = journal_rows(data_dir, "SELECT SUM(amount) FROM entries WHERE socket_id = 'kitchen'")
    assert balance == amount - saved["counter_wh"]


def test_status_shows_the_running_controllers_view(tmp_path: Path, controllers):
    data_dir = tmp_path / "state"
    port = free_port()
    config = write_config(tmp_path / "payg.toml", data_dir, port=port)
    controller = controllers(config, tmp_path, port)
    controller.wait_ready()
    deposit(config, "office", 1000, tmp_path)
    wait_until(lambda: socket_state(port, "office")["relay"] == "on", 10, "the office relay to close")

    result = payg("status", "--config", str(config), cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert "not answering" not in result.stdout
    header, rows = table(result.stdout)
    assert header == ["socket", "name", "relay", "meter", "balance", "power_w", "energy_today_wh"]
    assert set(rows) == {"kitchen", "office"}
    assert rows["office"][2:4] == ["on", "ok"]
    assert 990 <= int(rows["office"][4]) <= 1000
    assert float(rows["office"][5]) == OFFICE_W
    assert rows["kitchen"][2:5] == ["off", "ok", "0"]
    assert controller.stop() == 0, controller.output()


@pytest.mark.parametrize("web", [True, False], ids=["web", "no-web"])
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_sigterm_and_sigint_stop_cleanly_with_every_relay_open(tmp_path: Path, controllers, signum: int,
                                                              web: bool):
    data_dir = tmp_path / "state"
    port = free_port()
    config = write_config(tmp_path / "payg.toml", data_dir, port=port, web=web)
    controller = controllers(config, tmp_path, port if web else None, fresh=True)  # signals as systemd sends them
    controller.wait_ready()
    deposit_id = deposit(config, "office", 1000, tmp_path)
    credited = "credited office with 1000 tokens from deposit " + deposit_id
    wait_until(lambda: credited in controller.output(), 10, "the deposit to be credited")
    time.sleep(3 * POLL_S)  # a few ticks with the office relay closed

    assert controller.stop(signum) == 0, controller.output()

    out = controller.output()
    assert "all relays open" in out, out
    assert "Traceback" not in out, out
    if web:
        with pytest.raises((urllib.error.URLError, OSError)):
            get_json(port, "/api/sockets")
    # A clean stop bills what the meters counted up to that moment and leaves nothing pending.
    for socket_id in ("kitchen", "office"):
        saved = json.loads((data_dir / "simulated" / f"{socket_id}.json").read_text())
        ((counter_wh, pending_units, pending_wh),) = journal_rows(
            data_dir, "SELECT counter_wh, pending_units, pending_wh FROM meter_state WHERE socket_id = ?",
            (socket_id,))
        assert (int(counter_wh), pending_units, pending_wh) == (saved["counter_wh"], 0, "0"), socket_id
    # The lock is released: the next controller starts.
    again = controllers(config, tmp_path, port if web else None, name="again")
    again.wait_ready()
    assert again.stop() == 0, again.output()


def exit_code(controller, kept_running: str) -> int:
    """The exit code of a controller that is expected to stop on its own within 30 s."""
    try:
        return controller.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{kept_running}:\n{controller.output()}")


def test_a_second_controller_on_the_same_data_dir_refuses_to_start(tmp_path: Path, controllers):
    data_dir = tmp_path / "state"
    port = free_port()
    config = write_config(tmp_path / "payg.toml", data_dir, port=port)
    first = controllers(config, tmp_path, port, name="first")
    first.wait_ready()
    # Another config on the same data dir and another port: only the lock can stop it.
    other = write_config(tmp_path / "other.toml", data_dir, port=free_port())

    second = controllers(other, tmp_path, None, name="second")
    code = exit_code(second, "the second controller kept running")

    assert code != 0
    out = second.output()
    assert "another controller" in out and "lock" in out, out
    assert str(data_dir) in out, out
    assert "Traceback" not in out, out
    assert first.proc.poll() is None
    assert [s["id"] for s in get_json(port, "/api/sockets")] == ["kitchen", "office"]
    assert first.stop() == 0, first.output()


def test_a_journal_from_a_newer_payg_stops_the_start_with_its_reason_and_is_left_untouched(tmp_path: Path, controllers):
    data_dir = tmp_path / "state"
    data_dir.mkdir()
    journal = data_dir / "journal.sqlite"
    with sqlite3.connect(journal) as db:
        db.execute("CREATE TABLE entries (id INTEGER PRIMARY KEY)")
        db.execute(f"PRAGMA user_version = {JOURNAL.latest + 1}")
    before = journal.read_bytes()
    config = write_config(tmp_path / "payg.toml", data_dir, port=free_port())
    started = controllers(config, tmp_path, None, name="newer")
    code = exit_code(started, "the controller started on a newer journal")
    out = started.output()
    assert code == 1, out
    assert "newer than this payg" in out and "Traceback" not in out, out
    assert journal.read_bytes() == before


def test_a_controller_whose_web_port_is_taken_exits_non_zero(tmp_path: Path, controllers):
    """werkzeug's make_server answers a taken port with sys.exit(1); run() swallows that SystemExit (it takes
    it for its own signal handler's) and returns 0, so a controller that never served reports success."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        config = write_config(tmp_path / "payg.toml", tmp_path / "state", port=port)
        controller = controllers(config, tmp_path, None)
        code = exit_code(controller, "the controller kept running without its web port")

    out = controller.output()
    assert str(port) in out, out
    assert "all relays open" in out, out
    assert code != 0, f"exit code {code} although the web server could not start:\n{out}"


def test_status_with_the_web_disabled_does_not_show_another_controllers_sockets(tmp_path: Path, controllers):
    """`payg status` asks the web port for live state even when the config has the web disabled, so it shows
    whatever controller answers on that port (here another one, with other sockets) as this one's."""
    port = free_port()
    other_config = write_config(tmp_path / "other.toml", tmp_path / "other-state", port=port,
                                sockets=(("lab", "Lab", 100.0),))
    other = controllers(other_config, tmp_path, port, name="other")
    other.wait_ready()
    config = write_config(tmp_path / "payg.toml", tmp_path / "state", port=port, web=False)

    result = payg("status", "--config", str(config), cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    _, rows = table(result.stdout)
    assert set(rows) == {"kitchen", "office"}, result.stdout
    assert other.stop() == 0, other.output()


# The newcomer's papercuts (issue 14): a closed pipe, amounts beyond what is stored, journal times, the install.

def _run_with_stdout_closed(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """The command with its reader already gone (as `| head` is once it has its lines): every write fails."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run([sys.executable, str(APP), *args], cwd=str(cwd), stdout=write_end,
                              stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(write_end)


@pytest.mark.parametrize("command", [["status"], ["address", "--socket", "kitchen", "--amount", "5"]])
def test_a_closed_output_pipe_ends_the_command_quietly(tmp_path: Path, command: list[str]):
    config = write_config(tmp_path / "payg.toml", tmp_path / "state", web=False)

    result = _run_with_stdout_closed([*command, "--config", str(config)], tmp_path)

    assert result.stderr == "", result.stderr  # no BrokenPipeError traceback, no "Exception ignored" at exit
    assert result.returncode == 128 + signal.SIGPIPE


def test_payg_status_piped_into_head_prints_its_lines_and_no_traceback(tmp_path: Path):
    config = write_config(tmp_path / "payg.toml", tmp_path / "state", web=False)
    script = f'"{sys.executable}" "{APP}" status --config "{config}" | head -2'

    result = subprocess.run(["bash", "-c", script], cwd=str(tmp_path), capture_output=True, text=True, timeout=60)

    assert result.returncode == 0 and len(result.stdout.splitlines()) == 2, result
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr, result.stderr


@pytest.mark.parametrize("args", [
    ["deposit", "--socket", "kitchen", "--amount", str(2**62)],
    ["deposit", "--socket", "kitchen", "--amount", str(2**64)],
    ["deposit", "--socket", "kitchen", "--amount", "9" * 40],
    ["address", "--socket", "kitchen", "--amount", str(2**63)],
    ["trade", "fund", "--socket", "kitchen", "--amount", str(2**62)],
])
def test_an_amount_beyond_what_the_journal_holds_exits_2_and_names_the_limit(tmp_path: Path, args: list[str]):
    data_dir = tmp_path / "state"
    config = write_config(tmp_path / "payg.toml", data_dir, web=False)

    # `trade` takes --config before its action
    argv = ["trade", "--config", str(config), *args[1:]] if args[0] == "trade" else [*args, "--config", str(config)]

    result = payg(*argv, cwd=tmp_path)

    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert f"at most {2**62 - 1}" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert not data_dir.exists(), "nothing is paid, nothing is created"


def test_the_largest_amount_is_paid_and_credited_in_full(tmp_path: Path, controllers):
    data_dir = tmp_path / "state"
    config = write_config(tmp_path / "payg.toml", data_dir, web=False)
    deposit_id = deposit(config, "office", 2**62 - 1, tmp_path)
    controller = controllers(config, tmp_path, None)
    controller.wait_ready()
    wait_until(lambda: journal_rows(data_dir, "SELECT amount FROM entries WHERE idem_key = ?", (f"mock:{deposit_id}",)),
               10, "the deposit to be credited")
    assert controller.stop() == 0, controller.output()
    assert journal_rows(data_dir, "SELECT amount FROM entries WHERE idem_key = ?",
                        (f"mock:{deposit_id}",)) == [(2**62 - 1,)]


def test_a_count_beyond_sqlites_integers_exits_2_and_names_the_limit(tmp_path: Path):
    config = write_config(tmp_path / "payg.toml", tmp_path / "state", web=False)

    result = payg("journal", "--socket", "kitchen", "--limit", str(2**63), "--config", str(config), cwd=tmp_path)

    assert result.returncode == 2, (result.returncode, result.stderr)
    assert f"at most {2**63 - 1}" in result.stderr and "Traceback" not in result.stderr, result.stderr


def _journal_with_one_credit(data_dir: Path, at: float) -> None:
    data_dir.mkdir(parents=True)
    journal = SqliteJournal(data_dir / "journal.sqlite")
    try:
        with journal.transaction() as tx:
            assert tx.credit("kitchen", 40, "credit", "manual:1", at, memo="welcome")
    finally:
        journal.close()


@pytest.mark.parametrize("timezone_key, tz_env, shown", [
    ('"Asia/Kolkata"', "America/New_York", "2027-01-15T13:30:00+05:30"),  # [web] timezone wins over the system's
    (None, "Asia/Tokyo", "2027-01-15T17:00:00+09:00"),                     # else the system's zone
])
def test_journal_prints_iso_times_in_the_controllers_zone_and_the_csv_in_utc(tmp_path: Path, timezone_key, tz_env,
                                                                           shown):
    data_dir = tmp_path / "state"
    text = config_text(data_dir, web=False)
    if timezone_key is not None:
        text = text.replace("[web]\n", f"[web]\ntimezone = {timezone_key}\n", 1)
    config = tmp_path / "payg.toml"
    config.write_text(text)
    _journal_with_one_credit(data_dir, 1_800_000_000.0)  # 2027-01-15 08:00:00 UTC
    env = dict(os.environ, TZ=tz_env)

    def journal(*extra: str) -> str:
        result = subprocess.run([sys.executable, str(APP), "journal", "--socket", "kitchen", *extra, "--config",
                                 str(config)], cwd=str(tmp_path), capture_output=True, text=True, env=env, timeout=60)
        assert result.returncode == 0, result.stderr
        return result.stdout

    title, header, row = journal().splitlines()
    assert title == "kitchen: balance 40" and header.split()[:3] == ["id", "at", "kind"], (title, header)
    assert row.split()[:3] == ["1", shown, "credit"], row
    records = list(csv.DictReader(io.StringIO(journal("--csv"))))
    assert [r["at"] for r in records] == ["2027-01-15T08:00:00+00:00"]  # as the landlord's CSV download


def test_an_editable_install_gives_no_setuptools_deprecation_warning(tmp_path: Path):
    """What `make test` does on a fresh machine (pip install -e, the build backend in an isolated environment),
    on a copy of the tracked files; --dry-run installs nothing."""
    listed = subprocess.run(["git", "ls-files"], cwd=str(ROOT), capture_output=True, text=True, check=True)
    for name in listed.stdout.splitlines():
        if (ROOT / name).is_file():
            (tmp_path / "src" / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, tmp_path / "src" / name)

    result = subprocess.run([sys.executable, "-m", "pip", "install", "-v", "--no-deps", "--dry-run", "-e",
                             str(tmp_path / "src")], capture_output=True, text=True, timeout=300)

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert "Preparing editable metadata" in output, output[-3000:]  # the backend ran and was heard
    assert "Would install payg-0.1.0" in output, output[-3000:]
    assert not re.search(r"(?i)deprecat", output), re.findall(r"(?i).*deprecat.*", output)
