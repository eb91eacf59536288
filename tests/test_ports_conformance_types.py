"""The real adapters satisfy the ports they are handed to, checked twice.

By the type checker: `conforms` below is type-checked with the package (pyproject.toml [tool.mypy] files), so an
adapter whose method drifts from its port (a renamed parameter, a missing method, another return type) fails the
check. At run time: the same pairs, each port method present on its adapter, taking the port's parameters first.
"""

from __future__ import annotations

import inspect
import threading
from typing import Protocol

import pytest

from hardware.bus_pool import BusMeter, BusPool, RealTime, Waiter
from hardware.gpio_relay import GpioRelay
from hardware.gpiod_relay import GpiodRelay
from hardware.modbus import ModbusMeter
from hardware.simulated import SimulatedMeter, SimulatedRelay
from ledgers.ethereum import EthereumLedger, EthereumTrade
from ledgers.iota import IotaLedger, IotaTrade
from ledgers.mock import MockLedger, MockTrade
from payg.adapters.clocks import ManualClock, SystemClock
from payg.adapters.journal import SqliteJournal
from payg.adapters.journal_writer import JournalWriter
from payg.adapters.mqtt.bridge import Landlord, MqttBridge
from payg.adapters.notify import SystemdNotifier
from payg.adapters.openpaygo import OpenPaygoCodec
from payg.adapters.peer_link import HttpPeerLink
from payg.adapters.web_sessions import SqliteSessionStore
from payg.ports import (
    Clock,
    CodeCodec,
    DepositPayer,
    DepositSource,
    EnergyMeter,
    EscrowWatch,
    Journal,
    JournalTx,
    Lock,
    MeterReader,
    Notifier,
    PaymentChannel,
    PeerDirectory,
    PeerLink,
    PeerMessages,
    PeerTrade,
    Relay,
    SessionStore,
    StatePublisher,
)
from payg.services.landlord import LandlordDesk


def conforms(
    mock: MockLedger, ethereum: EthereumLedger, iota: IotaLedger,
    mock_trade: MockTrade, ethereum_trade: EthereumTrade, iota_trade: IotaTrade,
    simulated_meter: SimulatedMeter, modbus_meter: ModbusMeter, bus_pool: BusPool,
    simulated_relay: SimulatedRelay, gpio_relay: GpioRelay, gpiod_relay: GpiodRelay,
    journal: SqliteJournal, writer: JournalWriter, system_clock: SystemClock, manual_clock: ManualClock,
    notifier: SystemdNotifier, codec: OpenPaygoCodec, peer_link: HttpPeerLink, sessions: SqliteSessionStore,
    bridge: MqttBridge, landlord: LandlordDesk,
) -> None:
    """Never called: each assignment is one adapter checked against one port."""
    sources: list[DepositSource] = [mock, ethereum, iota]
    payer: DepositPayer = mock
    markets: list[PeerTrade] = [mock_trade, ethereum_trade, iota_trade]
    channels: list[PaymentChannel] = [mock_trade, ethereum_trade, iota_trade]
    watch: EscrowWatch = iota_trade
    directory: PeerDirectory = iota_trade
    messages: PeerMessages = iota_trade
    meters: list[EnergyMeter] = [simulated_meter, modbus_meter]
    on_a_bus: BusMeter = modbus_meter
    reader: MeterReader = bus_pool
    waiter: Waiter = RealTime()
    relays: list[Relay] = [simulated_relay, gpio_relay, gpiod_relay]
    book: Journal = journal
    tx: JournalTx = writer
    clocks: list[Clock] = [system_clock, manual_clock]
    lock: Lock = threading.RLock()
    notify: Notifier = notifier
    codes: CodeCodec = codec
    peers: PeerLink = peer_link
    store: SessionStore = sessions
    publisher: StatePublisher = bridge
    commands: Landlord = landlord
    del sources, payer, markets, channels, watch, directory, messages, meters, on_a_bus, reader, waiter, relays
    del book, tx, clocks, lock, notify, codes, peers, store, publisher, commands


PAIRS: list[tuple[type, type]] = [
    *((DepositSource, c) for c in (MockLedger, EthereumLedger, IotaLedger)),
    (DepositPayer, MockLedger),
    *((port, c) for port in (PeerTrade, PaymentChannel) for c in (MockTrade, EthereumTrade, IotaTrade)),
    *((port, IotaTrade) for port in (EscrowWatch, PeerDirectory, PeerMessages)),
    *((EnergyMeter, c) for c in (SimulatedMeter, ModbusMeter)),
    (BusMeter, ModbusMeter), (MeterReader, BusPool), (Waiter, RealTime),
    *((Relay, c) for c in (SimulatedRelay, GpioRelay, GpiodRelay)),
    (Journal, SqliteJournal), (JournalTx, JournalWriter),
    *((Clock, c) for c in (SystemClock, ManualClock)),
    (Lock, type(threading.RLock())),
    (Notifier, SystemdNotifier), (CodeCodec, OpenPaygoCodec), (PeerLink, HttpPeerLink),
    (SessionStore, SqliteSessionStore), (StatePublisher, MqttBridge), (Landlord, LandlordDesk),
]


def port_methods(port: type) -> dict[str, inspect.Signature]:
    """The methods a port asks for (its own and its parent ports'), by name."""
    found: dict[str, inspect.Signature] = {}
    for cls in reversed(port.__mro__):
        if cls is object or cls is Protocol or not getattr(cls, "_is_protocol", False):
            continue
        for name, member in vars(cls).items():
            if inspect.isfunction(member) and (not name.startswith("_") or name in ("__enter__", "__exit__")):
                found[name] = inspect.signature(member)
    return found


def parameter_names(signature: inspect.Signature) -> list[str]:
    return [p.name for p in signature.parameters.values()
            if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD, p.POSITIONAL_ONLY)]


@pytest.mark.parametrize(("port", "adapter"), PAIRS, ids=lambda t: t.__name__)
def test_each_adapter_has_every_method_of_its_port_with_the_same_parameters(port, adapter):
    asked = port_methods(port)
    assert asked, f"{port.__name__} names no methods"
    for name, wanted in asked.items():
        member = getattr(adapter, name, None)
        assert callable(member), f"{adapter.__name__} has no {name} of {port.__name__}"
        try:
            got = inspect.signature(member)
        except ValueError:  # a builtin (threading.RLock's C methods) has none to compare
            continue
        if inspect.isfunction(member):  # unbound: self on both sides; the adapter may take more after the port's
            names = parameter_names(wanted)
            assert parameter_names(got)[:len(names)] == names, (adapter.__name__, name)
