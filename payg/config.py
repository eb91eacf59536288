"""Configuration: one TOML file, validated into frozen dataclasses.

Every error names the file, the key and what was expected. Loading touches
no state: nothing is created or opened until the whole file is valid.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
import zoneinfo
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from pathlib import Path
from typing import Any

from payg.errors import ConfigError
from payg.meter_profile import MeterProfile, default_timeout_s, load_profile, reading_time_s

SOCKET_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
BACKENDS = ("mock", "iota", "ethereum")
LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True)
class ControllerConfig:
    data_dir: Path
    poll_interval_s: float = 1.0
    meter_offline_grace_s: float = 10.0
    deposit_poll_interval_s: float = 1.0
    predictive_cutoff: bool = True
    usage_entry_s: float = 60.0
    counter_confirmations: int = 3
    relay_check_s: float = 5.0
    relay_off_max_w: float = 5.0
    log_level: str = "info"


@dataclass(frozen=True)
class WebConfig:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 5000
    landlord_password: SecretRef | None = None  # where the landlord's password hash is; None: no landlord view
    low_credit_tokens: int = 100                # the tenant page warns at or below this balance
    topup_presets: tuple[int, ...] = (50, 100, 200, 500)  # amounts (tokens) offered under the QR code
    session_hours: float = 12.0                 # a landlord login lasts this long
    secure_cookies: bool = False                # true behind an HTTPS proxy: cookies are sent over HTTPS only
    timezone: str | None = None                 # IANA zone for "today" and "this month"; None: the system's


@dataclass(frozen=True)
class MockLedgerConfig:
    finality_s: float = 0.0
    path: Path | None = None  # the mock ledger's file (None: mock-ledger.sqlite in data_dir); share it to trade


@dataclass(frozen=True)
class SecretRef:
    """Where a secret (the wallet mnemonic) is read from: never the TOML file itself."""

    env: str | None = None  # name of an environment variable
    file: Path | None = None  # a file readable by its owner only
    key: str = "ledger.mnemonic_env"  # the config key that named it, for error messages
    what: str = "the wallet mnemonic"  # what it holds, for error messages


@dataclass(frozen=True)
class EthereumLedgerConfig:
    rpc_url: str
    chain_id: int
    mnemonic: SecretRef
    confirmations: int = 12
    token: str | None = None  # ERC-20 contract; None = native value (ETH, xDAI, ...)
    token_value: int = 1  # wei (or token base units) per payg token
    start_block: int | None = None
    request_timeout_s: float = 10.0
    max_blocks_per_poll: int = 500
    log_chunk_blocks: int = 2000


@dataclass(frozen=True)
class IotaLedgerConfig:
    graphql_url: str
    mnemonic: SecretRef
    token_value: int = 1_000_000  # nanos per payg token (1 IOTA = 10**9 nanos)
    start_checkpoint: int | None = None
    request_timeout_s: float = 10.0


@dataclass(frozen=True)
class LedgerConfig:
    backend: str
    mock: MockLedgerConfig | None = None
    ethereum: EthereumLedgerConfig | None = None
    iota: IotaLedgerConfig | None = None


@dataclass(frozen=True)
class TariffConfig:
    tokens_per_wh: Fraction = Fraction(1)


@dataclass(frozen=True)
class ConstantLoad:
    load_w: float


@dataclass(frozen=True)
class ScheduleLoad:
    steps: tuple[tuple[float, float], ...]  # (at_s within the cycle, load_w), sorted by at_s
    repeat_s: float = 86400.0


@dataclass(frozen=True)
class RandomLoad:
    seed: int
    min_w: float
    max_w: float
    step_s: float = 60.0


@dataclass(frozen=True)
class SimulatedMeterConfig:
    load: ConstantLoad | ScheduleLoad | RandomLoad
    voltage_v: float = 230.0
    persist: bool = True
    kind: str = "simulated"


@dataclass(frozen=True)
class ModbusMeterConfig:
    profile: MeterProfile
    port: str
    address: int
    baud: int
    parity: str
    stopbits: int
    timeout_s: float = 0.5
    local_echo: bool = False
    kind: str = "modbus"

    @property
    def bus_settings(self) -> tuple:
        return (self.baud, self.parity, self.stopbits, self.timeout_s, self.local_echo)

    @property
    def bus_key(self) -> str:
        """The port's real device: /dev/serial/by-id/... and /dev/ttyUSB0 can be one wire."""
        return os.path.realpath(self.port)

    @property
    def reading_time_s(self) -> float:
        return reading_time_s(self.profile, self.baud, self.parity, self.stopbits)


@dataclass(frozen=True)
class SimulatedRelayConfig:
    kind: str = "simulated"


@dataclass(frozen=True)
class GpioRelayConfig:
    pin: int
    active_low: bool = False
    kind: str = "gpio"


@dataclass(frozen=True)
class SellConfig:
    """The socket supplies energy through payment channels at this price."""
    price_per_wh: int  # ledger units per Wh


@dataclass(frozen=True)
class BuyConfig:
    """When the socket's balance falls below `below_tokens`, open a channel to `supplier` on `peer`."""
    peer: str               # the supplying controller's base URL
    supplier: str           # the supplying socket's id on that controller
    below_tokens: int
    escrow_wh: int          # the channel's escrow buys this much energy
    max_price_per_wh: int   # refuse a supplier asking more (ledger units per Wh)
    hours: float = 24.0     # the channel's lifetime
    lead_wh: int = 1        # paid ahead, so the supplier can switch on


@dataclass(frozen=True)
class TradeConfig:
    capacity_wh: int = 1_000_000  # grid capacity of a market this controller creates
    tax_bps: int = 500            # tax on buys, in basis points of the producer's share
    owner: str | None = None      # the socket whose trade party owns a market this controller creates
    market_contract: str | None = None    # ethereum: the deployed market
    channels_contract: str | None = None  # ethereum: the deployed channel manager
    evm_version: str = "prague"           # ethereum: the target of `payg trade deploy`
    market_url: str | None = None         # iota: the controller hosting the market (None: this one)


@dataclass(frozen=True)
class SocketConfig:
    id: str
    name: str
    meter: SimulatedMeterConfig | ModbusMeterConfig
    relay: SimulatedRelayConfig | GpioRelayConfig
    max_power_w: float = 3680.0
    account_index: int | None = None  # derivation index of the socket's ledger address (None: assigned)
    sell: SellConfig | None = None
    buy: BuyConfig | None = None


@dataclass(frozen=True)
class Config:
    path: Path
    controller: ControllerConfig
    web: WebConfig
    ledger: LedgerConfig
    tariff: TariffConfig
    sockets: tuple[SocketConfig, ...] = field(default_factory=tuple)
    trade: TradeConfig = field(default_factory=TradeConfig)

    def socket(self, socket_id: str) -> SocketConfig | None:
        return next((s for s in self.sockets if s.id == socket_id), None)


class _Table:
    """Reads keys out of one TOML table and remembers which ones were used."""

    def __init__(self, file: str, prefix: str, data: Any):
        self.file = file
        self.prefix = prefix
        if not isinstance(data, dict):
            raise ConfigError(file, prefix, "a table", data, has_got=True)
        self.data = data
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def error(self, name: str, expected: str, got: Any = None, has_got: bool = True) -> ConfigError:
        return ConfigError(self.file, self.key(name), expected, got, has_got=has_got)

    def has(self, name: str) -> bool:
        return name in self.data

    def raw(self, name: str, default: Any = ..., expected: str = "a value") -> Any:
        self.used.add(name)
        if name not in self.data:
            if default is ...:
                raise self.error(name, expected, has_got=False)
            return default
        return self.data[name]

    def string(self, name: str, default: Any = ..., choices: tuple[str, ...] | None = None) -> str:
        expected = f"one of {', '.join(repr(c) for c in choices)}" if choices else "a string"
        value = self.raw(name, default, expected)
        if not isinstance(value, str) or (choices and value not in choices):
            raise self.error(name, expected, value)
        return value

    def boolean(self, name: str, default: Any = ...) -> bool:
        value = self.raw(name, default, "true or false")
        if not isinstance(value, bool):
            raise self.error(name, "true or false", value)
        return value

    def integer(self, name: str, default: Any = ..., minimum: int | None = None, maximum: int | None = None) -> int:
        expected = _range_text("an integer", minimum, maximum)
        value = self.raw(name, default, expected)
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.error(name, expected, value)
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            raise self.error(name, expected, value)
        return value

    def number(self, name: str, default: Any = ..., minimum: float | None = None, positive: bool = False) -> float:
        expected = "a number > 0" if positive else _range_text("a number", minimum, None)
        value = self.raw(name, default, expected)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise self.error(name, expected, value)
        if (positive and value <= 0) or (minimum is not None and value < minimum):
            raise self.error(name, expected, value)
        return float(value)

    def table(self, name: str, default: Any = ...) -> _Table:
        value = self.raw(name, default, "a table")
        return _Table(self.file, self.key(name), value)

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise ConfigError(self.file, self.key(unknown[0]), f"no such key here (known keys: "
                              f"{', '.join(sorted(self.used)) or 'none'})")


def _range_text(kind: str, minimum: float | None, maximum: float | None) -> str:
    if minimum is not None and maximum is not None:
        return f"{kind} from {minimum} to {maximum}"
    if minimum is not None:
        return f"{kind} >= {minimum}"
    return kind


def _exact(t: _Table, name: str, default: Fraction) -> Fraction:
    """An exact positive rational: an integer, or a decimal written as a string ("0.25")."""
    expected = 'a positive integer or a decimal string such as "0.25"'
    value = t.raw(name, default, expected)
    if isinstance(value, Fraction):
        return value
    if isinstance(value, bool):
        raise t.error(name, expected, value)
    if isinstance(value, int):
        result = Fraction(value)
    elif isinstance(value, str):
        try:
            result = Fraction(Decimal(value.strip()))
        except (InvalidOperation, ValueError):
            raise t.error(name, expected, value) from None
    else:
        # Floats are refused: 0.1 is not exactly one tenth, and money is exact.
        raise t.error(name, expected, value)
    if result <= 0:
        raise t.error(name, expected, value)
    return result


def _load(t: _Table) -> ConstantLoad | ScheduleLoad | RandomLoad:
    given = [k for k in ("load_w", "schedule", "random") if t.has(k)]
    if len(given) != 1:
        raise t.error("load_w", "exactly one of load_w, schedule or random", has_got=False)
    if given[0] == "load_w":
        return ConstantLoad(t.number("load_w", minimum=0))
    if given[0] == "schedule":
        steps_raw = t.raw("schedule")
        if not isinstance(steps_raw, list) or not steps_raw:
            raise t.error("schedule", "a non-empty array of { at_s = ..., load_w = ... }", steps_raw)
        steps = []
        for i, item in enumerate(steps_raw):
            step = _Table(t.file, f"{t.key('schedule')}[{i}]", item)
            steps.append((step.number("at_s", minimum=0), step.number("load_w", minimum=0)))
            step.finish()
        repeat_s = t.number("repeat_s", 86400.0, positive=True)
        steps.sort()
        if steps[0][0] != 0:
            raise t.error("schedule", "a step with at_s = 0 (the load at the start of each cycle)", steps_raw)
        if steps[-1][0] >= repeat_s:
            raise t.error("repeat_s", "a cycle longer than the last step's at_s", repeat_s)
        return ScheduleLoad(tuple(steps), repeat_s)
    r = t.table("random")
    load = RandomLoad(r.integer("seed", minimum=0), r.number("min_w", minimum=0), r.number("max_w", minimum=0),
                      r.number("step_s", 60.0, positive=True))
    if load.max_w < load.min_w:
        raise r.error("max_w", f"a number >= min_w ({load.min_w})", load.max_w)
    r.finish()
    return load


def _meter(t: _Table, profile_dirs: tuple[Path, ...]) -> SimulatedMeterConfig | ModbusMeterConfig:
    kind = t.string("kind", choices=("simulated", "modbus"))
    if kind == "simulated":
        meter = SimulatedMeterConfig(_load(t), t.number("voltage_v", 230.0, positive=True),
                                     t.boolean("persist", True))
        t.finish()
        return meter
    profile_name = t.string("profile")
    try:
        profile = load_profile(profile_name, list(profile_dirs))
    except ConfigError as exc:
        if exc.key == "profile":  # not found: name the config file and key, list the known ones
            raise t.error("profile", exc.expected, profile_name) from None
        raise
    port = t.string("port")
    if not port:
        raise t.error("port", "a serial port such as /dev/ttyUSB0", port)
    address = t.integer("address", minimum=1, maximum=247)
    baud = t.integer("baud", profile.serial.baud, minimum=300, maximum=921600)
    parity = t.string("parity", profile.serial.parity, choices=("N", "E", "O"))
    stopbits = t.integer("stopbits", profile.serial.stopbits, minimum=1, maximum=2)
    reply_s = default_timeout_s(profile, baud, parity, stopbits, margin_s=0)
    timeout_s = t.number("timeout_s", default_timeout_s(profile, baud, parity, stopbits), positive=True)
    if timeout_s <= reply_s:
        raise t.error("timeout_s", f"more than the {reply_s:.3f} s the reply takes on the wire at {baud} baud",
                      timeout_s)
    meter = ModbusMeterConfig(profile=profile, port=port, address=address, baud=baud, parity=parity,
                              stopbits=stopbits, timeout_s=timeout_s, local_echo=t.boolean("local_echo", False))
    t.finish()
    return meter


def _relay(t: _Table) -> SimulatedRelayConfig | GpioRelayConfig:
    kind = t.string("kind", choices=("simulated", "gpio"))
    if kind == "simulated":
        t.finish()
        return SimulatedRelayConfig()
    relay = GpioRelayConfig(t.integer("pin", minimum=0, maximum=27), t.boolean("active_low", False))
    t.finish()
    return relay


def _socket(t: _Table, profile_dirs: tuple[Path, ...]) -> SocketConfig:
    socket_id = t.string("id")
    if not SOCKET_ID.match(socket_id):
        raise t.error("id", "1-32 characters of a-z, 0-9, '-' or '_', starting with a letter or digit", socket_id)
    name = t.string("name", socket_id)
    max_power_w = t.number("max_power_w", 3680.0, positive=True)
    account_index = t.integer("account_index", minimum=0, maximum=2**31 - 1) if t.has("account_index") else None
    meter = _meter(t.table("meter"), profile_dirs)
    relay = _relay(t.table("relay"))
    sell, buy = _socket_trade(t.table("trade")) if t.has("trade") else (None, None)
    if isinstance(meter, SimulatedMeterConfig) and isinstance(meter.load, ConstantLoad) \
            and meter.load.load_w > max_power_w:
        raise t.error("meter.load_w", f"at most max_power_w ({max_power_w})", meter.load.load_w)
    t.finish()
    return SocketConfig(socket_id, name, meter, relay, max_power_w, account_index, sell, buy)


def _socket_trade(t: _Table) -> tuple[SellConfig | None, BuyConfig | None]:
    if t.has("sell_price_per_wh"):
        if t.has("peer"):
            raise t.error("peer", "no buying keys on a socket that sells (sell_price_per_wh is set)", t.raw("peer"))
        sell = SellConfig(_units(t, "sell_price_per_wh", ...))
        t.finish()
        return sell, None
    if not t.has("peer"):
        raise t.error("sell_price_per_wh", "either sell_price_per_wh (to supply) or peer, supplier, below_tokens,"
                      " escrow_wh and max_price_per_wh (to buy)", has_got=False)
    buy = BuyConfig(
        peer=_url(t, "peer", "http://192.168.1.20:5000"),
        supplier=t.string("supplier"),
        below_tokens=t.integer("below_tokens", minimum=1),
        escrow_wh=t.integer("escrow_wh", minimum=1, maximum=10_000_000),
        max_price_per_wh=_units(t, "max_price_per_wh", ...),
        hours=t.number("hours", 24.0, positive=True),
        lead_wh=t.integer("lead_wh", 1, minimum=0, maximum=1000),
    )
    t.finish()
    return None, buy


def _trade(t: _Table) -> TradeConfig:
    market = t.string("market_contract") if t.has("market_contract") else None
    channels = t.string("channels_contract") if t.has("channels_contract") else None
    for key, value in (("market_contract", market), ("channels_contract", channels)):
        if value is not None and not EVM_ADDRESS.match(value):
            raise t.error(key, "a contract address (0x and 40 hex digits)", value)
    return TradeConfig(
        capacity_wh=t.integer("capacity_wh", 1_000_000, minimum=1_000, maximum=1_000_000),
        tax_bps=t.integer("tax_bps", 500, minimum=0, maximum=10_000),
        owner=t.string("owner") if t.has("owner") else None,
        market_contract=market,
        channels_contract=channels,
        evm_version=t.string("evm_version", "prague", choices=("prague", "cancun", "shanghai", "paris")),
        market_url=_url(t, "market_url", "http://192.168.1.10:5000") if t.has("market_url") else None,
    )


URL = re.compile(r"^https?://[^\s/?#]+[^\s]*$")
EVM_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
# Kept in the data directory, owner-only, made by the controller at its first start:
API_TOKEN_FILE = "api-token"        # lets `payg` commands on this machine use the controller's API
SESSION_SECRET_FILE = "web-secret"  # signs the landlord's session cookies

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _url(t: _Table, name: str, example: str) -> str:
    value = t.string(name)
    if not URL.match(value):
        raise t.error(name, f"an http:// or https:// URL such as {example}", value)
    return value


def _units(t: _Table, name: str, default: int) -> int:
    """A positive whole number of ledger units: a TOML integer, or a string of digits for values
    beyond 64 bits (wei)."""
    expected = 'a positive integer (or a string of digits, such as "1000000000000000000")'
    value = t.raw(name, default, expected)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if not isinstance(value, int) or isinstance(value, bool) or value < 1 or value >= 2**255:
        raise t.error(name, expected, value)
    return value


def _secret(t: _Table, base_dir: Path | None) -> SecretRef:
    if t.has("mnemonic"):
        raise t.error("mnemonic", "no mnemonic in the configuration file: name an environment variable "
                      "(mnemonic_env) or an owner-only file (mnemonic_file)", "(hidden)")
    given = [k for k in ("mnemonic_env", "mnemonic_file") if t.has(k)]
    if len(given) != 1:
        raise t.error("mnemonic_env", "exactly one of mnemonic_env (an environment variable's name) or "
                      "mnemonic_file (a file readable by its owner only); the mnemonic itself never goes in "
                      "this file", has_got=False)
    if given[0] == "mnemonic_env":
        name = t.string("mnemonic_env")
        if not ENV_NAME.match(name):
            raise t.error("mnemonic_env", "the name of an environment variable, such as PAYG_MNEMONIC", name)
        return SecretRef(env=name, key=t.key("mnemonic_env"))
    path = Path(t.string("mnemonic_file"))
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    return SecretRef(file=path, key=t.key("mnemonic_file"))


def _web(w: _Table, base_dir: Path | None) -> WebConfig:
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
    zone = w.string("timezone") if w.has("timezone") else None
    if zone is not None:
        try:
            zoneinfo.ZoneInfo(zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise w.error("timezone", "an IANA time zone name such as \"Europe/Berlin\" or \"UTC\"", zone) from None
    session_hours = w.number("session_hours", WebConfig.session_hours, positive=True)
    if session_hours > 24 * 31:
        raise w.error("session_hours", "a number of hours > 0 and at most 744 (31 days)", session_hours)
    return WebConfig(
        enabled=w.boolean("enabled", True),
        host=w.string("host", "127.0.0.1"),
        port=w.integer("port", 5000, minimum=1, maximum=65535),
        landlord_password=password,
        low_credit_tokens=w.integer("low_credit_tokens", WebConfig.low_credit_tokens, minimum=0),
        topup_presets=tuple(presets),
        session_hours=session_hours,
        secure_cookies=w.boolean("secure_cookies", False),
        timezone=zone,
    )


def read_secret(ref: SecretRef, config_file: str | Path) -> str:
    """The secret's text, stripped. ConfigError when it is missing, empty or readable by others."""
    file = str(config_file)
    if ref.env is not None:
        value = os.environ.get(ref.env, "").strip()
        if not value:
            raise ConfigError(file, ref.key, f"the environment variable {ref.env} to hold {ref.what} "
                              "(it is not set or empty)")
        return value
    assert ref.file is not None
    try:
        st = os.stat(ref.file)
        if st.st_mode & 0o077:
            raise ConfigError(file, ref.key, f"a file readable by its owner only (chmod 600 {ref.file})",
                              f"mode {st.st_mode & 0o777:04o}", has_got=True)
        if st.st_uid != os.geteuid():
            raise ConfigError(file, ref.key, f"a file owned by the user running payg (uid {os.geteuid()})",
                              f"owned by uid {st.st_uid}", has_got=True)
        value = ref.file.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(file, ref.key, f"a readable file holding {ref.what} ({exc.strerror}: "
                          f"{ref.file})") from None
    if not value:
        raise ConfigError(file, ref.key, f"a file holding {ref.what} ({ref.file} is empty)")
    return value


def _ledger(t: _Table, base_dir: Path | None) -> LedgerConfig:
    backend = t.string("backend", choices=BACKENDS)
    if backend == "mock":
        path = None
        if t.has("path"):
            path = Path(t.string("path"))
            if not path.is_absolute() and base_dir is not None:
                path = base_dir / path
        return LedgerConfig(backend, mock=MockLedgerConfig(t.number("finality_s", 0.0, minimum=0), path))
    if backend == "ethereum":
        token = t.string("token") if t.has("token") else None
        if token is not None and not EVM_ADDRESS.match(token):
            raise t.error("token", "an ERC-20 contract address (0x and 40 hex digits)", token)
        start = t.integer("start_block", minimum=0) if t.has("start_block") else None
        return LedgerConfig(backend, ethereum=EthereumLedgerConfig(
            rpc_url=_url(t, "rpc_url", "http://127.0.0.1:8545"),
            chain_id=t.integer("chain_id", minimum=1),
            mnemonic=_secret(t, base_dir),
            confirmations=t.integer("confirmations", 12, minimum=1, maximum=10_000),
            token=token,
            token_value=_units(t, "token_value", 1),
            start_block=start,
            request_timeout_s=t.number("request_timeout_s", 10.0, positive=True),
            max_blocks_per_poll=t.integer("max_blocks_per_poll", 500, minimum=1, maximum=100_000),
            log_chunk_blocks=t.integer("log_chunk_blocks", 2000, minimum=1, maximum=1_000_000),
        ))
    start = t.integer("start_checkpoint", minimum=0) if t.has("start_checkpoint") else None
    return LedgerConfig(backend, iota=IotaLedgerConfig(
        graphql_url=_url(t, "graphql_url", "https://graphql.testnet.iota.cafe"),
        mnemonic=_secret(t, base_dir),
        token_value=_units(t, "token_value", 1_000_000),
        start_checkpoint=start,
        request_timeout_s=t.number("request_timeout_s", 10.0, positive=True),
    ))


def parse(data: dict, file: str, base_dir: Path | None = None, profile_dirs: tuple[Path, ...] = ()) -> Config:
    root = _Table(file, "", data)
    if "controller" not in data:
        raise ConfigError(file, "[controller]", "a [controller] section (with at least data_dir)")
    if "ledger" not in data:
        raise ConfigError(file, "[ledger]", "a [ledger] section (with at least backend)")
    if "sockets" not in data:
        raise ConfigError(file, "[[sockets]]", "at least one [[sockets]] table")

    c = root.table("controller")
    data_dir = Path(c.string("data_dir"))
    if not data_dir.is_absolute() and base_dir is not None:
        data_dir = base_dir / data_dir
    poll = c.number("poll_interval_s", 1.0, positive=True)
    controller = ControllerConfig(
        data_dir=data_dir,
        poll_interval_s=poll,
        meter_offline_grace_s=c.number("meter_offline_grace_s", 10.0, positive=True),
        deposit_poll_interval_s=c.number("deposit_poll_interval_s", 1.0, positive=True),
        predictive_cutoff=c.boolean("predictive_cutoff", True),
        usage_entry_s=c.number("usage_entry_s", 60.0, minimum=0),
        counter_confirmations=c.integer("counter_confirmations", 3, minimum=1, maximum=100),
        relay_check_s=c.number("relay_check_s", 5.0, positive=True),
        relay_off_max_w=c.number("relay_off_max_w", 5.0, minimum=0),
        log_level=c.string("log_level", "info", choices=LOG_LEVELS),
    )
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
    tariff = TariffConfig(_exact(tt, "tokens_per_wh", Fraction(1)))
    tt.finish()

    raw_sockets = root.raw("sockets")
    if not isinstance(raw_sockets, list) or not raw_sockets:
        raise ConfigError(file, "sockets", "at least one [[sockets]] table", raw_sockets, has_got=True)
    sockets = []
    seen: set[str] = set()
    buses: dict[str, tuple[int, ModbusMeterConfig]] = {}
    addresses: set[tuple[str, int]] = set()
    pins: set[int] = set()
    for i, item in enumerate(raw_sockets):
        s = _socket(_Table(file, f"sockets[{i}]", item), profile_dirs)
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
                                           m.bus_settings)), has_got=True)
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
    root.finish()
    return Config(Path(file), controller, web, ledger, tariff, tuple(sockets), trade)


def load(path: str | Path, profile_dirs: tuple[Path, ...] = ()) -> Config:
    """Read and validate a config file. data_dir is taken relative to the working directory;
    meter profiles named by `profile` are looked up in profile_dirs."""
    file = str(path)
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(file, "(file)", "an existing, readable TOML file (not found)") from None
    except OSError as exc:
        raise ConfigError(file, "(file)", f"an existing, readable TOML file ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(file, "(syntax)", f"valid TOML ({exc})") from None
    return parse(data, file, profile_dirs=profile_dirs)
