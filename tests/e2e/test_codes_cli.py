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
    assert controller.stop() == 0, controller.output()
