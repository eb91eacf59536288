"""Fixtures of the end-to-end tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.cli import Controller


@pytest.fixture
def controllers():
    """Starts controllers and makes sure none outlives the test."""
    started: list[Controller] = []

    def start(config: Path, cwd: Path, port: int | None, name: str = "controller", fresh: bool = False) -> Controller:
        c = Controller(config, cwd, port, name, fresh)
        started.append(c)
        return c

    yield start
    for c in started:
        c.cleanup()
