"""payg's build backend: setuptools, with a check that the browser libraries are there first.

A wheel or an sdist carries socket.io-client and uPlot (pyproject.toml, `share/payg/assets`), which
`make assets` installs from npm into node_modules/. Without them setuptools stops with "can't copy
'node_modules/...'", which tells a newcomer nothing; this says what to run instead. An editable
install (`make` makes one before `make assets`) needs no assets and is not checked.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F403  (the hooks this backend does not change)

ASSETS_KEY = "share/payg/assets"


def missing_assets(root: Path | None = None) -> list[str]:
    """The browser libraries pyproject.toml puts in a wheel that are not on disk under `root` (the working directory,
    where a build frontend runs the backend)."""
    root = Path.cwd() if root is None else root
    project = tomllib.loads((root / "pyproject.toml").read_text())
    wanted = project["tool"]["setuptools"]["data-files"][ASSETS_KEY]
    return [name for name in wanted if not (root / name).is_file()]


def _check() -> None:
    missing = missing_assets()
    if missing:
        sys.exit("payg: cannot build: the browser libraries are missing (" + ", ".join(missing) + ").\n"
                 "payg: run `make assets` first (npm ci, from package.json), or `make dist`, which does both;\n"
                 "payg: or install a built wheel: it carries them, and needs no Node.js.")


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):  # type: ignore[no-untyped-def]
    _check()
    return _setuptools.build_wheel(wheel_directory, config_settings, metadata_directory)


def build_sdist(sdist_directory, config_settings=None):  # type: ignore[no-untyped-def]
    _check()
    return _setuptools.build_sdist(sdist_directory, config_settings)
