"""Each socket's top-up code secret (key and starting code), made once and kept owner-only in the data directory.

One JSON file, `code-keys.json`, mode 600, written whole and atomically (a temporary file
renamed over it), so a crash leaves the old file or the new one. It is never in the TOML
and never printed except by `payg codes export`. Losing it makes every code a landlord's
back office holds for these sockets worthless; back it up with the journal.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterable
from pathlib import Path

from payg.adapters.openpaygo import new_key
from payg.domain.codes import CodeKey
from payg.errors import ConfigError

FILE = "code-keys.json"


def _read(path: Path) -> dict[str, CodeKey]:
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if mode & 0o077:
        raise ConfigError(str(path), "(secret file)", f"readable by its owner only (chmod 600 {path})",
                          oct(mode), has_got=True)
    try:
        data = json.loads(path.read_text())
        return {sid: CodeKey(str(v["key"]), int(v["starting_code"])) for sid, v in data.items()}
    except (ValueError, KeyError, TypeError, AttributeError):
        raise ConfigError(str(path), "(secret file)", "the top-up code keys payg wrote (JSON: socket id -> key "
                          "and starting_code); restore it from a backup", "something else", has_got=True) from None


def load_code_keys(data_dir: Path, socket_ids: Iterable[str]) -> dict[str, CodeKey]:
    """Every socket's key, making (and saving) the ones that do not exist yet."""
    path = data_dir / FILE
    keys = _read(path) if path.exists() else {}
    missing = [sid for sid in socket_ids if sid not in keys]
    if missing:
        for sid in missing:
            keys[sid] = new_key()
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({sid: {"key": k.key_hex, "starting_code": k.starting_code} for sid, k in keys.items()},
                      f, indent=2, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(data_dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return {sid: keys[sid] for sid in socket_ids}
