"""The hub's file ([hub], `payg hub`): its shape, like the controller's in payg/domain/settings.py.

Its [mqtt] table is a controller's MqttConfig and its [hub.server] a ServerConfig, read by the same parsers
(payg/adapters/config/hub.py); the words it shares with a controller's [web] are the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from payg.domain.config_keys import SecretRef, not_a_key, setting
from payg.domain.settings import LANGUAGES, LEVELS, LOG_LEVELS, SESSION_HOURS, SESSION_IDLE, MqttConfig, ServerConfig


@dataclass(frozen=True)
class HubConfig:
    """The fleet view's own file ([hub] and [mqtt], `payg hub`): it reads what the controllers publish on one broker
    and keeps no money of its own, so it has no ledger, journal or sockets."""

    path: Path = not_a_key()
    data_dir: Path = setting(doc="its web secret, API token and landlord sessions")
    mqtt: MqttConfig = not_a_key()  # the [mqtt] table; the hub's user must be a command user in the ACL
    landlord_password: SecretRef | None = setting(
        None, "where the landlord's password hash is: every page of the hub needs the landlord's login",
        key="landlord_password_hash_env` / `landlord_password_hash_file", kind="string", shown="required (one of "
        "them)", by_hand=True)
    host: str = setting("127.0.0.1", "an IP address to listen on (a reverse proxy in front for other machines)")
    port: int = setting(5080, "TCP port", ge=1, le=65535)
    topic_prefix: str = setting("payg", "the controllers' `[mqtt] topic_prefix`", kind=LEVELS)
    command_timeout_s: float = setting(10.0, "an action with no response by then is shown as timed out", gt=0)
    session_hours: float = setting(12.0, SESSION_HOURS, gt=0, le=24 * 31)
    session_idle_minutes: float = setting(60.0, SESSION_IDLE, ge=1)
    secure_cookies: bool = setting(False, "`true` behind an HTTPS proxy: cookies are sent over HTTPS only")
    trusted_proxies: tuple[str, ...] = setting((), "reverse proxies whose `X-Forwarded-For` names the client (see "
                                               "[Many buildings](hub.md#setting-it-up)); from anyone else "
                                               "the header is ignored",
                                               kind="list of addresses or CIDR blocks", by_hand=True)
    database: str | None = setting(
        None, "where the fleet's history is kept (events, and per socket per day the energy, top-ups and closing "
        "balance): a `postgresql://user@host:port/dbname` URL, its password from libpq's `PGPASSWORD` or "
        "`~/.pgpass`, never this file; unset: an SQLite file `hub-history.sqlite` in `data_dir`, enough for one "
        "hub of a small landlord", kind="PostgreSQL URL", shown="unset (SQLite in data_dir)")
    mqtt_workers: int = setting(0, "processes that share the controllers' messages through MQTT shared subscriptions "
                           "(`$share/<client id>/...`), each taking a part of the fleet's traffic, behind this one "
                           "hub's pages; 0: the hub reads every message itself, enough for a few thousand sockets "
                           "(see [Workers](hub.md#workers))", ge=0, le=64)
    log_level: str = setting("info", "log verbosity (to standard error)", choices=LOG_LEVELS)
    locale: str = setting("en_GB", "how the fleet page writes the money of a controller with a `[tariff] "
                          "currency` (its code comes with its states)", kind="locale name")
    language: str = setting("en", "the pages' language when the switcher and the browser's `Accept-Language` name "
                            "none payg has", choices=LANGUAGES)
    server: ServerConfig = setting(doc="`[hub.server]`: the same keys and defaults as `[web.server]`",
                                   factory=ServerConfig, shown="as `[web.server]`", by_hand=True)
