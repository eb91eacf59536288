"""The [mqtt] section: the broker, this controller's name in the topics, who may send commands."""

from __future__ import annotations

import re
from pathlib import Path

from payg.adapters.config.tables import ENV_NAME, Table, fill, read_key
from payg.domain.settings import MqttConfig, SecretRef

# A topic level of ours: no wildcards, no separators, nothing a broker or Home Assistant treats specially.
LEVEL = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
PREFIX = re.compile(r"^[A-Za-z0-9_-]{1,64}(/[A-Za-z0-9_-]{1,64}){0,3}$")


def mqtt(t: Table, base_dir: Path | None) -> MqttConfig:
    if t.has("password"):
        raise t.error("password", "no password in the configuration file: name an environment variable "
                      "(password_env) or an owner-only file (password_file)", "(hidden)")
    given = [k for k in ("password_env", "password_file") if t.has(k)]
    if len(given) > 1:
        raise t.error("password_file", "only one of password_env or password_file", has_got=False)
    password = None
    if given == ["password_env"]:
        name = t.string("password_env")
        if not ENV_NAME.match(name):
            raise t.error("password_env", "the name of an environment variable, such as PAYG_MQTT_PASSWORD", name)
        password = SecretRef(env=name, key=t.key("password_env"), what="the MQTT password")
    elif given:
        password = SecretRef(file=_path(t, "password_file", base_dir), key=t.key("password_file"),
                             what="the MQTT password")
    users = t.raw("command_users", [], "a list of broker user names")
    if not isinstance(users, list) or not all(isinstance(u, str) and u.strip() for u in users):
        raise t.error("command_users", "a list of broker user names, such as [\"landlord\", \"homeassistant\"]",
                      users)
    config = fill(t, MqttConfig, base_dir, password=password, command_users=tuple(u.strip() for u in users),
                  port=read_key(t, MqttConfig, "port", default=8883 if t.has("tls_ca_file") else MqttConfig.port))
    if password is not None and config.username is None:
        raise t.error("username", "a broker user name to go with the password", has_got=False)
    for name, pattern in (("controller", LEVEL), ("topic_prefix", PREFIX), ("discovery_prefix", PREFIX)):
        _level(t, name, getattr(config, name), pattern)
    if config.client_id is not None and not 1 <= len(config.client_id) <= 128:
        raise t.error("client_id", "1 to 128 characters", config.client_id)
    return config


def _level(t: Table, name: str, value: str, pattern: re.Pattern) -> None:
    if not pattern.match(value):
        raise t.error(name, "letters, digits, '-' and '_' (a topic level: no '+', '#', '$' or spaces)"
                      + (", up to 4 levels joined by '/'" if pattern is PREFIX else ""), value)


def _path(t: Table, name: str, base_dir: Path | None) -> Path:
    path = Path(t.string(name))
    return base_dir / path if not path.is_absolute() and base_dir is not None else path
