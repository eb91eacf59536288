"""`payg code`, `payg redeem` and `payg codes export` against a real controller."""

from __future__ import annotations

from pathlib import Path

from openpaygo import OpenPAYGOTokenEncoder, TokenType

from tests.support import free_port, wait_until
from tests.support.cli import payg, socket_state, write_config


def test_a_code_made_and_entered_from_the_command_line_credits_once(tmp_path: Path, controllers):
    port = free_port()
    config = write_config(tmp_path / "payg.toml", tmp_path / "state", port=port)
    down = payg("code", "--config", str(config), "--socket", "kitchen", "--tokens", "50", cwd=tmp_path)
    assert down.returncode == 1 and "payg run" in down.stderr
    controller = controllers(config, tmp_path, port)
    controller.wait_ready()

    made = payg("code", "--config", str(config), "--socket", "kitchen", "--tokens", "50", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    code = made.stdout.strip()
    assert len(code) == 11 and code.replace(" ", "").isdigit() and "50 tokens" in made.stderr

    entered = payg("redeem", "--config", str(config), "--socket", "kitchen", code, cwd=tmp_path)
    assert entered.returncode == 0 and "50 tokens credited" in entered.stdout, entered.stderr
    wait_until(lambda: socket_state(port, "kitchen")["relay"] == "on", 5, "the kitchen relay to close")
    again = payg("redeem", "--config", str(config), "--socket", "kitchen", code, cwd=tmp_path)
    assert again.returncode == 1 and "used already" in again.stderr

    by_id = [payg("code", "--config", str(config), "--socket", "kitchen", "--tokens", "20", "--request-id",
                  "script-0001", cwd=tmp_path) for _ in range(2)]
    assert [r.returncode for r in by_id] == [0, 0], by_id[1].stderr
    assert by_id[0].stdout == by_id[1].stdout and "the same code, not a new one" in by_id[1].stderr
    entered = payg("redeem", "--config", str(config), "--socket", "kitchen", by_id[1].stdout.strip(), cwd=tmp_path)
    assert entered.returncode == 0 and "20 tokens credited" in entered.stdout, entered.stderr

    bad = payg("code", "--config", str(config), "--socket", "kitchen", "--tokens", "15", cwd=tmp_path)
    assert bad.returncode == 2 and "multiple of 10" in bad.stderr

    exported = payg("codes", "--config", str(config), "export", cwd=tmp_path)
    assert exported.returncode == 0 and "secrets" in exported.stderr
    rows = [line.split("\t") for line in exported.stdout.splitlines()]
    assert rows[0] == ["socket", "key", "starting_code", "last_count", "tokens_per_unit"]
    kitchen = next(r for r in rows if r[0] == "kitchen")
    assert kitchen[3] == "4" and kitchen[4] == "10", "two codes made: the retried request made none"
    # the back office continues from the exported count with the OpenPAYGO library's own generator
    _, elsewhere = OpenPAYGOTokenEncoder.generate_token(kitchen[1], int(kitchen[3]), 3, TokenType.ADD_TIME,
                                                        int(kitchen[2]))
    entered = payg("redeem", "--config", str(config), "--socket", "kitchen", elsewhere, cwd=tmp_path)
    assert entered.returncode == 0 and "30 tokens credited" in entered.stdout, entered.stderr

    # Issue 28: the controller has seen the back office's count (6): the export says so, so the back office is not
    # handed 4 again, and the next code made here is above it, not at 6, which was refused as used when entered
    exported = payg("codes", "--config", str(config), "export", cwd=tmp_path)
    kitchen = next(r for r in (line.split("\t") for line in exported.stdout.splitlines()) if r[0] == "kitchen")
    assert kitchen[3] == "6", kitchen
    made = payg("code", "--config", str(config), "--socket", "kitchen", "--tokens", "40", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    entered = payg("redeem", "--config", str(config), "--socket", "kitchen", made.stdout.strip(), cwd=tmp_path)
    assert entered.returncode == 0 and "40 tokens credited" in entered.stdout, entered.stderr
    assert controller.stop() == 0, controller.output()
    exported = payg("codes", "--config", str(config), "export", cwd=tmp_path)  # it was made at 8, the next count
    assert next(r for r in (line.split("\t") for line in exported.stdout.splitlines()) if r[0] == "kitchen")[3] == "8"


def test_with_a_currency_a_code_is_made_in_pence_and_printed_in_pounds(tmp_path: Path, controllers):
    """Issue 27: with `[tariff] currency = "GBP"` the journal counts pence; `--tokens` keeps its meaning (journal
    units, pence here) and what the code is worth is printed as money. Standard output is still the code alone."""
    port = free_port()
    config = write_config(tmp_path / "payg.toml", tmp_path / "state", port=port, sockets=(("office", "Office", 0.0),))
    config.write_text(config.read_text() + '\n[tariff]\ncurrency = "GBP"\nunit_rate = "0.25"\n')
    helped = payg("code", "--help", cwd=tmp_path)
    assert helped.returncode == 0 and "minor unit (pence)" in " ".join(helped.stdout.split())
    controller = controllers(config, tmp_path, port)
    controller.wait_ready()

    made = payg("code", "--config", str(config), "--socket", "office", "--tokens", "500", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    code = made.stdout.strip()
    assert len(code) == 11 and code.replace(" ", "").isdigit(), made.stdout
    assert made.stderr == "code 1 for socket office: £5.00, good once\n", made.stderr

    entered = payg("redeem", "--config", str(config), "--socket", "office", code, cwd=tmp_path)
    assert entered.returncode == 0, entered.stderr
    assert entered.stdout.strip() == "£5.00 credited to office"
    state = socket_state(port, "office")  # drawing nothing: 500 pence, all of it
    assert (state["balance"], state["currency"], state["balance_text"]) == (500, "GBP", "£5.00"), state
    assert controller.stop() == 0, controller.output()
