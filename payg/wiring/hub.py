"""`payg hub --config FILE`: the fleet view, composed from its own file and run until SIGTERM or SIGINT.

`build_hub` makes the parts in order (the fleet model, the history archive, the MQTT link feeding both, the
web app with its live pushes, the HTTP server) and returns them with `close()`, which stops them in reverse; `serve_hub`
starts them and waits for a signal. A benchmark or a test can call `build_hub` (or `start_link` alone)
in-process. The hub keeps no money: nothing here opens a journal or a ledger.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from payg.adapters.clocks import SystemClock
from payg.errors import ConfigError
from payg.ports import Clock

if TYPE_CHECKING:
    from payg.adapters.fleet_archive import FleetArchive
    from payg.adapters.mqtt.hub_link import FleetSink, HubLink
    from payg.domain.hub_settings import HubConfig
    from payg.hub.fleet import Fleet
    from payg.hub.web import HubWeb
    from payg.webkit.server import HttpServer
    from payg.wiring.hub_workers import HubWorkers

log = logging.getLogger("payg.hub")

SESSIONS_FILE = "hub-sessions.sqlite"
HISTORY_FILE = "hub-history.sqlite"  # the fleet's history when no [hub] database is configured
# With workers, one controller's events reach the front through several pipes, so a gap may be one still on its way:
# it is asked for once it is this old (a worker writes an event at once; states wait at most 50 ms).
WORKERS_REPLAY_SETTLE_S = 1.0


@dataclass
class Hub:
    config: HubConfig
    fleet: Fleet
    link: HubLink | None
    archive: FleetArchive | None = None
    web: HubWeb | None = None
    server: HttpServer | None = None
    workers: HubWorkers | None = None
    closers: list[tuple[str, Callable[[], None]]] = field(default_factory=list)

    def close(self) -> None:
        """Stop everything that was started, the last made first; one failure does not keep the rest running."""
        while self.closers:
            name, close = self.closers.pop()
            try:
                close()
            except Exception:
                log.exception("hub: closing %s failed", name)


def start_link(config: HubConfig, sink: FleetSink) -> HubLink:
    """The MQTT link of a hub configuration feeding `sink` (the Fleet, or the Fleet and the archive), started (it
    connects in the background). With `[hub] mqtt_workers`, the link reads only the answers to what it sends; the
    workers read the rest."""
    from payg.adapters.mqtt.hub_link import HubLink, ingest_subscriptions, response_subscriptions
    from payg.wiring.mqtt import connection

    topics = drop = None
    if config.mqtt_workers:  # and not what a hub without workers subscribed to in this persistent session
        topics = response_subscriptions(config.topic_prefix)
        drop = [topic for topic, _ in ingest_subscriptions(config.topic_prefix)]
    link = HubLink(connection(config.mqtt, str(config.path), config.mqtt.client), config.topic_prefix, sink,
                   topics=topics, drop=drop)
    link.start()
    return link


def start_ingest(hub: Hub, sink: FleetSink) -> None:
    """The hub's link, and its workers when it has some, feeding `sink`; each added to what `hub.close()` stops
    (the workers first). The sessions of workers a previous run had and this one has not are forgotten first,
    on a thread of its own."""
    import threading

    from payg.wiring.hub_workers import HubWorkers, forget_stale

    threading.Thread(target=forget_stale, args=(hub.config,), name="payg-hub-forget-workers", daemon=True).start()
    link = hub.link = start_link(hub.config, sink)
    hub.closers.append(("mqtt", link.stop))
    if hub.config.mqtt_workers:
        workers = hub.workers = HubWorkers(hub.config, sink, hub.config.mqtt_workers)
        workers.start()
        hub.closers.append(("workers", workers.stop))


def history_url(config: HubConfig) -> str:
    """The archive's database: the configured PostgreSQL, else the SQLite file in the data directory."""
    return config.database or f"sqlite:///{(config.data_dir / HISTORY_FILE).resolve()}"


def build_hub(config: HubConfig, clock: Clock | None = None, *, web: bool = True, port: int | None = None,
              receipts_max: int = 10_000) -> Hub:
    """Everything of a hub, started but for the server's loop (`hub.server.serve_forever()`). ConfigError when
    a secret is missing or unreadable; OSError when the port is taken. `port` overrides the configured one
    (0: any free port, for tests); `web=False` makes only the fleet and its link (no archive, no pages: a
    benchmark's hub); `receipts_max` is how many
    state messages' receive times `hub.fleet.receipts()` keeps (a benchmark's state-to-hub delays)."""
    from payg.adapters.fleet_archive import ArchiveError, FleetArchive
    from payg.adapters.secrets import (
        API_TOKEN_FILE,
        SESSION_SECRET_FILE,
        LandlordPasswordHash,
        landlord_password_hash,
        owner_only_secret,
    )
    from payg.adapters.web_sessions import SqliteSessionStore
    from payg.hub.fleet import Fleet
    from payg.hub.recording import RecordingSink

    clock = clock or SystemClock()
    fleet = Fleet(clock, command_timeout_s=config.command_timeout_s, receipts_max=receipts_max,
                  replay_settle_s=WORKERS_REPLAY_SETTLE_S if config.mqtt_workers else 0.0)
    if not web:
        hub = Hub(config, fleet, None)
        start_ingest(hub, fleet)
        return hub
    from payg.hub.web import HubServices, create_hub_web
    from payg.webkit.proxies import client_resolver, networks
    from payg.webkit.security import WebSecrets
    from payg.webkit.server import HttpServer, ServerLimits

    ref = config.landlord_password
    if ref is None or (ref.env is not None and not os.environ.get(ref.env, "").strip()):
        # (a controller goes on without its landlord view; the hub would be a page nobody may open)
        raise ConfigError(str(config.path), ref.key if ref else "hub.landlord_password_hash_env",
                          f"the environment variable {ref.env if ref else '...'} to hold the landlord's password "
                          "hash (it is not set or empty; `payg password` prints one)")
    password = landlord_password_hash(ref, config.path)
    try:
        config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise ConfigError(str(config.path), "hub.data_dir", f"a directory the hub may create and write "
                          f"({exc.strerror})", str(config.data_dir), has_got=True) from None
    secrets = WebSecrets(owner_only_secret(config.data_dir / SESSION_SECRET_FILE),
                         owner_only_secret(config.data_dir / API_TOKEN_FILE), password)
    hub = Hub(config, fleet, None)
    try:
        store = SqliteSessionStore(config.data_dir / SESSIONS_FILE)
        hub.closers.append(("sessions", store.close))
        try:
            archive = hub.archive = FleetArchive(history_url(config), clock)
        except ArchiveError as exc:
            raise ConfigError(str(config.path), "hub.database", "a database the hub can use", str(exc),
                              has_got=True) from None
        archive.start()  # it connects, migrates and writes on its own thread; a database away is retried
        hub.closers.append(("history", archive.stop))
        start_ingest(hub, RecordingSink(fleet, archive))
        assert hub.link is not None
        hub.web = create_hub_web(HubServices(
            fleet, hub.link, secrets, store, clock,
            password_hash=LandlordPasswordHash(config.landlord_password, config.path, password),
            session_hours=config.session_hours, session_idle_minutes=config.session_idle_minutes,
            secure_cookies=config.secure_cookies, locale=config.locale,
            language=config.language, trusted_proxies=config.trusted_proxies, history=archive), **_web_dirs())
        hub.web.pusher.start()
        hub.closers.append(("live pushes", hub.web.pusher.stop))
        hub.server = HttpServer(hub.web.app, config.host, config.port if port is None else port,
                                ServerLimits.of(config.server),
                                client_of=client_resolver(networks(config.trusted_proxies)))
        hub.closers.append(("web server", hub.server.server_close))
    except BaseException:
        hub.close()
        raise
    return hub


def _web_dirs() -> dict[str, Path]:
    """The pages' files, where the composition root finds the controller's."""
    from payg.wiring.runtime import web_dirs

    return web_dirs()


def serve_hub(path: str | None) -> int:
    """Run the hub of the file at `path` until SIGTERM or SIGINT: 0 after a signal, 2 on an invalid
    configuration (the file and key named), 1 when it cannot listen."""
    from payg.adapters.config.hub import load
    from payg.adapters.process import run_until_stopped

    if path is None:
        print("payg: the hub needs its own configuration file: payg hub --config hub.toml "
              "(see config/hub.example.toml)", file=sys.stderr)
        return 2
    try:
        config = load(path)
    except ConfigError as exc:
        print(f"payg: invalid configuration: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        hub = build_hub(config)
    except ConfigError as exc:
        print(f"payg: invalid configuration: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        log.error("cannot serve on %s:%s: %s", config.host, config.port, exc)
        return 1
    server = hub.server
    assert server is not None  # build_hub makes one unless asked for no web
    try:
        def started() -> None:
            log.info("payg hub running: http://%s:%s, broker %s:%s, topics %s/+/...", config.host,
                     server.port, config.mqtt.host, config.mqtt.port, config.topic_prefix)

        run_until_stopped(started, server.serve_forever)
    finally:
        hub.close()
    log.info("payg hub stopped")
    return 0
