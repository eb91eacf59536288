"""GET /metrics: one controller's figures in Prometheus' text format, for the API token or a scraper on the machine.

The figures already live in the objects that keep them (each socket's state and meter errors in Metering, the
Site's counts, the journal's cursor and file), so a collector reads them at scrape time instead of copying them
into metric objects on every tick; only the tick's duration, a distribution, is observed as it happens
(`Site.on_tick`) into a Histogram. Both sit on a registry of this app's own, never prometheus_client's global one:
two controllers in one process (the tests do it) must neither share nor collide. Time is the metering clock's.

Who may scrape is decided in `_guard` (payg/web/__init__.py) with `from_loopback` below.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from flask import Blueprint, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from payg.ports import Journal
from payg.services.site import Site

PATH = "/metrics"
# A tick reads every meter and writes one SQLite transaction: about a millisecond on a PC, tens on a Raspberry Pi,
# up to the bus deadline (0.8 poll intervals) when a Modbus meter is silent.
TICK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
# Headers a reverse proxy adds; on a request the trusted-proxy middleware did not resolve they mean "not local".
FORWARDING = ("HTTP_X_FORWARDED_FOR", "HTTP_FORWARDED", "HTTP_X_REAL_IP")


def from_loopback(environ: dict) -> bool:
    """The direct peer is this machine (127.0.0.0/8, ::1) and nobody else's request was forwarded through it.

    Behind a proxy of `[web] trusted_proxies`, REMOTE_ADDR is already the client's (payg/webkit/proxies.py). A proxy on
    this machine that is not listed there would pass every client off as local, so a request with forwarding
    headers the middleware did not resolve is not taken for local."""
    try:
        ip = ipaddress.ip_address(environ.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    ip = getattr(ip, "ipv4_mapped", None) or ip
    unresolved = "payg.proxy_peer" not in environ and any(environ.get(h) for h in FORWARDING)
    return ip.is_loopback and not unresolved


def cursor_number(cursor: str | None) -> int | None:
    """The deposit cursor as a number: the mock ledger's sequence and IOTA's checkpoint are integers, Ethereum's
    `<block>:<hash>` gives its block. Any other shape has none."""
    head = (cursor or "").partition(":")[0]
    return int(head) if head.isdigit() else None


def journal_bytes(journal: Journal) -> int | None:
    """The journal's SQLite file plus its write-ahead log; None for a journal that is not a file."""
    path = getattr(journal, "path", None)
    if not isinstance(path, (str, os.PathLike)):
        return None
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return None
    try:
        return size + path.with_name(path.name + "-wal").stat().st_size
    except FileNotFoundError:
        return size


class ControllerCollector(Collector):
    """Every socket's and the controller's figures, read from the live objects on each scrape."""

    def __init__(self, site: Site, journal: Journal, mqtt_status: Callable[[], dict | None] | None = None,
                 server_status: Callable[[], dict | None] | None = None):
        self.site = site
        self.journal = journal
        self.mqtt_status = mqtt_status
        self.server_status = server_status
        self.since = site.metering.clock.now()  # the lag's start while no deposit poll has succeeded yet

    def collect(self) -> Iterator[Metric]:
        yield from self._sockets()
        yield from self._controller()
        status = self.mqtt_status() if self.mqtt_status is not None else None
        if status is not None:
            yield from self._mqtt(status)
        server = self.server_status() if self.server_status is not None else None
        if server is not None:
            yield from self._server(server)

    def _server(self, status: dict) -> Iterator[Metric]:
        yield GaugeMetricFamily("payg_http_connections", "Open connections to the web server.",
                                value=status["connections"])
        yield GaugeMetricFamily("payg_http_live_connections", "WebSockets and Socket.IO long-polls being served.",
                                value=status["live"])
        yield GaugeMetricFamily("payg_http_buffered_bytes", "Bytes the web server holds: request bodies and answers "
                                "their clients have not read yet (bounded by [web.server] buffer_budget_kib).",
                                value=status["buffered_bytes"])
        failures = CounterMetricFamily("payg_http_failures", "Exceptions the web server contained, by stage: each "
                                       "closed one connection and nothing else.", labels=["stage"])
        for stage, n in status["failures"].items():
            failures.add_metric([stage], n)
        yield failures
        refused = CounterMetricFamily("payg_http_refused", "Requests the web server answered itself (malformed, too "
                                      "large, too slow, over a limit), by status.", labels=["status"])
        for code, n in sorted(status["refused"].items()):
            refused.add_metric([str(code)], n)
        yield refused

    def _mqtt(self, status: dict) -> Iterator[Metric]:
        yield GaugeMetricFamily("payg_mqtt_connected", "1 while the controller is connected to its MQTT broker.",
                                value=1 if status["connected"] else 0)
        if status["outbox"] is not None:  # None: the bridge has stopped
            yield GaugeMetricFamily("payg_mqtt_outbox_events", "Events written to the journal's outbox and not yet "
                                    "acknowledged by the broker (sent once it answers).", value=status["outbox"])
        handled = CounterMetricFamily("payg_mqtt_messages", "MQTT messages handled since the start: states and "
                                      "events published, commands run and commands refused.", labels=["kind"])
        for kind in ("states", "events", "commands", "refused"):
            handled.add_metric([kind], status[kind])
        yield handled

    def _sockets(self) -> Iterator[Metric]:
        ctl = self.site.metering
        balances = {st.id: st.balance for st in ctl.states()}
        info = GaugeMetricFamily("payg_socket_info", "A socket of this controller and its name (always 1).",
                                 labels=["socket", "name"])
        energy = CounterMetricFamily("payg_socket_energy_joules", "The socket's meter counter as last read, in "
                                     "joules (Wh x 3600); it restarts when the meter is reset.", labels=["socket"])
        units = GaugeMetricFamily("payg_socket_balance_units", "Credit the socket may use, in journal units "
                                  "(an integer; negative: debt).", labels=["socket"])
        tokens = GaugeMetricFamily("payg_socket_balance_tokens", "Credit the socket may use, in tokens.",
                                   labels=["socket"])
        relay = GaugeMetricFamily("payg_socket_relay_on", "1 while the socket's relay is closed (power on), else 0.",
                                  labels=["socket"])
        errors = CounterMetricFamily("payg_socket_meter_errors", "Ticks on which the socket's meter gave no "
                                     "reading (failed, timed out, busy bus).", labels=["socket"])
        with ctl.lock:
            for sid, s in ctl.sockets.items():
                info.add_metric([sid, s.name], 1)
                if s.reading is not None:
                    energy.add_metric([sid], float(s.reading.energy_wh * 3600))
                if sid in balances:
                    units.add_metric([sid], balances[sid].units)
                    tokens.add_metric([sid], balances[sid].tokens)
                relay.add_metric([sid], 1 if s.relay_closed else 0)
                errors.add_metric([sid], ctl.meter_errors.get(sid, 0))
        yield from (info, energy, units, tokens, relay, errors)

    def _controller(self) -> Iterator[Metric]:
        site, watcher = self.site, self.site.watcher
        now = site.metering.clock.now()
        ledger = [watcher.source.name]
        yield CounterMetricFamily("payg_ticks_failed", "Ticks that failed and opened every relay.",
                                  value=site.failed_ticks)
        polls = CounterMetricFamily("payg_deposit_poll_errors", "Deposit polls that could not reach the ledger.",
                                    labels=["ledger"])
        polls.add_metric(ledger, site.ledger_errors)
        yield polls
        lag = GaugeMetricFamily("payg_deposit_watcher_lag_seconds", "Seconds since the last deposit poll that "
                                "reached the ledger (since the web started, while none has).", labels=["ledger"])
        lag.add_metric(ledger, max(0.0, now - (site.last_poll_at if site.last_poll_at is not None else self.since)))
        yield lag
        cursor = GaugeMetricFamily("payg_ledger_cursor", "The deposit cursor as a number (the mock ledger's "
                                   "sequence, Ethereum's block, IOTA's checkpoint); no sample while there is none "
                                   "or it is not numeric.", labels=["ledger"])
        number = cursor_number(watcher.journal.cursor(watcher.cursor_name))
        if number is not None:
            cursor.add_metric(ledger, number)
        yield cursor
        size = journal_bytes(self.journal)
        if size is not None:
            yield GaugeMetricFamily("payg_journal_bytes", "The journal's SQLite file plus its write-ahead log, "
                                    "in bytes.", value=size)


class ControllerMetrics:
    """The registry of one web app: the collector, and the tick histogram that the Site feeds."""

    def __init__(self, site: Site, journal: Journal, mqtt_status: Callable[[], dict | None] | None = None,
                 server_status: Callable[[], dict | None] | None = None):
        self.registry = CollectorRegistry(auto_describe=False)
        self.tick_seconds = Histogram("payg_tick_duration_seconds", "How long each tick (metering, billing, the "
                                      "relays) took, failed ones included, in seconds.", buckets=TICK_BUCKETS,
                                      registry=self.registry)
        self.registry.register(ControllerCollector(site, journal, mqtt_status, server_status))
        site.on_tick = self.tick_seconds.observe

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def blueprint(metrics: ControllerMetrics) -> Blueprint:
    bp = Blueprint("metrics", __name__)

    @bp.get(PATH)
    def scrape():
        return Response(metrics.exposition(), content_type=CONTENT_TYPE_LATEST)

    return bp
