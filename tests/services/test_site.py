"""The Site on the virtual clock: the loop that ships (trip, watchdog, supply, health), driven without sleeping.

The VirtualDriver and the production SchedulerDriver both run Site.jobs() and Site.enforce_cutoff;
the last test runs the real scheduler briefly to show it schedules exactly those jobs.
"""

from __future__ import annotations

from payg.adapters.clocks import SystemClock
from payg.adapters.scheduler import SchedulerDriver
from payg.adapters.virtual import VirtualDriver
from payg.services.deposits import DepositWatcher
from payg.services.site import Site
from tests.fakes import FakeDepositSource, FakeJournal, FakeMeter, FakeNotifier, FakeRelay
from tests.support import wait_until
from tests.support.rigs import Rig, metering_for


class FakeSupply:
    def __init__(self, fail=False):
        self.calls: list[str] = []
        self.fail = fail

    def tick(self, own_url):
        self.calls.append(own_url)
        if self.fail:
            raise RuntimeError("supply bug")


def rig_with(tmp_path, deposit_poll_interval_s=1.0, **site):
    """A Rig on a FakeJournal, its Site telling a FakeNotifier; the first tick and deposit poll done."""
    rig = Rig(tmp_path, journal=FakeJournal())
    rig.notifier = FakeNotifier()
    rig.site = Site(rig.metering, rig.watcher, rig.clock, deposit_poll_interval_s=deposit_poll_interval_s,
                    notifier=rig.notifier, **site)
    rig.loop = VirtualDriver(rig.site, rig.clock)
    rig.loop.run_for(0)
    return rig


def failing_tick(rig):
    """The next tick's journal transaction fails (a full disk, say)."""
    assert rig.loop.next_event_at() == rig.loop.start + rig.loop.ticks * rig.loop.poll_s
    rig.journal.fail_next_commit = True
    rig.loop.run_ticks(1)


def test_a_failing_tick_trips_every_relay_and_the_next_good_tick_closes_them_again(tmp_path):
    rig = rig_with(tmp_path, deposit_poll_interval_s=1000)
    rig.deposit("a", 100)
    rig.site.poll_deposits()
    rig.loop.run_ticks(1)
    assert rig.relays["a"].closed
    failing_tick(rig)
    assert not rig.relays["a"].closed and rig.site.failed_ticks == 1
    rig.loop.run_ticks(1)
    assert rig.relays["a"].closed and rig.metering.state("a").relay_on


def test_the_watchdog_is_pinged_after_every_good_tick_and_never_after_a_failed_one(tmp_path):
    rig = rig_with(tmp_path, deposit_poll_interval_s=1000)
    rig.loop.run_ticks(2)
    assert rig.notifier.messages == ["WATCHDOG=1"] * 3
    failing_tick(rig)
    assert rig.notifier.messages == ["WATCHDOG=1"] * 3
    rig.loop.run_ticks(1)
    assert rig.notifier.messages == ["WATCHDOG=1"] * 4


def test_health_turns_stalled_when_ticks_keep_failing(tmp_path):
    rig = rig_with(tmp_path, deposit_poll_interval_s=1000)
    assert rig.site.health()["status"] == "ok"
    for _ in range(5):
        failing_tick(rig)
    assert rig.site.health()["status"] == "stalled" and rig.site.failed_ticks == 5


def test_the_supply_job_runs_on_the_virtual_clock_and_its_failures_stop_nothing(tmp_path):
    supply = FakeSupply(fail=True)
    rig = rig_with(tmp_path, supply=supply, own_url="http://127.0.0.1:5000")
    assert [j.name for j in rig.site.jobs()] == ["tick", "deposits", "supply"]
    rig.loop.run_for(3)
    assert supply.calls == ["http://127.0.0.1:5000"] * 4 and rig.loop.ticks == 4 and rig.site.failed_ticks == 0


def test_a_ledger_outage_is_counted_and_metering_goes_on(tmp_path):
    rig = rig_with(tmp_path)
    rig.source.fail = True
    rig.loop.run_for(4)
    assert rig.site.ledger_errors == 4 and rig.site.ledger_error == "fake node unreachable"
    assert rig.loop.ticks == 5
    rig.source.fail = False
    rig.loop.run_for(1)
    assert rig.site.ledger_error is None


def test_a_watchdog_shorter_than_the_poll_interval_is_warned_about(tmp_path, caplog):
    rig = Rig(tmp_path, journal=FakeJournal())
    site = Site(rig.metering, rig.watcher, rig.clock, deposit_poll_interval_s=1.0,
                notifier=FakeNotifier(watchdog_interval_s=0.5))
    site.start()
    assert "longer than half of systemd's WatchdogSec" in caplog.text


def test_the_scheduler_driver_runs_exactly_the_sites_jobs_in_real_time():
    clock = SystemClock()
    journal = FakeJournal()
    meters, relays = {"a": FakeMeter(clock)}, {"a": FakeRelay()}
    metering = metering_for(meters, relays, journal, clock, poll_interval_s=0.05, meter_offline_grace_s=1.0)
    notifier = FakeNotifier()
    site = Site(metering, DepositWatcher(FakeDepositSource(), journal, clock), clock, deposit_poll_interval_s=0.05,
                notifier=notifier)
    site.start()
    driver = SchedulerDriver(site)
    driver.start()
    try:
        assert driver.scheduled() == sorted(job.name for job in site.jobs())
        wait_until(lambda: metering.ticks >= 3 and site.watcher.status == "ok", 10, "three ticks and a deposit poll")
        assert notifier.messages.count("WATCHDOG=1") >= 3
    finally:
        driver.shutdown()
        site.shutdown()
    assert not driver.running and not relays["a"].closed
