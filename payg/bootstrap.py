"""payg's composition root: read the config, build every object, hand them to the entry points.

`python app.py --config FILE` (app.py calls `main` here) and `payg run --config FILE` are the same (payg/cli).
`build` makes a controller's objects, wired and not started; `serve` starts the loop and the web server and
stops them again; `CliWiring` builds what the other commands need.
Nothing is built at import time, and the ledgers' packages are imported only when configured; what only
some commands need (the journal, the scheduler, the web) is imported by the function that makes it, so that a
command that stops at a bad configuration, or asks the running controller, loads none of it.
"""

from __future__ import annotations

import atexit
import logging
import sys
import threading
import zoneinfo
from collections.abc import Callable
from contextlib import closing, contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from payg.adapters.clocks import SystemClock
from payg.domain.config_keys import made_from
from payg.domain.settings import Config, GpioRelayConfig
from payg.errors import ConfigError, DataDirBusy, RelayError
from payg.ports import DepositPayer, EscrowWatch, PeerDirectory, PeerMessages
from payg.wiring import hub as hub_wiring
from payg.wiring import mqtt as mqtt_wiring
from payg.wiring import notify as notify_wiring
from payg.wiring import scan as scan_wiring
from payg.wiring import xpub as xpub_wiring
from payg.wiring.runtime import Runtime, close_all, profile_dirs, web_dirs
from payg.wiring.tariffs import keep_money_unit, resale_check, socket_schedules

if TYPE_CHECKING:
    from payg.adapters.journal import SqliteJournal
    from payg.ports import Clock, DepositSource, Notifier, PeerLink
    from payg.ports.journal import StatementJournal
    from payg.services.metering import Metering
    from payg.services.statements import StatementDesk
    from payg.web import WebServices
    from payg.web.trade import Trade
    from payg.webkit.security import WebSecrets

log = logging.getLogger("payg")


def load_config(path: str | Path) -> Config:
    from payg.adapters import config as config_module

    return config_module.load(path, profile_dirs())


def open_journal(config: Config) -> SqliteJournal:
    from payg.adapters.journal import SqliteJournal

    config.controller.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    return SqliteJournal(config.controller.data_dir / "journal.sqlite", outbox=config.mqtt.enabled,
                         notify=config.notify.contacts_file is not None)


def build(config: Config, clock: Clock | None = None, notifier: Notifier | None = None) -> Runtime:
    """Every object of a controller, wired, not started. Tests pass a virtual clock."""
    import hardware
    import ledgers
    from payg.adapters.code_keys import load_code_keys
    from payg.adapters.openpaygo import OpenPaygoCodec
    from payg.adapters.peer_link import HttpPeerLink
    from payg.domain.money import Tariff
    from payg.domain.socket import SocketState
    from payg.services.codes import CodeDesk
    from payg.services.deposits import DepositWatcher
    from payg.services.landlord import LandlordDesk
    from payg.services.metering import Metering, MeteringSettings, Publishers
    from payg.services.site import Site

    clock = clock or SystemClock()
    closers: list[tuple[str, Callable[[], None]]] = []

    def made(name: str, close: Callable[[], None]) -> None:
        closers.append((name, close))

    try:
        journal = open_journal(config)
        made("journal", journal.close)
        keep_money_unit(journal, config)
        ledger = build_ledger(config, journal, clock)
        made("ledger", ledger.close)
        hw = hardware.build(config, clock, made)
        sockets = [SocketState(sc.id, sc.name, sc.max_power_w, config.controller.counter_confirmations)
                   for sc in config.sockets]
        c, p, ids = config.controller, config.protections, [s.id for s in config.sockets]
        settings = made_from(MeteringSettings, c, friendly=p.friendly_credit,
                             notices=replace(p.notices, per_socket=tuple(p.per(ids, "warn_hours").items())),
                             friendly_off=frozenset(s.id for s in config.sockets if not s.friendly_credit))
        publishers = Publishers()
        metering = Metering(sockets, hw.relays, hw.reader, journal, clock, Tariff(config.tariff.units_per_wh, 1),
                            settings, lock=threading.RLock(), publisher=publishers,
                            schedules=socket_schedules(config))
        resale_warnings = resale_check(config)
        plan = p.per(ids, "debt_recovery_percent")
        watcher = DepositWatcher(ledger, journal, clock, on_credit=metering.credits_arrived, recovery_percent=plan)
        codes = CodeDesk(metering, journal, OpenPaygoCodec(), load_code_keys(c.data_dir, [s.id for s in sockets]),
                         config.codes.tokens_per_unit, recovery_percent=plan)
        trade = book = supply = None
        peers = HttpPeerLink()
        try:
            trade = ledgers.open_trade(config, lambda: ledger_accounts(config, journal, clock), clock, peers, made)
        except ImportError as exc:
            log.warning("trade is off: the %s backend's trade packages are missing (%s)", config.ledger.backend, exc)
        if trade is not None:
            book, supply = build_trading(config, journal, clock, trade, metering, peers)
        site = Site(metering, watcher, clock, deposit_poll_interval_s=c.deposit_poll_interval_s, supply=supply,
                    own_url=f"http://{config.web.host}:{config.web.port}", notifier=notifier)
        made("site", site.shutdown)
    except BaseException:
        close_all(closers)  # what was made so far
        raise
    return Runtime(config, clock, journal, ledger, hw.meters, hw.relays, publishers, metering,
                   LandlordDesk(metering, journal), watcher, site, codes, trade, book, supply, closers,
                   resale_warnings=tuple(resale_warnings))


def build_ledger(config: Config, journal: SqliteJournal, clock: Clock) -> DepositSource:
    import ledgers

    return ledgers.open_deposit_source(config, lambda: ledger_accounts(config, journal, clock), clock)


def ledger_accounts(config: Config, journal: SqliteJournal, clock: Clock) -> dict[str, int]:
    """Each socket's derivation index, assigned once and kept in the journal (see SqliteJournal.ledger_accounts)."""
    explicit = {s.id: s.account_index for s in config.sockets if s.account_index is not None}
    try:
        return journal.ledger_accounts([s.id for s in config.sockets], explicit, clock.now())
    except ValueError as exc:
        raise ConfigError(str(config.path), "sockets.account_index", f"indices that match the data directory "
                          f"({exc})") from None


def build_trading(config: Config, journal: SqliteJournal, clock: Clock, trade: Trade, metering: Metering,
                  peers: PeerLink):
    """The channel book and supply desk over a trade backend."""
    from payg.services.channels import ChannelBook
    from payg.services.supply import SupplyDesk

    # IOTA's: its escrow sits at an address its sender's controller holds, settled through that controller
    watch = trade if isinstance(trade, EscrowWatch) else None
    directory = trade if isinstance(trade, PeerDirectory) else None
    book = ChannelBook(trade, journal, clock, config.tariff.units_per_wh, peers, escrow_watch=watch,
                       on_credit=metering.credits_arrived)
    supply = SupplyDesk(book, journal, clock, peers, {s.id: s.sell for s in config.sockets if s.sell},
                        {s.id: s.buy for s in config.sockets if s.buy}, peer_directory=directory)
    return book, supply


def web_services(rt: Runtime, secrets: WebSecrets) -> WebServices:
    """What the web entry point is given of a runtime."""
    from payg.adapters import web_sessions
    from payg.adapters.secrets import LandlordPasswordHash
    from payg.domain.money import MoneyUnit
    from payg.web import WebServices
    from payg.web.trade import TradeServices

    trade = None
    if rt.trade is not None and rt.book is not None and rt.supply is not None:  # all three, or none
        trade = TradeServices(rt.trade, rt.book, rt.supply, tuple(s.id for s in rt.config.sockets),
                              peer_messages=rt.trade if isinstance(rt.trade, PeerMessages) else None)
    payer = rt.ledger if isinstance(rt.ledger, DepositPayer) else None  # only the mock ledger is paid from here
    sessions = web_sessions.SqliteSessionStore(rt.config.controller.data_dir / web_sessions.FILE)
    rt.closers.append(("web sessions", sessions.close))
    return WebServices(rt.metering, rt.landlord, rt.journal, rt.ledger, secrets, payer=payer, site=rt.site,
                       trade=trade, settings=rt.config.web, sessions=sessions, codes=rt.codes,
                       protections=rt.config.protections,
                       mqtt_status=lambda: rt.mqtt_status() if rt.mqtt_status is not None else None,
                       server_status=lambda: rt.server_status() if rt.server_status is not None else None,
                       resale_warnings=rt.resale_warnings,
                       money=MoneyUnit.of(rt.config.tariff),
                       password_hash=LandlordPasswordHash(rt.config.web.landlord_password, rt.config.path,
                                                          secrets.password_hash),
                       setup=scan_wiring.setup_services(rt.config))


def serve(config: Config) -> int:
    """Run a controller: every relay open first, then the loop and the web server, until SIGTERM or SIGINT."""
    from payg.adapters.lock import DataDirLock
    from payg.adapters.notify import SystemdNotifier
    from payg.adapters.process import run_until_stopped
    from payg.adapters.scheduler import SchedulerDriver
    from payg.adapters.sqlite import SchemaRefused

    logging.basicConfig(level=config.controller.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for quiet in ("apscheduler", "werkzeug"):
        logging.getLogger(quiet).setLevel(logging.WARNING)
    config.controller.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        lock = DataDirLock(config.controller.data_dir)
    except DataDirBusy as exc:
        print(f"payg: {exc}", file=sys.stderr)
        return 1
    notifier = SystemdNotifier()
    try:
        rt = build(config, notifier=notifier)
    except ConfigError as exc:
        log.error("invalid configuration: %s", exc)
        lock.release()
        return 2
    except (RelayError, SchemaRefused) as exc:  # SchemaRefused: a journal this code did not make; left untouched
        log.error("%s", exc)
        lock.release()
        return 1
    rt.closers.insert(0, ("systemd", notifier.close))
    try:
        rt.site.start()  # every relay open before anything else happens
        rt.site.poll_deposits()  # a ledger on another network stops the start here (ConfigError: exit 2)
        atexit.register(rt.site.shutdown)
        server = serve_web(rt) if config.web.enabled else None
        mqtt_wiring.start_bridge(rt)  # MQTT, when [mqtt] is on
        notify_wiring.start_notifications(rt)  # Apprise, when [notify] names a contacts file
        driver = SchedulerDriver(rt.site)
        rt.closers.append(("scheduler", driver.shutdown))

        def started() -> None:
            driver.start()
            notifier.ready()
            log.info("payg running: %d sockets, ledger %s, web %s", len(config.sockets), rt.ledger.name,
                     f"http://{config.web.host}:{config.web.port}" if server else "off")

        run_until_stopped(started, server.serve_forever if server else None)
    except _Exit as exc:
        return exc.code
    except ConfigError as exc:
        log.error("invalid configuration: %s", exc)
        return 2
    finally:
        notifier.stopping()
        rt.close()
        lock.release()
    return 0


class _Exit(Exception):
    """Stop starting: the exit status, the reason already logged."""

    def __init__(self, code: int):
        self.code = code


def serve_web(rt: Runtime):
    """The web entry point on the configured address, its live pushes subscribed to the metering states."""
    from payg.adapters.secrets import web_secrets
    from payg.web import create_web
    from payg.webkit.proxies import client_resolver, networks
    from payg.webkit.security import WebSecrets
    from payg.webkit.server import HttpServer, ServerLimits

    config = rt.config
    try:
        secrets = WebSecrets(*web_secrets(config.controller.data_dir, config.web.landlord_password, config.path))
    except ConfigError as exc:
        log.error("invalid configuration: %s", exc)
        raise _Exit(2) from None
    web = create_web(web_services(rt, secrets), **web_dirs())
    rt.publishers.subscribe(web.hub)
    web.hub.start()
    rt.closers.append(("live pushes", web.hub.stop))
    try:
        server = HttpServer(web.app, config.web.host, config.web.port, ServerLimits.of(config.web.server),
                            client_of=client_resolver(networks(config.web.trusted_proxies)))
    except OSError as exc:
        log.error("cannot serve on %s:%s: %s", config.web.host, config.web.port, exc)
        raise _Exit(1) from None
    rt.closers.append(("web server", server.server_close))
    rt.server_status = server.status  # /metrics reads it
    return server


class CliWiring:
    """What the commands of payg/cli ask the composition root for (payg.cli.Wiring)."""

    load_config = staticmethod(load_config)
    serve = staticmethod(serve)

    serve_hub = staticmethod(hub_wiring.serve_hub)
    mqtt_acl = staticmethod(mqtt_wiring.acl)
    meter_scanner = staticmethod(scan_wiring.meter_scanner)  # `payg scan`
    account_xpub = staticmethod(xpub_wiring.account_xpub)  # `payg xpub`, on a machine trusted with the phrase

    @staticmethod
    def open_journal(config: Config) -> SqliteJournal | None:
        from payg.adapters.journal import SqliteJournal

        path = config.controller.data_dir / "journal.sqlite"
        return SqliteJournal(path) if path.exists() else None

    @staticmethod
    def statement_desk(config: Config, journal: StatementJournal) -> StatementDesk:
        from payg.domain.money import MoneyUnit
        from payg.services.statements import StatementDesk

        tz = zoneinfo.ZoneInfo(config.web.timezone) if config.web.timezone else None
        return StatementDesk(journal, SystemClock(), tz, MoneyUnit.of(config.tariff))

    @staticmethod
    @contextmanager
    def ledger(config: Config):
        with closing(open_journal(config)) as journal, closing(build_ledger(config, journal, SystemClock())) as ledger:
            yield ledger

    @staticmethod
    @contextmanager
    def lock_data_dir(config: Config):
        from payg.adapters.lock import DataDirLock

        with DataDirLock(config.controller.data_dir):
            yield

    @staticmethod
    def controller_api(config: Config):
        from payg.adapters.controller_api import ControllerApi

        return ControllerApi(config)

    @staticmethod
    def fund_trade_party(config: Config, socket_id: str, amount: int) -> tuple[str, int]:
        import ledgers

        return ledgers.fund_mock_trade_party(config, SystemClock(), socket_id, amount)

    @staticmethod
    def code_keys(config: Config):
        from payg.adapters.code_keys import load_code_keys

        config.controller.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        return load_code_keys(config.controller.data_dir, [s.id for s in config.sockets])

    @staticmethod
    def deploy_contracts(config: Config):
        from payg.wiring.deploy import deploy_contracts

        owner = config.trade.owner
        if owner is None:
            raise ConfigError(str(config.path), "trade.owner", "the socket whose trade party will own the market")
        with closing(open_journal(config)) as journal:
            return deploy_contracts(config, ledger_accounts(config, journal, SystemClock())[owner])

    @staticmethod
    def gpio_relay(relay: GpioRelayConfig):
        from hardware import make_gpio_relay

        return make_gpio_relay(relay)

    @staticmethod
    def force_relay_off(relay: GpioRelayConfig) -> None:
        from hardware import gpio_relay_off

        gpio_relay_off(relay)

    @staticmethod
    def meter_profile(name: str):
        from payg.adapters.config.profiles import load_profile

        return load_profile(name, list(profile_dirs()))

    @staticmethod
    def modbus_probe(port: str, profile, *, baud: int, parity: str, timeout_s: float, local_echo: bool):
        from hardware.modbus import BusSettings, ModbusProbe

        return ModbusProbe(BusSettings(port, baud, parity, profile.serial.stopbits, timeout_s, local_echo), profile,
                           SystemClock())


def main(argv: list[str] | None = None) -> int:
    from payg import cli

    return cli.main(argv, CliWiring())

