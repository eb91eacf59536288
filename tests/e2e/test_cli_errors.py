"""One CLI voice (issue 28): every way a command fails, as its user meets it, and the exit code it ends with.

docs/cli.md's table: 2 for a usage error (bad arguments, an unknown socket, an amount out of range: nothing done),
1 for a refusal or a failure (the controller refused, or is not running). Each message is one line, `payg: ` and one
sentence, never a second prefix. Each command is a process of its own (tests/support/cli.py).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from payg.adapters.journal import SqliteJournal
from payg.adapters.secrets import API_TOKEN_FILE
from payg.services.codes import REFUSALS
from tests.support import free_port, wait_until
from tests.support.cli import config_text, deposit, journal_rows, payg, socket_state, table, write_config

UNKNOWN = "payg: unknown socket 'garage' (configured: kitchen, office)\n"
WITH_SOCKET = {  # every command that takes --socket, for the socket "garage" no configuration names
    "deposit": ["deposit", "--socket", "garage", "--amount", "5"],
    "address": ["address", "--socket", "garage"],
    "journal": ["journal", "--socket", "garage"],
    "statement": ["statement", "--socket", "garage", "--month", "2027-01"],
    "code": ["code", "--socket", "garage", "--tokens", "50"],
    "redeem": ["redeem", "--socket", "garage", "123 456 789"],
    "trade post": ["trade", "post", "--socket", "garage", "--energy-wh", "10", "--min-price", "1"],
    "trade withdraw": ["trade", "withdraw", "--socket", "garage"],
    "trade fund": ["trade", "fund", "--socket", "garage", "--amount", "5"],
}


def one_voice(stderr: str) -> None:
    """Every line is one message: `payg: ` once, no `refused: Refused:`, no raw urllib error, no traceback."""
    assert stderr.endswith("\n"), stderr
    for line in stderr.splitlines():
        assert line.startswith("payg: ") and line.count("payg:") == 1, line
        assert not re.search(r"(?i)refused: refused", line) and "Refused:" not in line, line
        assert "urlopen" not in line and "Errno" not in line and "Traceback" not in line, line


def run(config: Path, *args: str):
    return payg("--config", str(config), *args, cwd=config.parent)


@pytest.mark.parametrize("command", list(WITH_SOCKET))
def test_an_unknown_socket_lists_the_configured_ones_and_exits_2_in_every_command(tmp_path: Path, command: str):
    data_dir = tmp_path / "state"
    config = write_config(tmp_path / "payg.toml", data_dir, port=free_port())  # no controller runs there
    result = run(config, *WITH_SOCKET[command])
    assert (result.returncode, result.stderr, result.stdout) == (2, UNKNOWN, "")
    assert not (data_dir / "mock-ledger.sqlite").exists(), "nothing was paid"


def test_journal_and_statement_read_a_removed_sockets_entries_and_name_the_configured_ones_else(tmp_path: Path):
    data_dir = tmp_path / "state"
    data_dir.mkdir()
    config = write_config(tmp_path / "payg.toml", data_dir, web=False)
    journal = SqliteJournal(data_dir / "journal.sqlite")
    with journal.transaction() as tx:  # the entries of a socket since taken out of the configuration
        tx.credit("attic", 40, "credit", "manual:attic:1", 1_800_000_000.0, "kept")
    journal.close()
    for args in (["journal", "--socket", "attic"], ["statement", "--socket", "attic", "--month", "2027-01"]):
        kept = run(config, *args)
        assert kept.returncode == 0 and "attic" in kept.stdout, kept.stderr
    for command in ("journal", "statement"):
        result = run(config, *WITH_SOCKET[command])
        assert (result.returncode, result.stderr) == (2, UNKNOWN)


@pytest.mark.parametrize("args, message", [
    (["deposit", "--socket", "kitchen", "--amount", "0"], "expected a positive integer, got '0'"),
    (["code", "--socket", "kitchen", "--tokens", str(2**62)], "is too large"),
    (["redeem", "--socket", "kitchen", "12345"], "payg: not a code: a code is 9 digits, such as 123 456 789\n"),
    (["statement", "--socket", "kitchen", "--month", "2027-13"], "payg: "),
    (["trade", "open", "--socket", "kitchen", "--recipient", "0xabc"],
     "payg: open needs --supplier, or --recipient, --escrow and --price (missing: --escrow, --price)\n"),
], ids=["amount", "tokens", "code", "period", "trade"])
def test_bad_arguments_exit_2_before_any_controller_is_asked(tmp_path: Path, args: list[str], message: str):
    config = write_config(tmp_path / "payg.toml", tmp_path / "state", port=free_port())  # none runs there
    result = run(config, *args)
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert message in result.stderr and "not running" not in result.stderr, result.stderr
    if message.startswith("payg: "):
        one_voice(result.stderr)


@pytest.mark.parametrize("args", [["code", "--socket", "kitchen", "--tokens", "50"],
                                  ["redeem", "--socket", "kitchen", "123 456 789"],
                                  ["login-link"], ["trade", "adverts"]], ids=lambda a: a[0])
def test_a_controller_that_is_not_running_is_said_in_words_and_exits_1(tmp_path: Path, args: list[str]):
    port = free_port()
    config = write_config(tmp_path / "payg.toml", tmp_path / "state", port=port)
    result = run(config, *args)
    assert result.returncode == 1, result.stderr
    first, *rest = result.stderr.splitlines()
    assert first == f"payg: the controller at http://127.0.0.1:{port} is not running (connection refused)"
    assert len(rest) == 1 and "payg run" in rest[0], rest  # and how to start it
    one_voice(result.stderr)


def test_the_running_controller_refuses_with_1_and_finds_bad_requests_with_2(tmp_path: Path, controllers):
    port = free_port()
    data_dir = tmp_path / "state"
    config = write_config(tmp_path / "payg.toml", data_dir, port=port)
    controller = controllers(config, tmp_path, port)
    controller.wait_ready()

    odd = run(config, "code", "--socket", "office", "--tokens", "15")
    assert odd.returncode == 2 and odd.stdout == ""
    assert odd.stderr == ("payg: 15 tokens is not a multiple of 10 (one code unit is 10 tokens: [codes] "
                          "tokens_per_unit)\n")

    made = run(config, "code", "--socket", "office", "--tokens", "20")
    assert made.returncode == 0, made.stderr
    assert run(config, "redeem", "--socket", "office", made.stdout.strip()).returncode == 0
    again = run(config, "redeem", "--socket", "office", made.stdout.strip())
    assert (again.returncode, again.stderr) == (1, f"payg: refused: {REFUSALS['used']}\n")

    # configured here but not in the controller, started before the configuration changed: a usage error too
    later = tmp_path / "later.toml"
    later.write_text(config_text(data_dir, port=port, sockets=(("kitchen", "Kitchen", 0.0), ("office", "Office", 0.0),
                                                                ("garage", "Garage", 0.0))))
    stale = run(later, "code", "--socket", "garage", "--tokens", "10")
    assert stale.returncode == 2 and stale.stderr.startswith(
        f"payg: unknown socket 'garage' in the controller at http://127.0.0.1:{port} (restart it"), stale.stderr
    one_voice(stale.stderr)

    token = data_dir / API_TOKEN_FILE  # run as another user: no API token to read
    token.rename(tmp_path / "token")
    try:
        no_token = run(config, "code", "--socket", "office", "--tokens", "10")
    finally:
        (tmp_path / "token").rename(token)
    assert no_token.returncode == 1, no_token.stderr
    assert no_token.stderr.startswith("payg: refused: log in as the landlord")
    assert no_token.stderr.splitlines()[1] == f"payg: run this as the user that runs the controller (it reads {token})"
    one_voice(no_token.stderr)

    wrong = run(config, "redeem", "--socket", "office", "111 111 111")  # last: a wrong code slows the next ones
    assert (wrong.returncode, wrong.stderr) == (1, f"payg: refused: {REFUSALS['invalid']}\n")
    assert controller.stop() == 0, controller.output()


def test_status_prints_the_same_energy_today_online_and_offline(tmp_path: Path, controllers):
    """Offline `status` printed the journal's last meter counter (57.0), online the meter's own (0 after a restart
    of a meter that starts again at 0). Both now print the energy used today, from the journal."""
    port = free_port()
    data_dir = tmp_path / "state"
    config = write_config(tmp_path / "payg.toml", data_dir, port=port)
    controller = controllers(config, tmp_path, port)
    controller.wait_ready()
    deposit(config, "kitchen", 3, tmp_path)  # 3600 W, a token per second: used up in about 3 s, then off
    wait_until(lambda: journal_rows(data_dir, "SELECT id FROM entries WHERE kind = 'deposit'"), 10,
               "the deposit to be credited")
    # off for lack of credit: at zero, or cut ahead with part of a token kept for the next top-up
    wait_until(lambda: (lambda st: st["relay"] == "off" and (st["balance"] <= 0 or st["credit_exhausted"]))(
        socket_state(port, "kitchen")), 20, "the kitchen's credit to run out")

    def energy_today(online: bool) -> str:
        result = run(config, "status")
        assert result.returncode == 0, result.stderr
        assert ("not answering" in result.stdout) is not online, result.stdout
        header, rows = table(result.stdout)
        assert header[-1] == "energy_today_wh", header
        assert rows["office"][-1] == "0.0"
        return rows["kitchen"][-1]

    first = energy_today(online=True)
    assert controller.stop() == 0, controller.output()
    offline = energy_today(online=False)
    again = controllers(config, tmp_path, port, name="again")  # its simulated meters count from 0 again
    again.wait_ready()
    assert socket_state(port, "kitchen")["relay"] == "off", (socket_state(port, "kitchen"), again.output())
    online = energy_today(online=True)
    assert first == offline == online, (first, offline, online)
    assert 2.0 <= float(online) <= 5.0
    assert again.stop() == 0, again.output()
