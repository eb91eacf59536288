"""The dependency rule of ARCHITECTURE.md, checked on the source, and the checker checked on planted imports.

    domain    payg/domain, payg/errors.py, payg/ports      the standard library (no I/O, threads or network) and itself
    services  payg/services                                 the domain and the standard library (the same subset)
    wire      payg/serialize.py                             the domain and the services (typed values to JSON dicts)
    entry     payg/web, payg/hub, payg/cli, payg/webkit     the domain, the services, the wire, their frameworks; never
                                                            an adapter; the web kit (payg/webkit) none of the apps
                                                            built on it; the controller's web and the hub not each
                                                            other
    adapters  payg/adapters, ledgers, hardware              the domain, the shared adapter toolkit, their libraries;
                                                            never an entry point or the composition (ledgers and
                                                            hardware: no services either)
    composition  payg/bootstrap.py, payg/wiring             anything (the root and the parts it hands off)
    script    app.py                                        the composition root's `main`, nothing else

And no import cycle anywhere in the tree: every module of app.py, payg, ledgers and hardware, each import
statement (in functions and under TYPE_CHECKING too) an edge to the modules it names.
"""

from __future__ import annotations

import ast
import functools
import re
import sys
from pathlib import Path

import pytest

from tests.support import ROOT, copy_source_tree

# Standard library modules that do I/O, make threads or talk to the network: never in the domain or services.
INFRASTRUCTURE = {"sqlite3", "socket", "socketserver", "ssl", "select", "selectors", "urllib", "http", "threading",
                  "_thread", "concurrent", "multiprocessing", "subprocess", "asyncio", "fcntl", "termios", "tomllib",
                  "signal", "shutil", "tempfile", "pickle", "shelve", "dbm"}
OURS = {"payg", "ledgers", "hardware", "app", "tests"}
COMPOSITION = ("app", "payg.bootstrap", "payg.wiring")


def source_files(root: Path) -> list[Path]:
    folders = ("payg", "ledgers", "hardware")
    return [root / "app.py", *sorted(p for folder in folders for p in (root / folder).rglob("*.py"))]


def layer_of(rel: str) -> str | None:
    if rel.startswith(("payg/domain/", "payg/ports/")) or rel in ("payg/__init__.py", "payg/errors.py"):
        return "domain"
    if rel.startswith("payg/services/"):
        return "services"
    if rel == "payg/serialize.py":
        return "wire"
    if rel.startswith(("payg/web/", "payg/cli/", "payg/hub/", "payg/webkit/")):
        return "entry"
    if rel.startswith(("payg/adapters/", "ledgers/", "hardware/")):  # their __init__.py too
        return "adapters"
    if rel.startswith("payg/wiring/") or rel == "payg/bootstrap.py":
        return "composition"
    if rel == "app.py":
        return "script"
    return None


def imports_of(path: Path) -> list[list[str]]:
    """Per import statement (anywhere, functions included), the modules it may bring in."""
    return _imports_in(path.read_text())


@functools.cache  # the planted-import tests check copies of the tree: each text is parsed once
def _imports_in(text: str) -> list[list[str]]:
    tree = ast.parse(text)
    statements = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            statements.extend([a.name] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from payg import adapters` brings in payg.adapters
            statements.append([node.module, *(f"{node.module}.{a.name}" for a in node.names)])
    return statements


def top(name: str) -> str:
    return name.split(".")[0]


def is_in(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def refusal(layer: str, rel: str, name: str) -> str | None:
    """Why `rel` (in `layer`) may not import `name`, or None."""
    t = top(name)
    if layer in ("domain", "services", "wire"):
        if t in INFRASTRUCTURE:
            return "infrastructure in the core"
        if t not in sys.stdlib_module_names and t not in OURS:
            return "a third-party package in the core"
        allowed = ("payg.domain", "payg.errors", "payg.ports") + (("payg.services",) if layer != "domain" else ())
        if t in OURS and not (any(is_in(name, p) for p in allowed) or name == "payg"):
            return f"the {layer} imports outside {', '.join(allowed)}"
    elif layer == "composition":
        if is_in(name, "tests"):
            return "the composition imports the tests"
    elif layer == "script":
        if t in OURS and not is_in(name, "payg.bootstrap"):
            return "the entry script does more than call the composition root"
    elif layer == "entry":
        if any(is_in(name, p) for p in ("payg.adapters", "ledgers", "hardware", *COMPOSITION, "tests")):
            return "an entry point imports an adapter or the composition"
        if rel.startswith("payg/webkit/") and any(is_in(name, p) for p in ("payg.web", "payg.hub", "payg.cli")):
            return "the web kit imports an app built on it"
        if rel.startswith("payg/hub/") and is_in(name, "payg.web"):
            return "the hub imports the controller's web (what they share is the kit, payg/webkit)"
        if rel.startswith("payg/web/") and is_in(name, "payg.hub"):
            return "the controller's web imports the hub"
    elif layer == "adapters":
        if any(is_in(name, p) for p in ("payg.web", "payg.webkit", "payg.hub", "payg.cli", *COMPOSITION, "tests")):
            return "an adapter imports an entry point or the composition"
        if rel.startswith(("ledgers/", "hardware/")) and is_in(name, "payg.services"):
            return "a ledger or hardware adapter imports a service"
    return None


def violations(root: Path) -> list[str]:
    found = []
    for path in source_files(root):
        rel = path.relative_to(root).as_posix()
        layer = layer_of(rel)
        if layer is None:
            found.append(f"{rel}: in no layer")
            continue
        for names in imports_of(path):
            why = next(((name, w) for name in names if (w := refusal(layer, rel, name))), None)
            if why:
                found.append(f"{rel}: imports {why[0]}: {why[1]}")
    return found


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def cycles(root: Path) -> list[list[str]]:
    """The import cycles among the tree's modules (strongly connected components of two or more)."""
    files = {module_name(p, root): p for p in source_files(root)}
    graph = {m: sorted({n for names in imports_of(p) for n in names if n in files and n != m})
             for m, p in files.items()}
    order, low, stack, found = {}, {}, [], []

    def visit(v: str) -> None:  # Tarjan's algorithm
        order[v] = low[v] = len(order)
        stack.append(v)
        for w in graph[v]:
            if w not in order:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], order[w])
        if low[v] == order[v]:
            component = []
            while not component or component[-1] != v:
                component.append(stack.pop())
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in order:
            visit(v)
    return found


def test_every_module_keeps_the_dependency_rule():
    assert len(source_files(ROOT)) >= 60
    assert violations(ROOT) == []


def test_the_tree_has_no_import_cycle():
    assert cycles(ROOT) == []


@pytest.mark.parametrize("where, planted, cycle", [
    ("payg/wiring/hub.py", "from payg.bootstrap import web_dirs", ["payg.bootstrap", "payg.wiring.hub"]),
    ("ledgers/iota/wallet.py", "from ledgers.iota import IotaLedger", ["ledgers.iota", "ledgers.iota.wallet"]),
    ("payg/domain/tariff.py", "from payg.domain.billing import bill", ["payg.domain.billing", "payg.domain.tariff"]),
])
def test_the_cycle_check_finds_a_planted_cycle(tmp_path, where, planted, cycle):
    copy_source_tree(tmp_path)
    assert cycles(tmp_path) == []
    target = tmp_path / where
    target.write_text(target.read_text() + f"\n\ndef _planted():\n    {planted}\n")
    found = cycles(tmp_path)
    assert len(found) == 1 and set(cycle) <= set(found[0])


@pytest.mark.parametrize("where, planted", [
    ("payg/domain/billing.py", "import sqlite3"),
    ("payg/domain/relay.py", "from payg.adapters.journal import SqliteJournal"),
    ("payg/services/metering.py", "import threading"),
    ("payg/services/site.py", "from urllib.request import urlopen"),
    ("payg/services/deposits.py", "import flask"),
    ("payg/services/supply.py", "import socket"),
    ("payg/ports/__init__.py", "from payg.services.site import Site"),
    ("payg/ports/journal.py", "import sqlite3"),
    ("payg/services/metering.py", "from payg import serialize"),
    ("payg/serialize.py", "from payg.web.views import with_topup"),
    ("payg/serialize.py", "import json, sqlite3"),
    ("payg/web/live.py", "from payg.adapters.journal import SqliteJournal"),
    ("payg/web/tenant.py", "from ledgers.mock import MockLedger"),
    ("payg/cli/accounts.py", "import app"),
    ("payg/web/tenant.py", "from payg.bootstrap import build"),
    ("payg/adapters/notify.py", "from payg.wiring.runtime import Runtime"),
    ("app.py", "from payg.adapters.journal import SqliteJournal"),
    ("payg/cli/trade.py", "from payg import adapters"),
    ("ledgers/mock/ledger.py", "from payg.web import create_web"),
    ("hardware/simulated.py", "from payg.services.metering import Metering"),
    ("payg/adapters/journal.py", "from payg.cli import main"),
    ("payg/hub/web.py", "from payg.web.landlord import blueprint"),
    ("payg/web/landlord.py", "from payg.hub.fleet import Fleet"),
    ("payg/webkit/pages.py", "from payg.web import create_web"),
])
def test_the_check_fails_on_a_planted_import(tmp_path, where, planted):
    copy_source_tree(tmp_path)
    assert violations(tmp_path) == []
    target = tmp_path / where
    text = target.read_text()
    # inside a function, where it is easiest to overlook
    target.write_text(text + f"\n\ndef _planted():\n    {planted}\n")
    found = violations(tmp_path)
    assert len(found) == 1 and found[0].startswith(f"{where}: imports ")


def test_no_test_module_imports_another():
    """What tests share lives in tests/support/ (or tests/fakes.py), not in another test module."""
    offenders = []
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if re.search(r"(^|\.)test_\w+$", n)]
    assert offenders == []


def test_no_module_outside_the_tests_is_over_400_lines():
    files = source_files(ROOT)
    long = {p.relative_to(ROOT).as_posix(): n for p in files if (n := len(p.read_text().splitlines())) > 400}
    assert long == {}


def test_no_secret_or_debug_mode_in_the_code():
    for path in source_files(ROOT):
        text = path.read_text()
        assert "debug=True" not in text.replace(" ", ""), path
        # The session key exists only as read from the data directory's owner-only file.
        assert re.search(r"SECRET_KEY\s*=\s*(?!(services\.)?secrets\.session_key\b)", text) is None, path
        assert re.search(r"secret_key\s*=", text) is None, path
