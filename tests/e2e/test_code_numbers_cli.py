"""Issue 28: `payg code` numbers a socket's codes for people, 1, 2, 3, while OpenPAYGO's count (2, 4, 6) stays the
controller's and the back office's (`payg codes export`)."""

from __future__ import annotations

from pathlib import Path

from tests.support import free_port
from tests.support.cli import payg, write_config


def test_payg_code_numbers_a_sockets_codes_1_2_3(tmp_path: Path, controllers):
    port = free_port()
    config = write_config(tmp_path / "payg.toml", tmp_path / "state", port=port)
    controller = controllers(config, tmp_path, port)
    controller.wait_ready()
    said = []
    for socket_id in ("kitchen", "kitchen", "office", "kitchen"):
        made = payg("code", "--config", str(config), "--socket", socket_id, "--tokens", "10", cwd=tmp_path)
        assert made.returncode == 0, made.stderr
        said.append(made.stderr)
    assert said == [f"code {n} for socket {s}: 10 tokens, good once\n"
                    for n, s in ((1, "kitchen"), (2, "kitchen"), (1, "office"), (3, "kitchen"))], said
    assert controller.stop() == 0, controller.output()
    exported = payg("codes", "--config", str(config), "export", cwd=tmp_path)
    rows = {r[0]: r for r in (line.split("\t") for line in exported.stdout.splitlines())}
    assert (rows["kitchen"][3], rows["office"][3]) == ("6", "2"), "the back office still gets the count"
