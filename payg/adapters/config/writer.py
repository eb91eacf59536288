"""Adding `[[sockets]]` entries to a configuration file: a backup first, then an atomic replace of a checked file.

The entries are appended as text (the setup page builds them with payg/domain/meter_scan.py `socket_entry`), so
the landlord's comments and layout stay as they were: a TOML writer (tomli-w) would rewrite the whole file
without them. The new text is written to a temporary file beside the old, flushed, loaded with the real loader,
and only then renamed over the old file; the old one is copied to `<name>.bak-<timestamp>` first, never over an
existing backup.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from payg.domain.settings import Config
from payg.errors import ConfigError


@dataclass(frozen=True)
class WrittenConfig:
    path: Path
    backup: Path
    config: Config  # the new file, as the loader read it


class ConfigFileWriter:
    def __init__(self, path: Path, load: Callable[[Path], Config], now: Callable[[], float]):
        self.path = path
        self._load = load
        self._now = now

    def add_sockets(self, entries: str) -> WrittenConfig:
        """Append the entries; raises ConfigError (naming the file) when the result does not load, and OSError
        when the directory cannot be written. The old file stays as it was in both cases."""
        old = self.path.read_text(encoding="utf-8")
        text = old + ("" if old.endswith("\n") or not old else "\n") + "\n" + entries
        backup = self._backup()
        fd, temp_name = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".new")
        temp = Path(temp_name)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            shutil.copymode(self.path, temp)
            try:
                config = self._load(temp)
            except ConfigError as exc:
                raise ConfigError(str(self.path), "sockets", f"entries the loader accepts (not written: "
                                  f"{str(exc).replace(str(temp), 'the new file')})") from None
            os.replace(temp, self.path)
        finally:
            temp.unlink(missing_ok=True)
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)  # the rename itself survives a power cut
        finally:
            os.close(directory)
        return WrittenConfig(self.path, backup, config)

    def _backup(self) -> Path:
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(self._now()))
        for n in range(100):
            backup = self.path.with_name(f"{self.path.name}.bak-{stamp}" + (f"-{n}" if n else ""))
            try:
                with open(backup, "xb") as fh:  # "x": an existing backup is never overwritten
                    fh.write(self.path.read_bytes())
                    fh.flush()
                    os.fsync(fh.fileno())
            except FileExistsError:
                continue
            shutil.copymode(self.path, backup)
            return backup
        raise ConfigError(str(self.path), "(backup)", f"a free backup name ({self.path.name}.bak-{stamp}-N)")
