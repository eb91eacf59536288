"""The metering loop on a virtual clock, with fake meters and relays, a journal and a fake ledger.

`metering_for` builds the Metering service the way app.py does (sockets, relays, a bus pool);
`Rig` adds the deposit watcher, the landlord's desk and the Site, driven by the VirtualDriver:
the loop that ships, on a clock that moves only when told."""

from __future__ import annotations

from fractions import Fraction

from hardware.bus_pool import BusPool
from payg.adapters.clocks import ManualClock
from payg.adapters.journal import SqliteJournal
from payg.adapters.virtual import VirtualDriver
from payg.domain.money import Tariff
from payg.domain.socket import SocketState
from payg.services.deposits import DepositWatcher
from payg.services.landlord import LandlordDesk
from payg.services.metering import Metering, MeteringSettings
from payg.services.site import Site
from tests.fakes import FakeDepositSource, FakeMeter, FakePublisher, FakeRelay


def metering_for(meters: dict, relays: dict, journal, clock, *, tokens_per_wh=Fraction(1), buses=None, waiter=None,
                 max_power_w=3680.0, publisher=None, names=None, **settings) -> Metering:
    """Metering over these meters and relays (socket id -> each); `buses`: bus id -> the sockets on it."""
    ms = MeteringSettings(**settings)
    sockets = [SocketState(i, (names or {}).get(i, i), max_power_w, ms.counter_confirmations) for i in meters]
    reader = BusPool(meters, buses or {}, 0.8 * ms.poll_interval_s, waiter)
    return Metering(sockets, relays, reader, journal, clock, Tariff(tokens_per_wh), ms, publisher=publisher)


class Rig:
    """The metering loop with fake meters and relays, a real journal file (or the given one) and a fake ledger."""

    def __init__(self, tmp_path, ids=("a",), *, tokens_per_wh=Fraction(1), predictive=True, grace_s=10.0,
                 usage_entry_s=60.0, source=None, clock=None, journal=None):
        self.tmp_path = tmp_path
        self.ids = ids
        self.clock = clock or ManualClock()
        self.meters = {i: FakeMeter(self.clock) for i in ids}
        self.relays = {i: FakeRelay(self.clock) for i in ids}
        self.source = source or FakeDepositSource()
        self.publisher = FakePublisher()
        self.fixed_journal = journal
        self.kwargs = dict(tokens_per_wh=tokens_per_wh, predictive=predictive, grace_s=grace_s,
                           usage_entry_s=usage_entry_s)
        self.open()

    def open(self):
        k = self.kwargs
        self.journal = self.fixed_journal or SqliteJournal(self.tmp_path / "journal.sqlite")
        self.metering = metering_for(self.meters, self.relays, self.journal, self.clock,
                                     tokens_per_wh=k["tokens_per_wh"], names={i: i.upper() for i in self.ids},
                                     poll_interval_s=1.0, meter_offline_grace_s=k["grace_s"],
                                     usage_entry_s=k["usage_entry_s"],
                                     predictive_cutoff=k["predictive"], publisher=self.publisher)
        self.landlord = LandlordDesk(self.metering, self.journal)
        self.watcher = DepositWatcher(self.source, self.journal, self.clock, on_credit=self.metering.credits_arrived)
        self.site = Site(self.metering, self.watcher, self.clock, deposit_poll_interval_s=1.0)
        self.site.start()
        self.loop = VirtualDriver(self.site, self.clock)

    def restart(self):
        self.site.shutdown()
        if self.fixed_journal is None:
            self.journal.close()
        self.open()

    def deposit(self, socket_id, amount, deposit_id=None):
        deposit_id = deposit_id or f"d{len(self.source.deposits)}"
        self.source.add(deposit_id, socket_id, amount)
        return deposit_id

    def balance(self, socket_id="a"):
        return self.journal.balance(socket_id)

    def draw(self, socket_id, power_w, seconds, step_s=1.0):
        """Let the fake meter count `power_w` while its relay is closed, ticking as the loop does."""
        meter, relay = self.meters[socket_id], self.relays[socket_id]
        exact = Fraction(meter.energy_wh)
        elapsed = 0.0
        while elapsed < seconds:
            meter.power_w = power_w if relay.closed else 0.0
            exact += Fraction(meter.power_w) * Fraction(step_s) / 3600
            meter.energy_wh = int(exact)
            self.loop.run_for(step_s)
            elapsed += step_s
