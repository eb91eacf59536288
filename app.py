"""payg's composition root: read the config, build every object, start the loop and the web server.

`python app.py --config FILE` and `payg run --config FILE` are the same.
Nothing is built at import time.
"""

from __future__ import annotations

import atexit
import fcntl
import logging
import os
import signal
import sys
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent
log = logging.getLogger("payg")


@dataclass
class Runtime:
    config: object
    clock: object
    journal: object
    ledger: object
    controller: object
    watcher: object
    meters: dict
    relays: dict
    buses: dict
    trade: object = None     # PeerTrade + PaymentChannel, or None when the ledger has no market configured
    book: object = None      # ChannelBook
    supply: object = None    # SupplyDesk


def profile_dirs() -> tuple[Path, ...]:
    """Where meter profiles are found by name: the project's config/meters, then the installed copy."""
    return (ROOT / "config" / "meters", Path(sys.prefix) / "share" / "payg" / "meters")


def web_dirs() -> dict[str, Path]:
    """The pages' templates, own static files and browser libraries: the project's folders in a
    source tree, else the copies `pip install` put under share/payg (see pyproject.toml)."""
    shared = Path(sys.prefix) / "share" / "payg"
    source = {"templates": ROOT / "templates", "static": ROOT / "static", "assets": ROOT / "node_modules"}
    if source["templates"].is_dir():
        return source
    return {"templates": shared / "templates", "static": shared / "static", "assets": shared / "assets"}


def load_config(path):
    from payg.adapters import config as config_module

    return config_module.load(path, profile_dirs())


def build_relay(rc, clock):
    if rc.kind == "gpio":
        from hardware.gpio_relay import GpioRelay

        return GpioRelay(rc.pin, rc.active_low)
    from hardware.simulated import SimulatedRelay

    return SimulatedRelay(clock)


def build_meter(sc, relay, clock, data_dir: Path, buses: dict):
    mc = sc.meter
    if mc.kind == "modbus":
        from hardware.modbus.bus import BusSettings, ModbusBus, ModbusMeter

        bus = buses.get(mc.bus_key)
        if bus is None:
            bus = buses[mc.bus_key] = ModbusBus(BusSettings(mc.port, mc.baud, mc.parity, mc.stopbits, mc.timeout_s,
                                                         mc.local_echo))
        return ModbusMeter(bus, mc.address, mc.profile, clock)
    from hardware.simulated import LoadModel, SimulatedMeter

    state_path = None
    if mc.persist:
        (data_dir / "simulated").mkdir(exist_ok=True, mode=0o700)
        state_path = data_dir / "simulated" / f"{sc.id}.json"
    return SimulatedMeter(clock, LoadModel(mc.load), relay, mc.voltage_v, state_path)


def ledger_accounts(config, journal, clock) -> dict[str, int]:
    """Each socket's derivation index, assigned once and kept in the journal (see SqliteJournal.ledger_accounts)."""
    from payg.errors import ConfigError

    explicit = {s.id: s.account_index for s in config.sockets if s.account_index is not None}
    try:
        return journal.ledger_accounts([s.id for s in config.sockets], explicit, clock.now())
    except ValueError as exc:
        raise ConfigError(str(config.path), "sockets.account_index", f"indices that match the data directory "
                          f"({exc})") from None


def build_ledger(config, journal, clock):
    """The configured DepositSource. Does not contact a node: a controller starts with its node down."""
    from payg.adapters.secrets import read_secret
    from payg.errors import ConfigError

    lc = config.ledger
    file = str(config.path)
    if lc.backend == "mock":
        from ledgers.mock import MockLedger

        return MockLedger(mock_ledger_path(config), clock, [s.id for s in config.sockets],
                          finality_s=lc.mock.finality_s)
    settings = lc.ethereum if lc.backend == "ethereum" else lc.iota
    try:
        if lc.backend == "ethereum":
            from ledgers.ethereum import EthereumLedger
        else:
            from ledgers.iota import IotaLedger
    except ImportError as exc:
        raise ConfigError(file, "ledger.backend", f"the Python packages of the {lc.backend} backend (pip install "
                          f"'payg[{lc.backend}]'; {exc})") from None
    mnemonic = read_secret(settings.mnemonic, file)
    accounts = ledger_accounts(config, journal, clock)
    try:
        c = settings
        if lc.backend == "ethereum":
            return EthereumLedger.connect(c.rpc_url, timeout_s=c.request_timeout_s, chain_id=c.chain_id,
                                          mnemonic=mnemonic, accounts=accounts, confirmations=c.confirmations,
                                          token=c.token, token_value=c.token_value, start_block=c.start_block,
                                          max_blocks_per_poll=c.max_blocks_per_poll,
                                          log_chunk_blocks=c.log_chunk_blocks)
        return IotaLedger(c.graphql_url, mnemonic=mnemonic, accounts=accounts, token_value=c.token_value,
                          start_checkpoint=c.start_checkpoint, request_timeout_s=c.request_timeout_s)
    except ValueError as exc:  # the ledger's own checks (a mnemonic that is not BIP-39, ...); never echo secrets
        raise ConfigError(file, f"ledger ({lc.backend})", f"settings the backend accepts: {exc}") from None


def mock_ledger_path(config) -> Path:
    return config.ledger.mock.path or config.controller.data_dir / "mock-ledger.sqlite"


def build_trade(config, journal, clock):
    """The configured market and channel backend, or None when this ledger has no market configured."""
    from payg.adapters.secrets import read_secret

    lc, tc = config.ledger, config.trade
    if lc.backend == "mock":
        from ledgers.mock import MockTrade

        return MockTrade(mock_ledger_path(config), clock, [s.id for s in config.sockets], capacity_wh=tc.capacity_wh,
                         tax_bps=tc.tax_bps, owner_socket=tc.owner)
    if lc.backend == "ethereum":
        if not (tc.market_contract and tc.channels_contract):
            return None
        from ledgers.ethereum import EthereumTrade

        c = lc.ethereum
        return EthereumTrade.connect(c.rpc_url, timeout_s=c.request_timeout_s, chain_id=c.chain_id,
                                     mnemonic=read_secret(c.mnemonic, str(config.path)),
                                     accounts=ledger_accounts(config, journal, clock), market=tc.market_contract,
                                     channels=tc.channels_contract)
    return build_iota_trade(config, journal, clock)


def build_iota_trade(config, journal, clock):
    from ledgers.iota import IotaTrade, IotaWallet
    from payg.adapters.secrets import read_secret

    c, tc = config.ledger.iota, config.trade
    wallet = IotaWallet(c.graphql_url, mnemonic=read_secret(c.mnemonic, str(config.path)),
                        request_timeout_s=c.request_timeout_s)
    trade = IotaTrade(wallet, accounts=ledger_accounts(config, journal, clock),
                      store_path=config.controller.data_dir / "iota-trade.sqlite", clock=clock,
                      market_url=tc.market_url)
    if tc.market_url is None and tc.owner is not None:
        trade.create_market(tc.owner, tc.capacity_wh, tc.tax_bps)
    return trade


def build_trading(config, journal, clock, trade):
    """The channel book and supply desk over a trade backend."""
    from payg.services.channels import ChannelBook
    from payg.services.supply import SupplyDesk
    from payg.adapters.peer_link import HttpPeerLink

    peers = HttpPeerLink()
    book = ChannelBook(trade, journal, clock, config.tariff.tokens_per_wh, peers)
    supply = SupplyDesk(book, journal, clock, peers, {s.id: s.sell for s in config.sockets if s.sell},
                        {s.id: s.buy for s in config.sockets if s.buy})
    return book, supply


def build(config, clock=None) -> Runtime:
    """Every object of a controller, wired, not started. Tests pass a virtual clock."""
    from payg.domain.billing import Tariff
    from payg.adapters.clocks import SystemClock
    from payg.controller import Controller, Socket
    from payg.services.deposits import DepositWatcher
    from payg.adapters.journal import SqliteJournal

    clock = clock or SystemClock()
    data_dir = config.controller.data_dir
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    journal = SqliteJournal(data_dir / "journal.sqlite")
    try:
        ledger = build_ledger(config, journal, clock)
    except BaseException:
        journal.close()
        raise
    sockets, meters, relays, buses = [], {}, {}, {}
    for sc in config.sockets:
        relay = build_relay(sc.relay, clock)
        meter = build_meter(sc, relay, clock, data_dir, buses)
        meters[sc.id], relays[sc.id] = meter, relay
        sockets.append(Socket(sc.id, sc.name, meter, relay, sc.max_power_w))
    c = config.controller
    controller = Controller(sockets, journal, clock, Tariff(config.tariff.tokens_per_wh, 1),
                            poll_interval_s=c.poll_interval_s, grace_s=c.meter_offline_grace_s,
                            usage_entry_s=c.usage_entry_s, counter_confirmations=c.counter_confirmations,
                            predictive_cutoff=c.predictive_cutoff, relay_check_s=c.relay_check_s,
                            relay_off_max_w=c.relay_off_max_w)
    watcher = DepositWatcher(ledger, journal, clock, on_credit=controller.credits_arrived)
    rt = Runtime(config, clock, journal, ledger, controller, watcher, meters, relays, buses)
    try:
        rt.trade = build_trade(config, journal, clock)
    except ImportError as exc:
        log.warning("trade is off: the %s backend's trade packages are missing (%s)", config.ledger.backend, exc)
    except Exception:
        ledger.close()
        journal.close()
        raise
    if rt.trade is not None:
        rt.book, rt.supply = build_trading(config, journal, clock, rt.trade)
        rt.book.on_credit = controller.credits_arrived
    return rt


def close_hardware(rt: Runtime) -> None:
    """After the controller has opened every relay: release GPIO pins (left at 'off') and serial ports."""
    from payg.errors import RelayError

    for socket_id, relay in rt.relays.items():
        close = getattr(relay, "close", None)
        if close is None:
            continue
        try:
            close()
        except RelayError as exc:  # one failing pin must not keep the others from being released
            log.error("relay of %s could not be released: %s", socket_id, exc)
    for bus in rt.buses.values():
        bus.close()


class _DataDirLock:
    """One controller per data directory: two would bill the same meters twice."""

    def __init__(self, data_dir: Path):
        self.path = data_dir / "controller.lock"
        self._fh = open(self.path, "a+")
        try:
            fcntl.flock(self._fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._fh.close()
            raise SystemExit(f"payg: another controller is running on {data_dir} (lock {self.path})") from None
        self._fh.seek(0)
        self._fh.truncate()
        self._fh.write(f"{os.getpid()}\n")
        self._fh.flush()

    def release(self) -> None:
        fcntl.flock(self._fh, fcntl.LOCK_UN)
        self._fh.close()


def run(config) -> int:
    from apscheduler.schedulers.background import BackgroundScheduler
    from werkzeug.serving import make_server

    from payg.errors import ConfigError, LedgerUnavailable, RelayError
    from payg.adapters.notify import SystemdNotifier
    from payg.web import WebServices, create_web
    from payg.adapters.secrets import web_secrets
    from payg.web.security import WebSecrets

    logging.basicConfig(level=config.controller.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    config.controller.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    lock = _DataDirLock(config.controller.data_dir)
    try:
        rt = build(config)
    except ConfigError as exc:
        log.error("invalid configuration: %s", exc)
        return 2
    except RelayError as exc:
        log.error("%s", exc)
        return 1
    controller = rt.controller
    controller.start()  # every relay open before anything else happens
    atexit.register(controller.shutdown)
    notifier = SystemdNotifier()
    watchdog_s = notifier.watchdog_interval_s()
    if watchdog_s is not None and config.controller.poll_interval_s > watchdog_s:
        log.warning("poll_interval_s (%s s) is longer than half of systemd's WatchdogSec: the watchdog will kill "
                    "a healthy controller; raise WatchdogSec", config.controller.poll_interval_s)

    scheduler = BackgroundScheduler(timezone=timezone.utc,
                                    job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None})
    last_tick = {"at": None}

    def tick_job() -> None:
        try:
            controller.tick()
        except Exception:
            log.exception("tick failed; opening every relay until a tick succeeds")
            controller.trip("tick failed")
            return
        last_tick["at"] = rt.clock.now()
        notifier.watchdog()  # systemd restarts a controller whose loop stops ticking
        schedule_cutoff()

    def schedule_cutoff() -> None:
        cut = controller.next_cutoff()
        if cut is not None:
            scheduler.add_job(controller.enforce_cutoffs, "date", id="cutoff", replace_existing=True,
                              run_date=datetime.fromtimestamp(cut, timezone.utc))

    ledger_state = {"error": None}

    def deposit_job() -> None:
        try:
            rt.watcher.poll()
        except LedgerUnavailable as exc:
            if ledger_state["error"] != str(exc):
                log.warning("ledger unavailable (deposits wait, metering goes on): %s", exc)
            ledger_state["error"] = str(exc)
            return
        if ledger_state["error"] is not None:
            log.info("ledger reachable again")
        ledger_state["error"] = None
        schedule_cutoff()

    def health() -> dict:
        at = last_tick["at"]
        fresh = at is not None and rt.clock.now() - at <= 3 * config.controller.poll_interval_s + 1
        return {"status": "ok" if fresh else "stalled", "ticks": controller.ticks, "last_tick_at": at,
                "ledger": rt.watcher.status, "ledger_error": rt.watcher.last_error,
                "sockets": len(controller.sockets)}

    own_url = f"http://{config.web.host}:{config.web.port}"

    def supply_job() -> None:
        try:
            rt.supply.tick(own_url)
        except LedgerUnavailable as exc:
            log.warning("trade: ledger unavailable: %s", exc)
        except Exception:
            log.exception("trade: supply step failed")

    now = datetime.now(timezone.utc)
    if rt.supply is not None:
        scheduler.add_job(supply_job, "interval", seconds=config.controller.poll_interval_s, id="supply",
                          next_run_time=now)
    scheduler.add_job(tick_job, "interval", seconds=config.controller.poll_interval_s, id="tick", next_run_time=now)
    scheduler.add_job(deposit_job, "interval", seconds=config.controller.deposit_poll_interval_s, id="deposits",
                      next_run_time=now)

    stop = threading.Event()

    def on_signal(signum, _frame):
        if stop.is_set():
            return  # already stopping; a second Ctrl-C must not interrupt the shutdown
        log.info("signal %s: stopping", signal.Signals(signum).name)
        stop.set()
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    server = web = None
    try:
        if config.web.enabled:
            payer = rt.ledger if rt.ledger.name == "mock" else None  # only the mock ledger can be paid from here
            trade = None
            if rt.trade is not None:
                from payg.web.trade import TradeServices

                trade = TradeServices(rt.trade, rt.book, rt.supply, tuple(s.id for s in config.sockets))
            try:
                secrets = WebSecrets(*web_secrets(config.controller.data_dir, config.web.landlord_password, config.path))
            except ConfigError as exc:
                log.error("invalid configuration: %s", exc)
                return 2
            services = WebServices(controller, rt.journal, rt.ledger, secrets, payer=payer, health=health,
                                   trade=trade, settings=config.web)
            web = create_web(services, **web_dirs())
            controller.publisher = web.hub
            web.hub.start()
            try:
                server = make_server(config.web.host, config.web.port, web.app, threaded=True)
            except (OSError, SystemExit) as exc:  # werkzeug exits (SystemExit 1) when the port is taken
                log.error("cannot serve on %s:%s: %s", config.web.host, config.web.port,
                          exc if isinstance(exc, OSError) else "address unavailable (in use?)")
                return 1
        scheduler.start()
        notifier.ready()
        log.info("payg running: %d sockets, ledger %s, web %s", len(controller.sockets), rt.ledger.name,
                 f"http://{config.web.host}:{config.web.port}" if server else "off")
        if server is not None:
            server.serve_forever()
        else:
            while not stop.wait(3600):
                pass
    except SystemExit:
        pass
    finally:
        notifier.stopping()
        if web is not None:
            web.hub.stop()
        if scheduler.running:
            scheduler.shutdown(wait=True)
        controller.shutdown()
        close_hardware(rt)
        if server is not None:
            server.server_close()
        if rt.trade is not None:
            rt.trade.shutdown()
        rt.journal.close()
        rt.ledger.close()
        del lock
    return 0


def main(argv: list[str] | None = None) -> int:
    from payg import cli
    from payg.errors import ConfigError

    args = cli.parse_args(argv)
    if args.command == "password":
        return cli.cmd_password(args)
    if args.command in ("meters", "relay") and args.action != "off":
        return installer_command(args)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"payg: invalid configuration: {exc}", file=sys.stderr)
        return 2
    if args.command == "relay":
        return relays_off(config)
    if args.command == "run":
        return run(config)
    if args.command in ("deposit", "address"):
        return ledger_command(args, config)
    if args.command == "trade":
        if args.action == "fund":
            return mock_fund(args, config)
        if args.action == "deploy":
            return deploy_contracts(config)
        return cli.cmd_trade(args, config)
    journal_path = config.controller.data_dir / "journal.sqlite"
    journal = None
    if journal_path.exists():
        from payg.adapters.journal import SqliteJournal

        journal = SqliteJournal(journal_path)
    try:
        if args.command == "status":
            return cli.cmd_status(config, journal, cli.fetch_live_states(config))
        if journal is None:
            print(f"payg: no journal at {journal_path} yet (has the controller run?)", file=sys.stderr)
            return 1
        if args.command == "cursor":
            if args.set_to is None:
                return cli.cmd_cursor(args, config, journal)
            try:
                lock = _DataDirLock(config.controller.data_dir)
            except SystemExit as exc:
                print(f"{exc} -- stop it before moving the cursor", file=sys.stderr)
                return 1
            try:
                return cli.cmd_cursor(args, config, journal)
            finally:
                lock.release()
        return cli.cmd_journal(args, config, journal)
    finally:
        if journal is not None:
            journal.close()


def deploy_contracts(config) -> int:
    """`payg trade deploy`: compile and deploy the contracts with the owner socket's trade key."""
    from payg.adapters.secrets import read_secret
    from payg.errors import ConfigError

    tc, lc = config.trade, config.ledger
    if lc.backend != "ethereum":
        print("payg: trade deploy is for the ethereum backend (the mock market lives in its ledger file; on IOTA "
              "the market is hosted by a controller)", file=sys.stderr)
        return 2
    if tc.owner is None:
        print(f"payg: {config.path}: set [trade] owner to the socket whose trade party will own the market",
              file=sys.stderr)
        return 2
    try:
        # Imported before anything can fail: an except clause below names WrongChain.
        from ledgers.ethereum import WrongChain, deploy_as_owner
        from payg.adapters.journal import SqliteJournal
        from payg.adapters.clocks import SystemClock

        c = lc.ethereum
        config.controller.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        journal = SqliteJournal(config.controller.data_dir / "journal.sqlite")
        try:
            index = ledger_accounts(config, journal, SystemClock())[tc.owner]
        finally:
            journal.close()
        deployed = deploy_as_owner(c.rpc_url, timeout_s=c.request_timeout_s, chain_id=c.chain_id,
                                   mnemonic=read_secret(c.mnemonic, str(config.path)), owner_index=index,
                                   capacity_wh=tc.capacity_wh, tax_bps=tc.tax_bps, evm_version=tc.evm_version)
    except ConfigError as exc:
        print(f"payg: invalid configuration: {exc}", file=sys.stderr)
        return 2
    except ImportError as exc:
        print(f"payg: deploying needs the ethereum extra and vyper (pip install 'payg[ethereum]' vyper): {exc}",
              file=sys.stderr)
        return 1
    except WrongChain as exc:
        print(f"payg: the node at ledger.rpc_url serves chain {exc.served}, not {exc.configured}", file=sys.stderr)
        return 1
    except Exception as exc:  # node, key or compiler trouble: say which, without a traceback
        print(f"payg: deployment failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"# deployed by {deployed.deployer} (socket {tc.owner}), EVM {tc.evm_version}; add to [trade]:")
    print(f'market_contract = "{deployed.market}"')
    print(f'channels_contract = "{deployed.channels}"')
    return 0


def mock_fund(args, config) -> int:
    """`payg trade fund`: the mock ledger's faucet for trade wallets (no controller needed)."""
    from ledgers.mock import MockTrade
    from payg.adapters.clocks import SystemClock

    if config.ledger.backend != "mock":
        print(f"payg: trade fund mints on the mock ledger only; on {config.ledger.backend} send funds to the "
              "socket's trade party (payg trade info shows it)", file=sys.stderr)
        return 2
    if config.socket(args.socket) is None:
        print(f"payg: unknown socket {args.socket!r}", file=sys.stderr)
        return 2
    config.controller.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    tc = config.trade
    trade = MockTrade(mock_ledger_path(config), SystemClock(), [s.id for s in config.sockets],
                      capacity_wh=tc.capacity_wh, tax_bps=tc.tax_bps, owner_socket=tc.owner)
    try:
        party = trade.party_for(args.socket)
        trade.fund(party, args.amount)
        print(f"{party}: {trade.balance(party)}")
    finally:
        trade.shutdown()
    return 0


def ledger_command(args, config) -> int:
    """`payg deposit` (mock ledger only) and `payg address`: the configured ledger, no node contact needed."""
    from payg import cli
    from payg.adapters.clocks import SystemClock
    from payg.errors import ConfigError
    from payg.adapters.journal import SqliteJournal

    if config.socket(args.socket) is None:
        return cli.unknown_socket(args.socket, config)
    if args.command == "deposit" and config.ledger.backend != "mock":
        print(f"payg: deposit pays on the mock ledger only; with the {config.ledger.backend} backend pay from a "
              f"wallet to the address `payg address --socket {args.socket}` prints", file=sys.stderr)
        return 1
    config.controller.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    journal = SqliteJournal(config.controller.data_dir / "journal.sqlite")
    try:
        ledger = build_ledger(config, journal, SystemClock())
    except ConfigError as exc:
        journal.close()
        print(f"payg: invalid configuration: {exc}", file=sys.stderr)
        return 2
    try:
        if args.command == "deposit":
            return cli.cmd_deposit(args, config, ledger)
        return cli.cmd_address(args, ledger)
    finally:
        ledger.close()
        journal.close()


def installer_command(args) -> int:
    """`payg meters scan|read` and `payg relay test`: hardware at hand, no configuration needed."""
    import time

    from payg import cli
    from payg.adapters.clocks import SystemClock
    from payg.errors import ConfigError, RelayError

    if args.command == "relay":
        from hardware.gpio_relay import GpioRelay

        try:
            relay = GpioRelay(args.pin, args.active_low)
        except (RelayError, ValueError) as exc:
            print(f"payg: {exc}", file=sys.stderr)
            return 1
        try:
            return cli.cmd_relay_test(args, relay, time.sleep)
        finally:
            relay.close()

    from hardware.modbus.bus import BusSettings, ModbusBus, ModbusMeter
    from payg.adapters.config.profiles import load_profile
    from payg.domain.meter_profile import default_timeout_s

    try:
        profile = load_profile(args.profile, list(profile_dirs()))
    except ConfigError as exc:
        print(f"payg: {exc}", file=sys.stderr)
        return 2
    baud, parity = args.baud or profile.serial.baud, args.parity or profile.serial.parity
    timeout = args.timeout or default_timeout_s(profile, baud, parity, profile.serial.stopbits,
                                                margin_s=0.2 if args.action == "scan" else 0.5)
    bus = ModbusBus(BusSettings(args.port, baud, parity, profile.serial.stopbits, timeout, args.local_echo))
    clock = SystemClock()
    try:
        if args.action == "scan":
            return cli.cmd_meters_scan(args, profile, lambda a: ModbusMeter(bus, a, profile, clock).read_fields())
        return cli.cmd_meters_read(args, profile, ModbusMeter(bus, args.address, profile, clock).read_fields)
    finally:
        bus.close()


def relays_off(config) -> int:
    """`payg relay off`: drive every configured GPIO relay to 'off' (systemd's ExecStopPost)."""
    from hardware.gpio_relay import force_off
    from payg.errors import RelayError

    failed = 0
    for sc in config.sockets:
        if sc.relay.kind == "gpio":
            try:
                force_off(sc.relay.pin, sc.relay.active_low)
                print(f"{sc.id}: relay on GPIO{sc.relay.pin} off")
            except RelayError as exc:
                failed += 1
                print(f"payg: {sc.id}: {exc}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
