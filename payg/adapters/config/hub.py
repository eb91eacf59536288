"""The hub's own file (`payg hub --config FILE`): a [hub] table and an [mqtt] table, nothing else.

The hub is not a controller: no ledger, no sockets, no journal. Its [mqtt] table is read by the
controller's parser (payg/adapters/config/mqtt.py), so the broker, the login and TLS are written the
same way in both files; the keys that only make sense for a controller there (its name in the topics,
its command users, Home Assistant discovery) are refused with a word on where they belong. Every error
names the file and the key, like the controller's.
"""

from __future__ import annotations

import ipaddress
from dataclasses import replace
from pathlib import Path

import babel

from payg.adapters.config import _proxies as trusted_proxies
from payg.adapters.config.mqtt import PREFIX
from payg.adapters.config.mqtt import mqtt as mqtt_table
from payg.adapters.config.server import server_table
from payg.adapters.config.tables import ENV_NAME, Table, read_toml, values
from payg.domain.hub_settings import HubConfig
from payg.domain.settings import SecretRef
from payg.errors import ConfigError

DEFAULT_CLIENT_ID = "payg-hub"
# [mqtt] keys of a controller's file that the hub has no use for, and why.
CONTROLLER_ONLY = {
    "enabled": "the hub always uses the broker; leave it out",
    "controller": "the hub has no name in the topics (it reads every controller's); leave it out",
    "command_users": "the broker's ACL says who may command; the hub's user must be one of them (payg mqtt-acl)",
    "discovery": "Home Assistant discovery is a controller's; leave it out",
    "discovery_prefix": "Home Assistant discovery is a controller's; leave it out",
    "topic_prefix": "the hub's topic prefix is hub.topic_prefix",
    "event_retention_h": "a controller keeps its events for replays; the hub keeps none",
}


def parse(data: dict, file: str, base_dir: Path | None = None) -> HubConfig:
    root = Table(file, "", data)
    if "hub" not in data:
        raise ConfigError(file, "[hub]", "a [hub] section (with at least data_dir and landlord_password_hash_env "
                          "or landlord_password_hash_file)")
    h = root.table("hub")
    hub = values(h, HubConfig, base_dir, landlord_password=_password(h, base_dir),
                 trusted_proxies=trusted_proxies(h),  # read and checked as a controller's [web] trusted_proxies
                 server=server_table(h.table("server", {})))
    try:
        ipaddress.ip_address(hub["host"])
    except ValueError:
        raise h.error("host", "an IP address to listen on, such as \"127.0.0.1\" (a reverse proxy in front for "
                      "other machines)", hub["host"]) from None
    if not PREFIX.match(hub["topic_prefix"]):
        raise h.error("topic_prefix", "the controllers' [mqtt] topic_prefix: letters, digits, '-' and '_', up to 4 "
                      "levels joined by '/'", hub["topic_prefix"])
    database = hub["database"]
    if database is not None and (not database.startswith("postgresql://") or "@" in database
                                 and ":" in database.split("://", 1)[1].split("@", 1)[0]):
        raise h.error("database", "a PostgreSQL URL such as \"postgresql://payg@127.0.0.1:5432/payg_hub\", with no "
                      "password in it (libpq reads PGPASSWORD or ~/.pgpass); leave it out for the SQLite file in "
                      "data_dir", database.split("@")[-1] if "@" in database else database)
    try:
        babel.Locale.parse(hub["locale"])
    except (ValueError, babel.UnknownLocaleError):
        raise h.error("locale", 'a locale such as "en_GB", "fr_FR" or "sw_KE"', hub["locale"]) from None
    h.finish()
    if "mqtt" not in data:
        raise ConfigError(file, "[mqtt]", "an [mqtt] section: the broker the controllers publish to (host, port, "
                          "username, password_env or password_file)")
    mt = root.table("mqtt")
    for key, why in CONTROLLER_ONLY.items():
        if mt.has(key):
            raise mt.error(key, f"no such key in a hub's file ({why})", mt.data[key])
    mqtt = mqtt_table(mt, base_dir)
    mt.finish()
    root.finish()
    mqtt = replace(mqtt, enabled=True, topic_prefix=hub["topic_prefix"], client_id=mqtt.client_id or DEFAULT_CLIENT_ID)
    return HubConfig(path=Path(file), mqtt=mqtt, **hub)


def load(path: str | Path) -> HubConfig:
    """Read and validate a hub file; relative paths in it are taken from the working directory, as a
    controller's are."""
    file = str(path)
    data = read_toml(path)
    return parse(data, file)


def _password(h: Table, base_dir: Path | None) -> SecretRef:
    """Where the landlord's password hash is: required, since every page of the hub is the landlord's."""
    for refused in ("landlord_password", "landlord_password_hash"):
        if h.has(refused):
            raise h.error(refused, "no password or hash in the configuration file: name an environment variable "
                          "(landlord_password_hash_env) or an owner-only file (landlord_password_hash_file) "
                          "holding the hash that `payg password` prints", "(hidden)")
    given = [k for k in ("landlord_password_hash_env", "landlord_password_hash_file") if h.has(k)]
    if len(given) != 1:
        raise h.error("landlord_password_hash_env", "exactly one of landlord_password_hash_env (an environment "
                      "variable's name) or landlord_password_hash_file (an owner-only file) holding the hash that "
                      "`payg password` prints: every page of the hub needs the landlord's login", has_got=False)
    what = "the landlord's password hash"
    if given[0] == "landlord_password_hash_env":
        name = h.string("landlord_password_hash_env")
        if not ENV_NAME.match(name):
            raise h.error("landlord_password_hash_env", "the name of an environment variable, such as "
                          "PAYG_HUB_LANDLORD_HASH", name)
        return SecretRef(env=name, key=h.key("landlord_password_hash_env"), what=what)
    return SecretRef(file=_path(h, "landlord_password_hash_file", base_dir),
                     key=h.key("landlord_password_hash_file"), what=what)


def _path(t: Table, name: str, base_dir: Path | None) -> Path:
    path = Path(t.string(name))
    return base_dir / path if not path.is_absolute() and base_dir is not None else path
