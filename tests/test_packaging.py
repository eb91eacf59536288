"""What a wheel is built from: the build backend's check for the browser libraries, and the default a wheel
installs. `make dist-test` (run by .ci/run) builds the wheel itself and runs it from a fresh venv."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from payg.cli.parser import DEFAULT_CONFIG, default_config
from tests.support import ROOT

BUILD = ("import sys; sys.path.insert(0, 'tools'); import payg_build; payg_build.build_wheel(sys.argv[1])")


def tree_without_assets(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    (tree / "tools").mkdir(parents=True)
    shutil.copy(ROOT / "pyproject.toml", tree)
    shutil.copy(ROOT / "tools" / "payg_build.py", tree / "tools")
    return tree


def test_building_without_the_browser_libraries_says_what_to_run(tmp_path):
    tree = tree_without_assets(tmp_path)
    result = subprocess.run([sys.executable, "-c", BUILD, str(tmp_path / "out")], cwd=tree, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 1
    assert "node_modules/socket.io-client/dist/socket.io.min.js" in result.stderr
    assert "run `make assets` first" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_the_check_finds_exactly_the_libraries_that_are_missing(tmp_path):
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import payg_build
    finally:
        sys.path.remove(str(ROOT / "tools"))
    tree = tree_without_assets(tmp_path)
    wanted = payg_build.missing_assets(tree)
    assert len(wanted) == 3 and all(name.startswith("node_modules/") for name in wanted)
    for name in wanted[:2]:
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_text("x")
    assert payg_build.missing_assets(tree) == wanted[2:]
    assert payg_build.missing_assets(ROOT) == [], "make assets ran before the tests: nothing may be missing here"


def test_away_from_a_source_tree_the_installed_default_is_used(tmp_path, monkeypatch):
    installed = tmp_path / "share" / "payg" / "config" / "default.toml"
    monkeypatch.chdir(tmp_path)
    assert default_config(installed) == DEFAULT_CONFIG  # nothing installed: the error will name config/default.toml
    installed.parent.mkdir(parents=True)
    shutil.copy(ROOT / DEFAULT_CONFIG, installed)
    assert default_config(installed) == str(installed)
    (tmp_path / "config").mkdir()
    (tmp_path / DEFAULT_CONFIG).write_text("")
    assert default_config(installed) == DEFAULT_CONFIG  # a source tree's own file comes first
