"""Crash safety: SIGKILL the running controller at random moments and check what survives.

Each campaign drives one data directory through many trials: start
`app.py --config FILE`, pay deposits into the mock ledger from this process
while the controller runs (both processes write the ledger file), kill the
controller with SIGKILL at a random moment (during start-up, right after it
comes up, while it runs, around the crediting of a payment, the moment a
meter saves a new counter value, inside or just after a tick's commit, right
at a cut-off), then check the files it left behind:

- the journal passes SQLite's integrity check and has only grown (every entry
  seen after an earlier kill is still there, unchanged);
- every socket's balance is the sum of its entries minus the pending usage,
  however it is computed (cached on open, recomputed, totals, raw SQL);
- every credited deposit was paid into the mock ledger, to that socket, with
  that amount, and is credited once; the credited deposits are exactly the
  payments up to the watcher's cursor (credits and cursor commit together);
- billed energy (usage entries plus pending) equals the last billed meter
  counter, exactly, and the units debited equal tariff x energy exactly
  (with the carry); the meter's persisted counter is never behind the
  journal's baseline, and ahead of it only by what the meter could have
  counted since that baseline was read (the tick in flight);
- the meter never loses energy across a kill, and a restart bills from where
  the meter stopped.

A final clean run lets the watcher catch up; after SIGTERM every payment is
credited exactly once and every Wh the meters counted is billed.
"""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import time
from collections import Counter
from fractions import Fraction
from pathlib import Path

import pytest

from ledgers.mock import MockLedger, mock_address
from payg.adapters.clocks import SystemClock
from payg.adapters.journal import SqliteJournal
from payg.domain.accounts import CREDIT_KINDS
from tests.support import ROOT, launcher

APP = ROOT / "app.py"

TRIALS_PER_CAMPAIGN = 60  # two campaigns: 120 kills in total

# Loads of several kW so that every trial bills whole Wh; max_power_w is raised to allow them.
SOCKETS = {
    "kitchen": {"meter": '{ kind = "simulated", load_w = 9000 }', "max_load_w": 9000.0},
    "laundry": {"meter": ('{ kind = "simulated", schedule = [{ at_s = 0, load_w = 6000 }, '
                          '{ at_s = 1.5, load_w = 1500 }], repeat_s = 4 }'),
                "max_load_w": 6000.0},
    "office": {"meter": '{ kind = "simulated", load_w = 3000 }', "max_load_w": 3000.0},
}
MAX_POWER_W = 10000
POLL_S = 0.02
# How often the kills that wait for a file to change look at it: a fifth of a millisecond, well inside the window they
# aim at (a tick's meter save to its commit), without spinning a core that the controller under test needs.
POLL_GAP_S = 0.0002
ANOMALY_KINDS = ("counter_reset", "implausible_jump")


def write_config(path: Path, data_dir: Path, tokens_per_wh: str, usage_entry_s: float | None) -> None:
    lines = [
        "[controller]",
        f'data_dir = "{data_dir}"',
        f"poll_interval_s = {POLL_S}",
        "deposit_poll_interval_s = 0.02",
        "meter_offline_grace_s = 1.0",
    ]
    if usage_entry_s is not None:
        lines.append(f"usage_entry_s = {usage_entry_s}")
    lines += ["", "[web]", "enabled = false", "", "[ledger]", 'backend = "mock"', "",
              "[tariff]", f'tokens_per_wh = "{tokens_per_wh}"', ""]
    for socket_id, spec in SOCKETS.items():
        lines += ["[[sockets]]", f'id = "{socket_id}"', f"max_power_w = {MAX_POWER_W}",
                  f"meter = {spec['meter']}", 'relay = { kind = "simulated" }', ""]
    path.write_text("\n".join(lines))


def log_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


class Payer:
    """Pays into the mock ledger from the test process and remembers every payment."""

    def __init__(self, ledger: MockLedger, rng: random.Random):
        self.ledger = ledger
        self.rng = rng
        self.payments: dict[str, tuple[str, int]] = {}  # deposit id -> (socket id, amount)
        self.foreign: set[str] = set()

        # Roughly each socket's balance once everything paid is credited: payments go to sockets that are
        # nearly out of credit, so that relays keep running out and kills land near cut-offs.
        self.expected_balance = {socket_id: 0 for socket_id in SOCKETS}

    def pay_random(self) -> None:
        low = [s for s, balance in self.expected_balance.items() if balance <= 2]
        if low:
            self.pay(self.rng.choice(low), self.rng.randint(1, 4))

    def pay(self, socket_id: str, amount: int) -> None:
        deposit_id = self.ledger.pay(socket_id, amount)
        assert deposit_id not in self.payments
        self.payments[deposit_id] = (socket_id, amount)
        self.expected_balance[socket_id] += amount

    def pay_foreign(self) -> None:
        """A payment to an address that is no socket's: listed by the ledger, never credited."""
        self.foreign.add(self.ledger.pay_to(mock_address("not-a-socket-here"), 5))


class Checker:
    """Everything that must hold in the files a killed controller leaves behind."""

    def __init__(self, data_dir: Path, tariff: Fraction, payer: Payer):
        self.data_dir = data_dir
        self.tariff = tariff
        self.payer = payer
        self.entries: dict[int, tuple] = {}  # every entry seen so far, by id
        self.previous: dict[str, dict] = {}  # per socket: counters seen at the last check
        self.stats = Counter()

    def ledger_rows(self) -> list[tuple[int, str, str, int]]:
        conn = sqlite3.connect(str(self.data_dir / "mock-ledger.sqlite"), timeout=30)
        try:
            return conn.execute("SELECT seq, deposit_id, address, amount FROM payments ORDER BY seq").fetchall()
        finally:
            conn.close()

    def meter_file(self, socket_id: str) -> dict | None:
        path = self.data_dir / "simulated" / f"{socket_id}.json"
        if not path.exists():
            return None
        return json.loads(path.read_text())

    def check(self, t_kill: float, context: str, clean_stop: bool = False) -> dict:
        """Check the files; returns {"cursor": seq or 0, "credited": {deposit id: count}}."""
        rows = self.ledger_rows()
        self._check_ledger(rows, context)
        journal_path = self.data_dir / "journal.sqlite"
        if not journal_path.exists():
            self._check_no_journal(context)
            return {"cursor": 0, "credited": {}}

        conn = sqlite3.connect(str(journal_path), timeout=30)
        try:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok", context
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if not {"entries", "meter_state", "cursors", "events", "overrides"} <= tables:
                # Killed while the schema was being created: nothing can have been booked yet.
                for table in {"entries", "meter_state", "cursors"} & tables:
                    assert conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] == 0, context
                self._check_no_journal(context)
                self.stats["partial_schema"] += 1
                return {"cursor": 0, "credited": {}}
            entries = conn.execute("SELECT id, socket_id, at, kind, amount, energy_wh, idem_key, memo"
                                   " FROM entries ORDER BY id").fetchall()
            states = {r[0]: r for r in conn.execute(
                "SELECT socket_id, counter_wh, read_at, carry, pending_units, pending_wh, pending_since"
                " FROM meter_state")}
            cursor_row = conn.execute("SELECT value FROM cursors WHERE name = 'deposits:mock'").fetchone()
            anomalies = conn.execute(f"SELECT socket_id, kind, detail FROM events WHERE kind IN {ANOMALY_KINDS}"
                                     ).fetchall()
        finally:
            conn.close()

        assert not anomalies, f"{context}: a restart looked like a meter fault: {anomalies}"
        assert set(states) <= set(SOCKETS), context
        self._check_append_only(entries, context)
        credited = self._check_deposits(entries, cursor_row, rows, context)
        self._check_balances(journal_path, entries, states, context)
        for socket_id in SOCKETS:
            self.payer.expected_balance[socket_id] = self.stats[f"balance:{socket_id}"] + sum(
                amount for deposit_id, (s, amount) in self.payer.payments.items()
                if s == socket_id and deposit_id not in credited)
        for socket_id in SOCKETS:
            self._check_energy(socket_id, entries, states.get(socket_id), t_kill, context, clean_stop)
        return {"cursor": int(cursor_row[0]) if cursor_row and cursor_row[0] else 0, "credited": credited}

    def _check_ledger(self, rows, context: str) -> None:
        """The ledger holds exactly the payments this test made (nothing lost, nothing invented)."""
        by_id = {deposit_id: (address, amount) for _, deposit_id, address, amount in rows}
        assert len(by_id) == len(rows), context
        expected = {deposit_id: (mock_address(socket_id), amount)
                    for deposit_id, (socket_id, amount) in self.payer.payments.items()}
        foreign = {d: by_id[d] for d in self.payer.foreign if d in by_id}
        assert set(foreign) == self.payer.foreign, context
        assert {d: v for d, v in by_id.items() if d not in self.payer.foreign} == expected, context

    def _check_no_journal(self, context: str) -> None:
        for socket_id in SOCKETS:
            saved = self.meter_file(socket_id)
            # Relays close only after a committed healthy reading: without one the meters counted nothing.
            if saved is not None:
                assert saved["energy_wh"] == 0 and saved["counter_wh"] == 0, (context, socket_id, saved)
        assert not self.entries, f"{context}: the journal lost entries it had: {len(self.entries)}"
        assert not self.previous, f"{context}: the journal lost its meter state"

    def _check_append_only(self, entries, context: str) -> None:
        now = {e[0]: tuple(e) for e in entries}
        for entry_id, entry in self.entries.items():
            assert now.get(entry_id) == entry, f"{context}: entry {entry_id} changed or vanished: {entry}"
        self.entries = now

    def _check_deposits(self, entries, cursor_row, rows, context: str) -> dict[str, int]:
        kinds = {e[3] for e in entries}
        assert kinds <= {"deposit", "usage"}, f"{context}: unexpected entry kinds {kinds}"
        deposits = [e for e in entries if e[3] == "deposit"]
        keys = Counter(e[6] for e in deposits)
        twice = {k: n for k, n in keys.items() if n > 1}
        assert not twice, f"{context}: deposits credited more than once: {twice}"
        credited: dict[str, int] = {}
        for _id, socket_id, _at, _kind, amount, energy_wh, key, _memo in deposits:
            assert key is not None and key.startswith("mock:"), (context, key)
            deposit_id = key[len("mock:"):]
            assert deposit_id in self.payer.payments, f"{context}: credited deposit {deposit_id} was never paid"
            assert self.payer.payments[deposit_id] == (socket_id, amount), (
                f"{context}: deposit {deposit_id} paid {self.payer.payments[deposit_id]}, credited "
                f"{(socket_id, amount)}")
            assert energy_wh is None, context
            credited[deposit_id] = credited.get(deposit_id, 0) + 1
        # The credits and the cursor are one transaction: credited == every socket payment up to the cursor.
        cursor = int(cursor_row[0]) if cursor_row and cursor_row[0] else 0
        known = {mock_address(s) for s in SOCKETS}
        assert cursor <= (rows[-1][0] if rows else 0), context
        expected = {deposit_id for seq, deposit_id, address, _ in rows if seq <= cursor and address in known}
        assert set(credited) == expected, (
            f"{context}: cursor {cursor}; credited but beyond the cursor: {set(credited) - expected}; "
            f"within the cursor but not credited: {expected - set(credited)}")
        return credited

    def _check_balances(self, journal_path: Path, entries, states, context: str) -> None:
        journal = SqliteJournal(journal_path)
        try:
            assert journal.integrity_ok(), context
            for socket_id in SOCKETS:
                own = [e for e in entries if e[1] == socket_id]
                credits = sum(e[4] for e in own if e[3] in CREDIT_KINDS)
                debits = -sum(e[4] for e in own if e[3] not in CREDIT_KINDS)
                assert all(e[4] > 0 for e in own if e[3] in CREDIT_KINDS), context
                assert all(e[4] <= 0 for e in own if e[3] not in CREDIT_KINDS), context
                pending = states[socket_id][4] if socket_id in states else 0
                totals = journal.totals(socket_id)
                assert totals == {"credits": credits, "debits": debits, "pending": pending}, (context, socket_id)
                expected = credits - debits - pending
                assert journal.balance(socket_id) == expected, (context, socket_id)
                assert journal.recomputed_balance(socket_id) == expected, (context, socket_id)
                # The relay opens at zero within a tick (earlier, predictively): a debt is an overshoot
                # of a fraction of a Wh, a few Wh at most even on a slow machine.
                floor = -(2 + SOCKETS[socket_id]["max_load_w"] * 3 / 3600) * self.tariff
                assert expected >= floor, f"{context}: {socket_id} is {-expected} in debt (relay left on?)"
                self.stats["min_balance"] = min(self.stats.get("min_balance", 0), expected)
                self.stats[f"balance:{socket_id}"] = expected
        finally:
            journal.close()

    def _check_energy(self, socket_id: str, entries, state, t_kill: float, context: str, clean_stop: bool) -> None:
        where = f"{context}: {socket_id}"
        usage = [e for e in entries if e[1] == socket_id and e[3] == "usage"]
        saved = self.meter_file(socket_id)
        prev = self.previous.get(socket_id, {})
        if state is None:
            assert not usage, where
            assert not prev, f"{where}: the meter state row vanished"
            if saved is not None:
                assert saved["energy_wh"] == 0 and saved["counter_wh"] == 0, (where, saved)
            return
        _, counter_raw, read_at, carry_raw, pending_units, pending_wh_raw, _pending_since = state
        counter, carry, pending_wh = Fraction(counter_raw), Fraction(carry_raw), Fraction(pending_wh_raw)
        assert all(e[5] is not None for e in usage), where
        billed_wh = sum((Fraction(e[5]) for e in usage), Fraction(0)) + pending_wh
        debited = -sum(e[4] for e in usage) + pending_units
        # A fresh data dir: the meter started at 0 and no restart may look like a reset.
        assert billed_wh == counter - 0, f"{where}: billed {billed_wh} Wh, meter counter baseline {counter} Wh"
        assert 0 <= carry < 1, where
        assert debited + carry == billed_wh * self.tariff, (
            f"{where}: debited {debited} + carry {carry} units for {billed_wh} Wh at {self.tariff}/Wh")
        assert pending_wh >= 0 and pending_units >= 0, where

        assert saved is not None, f"{where}: the journal billed a reading the meter never saved"
        file_counter, file_energy = saved["counter_wh"], float(saved["energy_wh"])
        # A whole-Wh counter over the true energy (forgiving float noise of a nano-Wh).
        assert file_counter <= file_energy + 1e-9 < file_counter + 1, (where, saved)
        assert counter.denominator == 1, where
        # The meter saves before the tick commits: it may be ahead of the journal, never behind.
        assert file_counter >= counter, f"{where}: the journal billed {counter} Wh, the meter shows {file_counter}"
        if clean_stop:
            assert file_counter == counter, f"{where}: a clean stop left {file_counter - counter} Wh unbilled"
            assert pending_units == 0 and pending_wh == 0, f"{where}: a clean stop left usage pending"
        else:
            # Ahead only by the tick in flight: what the load could draw after the journal's baseline was
            # read (the counter then was below counter + 1) and before the kill.
            could = SOCKETS[socket_id]["max_load_w"] * max(t_kill - read_at, 0.0) / 3600
            assert file_energy < counter + 1 + could + 1e-6, (
                f"{where}: meter at {file_energy} Wh, journal baseline {counter} Wh read "
                f"{t_kill - read_at:.3f} s before the kill (at most {could:.3f} Wh more)")
        if file_counter > counter:
            self.stats["kills_with_usage_in_flight"] += 1
        # Across kills: the meter never loses energy, the baseline never moves back, and a restart that
        # committed anything billed from where the meter had stopped.
        if prev:
            assert file_energy >= prev["file_energy"], f"{where}: the meter lost energy across a restart"
            assert counter >= prev["journal_counter"], f"{where}: the billed baseline went back"
            assert counter == prev["journal_counter"] or counter >= prev["file_counter"], (
                f"{where}: billed from {prev['journal_counter']} to {counter} Wh, but the meter had stopped at "
                f"{prev['file_counter']} Wh")
        self.previous[socket_id] = {"journal_counter": counter, "file_counter": file_counter,
                                    "file_energy": file_energy}
        self.stats[f"billed_wh:{socket_id}"] = int(counter)


def wait_for_line(proc: launcher.Process, log: Path, text: str, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if text in log_text(log):
            return True
        if proc.poll() is not None:
            return text in log_text(log)
        time.sleep(0.005)
    return False


def start(config: Path, log: Path, cwd: Path) -> launcher.Process:
    return launcher.start(["--config", str(config)], cwd=cwd, stdout=log)


def kill(proc: launcher.Process) -> float:
    """SIGKILL and reap; returns a time after which the dead controller cannot have done anything."""
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    return time.time()


def kill_on_counter_step(proc: launcher.Process, data_dir: Path, socket_id: str, timeout_s: float,
                         journal_write_delay_s: float | None) -> bool:
    """SIGKILL the moment a meter saves a higher counter (before the tick commits), or, with a delay,
    that long after the journal's next write (the tick's commit: while writing it, syncing it, just after)."""
    path = data_dir / "simulated" / f"{socket_id}.json"
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(POLL_GAP_S)
        try:
            counter = json.loads(path.read_text())["counter_wh"]
        except (FileNotFoundError, ValueError):
            continue
        if last is not None and counter > last:
            if journal_write_delay_s is not None:
                wait_for_journal_write(data_dir, journal_write_delay_s, deadline)
            proc.send_signal(signal.SIGKILL)
            return True
        last = counter
    return False


def wait_for_journal_write(data_dir: Path, delay_s: float, deadline: float) -> bool:
    """Wait for the journal's next write (its WAL file changes), then busy-wait `delay_s` more (to the microsecond)."""
    wal = data_dir / "journal.sqlite-wal"

    def mtime() -> int | None:
        try:
            return wal.stat().st_mtime_ns
        except FileNotFoundError:
            return None

    written = mtime()
    while mtime() == written:
        if time.monotonic() > deadline:
            return False
        time.sleep(POLL_GAP_S)
    until = time.perf_counter() + delay_s
    while time.perf_counter() < until:
        pass
    return True


def run_until(proc: launcher.Process, log: Path, seconds: float, pay_times: list[float], payer: Payer,
              context: str) -> None:
    """Let the controller run for `seconds`, paying a deposit at each of `pay_times` (relative)."""
    begin = time.monotonic()
    pending = sorted(pay_times)
    while True:
        elapsed = time.monotonic() - begin
        while pending and pending[0] <= elapsed:
            pending.pop(0)
            payer.pay_random()
        if elapsed >= seconds:
            return
        if proc.poll() is not None:
            pytest.fail(f"{context}: the controller exited by itself ({proc.returncode}):\n{log_text(log)}")
        time.sleep(min(0.005, seconds - elapsed, *(t - elapsed for t in pending[:1])))


@pytest.mark.slow
@pytest.mark.parametrize("tokens_per_wh, seed", [("1", 20251), ("0.75", 90417)])
def test_sigkill_at_random_moments_loses_and_duplicates_nothing(tmp_path: Path, tokens_per_wh: str, seed: int):
    rng = random.Random(seed)
    tariff = Fraction(tokens_per_wh)
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o700)
    config = tmp_path / "payg.toml"
    ledger = MockLedger(data_dir / "mock-ledger.sqlite", SystemClock(), list(SOCKETS))
    payer = Payer(ledger, rng)
    checker = Checker(data_dir, tariff, payer)
    modes = Counter()
    n = TRIALS_PER_CAMPAIGN
    schedule = (["startup"] * (n // 5) + ["just-up"] * (n // 10) + ["after-payment"] * (n // 5)
                + ["counter-step"] * (n // 4) + ["cut-off"] * (n // 10))
    schedule += ["running"] * (n - len(schedule))
    rng.shuffle(schedule)
    try:
        for trial in range(TRIALS_PER_CAMPAIGN):
            usage_entry_s = rng.choice([0, None])  # None: the default (900 s, aligned)
            write_config(config, data_dir, tokens_per_wh, usage_entry_s)
            log = tmp_path / f"trial-{trial:03d}.log"
            mode = schedule[trial]
            modes[mode] += 1
            context = f"trial {trial} ({mode}, usage_entry_s={usage_entry_s}, log {log})"
            proc = start(config, log, tmp_path)
            try:
                if mode == "startup":
                    # Anywhere from the start (the config, the journal, every relay open) to the first ticks.
                    run_until(proc, log, rng.uniform(0.0, 0.35), [], payer, context)
                else:
                    assert wait_for_line(proc, log, "payg running", 30), f"{context}: no start:\n{log_text(log)}"
                    if mode == "counter-step":
                        socket_id = rng.choice(list(SOCKETS))
                        payer.pay(socket_id, 2)
                        run_until(proc, log, rng.uniform(0.0, 0.3), [], payer, context)
                        # Half of them the moment the meter saves (usage in flight: the tick has not committed),
                        # half around the commit that follows.
                        delay_s = rng.choice([None, None, None, 0.0, rng.uniform(0, 0.0005),
                                              rng.uniform(0, 0.003)])
                        stepped = kill_on_counter_step(proc, data_dir, socket_id, 3.0, delay_s)
                        modes["counter-step-hit"] += stepped
                    elif mode == "cut-off":
                        # Right when the relay opens for lack of credit (the kitchen draws the most).
                        if payer.expected_balance["kitchen"] <= 0:
                            payer.pay("kitchen", rng.randint(1, 2))
                        seen = log_text(log).count("socket kitchen off: credit exhausted")
                        tokens_per_s = SOCKETS["kitchen"]["max_load_w"] / 3600 * float(tariff)
                        deadline = time.monotonic() + 3 + 1.5 * payer.expected_balance["kitchen"] / tokens_per_s
                        while (log_text(log).count("socket kitchen off: credit exhausted") == seen
                               and time.monotonic() < deadline):
                            run_until(proc, log, 0.002, [], payer, context)
                        modes["cut-off-hit"] += time.monotonic() < deadline
                        run_until(proc, log, rng.uniform(0.0, 0.03), [], payer, context)
                    elif mode == "just-up":
                        run_until(proc, log, rng.uniform(0.0, 0.05), [], payer, context)
                    elif mode == "running":
                        seconds = rng.uniform(0.05, 0.9)
                        pays = [rng.uniform(0, seconds) for _ in range(rng.randint(0, 3))]
                        run_until(proc, log, seconds, pays, payer, context)
                    else:
                        # Around the watcher's crediting transaction.
                        run_until(proc, log, rng.uniform(0.0, 0.4), [], payer, context)
                        payer.pay(rng.choice(list(SOCKETS)), rng.randint(1, 2))
                        if rng.random() < 0.5:
                            run_until(proc, log, rng.uniform(0.0, 0.06), [], payer, context)
                        else:
                            delay_s = rng.choice([0.0, rng.uniform(0, 0.0005), rng.uniform(0, 0.003)])
                            wait_for_journal_write(data_dir, delay_s, time.monotonic() + 3)
            finally:
                t_kill = kill(proc)
            checker.check(t_kill, context)
            # Payments also arrive while the controller is down.
            for _ in range(rng.choice([0, 0, 1, 2])):
                payer.pay_random()
            if trial == TRIALS_PER_CAMPAIGN // 2:
                payer.pay_foreign()

        # A clean run: the watcher catches up with every payment, then SIGTERM bills everything counted.
        write_config(config, data_dir, tokens_per_wh, None)
        log = tmp_path / "final.log"
        context = f"final run (log {log})"
        proc = start(config, log, tmp_path)
        try:
            assert wait_for_line(proc, log, "payg running", 30), f"{context}: no start:\n{log_text(log)}"
            last_seq = checker.ledger_rows()[-1][0]
            deadline = time.monotonic() + 30
            while True:
                conn = sqlite3.connect(str(data_dir / "journal.sqlite"), timeout=30)
                try:
                    row = conn.execute("SELECT value FROM cursors WHERE name = 'deposits:mock'").fetchone()
                finally:
                    conn.close()
                if row and row[0] and int(row[0]) >= last_seq:
                    break
                assert proc.poll() is None, f"{context}: exited:\n{log_text(log)}"
                assert time.monotonic() < deadline, f"{context}: the watcher did not catch up:\n{log_text(log)}"
                time.sleep(0.02)
            run_until(proc, log, 0.3, [], payer, context)  # a few ticks with the relays deciding on it
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0, f"{context}:\n{log_text(log)}"
        finally:
            if proc.poll() is None:
                kill(proc)
        assert "all relays open" in log_text(log), log_text(log)
        result = checker.check(time.time(), context, clean_stop=True)
    finally:
        ledger.close()

    # Nothing lost: every payment to a socket credited exactly once, the foreign one never.
    assert result["credited"] == {deposit_id: 1 for deposit_id in payer.payments}
    assert not payer.foreign & set(result["credited"])
    # The campaign must have exercised what it claims to check.
    cut_offs = sum(log_text(p).count("credit exhausted") for p in tmp_path.glob("*.log"))
    hits = {"counter-step": modes["counter-step-hit"], "cut-off": modes["cut-off-hit"]}
    summary = (f"{tokens_per_wh} token/Wh: kills {dict(modes)}, {len(payer.payments)} payments, "
               f"{cut_offs} cut-offs, {dict(checker.stats)}")
    print("\n" + summary)
    assert len(payer.payments) >= 20, summary
    for socket_id in SOCKETS:
        assert checker.stats[f"billed_wh:{socket_id}"] >= 10, summary
    # Targeted kills must mostly land where they aim (a meter's counter step, a cut-off).
    assert all(hits[m] * 2 >= modes[m] for m in hits), summary
    assert checker.stats["kills_with_usage_in_flight"] >= 2, summary
