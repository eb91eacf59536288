"""The hub's file: [hub] and [mqtt], every error naming the file and the key; the example parses."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from payg.adapters.config.hub import load
from payg.domain.settings import ServerConfig
from payg.errors import ConfigError
from tests.support import ROOT, launcher

GOOD = """
[hub]
data_dir = "{data}"
landlord_password_hash_env = "HUB_HASH"
[mqtt]
host = "127.0.0.1"
username = "hub"
password_env = "HUB_MQTT"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "hub.toml"
    path.write_text(text.replace("{data}", str(tmp_path / "var")))
    return path


def test_the_defaults(tmp_path):
    c = load(write(tmp_path, GOOD))
    assert (c.host, c.port, c.topic_prefix, c.command_timeout_s) == ("127.0.0.1", 5080, "payg", 10.0)
    assert c.data_dir == tmp_path / "var" and c.landlord_password.env == "HUB_HASH"
    assert (c.mqtt.username, c.mqtt.password.env, c.mqtt.client, c.mqtt.port) == ("hub", "HUB_MQTT", "payg-hub", 1883)


def test_the_hub_server_limits_are_read_like_a_controller_s(tmp_path):
    c = load(write(tmp_path, GOOD.replace("[mqtt]", "[hub.server]\nworkers = 4\nmax_live_per_client = 2\n"
                                                    "buffer_budget_kib = 1024\n[mqtt]")))
    assert (c.server.workers, c.server.max_live_per_client, c.server.buffer_budget_kib) == (4, 2, 1024)
    assert load(write(tmp_path, GOOD)).server == ServerConfig()


def test_the_example_parses():
    c = load(ROOT / "config" / "hub.example.toml")
    assert (c.port, c.mqtt.username, c.landlord_password.env) == (5080, "hub", "PAYG_HUB_LANDLORD_HASH")


@pytest.mark.parametrize("change, key", [
    (lambda t: t.replace('data_dir = "{data}"\n', ""), "hub.data_dir"),
    (lambda t: t.replace('landlord_password_hash_env = "HUB_HASH"', ""), "hub.landlord_password_hash_env"),
    (lambda t: t.replace('landlord_password_hash_env = "HUB_HASH"', 'landlord_password_hash = "scrypt:x"'),
     "hub.landlord_password_hash"),
    (lambda t: t.replace("[hub]\n", "[hub]\nport = 70000\n"), "hub.port"),
    (lambda t: t.replace("[hub]\n", "[hub]\nhost = \"example.org\"\n"), "hub.host"),
    (lambda t: t.replace("[hub]\n", "[hub]\ntopic_prefix = \"pay#g\"\n"), "hub.topic_prefix"),
    (lambda t: t.replace("[hub]\n", "[hub]\ncommand_timeout_s = 0\n"), "hub.command_timeout_s"),
    (lambda t: t.replace("[hub]\n", "[hub]\nmqtt_workers = -1\n"), "hub.mqtt_workers"),
    (lambda t: t.replace("[hub]\n", "[hub]\nmqtt_workers = 65\n"), "hub.mqtt_workers"),
    (lambda t: t.replace("[hub]\n", "[hub]\nprot = 5\n"), "hub.prot"),
    (lambda t: t.replace("[mqtt]\n", "[hub.server]\nworkers = 0\n[mqtt]\n"), "hub.server.workers"),
    (lambda t: t.replace("[mqtt]\n", "[mqtt]\ncontroller = \"home\"\n"), "mqtt.controller"),
    (lambda t: t.replace("[mqtt]\n", "[mqtt]\ntopic_prefix = \"x\"\n"), "mqtt.topic_prefix"),
    (lambda t: t.replace("[mqtt]\n", "[mqtt]\npassword = \"secret\"\n"), "mqtt.password"),
    (lambda t: t.replace('username = "hub"\n', ""), "mqtt.username"),
    (lambda t: t.split("[mqtt]")[0], "[mqtt]"),
    (lambda t: t + "[ledger]\nbackend = \"mock\"\n", "ledger"),
])
def test_errors_name_the_file_and_the_key(tmp_path, change, key):
    path = write(tmp_path, change(GOOD))
    with pytest.raises(ConfigError) as exc:
        load(path)
    assert exc.value.key == key and str(exc.value).startswith(f"{path}: {key}: ")


def test_payg_hub_exits_2_on_an_invalid_file_naming_it(tmp_path):
    path = write(tmp_path, GOOD.replace("[hub]\n", "[hub]\nport = \"x\"\n"))
    result = launcher.run("hub", "--config", str(path), cwd=tmp_path)
    assert result.returncode == 2 and f"{path}: hub.port: expected an integer" in result.stderr


def test_payg_hub_exits_2_when_the_hash_variable_is_unset(tmp_path):
    path = write(tmp_path, GOOD)
    env = {k: v for k, v in os.environ.items() if k != "HUB_HASH"} | {"HUB_MQTT": "pw"}
    result = launcher.run("hub", "--config", str(path), cwd=tmp_path, env=env)
    assert result.returncode == 2 and "hub.landlord_password_hash_env" in result.stderr and "HUB_HASH" in result.stderr


def test_the_history_database_is_sqlite_in_the_data_dir_unless_a_postgresql_url_without_a_password(tmp_path):
    from payg.wiring.hub import history_url

    c = load(write(tmp_path, GOOD))
    assert c.database is None and history_url(c) == f"sqlite:///{(tmp_path / 'var' / 'hub-history.sqlite').resolve()}"
    url = "postgresql://payg_hub@127.0.0.1:5432/payg_hub"
    c = load(write(tmp_path, GOOD.replace("[mqtt]", f'database = "{url}"\n[mqtt]')))
    assert c.database == url and history_url(c) == url
    for bad in ("mysql://x@h/db", "sqlite:///tmp/h.sqlite", "postgresql://payg:s3cret@db.example/payg"):
        with pytest.raises(ConfigError) as err:
            load(write(tmp_path, GOOD.replace("[mqtt]", f'database = "{bad}"\n[mqtt]')))
        assert "hub.database" in str(err.value) and "s3cret" not in str(err.value), err.value
