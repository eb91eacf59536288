"""The [mqtt] section: the broker, this controller's name in the topics, who may send commands."""

from __future__ import annotations

import re
from pathlib import Path

from payg.adapters.config.tables import ENV_NAME, Table
from payg.domain.settings import MqttConfig, SecretRef

# A topic level of ours: no wildcards, no separators, nothing a broker or Home Assistant treats specially.
LEVEL = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
PREFIX = re.compile(r"^[A-Za-z0-9_-]{1,64}(/[A-Za-z0-9_-]{1,64}){0,3}$")


def mqtt(t: Table, base_dir: Path | None) -> MqttConfig:
    d = MqttConfig()
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
    username = t.string("username") if t.has("username") else None
    if password is not None and username is None:
        raise t.error("username", "a broker user name to go with the password", has_got=False)
    ca = _path(t, "tls_ca_file", base_dir) if t.has("tls_ca_file") else None
    users = t.raw("command_users", [], "a list of broker user names")
    if not isinstance(users, list) or not all(isinstance(u, str) and u.strip() for u in users):
        raise t.error("command_users", "a list of broker user names, such as [\"landlord\", \"homeassistant\"]",
                      users)
    config = MqttConfig(
        enabled=t.boolean("enabled", d.enabled),
        host=t.string("host", d.host),
        port=t.integer("port", 8883 if ca else d.port, minimum=1, maximum=65535),
        controller=_level(t, "controller", d.controller, LEVEL),
        client_id=t.string("client_id") if t.has("client_id") else None,
        username=username,
        password=password,
        tls_ca_file=ca,
        topic_prefix=_level(t, "topic_prefix", d.topic_prefix, PREFIX),
        keepalive_s=t.integer("keepalive_s", d.keepalive_s, minimum=5, maximum=3600),
        command_users=tuple(u.strip() for u in users),
        discovery=t.boolean("discovery", d.discovery),
        discovery_prefix=_level(t, "discovery_prefix", d.discovery_prefix, PREFIX),
    )
    if config.client_id is not None and not 1 <= len(config.client_id) <= 128:
        raise t.error("client_id", "1 to 128 characters", config.client_id)
    return config


def _level(t: Table, name: str, default: str, pattern: re.Pattern) -> str:
    value = t.string(name, default)
    if not pattern.match(value):
        raise t.error(name, "letters, digits, '-' and '_' (a topic level: no '+', '#', '$' or spaces)"
                      + (", up to 4 levels joined by '/'" if pattern is PREFIX else ""), value)
    return value


def _path(t: Table, name: str, base_dir: Path | None) -> Path:
    path = Path(t.string(name))
    return base_dir / path if not path.is_absolute() and base_dir is not None else path
