"""DataDirLock: one controller per data directory (two would bill the same meters twice)."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from payg.errors import DataDirBusy


class DataDirLock:
    """An exclusive lock on `<data_dir>/controller.lock`, holding the owner's pid; released by release()
    or when the process ends."""

    def __init__(self, data_dir: Path):
        self.path = data_dir / "controller.lock"
        self._fh = open(self.path, "a+")
        try:
            fcntl.flock(self._fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._fh.close()
            raise DataDirBusy(f"another controller is running on {data_dir} (lock {self.path})") from None
        self._fh.seek(0)
        self._fh.truncate()
        self._fh.write(f"{os.getpid()}\n")
        self._fh.flush()

    def release(self) -> None:
        fcntl.flock(self._fh, fcntl.LOCK_UN)
        self._fh.close()

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        self.release()
