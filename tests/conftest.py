import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Debian's Chromium, driven by playwright (no browser download). `make test` passes PAYG_CHROMIUM.
CHROMIUM = Path(os.environ.get("PAYG_CHROMIUM", "/usr/bin/chromium"))
# Each contract compiled once for all the test workers (and kept for the next run: keyed by compiler and source).
os.environ.setdefault("PAYG_CONTRACT_CACHE", str(Path(tempfile.gettempdir()) / "payg-contract-cache"))
# Screenshots and other files the tests leave for people to look at.
TEST_OUTPUT = Path(os.environ.get("PAYG_TEST_OUTPUT", ROOT / "test-output"))


def pytest_report_header(config):
    if os.access(CHROMIUM, os.X_OK):
        return f"browser tests: on (Chromium at {CHROMIUM}; screenshots in {TEST_OUTPUT})"
    return f"browser tests: SKIPPED: no Chromium at {CHROMIUM} (apt-get install chromium, or PAYG_CHROMIUM=/path)"


def pytest_collection_modifyitems(config, items):
    """The long tests (marked slow) first: with the Makefile's `--maxschedchunk 1` each worker takes one of them at
    the start, so they run side by side and not in a tail at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
