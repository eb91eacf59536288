"""The configuration's shape: frozen dataclasses, validated and filled by payg/adapters/config.

Nothing here reads a file. Secrets are never values here: a SecretRef says where one is
read from (an environment variable or an owner-only file).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from payg.domain.friendly import FriendlyCredit
from payg.domain.notices import NoticeSettings
from payg.domain.meter_profile import MeterProfile, reading_time_s


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
    session_idle_minutes: float = 60.0          # and ends sooner after this long without a request
    secure_cookies: bool = False                # true behind an HTTPS proxy: cookies are sent over HTTPS only
    public_url: str | None = None               # how tenants reach the pages; https here makes cookies Secure
    timezone: str | None = None                 # IANA zone for "today" and "this month"; None: the system's
    trusted_proxies: tuple[str, ...] = ()       # reverse proxies whose X-Forwarded-For names the client
    server: ServerConfig = field(default_factory=lambda: ServerConfig())

    @property
    def https(self) -> bool:
        """Cookies go over HTTPS only."""
        return self.secure_cookies or (self.public_url or "").lower().startswith("https://")


@dataclass(frozen=True)
class CodesConfig:
    """Offline top-up codes ([codes]): what one unit of a code's value is worth."""

    tokens_per_unit: int = 10  # a code carries 1 to 995 units: with 10, from 10 to 9,950 tokens


@dataclass(frozen=True)
class ServerConfig:
    """The web server's limits ([web.server]); see payg/web/server.py for what each one bounds."""

    max_connections: int = 512
    workers: int = 16
    max_live_connections: int = 64
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    idle_timeout_s: float = 30.0
    max_body_kib: int = 256
    max_live_per_client: int = 8
    buffer_budget_kib: int = 16 * 1024


@dataclass(frozen=True)
class MqttConfig:
    """State, events and commands over an MQTT broker ([mqtt]); off unless enabled. See README."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 1883
    controller: str = "payg"                 # this controller's name in the topics: <prefix>/<controller>/...
    client_id: str | None = None             # None: payg-<controller>
    username: str | None = None
    password: SecretRef | None = None        # an environment variable or an owner-only file, never the file itself
    tls_ca_file: Path | None = None          # set: TLS, the broker's certificate checked against this CA
    topic_prefix: str = "payg"
    keepalive_s: int = 60
    command_users: tuple[str, ...] = ()      # broker users whose commands the ACL lets through (payg mqtt-acl)
    discovery: bool = True                   # Home Assistant MQTT discovery
    discovery_prefix: str = "homeassistant"

    @property
    def client(self) -> str:
        return self.client_id or f"payg-{self.controller}"


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
    mnemonic: SecretRef | None  # None: watch-only, the top-up addresses derive from `xpub`
    confirmations: int = 12
    token: str | None = None  # ERC-20 contract; None = native value (ETH, xDAI, ...)
    token_value: int = 1  # wei (or token base units) per payg token
    start_block: int | None = None
    request_timeout_s: float = 10.0
    max_blocks_per_poll: int = 500
    log_chunk_blocks: int = 2000
    xpub: str | None = None  # the account's extended public key (m/44'/60'/0'): not a secret, reveals every address
    check_balances: bool = True  # ether mode: alarm on ether at an address that no transaction explains


@dataclass(frozen=True)
class IotaLedgerConfig:
    graphql_url: str
    mnemonic: SecretRef
    token_value: int = 1_000_000  # nanos per payg token (1 IOTA = 10**9 nanos)
    start_checkpoint: int | None = None
    request_timeout_s: float = 10.0
    transactions_per_page: int = 50  # a deposit scan's page, at most the GraphQL service's maxPageSize


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
    def bus_settings(self) -> tuple[int, str, int, float, bool]:
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
    voucher_cache_s: float = 1.0          # ethereum: how long a voucher check reuses the latest block (0: never)


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
    friendly_credit: bool = True  # follow [protections.friendly_credit]; false: this socket goes off at any hour
    protections: tuple[tuple[str, object], ...] = ()  # its own [protections] values (payg/adapters/config)


@dataclass(frozen=True)
class ProtectionsConfig:
    """What a prepaid tenant is owed ([protections]); each is off until configured."""

    friendly_credit: FriendlyCredit = FriendlyCredit()  # periods in which running out does not cut the power
    notices: NoticeSettings = NoticeSettings()          # low-credit warnings; the flag for long times off
    debt_recovery_percent: int = 100                    # at most this much of a top-up repays debt (100: all)
    emergency_credit_tokens: int = 0                    # a tenant may take this much once, repaid first (0: off)
    emergency_below_tokens: int = 20                    # ... when the credit left is below this
    per_socket: tuple[tuple[str, tuple[tuple[str, object], ...]], ...] = ()  # a socket's own values over these

    def of(self, socket_id: str, key: str) -> Any:
        """The value of `key` (one of the fields above) for a socket: its own, else the controller's."""
        own = dict(dict(self.per_socket).get(socket_id, ()))
        return own[key] if key in own else (self.notices.warn_hours if key == "warn_hours" else getattr(self, key))

    def per(self, socket_ids: Iterable[str], key: str) -> dict[str, Any]:
        return {sid: self.of(sid, key) for sid in socket_ids}


@dataclass(frozen=True)
class Config:
    path: Path
    controller: ControllerConfig
    web: WebConfig
    ledger: LedgerConfig
    tariff: TariffConfig
    sockets: tuple[SocketConfig, ...] = field(default_factory=tuple)
    trade: TradeConfig = field(default_factory=TradeConfig)
    codes: CodesConfig = field(default_factory=lambda: CodesConfig())
    protections: ProtectionsConfig = field(default_factory=ProtectionsConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)

    def socket(self, socket_id: str) -> SocketConfig | None:
        return next((s for s in self.sockets if s.id == socket_id), None)


@dataclass(frozen=True)
class HubConfig:
    """The fleet view's own file ([hub] and [mqtt], `payg hub`, README "Many buildings"): it reads what the
    controllers publish on one broker and keeps no money of its own, so it has no ledger, journal or sockets."""

    path: Path
    data_dir: Path                                # its web secret, API token and landlord sessions
    mqtt: MqttConfig                              # the broker; the hub's user must be a command user in the ACL
    landlord_password: SecretRef | None = None    # the landlord's password hash (required by the loader)
    host: str = "127.0.0.1"
    port: int = 5080
    topic_prefix: str = "payg"                    # the controllers' [mqtt] topic_prefix
    command_timeout_s: float = 10.0               # an action with no response by then is shown as timed out
    session_hours: float = 12.0
    session_idle_minutes: float = 60.0
    secure_cookies: bool = False                  # true behind an HTTPS proxy
    log_level: str = "info"
    server: ServerConfig = field(default_factory=ServerConfig)  # [hub.server]: the same limits as [web.server]
