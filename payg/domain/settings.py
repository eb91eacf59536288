"""The configuration's shape: frozen dataclasses, validated and filled by payg/adapters/config.

Each key is defined once, on its field: `setting(default, meaning, bounds...)`. The loader reads a key by its
field's type and bounds, and the reference (docs/configuration.md, `python -m payg.adapters.config.reference`)
is written from the same fields. Nothing here reads a file. Secrets are never values here: a SecretRef says
where one is read from (an environment variable or an owner-only file).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeAlias

from payg.domain.config_keys import SecretRef as SecretRef
from payg.domain.config_keys import not_a_key, setting
from payg.domain.friendly import FriendlyCredit
from payg.domain.ledger_settings import EthereumLedgerConfig as EthereumLedgerConfig
from payg.domain.ledger_settings import IotaLedgerConfig as IotaLedgerConfig
from payg.domain.ledger_settings import LedgerConfig as LedgerConfig
from payg.domain.ledger_settings import MockLedgerConfig as MockLedgerConfig
from payg.domain.meter_profile import MeterProfile, reading_time_s
from payg.domain.notices import NoticeSettings
from payg.domain.relay_settings import GpioRelayConfig as GpioRelayConfig
from payg.domain.tariff_settings import TariffConfig as TariffConfig
from payg.domain.trade_settings import BuyConfig as BuyConfig
from payg.domain.trade_settings import SellConfig as SellConfig
from payg.domain.trade_settings import TradeConfig as TradeConfig

LOG_LEVELS = ("debug", "info", "warning", "error")
LANGUAGES = ("en", "fr")  # the catalogues in payg/locale/ (payg/webkit/i18n.py)
SESSION_HOURS = "how long a landlord login lasts at most, in use or not"
SESSION_IDLE = "a landlord session ends after this long without a request (an open landlord page does not count)"


@dataclass(frozen=True)
class MeteringConfig:
    """The [controller] keys the metering loop reads (payg/services/metering.py `MeteringSettings`)."""

    poll_interval_s: float = setting(1.0, "seconds between metering ticks", gt=0)
    meter_offline_grace_s: float = setting(10.0, "a socket whose meter has given no healthy reading for this long "
                                           "is switched off", gt=0, kind="number ≥ `poll_interval_s`")
    usage_entry_s: float = setting(900.0, "usage is closed into one journal entry per socket per period of this "
                                   "many seconds, aligned on multiples of it (the default: quarter hours, like a "
                                   "smart meter's intervals), every socket in the same commit at the period's last "
                                   "tick; a rate change also closes one. Shorter periods write more to an SD card "
                                   "(see [Data](operations/data.md#the-sd-card-and-persistence)); `0` writes an "
                                   "entry every tick that bills energy", ge=0)
    persist_interval_s: float = setting(60.0, "each socket's billing state (its last billed counter and the usage "
                                        "not yet in an entry) is written at most once per this many seconds while "
                                        "nothing happens; a credit, a relay switch, an event, a usage entry and a "
                                        "shutdown write it at once. A crash loses none of it: the meter's counter is "
                                        "cumulative (see [Data](operations/data.md#the-sd-card-and-persistence)). "
                                        "`0` writes it every tick the counter moves", ge=0)
    counter_confirmations: int = setting(3, "readings in a row that must agree before a counter reset or jump "
                                         "restarts the baseline", ge=1, le=100)
    predictive_cutoff: bool = setting(True, "open the relay at the predicted moment the credit runs out, between "
                                      "ticks; `false` waits for the counter (up to one Wh plus one tick of overshoot)")
    relay_check_s: float = setting(5.0, "seconds after a relay opens before the meter must read (about) 0 W", gt=0)
    relay_off_max_w: float = setting(5.0, "power above this through an open relay, after `relay_check_s`, raises "
                                     "the `relay_bypass` alarm", ge=0)


@dataclass(frozen=True)
class ControllerConfig(MeteringConfig):
    data_dir: Path = setting(doc="where the journal, the mock ledger and the simulated meters' state live; created "
                             "with owner-only permissions", kw_only=True)
    deposit_poll_interval_s: float = setting(1.0, "seconds between asking the ledger for new deposits", gt=0)
    log_level: str = setting("info", "log verbosity (to standard error)", choices=LOG_LEVELS)


@dataclass(frozen=True)
class WebConfig:
    enabled: bool = setting(True, "serve the pages and the JSON API")
    host: str = setting("127.0.0.1", "address to bind; `\"0.0.0.0\"` lets tenants' phones reach the pages. Put a "
                        "reverse proxy with HTTPS in front before the landlord logs in over a network (see [On a "
                        "network](operations/network.md))")
    port: int = setting(5000, "TCP port", ge=1, le=65535)
    landlord_password: SecretRef | None = setting(
        None, "where the landlord's password **hash** is read from (make it with `payg password`): an environment "
        "variable's name, or a file readable by its owner only (`chmod 600`). At most one. A password or hash in "
        "the TOML file itself is refused. When the variable is unset the controller runs with the landlord view "
        "off and says so", key="landlord_password_hash_env` / `landlord_password_hash_file", kind="string",
        shown="none (the landlord view is off)", by_hand=True)
    low_credit_tokens: int = setting(100, "the tenant page warns when use takes the balance to or below this (or "
                                     "leaves less than 30 minutes at the present power); never right after a top-up",
                                     ge=0)
    topup_presets: tuple[int, ...] = setting((50, 100, 200, 500), "amounts (tokens) offered under the QR code; each "
                                             "changes the QR code to a payment request for that amount",
                                             kind="list of 1–8 positive integers", by_hand=True)
    session_hours: float = setting(12.0, SESSION_HOURS, gt=0, le=24 * 31)
    session_idle_minutes: float = setting(60.0, SESSION_IDLE, ge=1)
    secure_cookies: bool = setting(False, "`true` makes the session cookie HTTPS-only without a `public_url` "
                                   "(behind an HTTPS proxy)")
    public_url: str | None = setting(None, "how people reach the pages (the proxy's address); `https://` makes the "
                                     "session cookie `Secure`", kind="`http://` or `https://` URL", by_hand=True)
    timezone: str | None = setting(None, "IANA zone name (`\"Europe/Berlin\"`) for \"today\" and \"this month\" on "
                                   "the pages", shown="the system's")
    language: str = setting("en", "the pages' language when the tenant has not picked one with the switcher and "
                            "the browser asks for none payg has (`Accept-Language`); also the notifications' language "
                            "for a contact that names none, and the tenant commands' (see "
                            "[Languages](operations/languages.md))", choices=LANGUAGES)
    trusted_proxies: tuple[str, ...] = setting((), "reverse proxies whose `X-Forwarded-For` names the client (see [On "
                                               "a network](operations/network.md)); from anyone else the header is "
                                               "ignored",
                                               kind="list of addresses or CIDR blocks", by_hand=True)
    server: ServerConfig = setting(doc="the web server's limits: `[web.server]`, below", factory=lambda: ServerConfig(),
                                   shown="see below", by_hand=True)

    @property
    def https(self) -> bool:
        """Cookies go over HTTPS only."""
        return self.secure_cookies or (self.public_url or "").lower().startswith("https://")


@dataclass(frozen=True)
class CodesConfig:
    """Offline top-up codes ([codes]): what one unit of a code's value is worth."""

    tokens_per_unit: int = setting(10, "tokens in one unit of a code's value. A code carries 1 to 995 units, so with "
                                   "`10` a code adds 10 to 9,950 tokens, in steps of 10", ge=1, le=10**9)


@dataclass(frozen=True)
class ServerConfig:
    """The web server's limits ([web.server], [hub.server]); see payg/webkit/server.py for what each one bounds."""

    max_connections: int = setting(512, "open connections in all; when full, the one idle the longest is closed to "
                                   "make room", ge=8, le=60_000,
                                   kind="integer 8–60000, above `workers + max_live_connections`")
    workers: int = setting(16, "threads that run requests; waiting connections, and clients slow to read an answer, "
                           "take none", ge=1, le=256)
    max_live_connections: int = setting(64, "live pages at once: a WebSocket (four threads) or a Socket.IO long-poll "
                                        "(one thread while it waits); past it a page's live updates are refused "
                                        "(503) and it retries", ge=0, le=10_000)
    header_timeout_s: float = setting(10.0, "a request's head must arrive within this of its first byte (else 408)",
                                      gt=0)
    body_timeout_s: float = setting(30.0, "its body within this of its head (else 408)", gt=0)
    idle_timeout_s: float = setting(30.0, "a kept-alive connection with no request is closed after this", gt=0)
    max_body_kib: int = setting(256, "the largest request body, with a length or chunked (else 413, before it is "
                                "read)", ge=16, le=64 * 1024)
    max_live_per_client: int = setting(8, "live pages from one client address (behind a `trusted_proxies` proxy, the "
                                       "address it forwards), so one client cannot take every live slot",
                                       ge=1, le=10_000)
    buffer_budget_kib: int = setting(16 * 1024, "memory for request bodies being received and answers their clients "
                                     "have not read yet, all connections together; when it is full, the largest "
                                     "unfinished body (or the answer left unread the longest) is dropped with 503 "
                                     "to make room", ge=256, le=4 * 1024 * 1024,
                                     kind="integer 256–4194304, at least `max_body_kib`")

    @property
    def max_body_bytes(self) -> int:
        return self.max_body_kib * 1024

    @property
    def buffer_budget_bytes(self) -> int:
        return self.buffer_budget_kib * 1024


LEVEL = "topic level (letters, digits, `-`, `_`)"
LEVELS = "1–4 topic levels"


@dataclass(frozen=True)
class MqttConfig:
    """State, events and commands over an MQTT broker ([mqtt]); off unless enabled."""

    enabled: bool = setting(False, "connect to the broker")
    host: str = setting("127.0.0.1", "the broker's address")
    port: int = setting(1883, "the broker's port", ge=1, le=65535, shown="`1883` (`8883` with `tls_ca_file`)")
    controller: str = setting("payg", "this controller's name in the topics: `<topic_prefix>/<controller>/...`; "
                              "unique per broker", kind=LEVEL)
    client_id: str | None = setting(None, "the MQTT client id", kind="string, 1–128 characters",
                                    shown='`"payg-<controller>"`')
    username: str | None = setting(None, "the broker user this controller logs in as")
    password: SecretRef | None = setting(None, "where its password is: never in this file (`password` here is "
                                         "refused); a file must be readable by its owner only",
                                         key="password_env` or `password_file",
                                         kind="environment variable name, or path", by_hand=True)
    tls_ca_file: Path | None = setting(None, "set: TLS, the broker's certificate checked against this CA (PEM)")
    topic_prefix: str = setting("payg", "the first levels of every topic", kind=LEVELS)
    keepalive_s: int = setting(60, "MQTT keepalive; a controller silent for 1.5 × this is declared offline by the "
                               "broker (its last will)", ge=5, le=3600)
    command_users: tuple[str, ...] = setting((), "who may send commands: the broker's ACL must let only them write "
                                             "the command topic (the protocol does not tell a controller who "
                                             "published). Recorded here so the ACL can be generated (`payg "
                                             "mqtt-acl`, from `mosquitto_acl` in `payg/adapters/mqtt/acl.py`; see "
                                             "[the broker](mqtt.md#1-the-broker))", kind="list of broker users",
                                             by_hand=True)
    discovery: bool = setting(True, "announce every socket to Home Assistant (MQTT discovery)")
    discovery_prefix: str = setting("homeassistant", "Home Assistant's discovery prefix", kind=LEVELS)
    event_retention_h: float = setting(168.0, "hours an event stays in the journal once the broker acknowledged it, "
                                       "for a subscriber that missed it to ask for it again (the `replay` command, "
                                       "see [Topics](mqtt.md#topics)); deleted within the next hour", gt=0)

    @property
    def client(self) -> str:
        return self.client_id or f"payg-{self.controller}"


@dataclass(frozen=True)
class NotifyConfig:
    """Notifications to tenants and the landlord through Apprise ([notify]); off unless a contacts file is named."""

    contacts_file: Path | None = setting(None, "an owner-only TOML file (`chmod 600`) mapping socket ids and "
                                         "`landlord` to lists of Apprise URLs; never the URLs in this file. "
                                         "Unset: no notifications (see [Notifications](operations/notifications.md))")
    burst: int = setting(5, "messages a contact URL may get at once before the pace below applies", ge=1, le=100)
    interval_s: float = setting(60.0, "after a burst, at most one message per this many seconds to each contact "
                                "URL; the others wait their turn, none is dropped", ge=0, le=86400)
    retry_max_s: float = setting(900.0, "the longest wait before another attempt at a message that failed (the "
                                 "wait doubles from 5 s)", ge=1, le=86400)




@dataclass(frozen=True)
class ConstantLoad:
    load_w: float = setting(doc="a constant load in W", ge=0)


@dataclass(frozen=True)
class ScheduleLoad:
    steps: tuple[tuple[float, float], ...] = setting(doc="the steps: from `at_s` seconds into the cycle, `load_w` W",
                                                     key="schedule", kind="list of `{ at_s, load_w }`", by_hand=True)
    repeat_s: float = setting(86400.0, "the cycle's length in seconds (a daily profile in UTC)", gt=0)


@dataclass(frozen=True)
class RandomLoad:
    seed: int = setting(doc="the same seed gives the same load at the same time", ge=0)
    min_w: float = setting(doc="the lowest load in W", ge=0)
    max_w: float = setting(doc="the highest load in W, at least `min_w`", ge=0)
    step_s: float = setting(60.0, "seconds between new values", gt=0)


@dataclass(frozen=True)
class SimulatedMeterConfig:
    load: ConstantLoad | ScheduleLoad | RandomLoad
    voltage_v: float = setting(230.0, "the voltage the simulated meter reports", gt=0)
    persist: bool = setting(True, "the counter is kept in `data_dir/simulated/<id>.json` so that, like a real "
                            "meter, it keeps its count across controller restarts")
    kind: Literal["simulated"] = field(default="simulated", init=False)


@dataclass(frozen=True)
class ModbusMeterConfig:
    profile: MeterProfile = setting(doc="a shipped profile name (`pzem004t`, `sdm120`, `sdm630`) or a path to a "
                                    "profile `.toml`", kind="string", by_hand=True)
    port: str = setting(doc="serial port; sockets on one RS485 bus share it", by_hand=True)
    address: int = setting(doc="Modbus slave address, unique on the port", ge=1, le=247)
    baud: int = setting(doc="must match the meter's setting", ge=300, le=921600,
                        shown="the profile's (PZEM 9600, SDM120 2400, SDM630 9600)")
    parity: str = setting(doc="the serial parity", choices=("N", "E", "O"), kind='`"N"`, `"E"` or `"O"`',
                          shown='the profile\'s (`"N"`)')
    stopbits: int = setting(doc="the serial stop bits", ge=1, le=2, kind="1 or 2", shown="the profile's (1)")
    timeout_s: float = setting(0.5, "how long to wait for a reply; must exceed the reply's wire time", gt=0,
                               shown="the reply's wire time + 0.5 s (0.53 s for a PZEM at 9600 baud, 1.2 s for an "
                               "SDM120 at 2400)")
    local_echo: bool = setting(False, "`true` for RS485 adapters that echo what they send")
    kind: Literal["modbus"] = field(default="modbus", init=False)

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
    kind: Literal["simulated"] = field(default="simulated", init=False)


MeterConfig: TypeAlias = SimulatedMeterConfig | ModbusMeterConfig  # a socket's meter, by its kind
RelayConfig: TypeAlias = SimulatedRelayConfig | GpioRelayConfig    # a socket's relay, by its kind


@dataclass(frozen=True)
class SocketConfig:
    id: str = setting(doc="1–32 characters of `a-z 0-9 - _`; unique; names the socket in the API, the CLI and the "
                      "journal")
    name: str = setting(doc="display name", shown="the id")
    meter: MeterConfig = setting(doc="the meter: [simulated](#simulated-meters) or "
                                                              "[Modbus](#modbus-meters)", kind="table")
    relay: RelayConfig = setting(doc="`{ kind = \"simulated\" }`, or a GPIO relay (see "
                                                            "[below](#gpio-relays))", kind="table")
    max_power_w: float = setting(3680.0, "the most the socket can draw; readings showing more energy than this for "
                                 "the elapsed time are implausible", gt=0, shown="`3680` (16 A at 230 V)")
    account_index: int | None = setting(None, "the index in the wallet's derivation path that gives this socket its "
                                        "ledger address (IOTA and Ethereum); see [Ledgers](ledgers/index.md#addresses)",
                                        ge=0, le=2**31 - 1, shown="assigned")
    sell: SellConfig | None = setting(None, "this socket sells or buys energy through payment channels; see [below]"
                                      "(#trade-in-a-socket) and [Trading energy](ledgers/trading.md)",
                                      key="trade", kind="table")
    buy: BuyConfig | None = not_a_key(None)  # the same `trade` table, with the buying keys
    friendly_credit: bool = setting(True, "follow `[protections.friendly_credit]`; `false`: this socket goes off "
                                    "when its credit runs out, at any hour")
    protections: tuple[tuple[str, object], ...] = setting(
        (), "this socket's own `debt_recovery_percent`, `emergency_credit_tokens`, `emergency_below_tokens` or "
        "`warn_hours` over the controller's `[protections]`, e.g. `protections = { emergency_credit_tokens = 0 }`",
        kind="table", shown="none")
    tariff: str | None = setting(None, "the name of a `[tariffs.NAME]` table: this socket is billed at that tariff "
                                 "instead of `[tariff]`'s (see [Tariffs](tenants/tariffs.md#a-tariff-per-socket))",
                                 shown="`[tariff]`'s")


@dataclass(frozen=True)
class ProtectionsConfig:
    """What a prepaid tenant is owed ([protections]); each is off until configured."""

    debt_recovery_percent: int = setting(100, "at most this share of each top-up (a deposit or a code) repays old "
                                         "debt; the rest is credit at once. `100`: the debt is repaid first, all of "
                                         "it, and only the rest is credit", ge=1, le=100)
    warn_hours: tuple[float, ...] = setting((), "record a `low_credit` event, once per crossing, when the credit would "
                                            "last less than each of these at the present power (`[24, 2]`), and say "
                                            "so on the tenant page", kind="list of 1 or 2 numbers of hours > 0",
                                            by_hand=True)
    flag_off_hours: float = setting(NoticeSettings.flag_off_hours, "the landlord view flags a socket that was off for "
                                    "lack of credit for longer than this in the last 7 days", gt=0)
    emergency_credit_tokens: int = setting(0, "a tenant may take this much emergency credit from the tenant page, "
                                           "once, repaid first by the next top-up", ge=0, le=10**9, shown="`0` (off)")
    emergency_below_tokens: int = setting(20, "... when the credit left is below this", ge=1, le=10**9)
    friendly_credit: FriendlyCredit = setting(FriendlyCredit(), "periods in which running out does not cut the power: "
                                              "`[protections.friendly_credit]`, below", kind="table", shown="none",
                                              by_hand=True)
    per_socket: tuple[tuple[str, tuple[tuple[str, object], ...]], ...] = not_a_key(())  # sockets' own values

    @property
    def notices(self) -> NoticeSettings:
        return NoticeSettings(self.warn_hours, self.flag_off_hours)

    def of(self, socket_id: str, key: str) -> Any:
        """The value of `key` (one of the fields above) for a socket: its own, else the controller's."""
        own = dict(dict(self.per_socket).get(socket_id, ()))
        return own[key] if key in own else getattr(self, key)

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
    tariffs: tuple[tuple[str, TariffConfig], ...] = ()   # [tariffs.NAME]: the tariffs sockets name
    notify: NotifyConfig = field(default_factory=NotifyConfig)  # [notify]: tenants' and the landlord's messages

    def socket(self, socket_id: str) -> SocketConfig | None:
        return next((s for s in self.sockets if s.id == socket_id), None)

    def tariff_of(self, socket: SocketConfig) -> TariffConfig:
        """The tariff a socket is billed at: its own `[tariffs.NAME]`, else `[tariff]`."""
        return dict(self.tariffs)[socket.tariff] if socket.tariff is not None else self.tariff
