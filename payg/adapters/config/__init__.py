"""Configuration: one TOML file, validated into the frozen dataclasses of payg.domain.settings.

Every error names the file, the key and what was expected. Loading touches
no state: nothing is created or opened until the whole file is valid.
"""

from __future__ import annotations

import difflib
import ipaddress
import zoneinfo
from pathlib import Path

import payg.adapters.config.protections as protection_tables
from payg.adapters.config import sockets as socket_tables
from payg.adapters.config.mqtt import mqtt as mqtt_table
from payg.adapters.config.server import server_table
from payg.adapters.config.tables import ENV_NAME, EVM_ADDRESS, Table, fill, read_toml, secret, units, url
from payg.adapters.config.tariff import named_tables as named_tariffs
from payg.adapters.config.tariff import tariff as tariff_table
from payg.domain.settings import (
    CodesConfig,
    Config,
    ControllerConfig,
    EthereumLedgerConfig,
    GpioRelayConfig,
    IotaLedgerConfig,
    LedgerConfig,
    MockLedgerConfig,
    ModbusMeterConfig,
    NotifyConfig,
    SecretRef,
    SocketConfig,
    TradeConfig,
    WebConfig,
)
from payg.errors import ConfigError

BACKENDS = ("mock", "iota", "ethereum")


def _trade(t: Table) -> TradeConfig:
    market_url = url(t, "market_url", "http://192.168.1.10:5000") if t.has("market_url") else None
    trade = fill(t, TradeConfig, market_url=market_url)
    for key in ("market_contract", "channels_contract"):
        value = getattr(trade, key)
        if value is not None and not EVM_ADDRESS.match(value):
            raise t.error(key, "a contract address (0x and 40 hex digits)", value)
    return trade


def _web(w: Table, base_dir: Path | None) -> WebConfig:
    if w.has("landlord_password") or w.has("landlord_password_hash"):
        name = "landlord_password" if w.has("landlord_password") else "landlord_password_hash"
        raise w.error(name, "no password or hash in the configuration file: name an environment variable "
                      "(landlord_password_hash_env) or an owner-only file (landlord_password_hash_file) "
                      "holding the hash that `payg password` prints", "(hidden)")
    given = [k for k in ("landlord_password_hash_env", "landlord_password_hash_file") if w.has(k)]
    if len(given) > 1:
        raise w.error("landlord_password_hash_file", "only one of landlord_password_hash_env or "
                      "landlord_password_hash_file", has_got=False)
    password = None
    if given == ["landlord_password_hash_env"]:
        name = w.string("landlord_password_hash_env")
        if not ENV_NAME.match(name):
            raise w.error("landlord_password_hash_env", "the name of an environment variable, such as "
                          "PAYG_LANDLORD_HASH", name)
        password = SecretRef(env=name, key=w.key("landlord_password_hash_env"), what="the landlord's password hash")
    elif given:
        path = Path(w.string("landlord_password_hash_file"))
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        password = SecretRef(file=path, key=w.key("landlord_password_hash_file"), what="the landlord's password hash")
    presets = w.raw("topup_presets", list(WebConfig.topup_presets), "a list of 1 to 8 positive integers (tokens)")
    if (not isinstance(presets, list) or not 1 <= len(presets) <= 8
            or not all(isinstance(p, int) and not isinstance(p, bool) and 0 < p <= 10**12 for p in presets)):
        raise w.error("topup_presets", "a list of 1 to 8 positive integers (tokens)", presets)
    web = fill(w, WebConfig, landlord_password=password, topup_presets=tuple(presets),
               public_url=url(w, "public_url", "https://payg.example.org") if w.has("public_url") else None,
               trusted_proxies=_proxies(w), server=server_table(w.table("server", {})))
    if web.timezone is not None:
        try:
            zoneinfo.ZoneInfo(web.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise w.error("timezone", "an IANA time zone name such as \"Europe/Berlin\" or \"UTC\"",
                          web.timezone) from None
    return web


def _proxies(w: Table) -> tuple[str, ...]:
    expected = 'a list of proxy addresses or CIDR blocks, such as ["127.0.0.1", "::1"]'
    value = w.raw("trusted_proxies", [], expected)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise w.error("trusted_proxies", expected, value)
    for entry in value:
        try:
            ipaddress.ip_network(entry.strip(), strict=False)
        except ValueError:
            raise w.error("trusted_proxies", expected, entry) from None
    return tuple(v.strip() for v in value)


def _xpub(t: Table) -> str | None:
    """[ledger] xpub (watch-only Ethereum): in the file itself, as it spends nothing; checked when the ledger
    opens (its checksum, version and depth), so that a bad copy names what is wrong."""
    if not t.has("xpub"):
        return None
    if t.has("mnemonic_env") or t.has("mnemonic_file"):
        raise t.error("xpub", "exactly one of xpub (watch-only) or mnemonic_env / mnemonic_file for the top-up"
                      " addresses, not both", "both set")
    value = t.string("xpub").strip()
    if not value.startswith(("xpub", "tpub")):
        raise t.error("xpub", "the account's extended public key (xpub..., as `payg xpub` prints it)"
                      + ("; this is a PRIVATE key, never put it here" if value.startswith(("xprv", "tprv")) else ""),
                      value[:4] + "...")
    return value


def _ledger(t: Table, base_dir: Path | None) -> LedgerConfig:
    backend = t.string("backend", choices=BACKENDS)
    if backend == "mock":
        return fill(t, MockLedgerConfig, base_dir)
    if backend == "ethereum":
        token = t.string("token") if t.has("token") else None
        if token is not None and not EVM_ADDRESS.match(token):
            raise t.error("token", "an ERC-20 contract address (0x and 40 hex digits)", token)
        xpub = _xpub(t)
        return fill(t, EthereumLedgerConfig, base_dir, rpc_url=url(t, "rpc_url", "http://127.0.0.1:8545"),
                    mnemonic=None if xpub is not None else secret(t, base_dir), token=token,
                    token_value=units(t, "token_value", EthereumLedgerConfig.token_value), xpub=xpub)
    return fill(t, IotaLedgerConfig, base_dir, graphql_url=url(t, "graphql_url", "https://graphql.testnet.iota.cafe"),
                mnemonic=secret(t, base_dir), token_value=units(t, "token_value", IotaLedgerConfig.token_value))


def parse(data: dict, file: str, base_dir: Path | None = None, profile_dirs: tuple[Path, ...] = ()) -> Config:
    root = Table(file, "", data)
    for name, key, expected in (("controller", "[controller]", "a [controller] section (with at least data_dir)"),
                                ("ledger", "[ledger]", "a [ledger] section (with at least backend)"),
                                ("sockets", "[[sockets]]", "at least one [[sockets]] table")):
        if name not in data:
            typo = difflib.get_close_matches(name, [str(k) for k in data], n=1, cutoff=0.6)
            raise ConfigError(file, key, expected + (f" ({typo[0]!r} is set: a typo for {name!r}?)" if typo else ""))

    c = root.table("controller")
    controller = fill(c, ControllerConfig, base_dir)
    poll = controller.poll_interval_s
    if controller.meter_offline_grace_s < poll:
        raise c.error("meter_offline_grace_s", f"a number >= poll_interval_s ({poll})",
                      controller.meter_offline_grace_s)
    c.finish()

    w = root.table("web", {})
    web = _web(w, base_dir)
    w.finish()

    lt = root.table("ledger")
    ledger = _ledger(lt, base_dir)
    lt.finish()

    tt = root.table("tariff", {})
    tariff = tariff_table(tt)
    tt.finish()
    tariffs = named_tariffs(root, tariff)

    raw_sockets = root.raw("sockets")
    if not isinstance(raw_sockets, list) or not raw_sockets:
        raise ConfigError(file, "sockets", "at least one [[sockets]] table", raw_sockets, has_got=True)
    sockets: list[SocketConfig] = []
    seen: set[str] = set()
    buses: dict[str, tuple[int, ModbusMeterConfig]] = {}
    addresses: set[tuple[str, int]] = set()
    pins: set[int] = set()
    for i, item in enumerate(raw_sockets):
        s = socket_tables.socket(Table(file, f"sockets[{i}]", item), profile_dirs)
        if s.id in seen:
            raise ConfigError(file, f"sockets[{i}].id", "a socket id not used by another socket", s.id,
                              has_got=True)
        seen.add(s.id)
        if isinstance(s.meter, ModbusMeterConfig):
            m = s.meter
            if (m.bus_key, m.address) in addresses:
                raise ConfigError(file, f"sockets[{i}].meter.address", f"an address not used by another meter on "
                                  f"{m.port}", m.address, has_got=True)
            addresses.add((m.bus_key, m.address))
            first = buses.setdefault(m.bus_key, (i, m))
            if first[1].bus_settings != m.bus_settings:
                raise ConfigError(file, f"sockets[{i}].meter", f"the same baud, parity, stopbits, timeout_s and "
                                  f"local_echo as sockets[{first[0]}] (one serial port, one set of settings)",
                                  dict(zip(("baud", "parity", "stopbits", "timeout_s", "local_echo"),
                                           m.bus_settings, strict=True)), has_got=True)
        if isinstance(s.relay, GpioRelayConfig):
            if s.relay.pin in pins:
                raise ConfigError(file, f"sockets[{i}].relay.pin", "a GPIO pin not used by another relay",
                                  s.relay.pin, has_got=True)
            pins.add(s.relay.pin)
        if s.account_index is not None:
            other = next((o for o in sockets if o.account_index == s.account_index), None)
            if other is not None:
                raise ConfigError(file, f"sockets[{i}].account_index", f"an index not used by socket {other.id!r}",
                                  s.account_index, has_got=True)
        if s.tariff is not None and s.tariff not in dict(tariffs):
            raise ConfigError(file, f"sockets[{i}].tariff", "the name of a [tariffs.NAME] table"
                              + (f" ({', '.join(n for n, _ in tariffs)})" if tariffs else " (there is none)"),
                              s.tariff, has_got=True)
        sockets.append(s)
    for bus_key in buses:
        on_bus = [s.meter for s in sockets if isinstance(s.meter, ModbusMeterConfig) and s.meter.bus_key == bus_key]
        needed = sum(m.reading_time_s for m in on_bus)
        if needed > 0.8 * poll:
            raise ConfigError(file, "controller.poll_interval_s", f"at least {needed / 0.8:.2f} s: the "
                              f"{len(on_bus)} meter(s) on {on_bus[0].port} need {needed:.2f} s of wire time per "
                              f"poll at {on_bus[0].baud} baud, and a poll must fit in 80 % of the interval "
                              f"(or raise the baud rate)", poll, has_got=True)
    tr = root.table("trade", {})
    trade = _trade(tr)
    tr.finish()
    if trade.owner is not None and trade.owner not in seen:
        raise ConfigError(file, "trade.owner", "the id of a configured socket", trade.owner, has_got=True)
    pt = root.table("protections", {})
    protections = protection_tables.controller(pt, zoneinfo.ZoneInfo(web.timezone) if web.timezone else None,
                                               {s.id: s.protections for s in sockets})
    pt.finish()
    ct = root.table("codes", {})
    codes = fill(ct, CodesConfig)
    ct.finish()
    mt = root.table("mqtt", {})
    mqtt = mqtt_table(mt, base_dir)
    mt.finish()
    nt = root.table("notify", {})
    notify = fill(nt, NotifyConfig, base_dir)  # the contacts file itself is read when the sender starts
    nt.finish()
    root.finish()
    return Config(Path(file), controller, web, ledger, tariff, tuple(sockets), trade, codes, protections, mqtt,
                  tariffs, notify)


def load(path: str | Path, profile_dirs: tuple[Path, ...] = ()) -> Config:
    """Read and validate a config file. data_dir is taken relative to the working directory;
    meter profiles named by `profile` are looked up in profile_dirs."""
    file = str(path)
    data = read_toml(path)
    return parse(data, file, profile_dirs=profile_dirs)
