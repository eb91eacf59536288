"""A controller's MQTT bridge, made from its [mqtt] section and its runtime, and started."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from payg.errors import ConfigError

if TYPE_CHECKING:
    from payg.adapters.mqtt.bridge import MqttBridge
    from payg.adapters.mqtt.client import Connection
    from payg.domain.settings import Config, MqttConfig
    from payg.wiring.runtime import Runtime

log = logging.getLogger("payg")


def connection(mqtt: MqttConfig, config_path: str, client_id: str | None = None) -> Connection:
    """The broker's address and login; the password read from its environment variable or owner-only file."""
    from payg.adapters.mqtt.client import Connection
    from payg.adapters.secrets import read_secret

    password = read_secret(mqtt.password, config_path) if mqtt.password is not None else None
    if mqtt.tls_ca_file is not None and not mqtt.tls_ca_file.is_file():
        raise ConfigError(config_path, "mqtt.tls_ca_file", "a readable CA certificate file (PEM)",
                          str(mqtt.tls_ca_file), has_got=True)
    return Connection(mqtt.host, mqtt.port, client_id or mqtt.client, mqtt.username, password, mqtt.tls_ca_file,
                      mqtt.keepalive_s)


def start_bridge(rt: Runtime) -> MqttBridge | None:
    """The bridge subscribed to the metering states and started (None when [mqtt] is off). It never
    blocks: a broker that is down is retried in the background while the controller runs."""
    config: Config = rt.config
    if not config.mqtt.enabled:
        return None
    try:
        from payg.adapters.mqtt.bridge import MqttBridge
        from payg.adapters.mqtt.outbox import Outbox
        from payg.adapters.mqtt.topics import Topics
    except ImportError as exc:
        raise ConfigError(str(config.path), "mqtt.enabled", f"the mqtt extra installed (pip install 'payg[mqtt]'): "
                          f"{exc}", True, has_got=True) from None
    from payg import __version__
    from payg.domain.money import MoneyUnit

    m = config.mqtt
    bridge = MqttBridge(connection(m, str(config.path)), Topics(m.topic_prefix, m.controller),
                        {s.id: s.name for s in config.sockets}, rt.landlord, Outbox(rt.journal.path),
                        discovery_prefix=m.discovery_prefix if m.discovery else None, version=__version__,
                        min_interval_s=0.8 * config.controller.poll_interval_s, money=MoneyUnit.of(config.tariff),
                        clock=rt.clock.now, retention_s=m.event_retention_h * 3600)
    rt.publishers.subscribe(bridge)
    bridge.start()
    rt.mqtt_status = bridge.status  # /metrics reads it
    rt.closers.append(("mqtt", bridge.stop))
    rt.metering.publish()  # the states as of now, so a fresh broker has them before the next tick
    log.info("MQTT: %s:%s, topics %s/%s/...", m.host, m.port, m.topic_prefix, m.controller)
    return bridge


def acl(config: Config) -> str:
    """`payg mqtt-acl`: the lines this controller needs in the broker's ACL, with its command users'."""
    from payg.adapters.mqtt.acl import mosquitto_acl

    m = config.mqtt
    if m.username is None:
        raise ConfigError(str(config.path), "mqtt.username", "the broker user this controller logs in as (the ACL "
                          "names it)", has_got=False)
    return mosquitto_acl(m.topic_prefix, {m.controller: m.username}, m.command_users,
                         discovery_prefix=m.discovery_prefix if m.discovery else None)
