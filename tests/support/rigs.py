"""A controller on a virtual clock with fake meters and relays, a real journal file and a fake ledger."""

from __future__ import annotations

from fractions import Fraction

from payg.adapters.clocks import ManualClock
from payg.adapters.journal import SqliteJournal
from payg.controller import Controller, Socket
from payg.domain.billing import Tariff
from payg.services.deposits import DepositWatcher
from payg.virtual import VirtualLoop
from tests.fakes import FakeDepositSource, FakeMeter, FakePublisher, FakeRelay


class Rig:
    """A controller with fake meters and relays, a real journal file and a fake ledger."""

    def __init__(self, tmp_path, ids=("a",), *, tokens_per_wh=Fraction(1), predictive=True, grace_s=10.0,
                 usage_entry_s=60.0, source=None, clock=None):
        self.tmp_path = tmp_path
        self.ids = ids
        self.clock = clock or ManualClock()
        self.meters = {i: FakeMeter(self.clock) for i in ids}
        self.relays = {i: FakeRelay(self.clock) for i in ids}
        self.source = source or FakeDepositSource()
        self.publisher = FakePublisher()
        self.kwargs = dict(tokens_per_wh=tokens_per_wh, predictive=predictive, grace_s=grace_s,
                           usage_entry_s=usage_entry_s)
        self.open()

    def open(self):
        k = self.kwargs
        self.journal = SqliteJournal(self.tmp_path / "journal.sqlite")
        self.controller = Controller(
            [Socket(i, i.upper(), self.meters[i], self.relays[i], max_power_w=3680) for i in self.ids],
            self.journal, self.clock, Tariff(k["tokens_per_wh"]), poll_interval_s=1.0, grace_s=k["grace_s"],
            usage_entry_s=k["usage_entry_s"], predictive_cutoff=k["predictive"], publisher=self.publisher)
        self.watcher = DepositWatcher(self.source, self.journal, self.clock,
                                      on_credit=self.controller.credits_arrived)
        self.controller.start()
        self.loop = VirtualLoop(self.controller, self.clock, self.watcher)

    def restart(self):
        self.controller.shutdown()
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
