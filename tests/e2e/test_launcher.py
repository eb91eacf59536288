"""The test launcher (tests/support/launcher.py) stands in for `python app.py`: what it starts must answer as a
fresh interpreter does, or the end-to-end tests would be testing something else."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.support import launcher, wait_until
from tests.support.cli import write_config


@pytest.mark.parametrize("args", [
    ["--help"],
    ["deposit", "--socket", "garage", "--amount", "5"],  # exit 1, a message on stderr
    ["deposit", "--socket", "kitchen", "--amount", "-3"],  # exit 2, argparse's usage
    ["deposit", "--socket", "office", "--amount", "7"],  # exit 0, a deposit id (different each time)
    ["status"],
])
def test_a_forked_command_answers_as_a_fresh_interpreter_does(tmp_path: Path, args: list[str]):
    config = write_config(tmp_path / "payg.toml", tmp_path / "state", web=False)
    argv = [*args, "--config", str(config)] if args != ["--help"] else args

    forked = launcher.run(*argv, cwd=tmp_path, env=dict(os.environ, COLUMNS="100"))
    fresh = launcher.run(*argv, cwd=tmp_path, env=dict(os.environ, COLUMNS="100"), fresh=True)

    def same(text: str) -> str:
        return " ".join(word if not word.startswith("mock-") else "mock-ID" for word in text.split(" "))

    assert (forked.returncode, same(forked.stdout), forked.stderr) == \
           (fresh.returncode, same(fresh.stdout), fresh.stderr)
    assert forked.stdout or forked.stderr


def test_a_forked_controller_has_its_own_pid_directory_and_log_and_dies_of_sigkill(tmp_path: Path):
    config = write_config(tmp_path / "payg.toml", tmp_path / "state", web=False)
    log = tmp_path / "controller.log"
    proc = launcher.start(["--config", str(config)], cwd=tmp_path, stdout=log)
    assert log.exists() and proc.pid not in (0, os.getpid())
    wait_until(lambda: "payg running" in log.read_text(), 30, "the controller to start")
    assert os.readlink(f"/proc/{proc.pid}/cwd") == str(tmp_path)
    assert proc.poll() is None

    proc.send_signal(signal.SIGKILL)

    assert proc.wait(10) == -signal.SIGKILL
    assert proc.poll() == -signal.SIGKILL
    assert (tmp_path / "state" / "journal.sqlite").exists()
