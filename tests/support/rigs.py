"""The metering loop on a virtual clock, with fake meters and relays, a journal and a fake ledger.

`metering_for` builds the Metering service the way app.py does (sockets, relays, a bus pool);
`Rig` adds the deposit watcher, the landlord's desk and the Site, driven by the VirtualDriver:
the loop that ships, on a clock that moves only when told."""

from __future__ import annotations

import os
import shutil
import tempfile
import weakref
from fractions import Fraction
from pathlib import Path

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
                 max_power_w=3680.0, publisher=None, names=None, schedule=None, **settings) -> Metering:
    """Metering over these meters and relays (socket id -> each); `buses`: bus id -> the sockets on it;
    `schedule`: every socket's tariff schedule (payg/domain/tariff.py), else `tokens_per_wh` flat."""
    ms = MeteringSettings(**settings)
    sockets = [SocketState(i, (names or {}).get(i, i), max_power_w, ms.counter_confirmations) for i in meters]
    reader = BusPool(meters, buses or {}, 0.8 * ms.poll_interval_s, waiter)
    return Metering(sockets, relays, reader, journal, clock, Tariff(tokens_per_wh), ms, publisher=publisher,
                    schedules=None if schedule is None else dict.fromkeys(meters, schedule))


RAM_DIR = "/dev/shm"  # tmpfs on Linux
RAM_FREE = 256 * 2**20  # left to the browsers and everything else that uses it


def journal_dir(tmp_path: Path, owner: object) -> Path:
    """Where a rig keeps its journal file: in memory when there is room, else `tmp_path`. Every tick commits a
    transaction with synchronous=FULL, and on a disk each commit waits for its fsync (about 1 ms, several while
    other tests write): that, not the code, was most of the time of the long runs. The rig's tests check what is
    billed and decided, not what reaches a disk: the same SQLite file and PRAGMAs, only the fsync is free; the crash
    tests (tests/e2e) keep real controllers on real disks. The directory goes with `owner`."""
    try:
        st = os.statvfs(RAM_DIR)
    except OSError:
        return tmp_path
    if st.f_bavail * st.f_frsize < RAM_FREE:
        return tmp_path
    path = Path(tempfile.mkdtemp(prefix="payg-rig-", dir=RAM_DIR))
    weakref.finalize(owner, shutil.rmtree, path, True)
    return path


class Rig:
    """The metering loop with fake meters and relays, a real journal file (or the given one) and a fake ledger."""

    def __init__(self, tmp_path, ids=("a",), *, tokens_per_wh=Fraction(1), predictive=True, grace_s=10.0,
                 usage_entry_s=60.0, source=None, clock=None, journal=None, tick_s=1.0, deposit_poll_s=1.0,
                 schedule=None, persist_interval_s=60.0):
        self.tmp_path = tmp_path
        self.ids = ids
        self.clock = clock or ManualClock()
        self.meters = {i: FakeMeter(self.clock) for i in ids}
        self.relays = {i: FakeRelay(self.clock) for i in ids}
        self.source = source or FakeDepositSource()
        self.publisher = FakePublisher()
        self.fixed_journal = journal
        self.journal_dir = tmp_path if journal is not None else journal_dir(tmp_path, self)
        self.kwargs = dict(tokens_per_wh=tokens_per_wh, predictive=predictive, grace_s=grace_s,
                           usage_entry_s=usage_entry_s, tick_s=tick_s, deposit_poll_s=deposit_poll_s, schedule=schedule,
                           persist_interval_s=persist_interval_s)
        self.open()

    def open(self):
        k = self.kwargs
        self.journal = self.fixed_journal or SqliteJournal(self.journal_dir / "journal.sqlite")
        self.metering = metering_for(self.meters, self.relays, self.journal, self.clock,
                                     tokens_per_wh=k["tokens_per_wh"], names={i: i.upper() for i in self.ids},
                                     schedule=k["schedule"],
                                     poll_interval_s=k["tick_s"], meter_offline_grace_s=k["grace_s"],
                                     usage_entry_s=k["usage_entry_s"], persist_interval_s=k["persist_interval_s"],
                                     predictive_cutoff=k["predictive"], publisher=self.publisher)
        self.landlord = LandlordDesk(self.metering, self.journal)
        self.watcher = DepositWatcher(self.source, self.journal, self.clock, on_credit=self.metering.credits_arrived)
        self.site = Site(self.metering, self.watcher, self.clock, deposit_poll_interval_s=k["deposit_poll_s"])
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
        per_step = Fraction(power_w) * Fraction(step_s) / 3600
        elapsed = 0.0
        while elapsed < seconds:
            meter.power_w = power_w if relay.closed else 0.0
            if relay.closed:
                exact += per_step
            meter.energy_wh = int(exact)
            self.loop.run_for(step_s)
            elapsed += step_s
