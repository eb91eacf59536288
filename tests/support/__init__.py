"""What the tests share: the repository root, free ports, waiting, stopping processes, and the test beds
(the modules beside this one)."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent.parent  # the repository


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(condition: Callable[[], T], timeout_s: float, what: str, interval_s: float = 0.01) -> T:
    """Poll `condition` until it returns something truthy; fail the test after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(interval_s)


def terminate(proc: subprocess.Popen, timeout_s: float = 20) -> int | None:
    """SIGTERM, then the exit status; None when it had to be killed after `timeout_s`."""
    if proc.poll() is not None:
        return proc.returncode
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None


def copy_source_tree(dst: Path) -> Path:
    """A copy of app.py, payg/, ledgers/ and hardware/ in `dst`, for tests that plant a change in the code."""
    shutil.copy(ROOT / "app.py", dst / "app.py")
    for folder in ("payg", "ledgers", "hardware"):
        shutil.copytree(ROOT / folder, dst / folder, ignore=shutil.ignore_patterns("__pycache__"))
    return dst
