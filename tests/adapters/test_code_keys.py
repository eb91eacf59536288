"""Each socket's top-up code secret: made once, owner-only, kept, never shared between sockets."""

from __future__ import annotations

import json
import os
import stat

import pytest

from payg.adapters.code_keys import FILE, load_code_keys
from payg.errors import ConfigError


def test_keys_are_made_once_per_socket_owner_only_and_kept(tmp_path):
    first = load_code_keys(tmp_path, ["a", "b"])
    assert stat.S_IMODE(os.stat(tmp_path / FILE).st_mode) == 0o600
    assert len(first["a"].key_hex) == 32 and 100_000_000 <= first["a"].starting_code < 10**9
    assert first["a"] != first["b"]
    again = load_code_keys(tmp_path, ["a", "b", "c"])   # a socket added later gets its own; the others stay
    assert again["a"] == first["a"] and again["b"] == first["b"] and again["c"] not in (first["a"], first["b"])
    assert load_code_keys(tmp_path, ["b"]) == {"b": first["b"]}
    assert not (tmp_path / "code-keys.tmp").exists()


def test_a_key_file_others_can_read_or_that_is_not_ours_is_refused(tmp_path):
    load_code_keys(tmp_path, ["a"])
    os.chmod(tmp_path / FILE, 0o640)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_code_keys(tmp_path, ["a"])
    os.chmod(tmp_path / FILE, 0o600)
    (tmp_path / FILE).write_text(json.dumps({"a": {"key": "x"}}))
    with pytest.raises(ConfigError, match="restore it from a backup"):
        load_code_keys(tmp_path, ["a"])
