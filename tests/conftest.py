import os
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Debian's Chromium, driven by playwright (no browser download). `make test` passes PAYG_CHROMIUM. Its headless shell
# (Debian's chromium-headless-shell) when there is one: the same engine without the desktop browser around it, at half
# the CPU (measured on 15 browser tests: 98 -> 45 CPU-seconds of Chromium, 95 -> 71 s).
HEADLESS_SHELL = Path("/usr/bin/chromium-headless-shell")
CHROMIUM = Path(os.environ.get("PAYG_CHROMIUM") or (HEADLESS_SHELL if HEADLESS_SHELL.exists() else "/usr/bin/chromium"))
NO_CHROMIUM = f"no Chromium at {CHROMIUM} (apt-get install chromium-headless-shell, or PAYG_CHROMIUM=/path)"
# The browser tests' module mark: `pytestmark = NEEDS_CHROMIUM`. Skipped, with the reason, without a Chromium.
NEEDS_CHROMIUM = pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK), reason=NO_CHROMIUM)
# Each contract compiled once for all the test workers (and kept for the next run: keyed by compiler and source).
os.environ.setdefault("PAYG_CONTRACT_CACHE", str(Path(tempfile.gettempdir()) / "payg-contract-cache"))
# Screenshots and other files the tests leave for people to look at.
TEST_OUTPUT = Path(os.environ.get("PAYG_TEST_OUTPUT", ROOT / "test-output"))


def pytest_report_header(config):
    if os.access(CHROMIUM, os.X_OK):
        return f"browser tests: on (Chromium at {CHROMIUM}; screenshots in {TEST_OUTPUT})"
    return f"browser tests: SKIPPED: {NO_CHROMIUM}"


def pytest_collection_modifyitems(config, items):
    """The long tests (marked slow) first: with the Makefile's `--maxschedchunk 1` each worker takes one of them at
    the start, so they run side by side and not in a tail at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
