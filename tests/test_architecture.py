"""The dependency direction of DESIGN.md, checked on the source."""

import ast
import re
import sys
from pathlib import Path

from tests.support import ROOT
ENTRY_POINTS = {"payg/cli.py"}


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def top(name: str) -> str:
    return name.split(".")[0]


def python_files(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def test_the_domain_imports_only_the_standard_library_and_itself():
    domain = [p for p in python_files("payg")
              if str(p.relative_to(ROOT)) not in ENTRY_POINTS and "web" not in p.relative_to(ROOT).parts]
    assert len(domain) >= 8
    for path in domain:
        for name in imports_of(path):
            assert top(name) in sys.stdlib_module_names or top(name) == "payg", f"{path}: imports {name}"


def test_entry_points_never_import_adapters_or_the_composition_root():
    entry = [ROOT / "payg" / "cli.py", *python_files("payg/web")]
    for path in entry:
        for name in imports_of(path):
            assert top(name) not in {"ledgers", "hardware", "app"}, f"{path}: imports {name}"


def test_adapters_import_the_domain_not_the_entry_points():
    for path in python_files("ledgers") + python_files("hardware"):
        for name in imports_of(path):
            assert not name.startswith(("payg.web", "payg.cli")) and top(name) != "app", f"{path}: imports {name}"


def test_no_secret_or_debug_mode_in_the_code():
    for path in [ROOT / "app.py", *python_files("payg"), *python_files("ledgers"), *python_files("hardware")]:
        text = path.read_text()
        assert "debug=True" not in text.replace(" ", ""), path
        # The session key exists only as read from the data directory's owner-only file.
        assert re.search(r"SECRET_KEY\s*=\s*(?!services\.secrets\.session_key\b)", text) is None, path
        assert re.search(r"secret_key\s*=", text) is None, path
