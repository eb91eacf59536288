"""The lint and type gates of `make test` catch what they are there to catch.

`make test` runs ruff and mypy over the tree before pytest (the `lint` target). These tests plant a
finding in a scratch copy of a module and check that the same tools, with the project's own settings
from pyproject.toml, refuse it: a gate that passes everything would pass here too, and fail these.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.support import ROOT, copy_source_tree

BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    found = BIN / name
    return str(found) if found.exists() else shutil.which(name) or name


def _scratch_tree(tmp_path: Path) -> Path:
    """A copy of the package's source and the project's settings, to plant findings in."""
    copy_source_tree(tmp_path)
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_make_test_runs_the_lint_gate_first():
    makefile = (ROOT / "Makefile").read_text()
    test_rule = re.search(r"^test:(.*)$", makefile, re.M)
    assert test_rule and "lint" in test_rule.group(1).split()
    lint_recipe = makefile.split("\nlint:", 1)[1].split("\n\n", 1)[0]
    assert "ruff check" in lint_recipe and "mypy" in lint_recipe


def test_ruff_refuses_a_planted_finding(tmp_path):
    tree = _scratch_tree(tmp_path)
    target = tree / "payg" / "domain" / "money.py"
    clean = subprocess.run([_tool("ruff"), "check", "--no-cache", str(target)], cwd=tree,
                           capture_output=True, text=True)
    assert clean.returncode == 0, clean.stdout
    target.write_text("import os\n" + target.read_text())  # an unused import, out of order
    planted = subprocess.run([_tool("ruff"), "check", "--no-cache", str(target)], cwd=tree,
                             capture_output=True, text=True)
    assert planted.returncode == 1
    assert "F401" in planted.stdout


def test_mypy_refuses_a_planted_type_error_and_is_strict_in_the_core(tmp_path):
    tree = _scratch_tree(tmp_path)
    (tree / "payg" / "domain" / "planted.py").write_text(
        "def lenient(x):\n    return x\n\n\n"            # no annotations: only strict mode objects
        "def wrong() -> int:\n    return 'tokens'\n")     # a plain type error: any mode objects
    (tree / "payg" / "adapters" / "planted.py").write_text("def lenient(x):\n    return x\n")
    run = subprocess.run([sys.executable, "-m", "mypy", "--no-incremental", "--cache-dir=/dev/null",
                          "payg/domain/planted.py", "payg/adapters/planted.py"],
                         cwd=tree, capture_output=True, text=True)
    assert run.returncode == 1, run.stdout
    assert re.search(r"payg/domain/planted\.py:6: error: Incompatible return value type", run.stdout)
    assert re.search(r"payg/domain/planted\.py:1: error: Function is missing a type annotation", run.stdout)
    assert "payg/adapters/planted.py" not in run.stdout  # default level outside the strict core
