"""The billing state reaches the journal file when something happens, else once per `persist_interval_s`; every
reader shows the state as of the last tick; a crash bills exactly what the meter counted, and a meter reset inside
the unwritten interval costs exactly the energy counted since the last write."""

from __future__ import annotations

import os
import sqlite3
from fractions import Fraction

from tests.support.rigs import Rig


def stored(rig: Rig, socket_id: str = "a") -> tuple[int, int] | None:
    """(counter, pending units) of the socket's billing state as written in the file, read by another connection."""
    conn = sqlite3.connect(f"file:{rig.journal.path}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT counter_wh, pending_units FROM meter_state WHERE socket_id = ?",
                           (socket_id,)).fetchone()
    finally:
        conn.close()
    return None if row is None else (int(Fraction(row[0])), int(row[1]))


def step(rig: Rig, wh: int = 1, socket_id: str = "a") -> None:
    """The meter counts `wh` more, then one tick."""
    rig.meters[socket_id].energy_wh += wh
    rig.meters[socket_id].power_w = 3600.0 * wh
    rig.loop.run_ticks(1)


def billed_wh(rig: Rig, socket_id: str = "a") -> Fraction:
    usage = [e for e in rig.journal.all_entries(socket_id) if e.kind == "usage"]
    state = rig.journal.meter_state(socket_id)
    return sum((e.energy_wh for e in usage if e.energy_wh is not None), Fraction(0)) + state.pending_wh


def powered(tmp_path, credit: int = 10_000, **kwargs) -> Rig:
    rig = Rig(tmp_path, usage_entry_s=3600, predictive=False, **kwargs)
    rig.deposit("a", credit)
    rig.loop.run_ticks(2)
    assert rig.relays["a"].closed
    return rig


def test_quiet_ticks_keep_the_state_and_the_interval_writes_it_while_every_reader_follows_each_tick(tmp_path):
    rig = powered(tmp_path)
    writes = []  # (time, counter) each time the file's row changed
    last = stored(rig)
    for _ in range(200):
        step(rig)
        now, counter = rig.clock.now(), rig.meters["a"].energy_wh
        row = stored(rig)
        if row != last:
            writes.append((now, row[0]))
            assert row == (counter, counter)  # the whole state of that tick, nothing older
            last = row
        # between writes the journal shows the tick's state: the balance moves by the Wh of each tick
        assert rig.journal.meter_state("a").baseline.counter_wh == counter
        assert rig.balance() == rig.journal.recomputed_balance("a") == 10_000 - counter
        assert rig.journal.totals("a") == {"credits": 10_000, "debits": 0, "pending": counter}
        assert rig.metering.state("a").balance.tokens == 10_000 - counter
    assert 3 <= len(writes) <= 4, writes  # 200 s at one write per 60 s
    assert all(b[0] - a[0] >= 60 for a, b in zip(writes, writes[1:], strict=False)), writes


def test_persist_interval_zero_writes_every_tick_that_bills(tmp_path):
    rig = powered(tmp_path, persist_interval_s=0)
    for _ in range(5):
        step(rig)
        assert stored(rig) == (rig.meters["a"].energy_wh,) * 2


def test_a_credit_writes_the_state_at_once_in_its_own_transaction(tmp_path):
    rig = powered(tmp_path)
    for _ in range(5):
        step(rig)
    assert stored(rig)[0] < 5
    rig.deposit("a", 50)
    rig.loop.run_ticks(1)  # the deposit poll books it, before the next reading
    assert stored(rig) == (5, 5)
    assert rig.balance() == 10_050 - 5


def test_a_usage_entry_writes_the_state_with_it(tmp_path):
    rig = Rig(tmp_path, usage_entry_s=10, predictive=False)
    rig.deposit("a", 10_000)
    rig.loop.run_ticks(2)
    entries: list = []
    while not entries:
        step(rig)
        entries = [e for e in rig.journal.all_entries("a") if e.kind == "usage"]
    counter = rig.meters["a"].energy_wh
    assert len(entries) == 1 and stored(rig) == (counter, 0)
    step(rig)
    assert stored(rig) == (counter, 0)  # the next quiet tick keeps its state


def test_every_socket_closes_its_usage_at_the_last_tick_of_each_aligned_period(tmp_path):
    """One commit a period for all sockets, however their use began, each entry's time inside its period."""
    rig = Rig(tmp_path, ids=("a", "b"), usage_entry_s=900, predictive=False)
    for socket_id in ("a", "b"):
        rig.deposit(socket_id, 100_000)
    rig.loop.run_ticks(2)
    ends: dict[str, list[float]] = {}
    for n in range(3600):
        if n % 7 == 3:  # b draws now and then: its use begins at other times than a's
            rig.meters["b"].energy_wh += 2
        step(rig, socket_id="a")
    for socket_id in ("a", "b"):
        usage = [e for e in rig.journal.all_entries(socket_id) if e.kind == "usage"]
        ends[socket_id] = [e.at for e in usage]
        assert all(e.at % 900 == 899 for e in usage), [e.at for e in usage]
        assert sum(e.energy_wh for e in usage) + rig.journal.meter_state(socket_id).pending_wh == (
            rig.meters[socket_id].energy_wh)
    assert ends["a"] == ends["b"] and len(ends["a"]) >= 4


def test_a_relay_cut_for_lack_of_credit_writes_the_state_at_once(tmp_path):
    rig = powered(tmp_path, credit=20)
    for _ in range(19):
        step(rig)
    assert stored(rig)[0] < 19 and rig.relays["a"].closed
    step(rig)  # the 20th Wh: no credit left
    assert not rig.relays["a"].closed
    assert stored(rig) == (20, 20)  # the file says what the pages say: nothing left (written with credit_off)
    assert rig.balance() == 0


def test_a_counter_anomaly_event_writes_the_state_at_once(tmp_path):
    rig = powered(tmp_path)
    for _ in range(10):
        step(rig)
    assert stored(rig)[0] < 10
    rig.meters["a"].energy_wh = 0  # the meter is reset
    rig.loop.run_ticks(3)  # confirmed by three readings in a row
    assert [e["kind"] for e in rig.journal.events("a") if e["kind"] == "counter_reset"] == ["counter_reset"]
    assert stored(rig) == (0, 10)


def test_shutdown_writes_every_state(tmp_path):
    rig = powered(tmp_path, ids=("a", "b"))
    rig.deposit("b", 10_000)
    rig.loop.run_ticks(2)
    for _ in range(7):
        step(rig, 1, "a")
        step(rig, 2, "b")
    assert stored(rig, "a")[0] < 7
    rig.site.shutdown()
    # closed into entries at shutdown: the counters billed, nothing pending
    assert stored(rig, "a") == (7, 0) and stored(rig, "b") == (14, 0)
    assert billed_wh(rig, "a") == 7 and billed_wh(rig, "b") == 14


def crash(rig: Rig) -> None:
    """The process dies: no shutdown; the journal's connection goes without writing what it held."""
    rig.journal.close()
    rig.open()


def test_a_crash_between_writes_bills_exactly_what_the_meter_counted(tmp_path):
    rig = powered(tmp_path)
    for _ in range(90):
        step(rig)
    written = stored(rig)[0]
    assert written < 90  # the last 30-odd Wh were only in memory
    crash(rig)
    assert rig.journal.meter_state("a").baseline.counter_wh == written
    rig.deposit("a", 1)  # a new credit switches the relay on again
    rig.loop.run_ticks(2)
    assert rig.balance() == 10_001 - 90  # the first reading after the start billed the whole delta
    for _ in range(30):
        step(rig)
    rig.site.shutdown()
    assert billed_wh(rig) == rig.meters["a"].energy_wh == 120
    assert rig.balance() == rig.journal.recomputed_balance("a") == 10_001 - 120


def test_a_meter_reset_inside_the_unwritten_interval_costs_the_energy_counted_since_the_last_write(tmp_path):
    """The meter counted to C1, the file's state is at C0: a crash, then the meter is reset and counts on. The
    restarted loop sees a reset from C0 and bills from 0, so C1 - C0 Wh (at most persist_interval_s of the socket's
    use) are never billed. Without the crash (the same reset, the state in memory) nothing is lost."""
    rig = powered(tmp_path)
    for _ in range(90):
        step(rig)
    c0, c1 = stored(rig)[0], rig.meters["a"].energy_wh
    assert 0 < c1 - c0 <= 60
    crash(rig)
    rig.meters["a"].energy_wh = 5  # reset while the controller was down, and 5 Wh counted since
    rig.loop.run_ticks(4)  # three readings confirm the reset
    assert [e["kind"] for e in rig.journal.events("a") if e["kind"] == "counter_reset"] == ["counter_reset"]
    rig.deposit("a", 1)
    rig.loop.run_ticks(2)
    for _ in range(20):
        step(rig)
    rig.site.shutdown()
    metered = c1 + 5 + 20
    assert billed_wh(rig) == metered - (c1 - c0)
    assert rig.balance() == 10_001 - (metered - (c1 - c0))

    again = powered(tmp_path / "no-crash")
    for _ in range(90):
        step(again)
    again.meters["a"].energy_wh = 0
    again.loop.run_ticks(4)
    for _ in range(20):
        step(again)
    again.site.shutdown()
    assert billed_wh(again) == 90 + 20


def test_a_relay_switched_off_for_a_silent_meter_writes_the_state_kept(tmp_path):
    rig = powered(tmp_path)
    for _ in range(10):
        step(rig)
    assert stored(rig)[0] < 10
    rig.meters["a"].offline = True
    events = len(rig.journal.events("a", 100))
    while rig.relays["a"].closed:
        assert stored(rig)[0] < 10
        rig.loop.run_ticks(1)
    assert len(rig.journal.events("a", 100)) == events  # no event wrote it: the switch did
    assert stored(rig) == (10, 10)


def test_a_credit_is_synced_at_commit_and_routine_billing_is_not(tmp_path, monkeypatch):
    """SQLite syncs nothing at a commit with synchronous=NORMAL; the journal syncs money's commits itself."""
    rig = powered(tmp_path, persist_interval_s=0)
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(os.readlink(f"/proc/self/fd/{fd}")) or real_fsync(fd))
    for _ in range(3):
        step(rig)  # each tick writes its state: none is synced
    assert synced == [] and stored(rig) == (3, 3)
    rig.deposit("a", 50)
    rig.loop.run_ticks(1)
    assert synced == [f"{rig.journal.path}-wal"]
