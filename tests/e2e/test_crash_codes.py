"""Crash safety of top-up codes: redeem codes through the real controller while SIGKILLing it.

The landlord makes the codes through the API with the token (`POST /api/sockets/<id>/codes`)
in a first, undisturbed run of `app.py`: that is how a landlord's button or `payg code`
makes them, and the test needs their counts and tokens from the answers. Then the tenant
side: codes are entered one by one (`POST /api/sockets/<id>/redeem`, same-origin JSON, no
auth) while the controller is SIGKILLed at random moments: during start-up, while a request
is in flight, right when the journal is written (the redeem's commit, before the answer
leaves), or just after an answer. A code whose answer was lost (the connection reset or
closed) is entered again after the restart, first, as a tenant would; a code whose
request was refused before it reached a server is simply entered again.

One socket draws no power (its balance is exactly the codes' tokens); the other draws
9 kW at 1 token/Wh, so ticks bill usage while codes are booked and the balance is the
codes' tokens minus the billed usage. Per socket, codes are entered in order, with some
neighbours swapped (the format accepts an unused code less than 16 counts below the newest),
so the decoder's memory of used counts must survive the kills too.

After every kill, the files left behind are checked: SQLite's integrity check; the journal
has only grown; every code credit is one issued code, once, with its tokens; every code
whose answer said "booked" is there; the decoder's memory (code_counters) matches the
credits exactly (the highest count credited, and the used counts near it), since both are
one transaction; and each socket's balance adds up. At the end every code is credited
exactly once and each answer agrees with the journal: a code answered "booked" was booked by
that very request (its entry's time lies within that controller's life), and a code answered
"used" on a retry was booked by an earlier request whose answer was lost. A last, clean run
refuses codes entered again as used, shows the balance in the API, and, stopped with
SIGTERM, has billed every Wh the meter counted. 48 codes, about 40 kills, about 30 s.
"""

from __future__ import annotations

import http.client
import json
import random
import signal
import sqlite3
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from payg.adapters.journal import SqliteJournal
from payg.domain.accounts import CREDIT_KINDS
from tests.support import ROOT, free_port, launcher

APP = ROOT / "app.py"
SOCKETS = {"hall": 0.0, "kitchen": 9000.0}  # load in W; 9 kW at 1 token/Wh is 2.5 tokens a second
MAX_POWER_W = 10000  # raised to allow the kitchen's load
CODES_PER_SOCKET = 24
WINDOW = 16  # the format accepts an unused code less than this many counts below the highest used
POLL_S = 0.1
UP_TIMEOUT_S = 30


def write_config(path: Path, data_dir: Path, port: int) -> None:
    lines = ["[controller]", f'data_dir = "{data_dir}"', f"poll_interval_s = {POLL_S}",
             "meter_offline_grace_s = 1.0", "", "[web]", 'host = "127.0.0.1"', f"port = {port}", "",
             "[ledger]", 'backend = "mock"', "", "[tariff]", "tokens_per_wh = 1", ""]
    for socket_id, load_w in SOCKETS.items():
        lines += ["[[sockets]]", f'id = "{socket_id}"', f"max_power_w = {MAX_POWER_W}",
                  f'meter = {{ kind = "simulated", load_w = {load_w} }}',
                  'relay = { kind = "simulated" }', ""]
    path.write_text("\n".join(lines))


@dataclass
class Code:
    socket_id: str
    code: str
    count: int
    tokens: int
    answers: list[tuple[str, int]] = field(default_factory=list)  # (outcome, lifetime) of every request sent

    @property
    def key(self) -> str:
        return f"code:{self.socket_id}:{self.count}"


@dataclass
class Lifetime:
    started: float
    ended: float | None = None


class Unreached(Exception):
    """The connection was refused: the request reached no server (nothing to fear from entering it again)."""


class Lost(Exception):
    """The request was sent, or partly sent, and no answer came: it may or may not have been booked."""


def post(port: int, path: str, body: dict, headers: dict[str, str]) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        try:
            conn.connect()
        except ConnectionRefusedError:
            raise Unreached() from None
        try:
            conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json", **headers})
            resp = conn.getresponse()
            raw = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            raise Lost(repr(exc)) from None
        return resp.status, json.loads(raw)
    finally:
        conn.close()


def get(port: int, path: str) -> dict | None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return json.loads(resp.read()) if resp.status == 200 else None
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def log_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def kitchen_wh(data_dir: Path) -> int:
    """The kitchen meter's counter as it last saved it (0 before its first save)."""
    try:
        return json.loads((data_dir / "simulated" / "kitchen.json").read_text())["counter_wh"]
    except FileNotFoundError:  # the meter saves by os.replace: a file there is whole
        return 0


def wal_stamp(data_dir: Path) -> tuple[int, int] | None:
    try:
        st = (data_dir / "journal.sqlite-wal").stat()
    except FileNotFoundError:
        return None
    return st.st_mtime_ns, st.st_size


class Killer(threading.Thread):
    """SIGKILLs the controller after a delay, or right after the journal's next write (plus a delay)."""

    def __init__(self, proc: launcher.Process, delay_s: float, data_dir: Path | None = None):
        super().__init__(daemon=True)
        self.proc, self.delay_s, self.data_dir = proc, delay_s, data_dir
        self.armed = threading.Event()
        self.saw_write = False
        self.killed_at: float | None = None

    def run(self) -> None:
        if self.data_dir is not None:
            before = wal_stamp(self.data_dir)
            self.armed.set()
            deadline = time.monotonic() + 3
            while wal_stamp(self.data_dir) == before and time.monotonic() < deadline:
                time.sleep(0.0002)  # a fifth of a millisecond: the commit and the answer are milliseconds apart
            self.saw_write = time.monotonic() < deadline
            until = time.perf_counter() + self.delay_s
            while time.perf_counter() < until:
                pass
        else:
            self.armed.set()
            time.sleep(self.delay_s)
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.killed_at = time.time()


class Tenant:
    """Enters codes in order and remembers every answer."""

    def __init__(self, queue: list[Code]):
        self.queue = queue          # codes not answered yet, the next first (a lost one is put back first)
        self.port = 0
        self.life = 0
        self.stats = Counter()

    def enter_next(self) -> str:
        """Enter the next code once: 'answered', 'unreached', 'lost' or 'slowed' (429: waited as told)."""
        code = self.queue[0]
        try:
            status, body = post(self.port, f"/api/sockets/{code.socket_id}/redeem", {"code": code.code},
                                {"Origin": f"http://127.0.0.1:{self.port}"})
        except Unreached:
            self.stats["unreached"] += 1
            return "unreached"
        except Lost:
            code.answers.append(("lost", self.life))
            self.stats["lost"] += 1
            return "lost"
        retry = any(outcome == "lost" for outcome, _ in code.answers)
        if status == 200:
            assert body["tokens"] == code.tokens, (code, body)
            outcome = "booked" if body["booked"] else "already"
            assert body["view"]["id"] == code.socket_id, body
        elif status == 400 and body.get("reason") == "used":
            outcome = "used"
        elif status == 429:
            self.stats["slow_down"] += 1
            time.sleep(int(body["retry_after_s"]))
            return "slowed"
        else:
            pytest.fail(f"code {code} answered {status} {body}")
        code.answers.append((outcome, self.life))
        self.stats[f"{outcome}{'_on_retry' if retry else ''}"] += 1
        self.queue.pop(0)
        return "answered"

    def enter_answered(self, context: str) -> None:
        """Enter the next code on a controller that is up and not about to be killed: it must be answered."""
        for _ in range(10):
            result = self.enter_next()
            if result == "answered":
                return
            assert result == "slowed", f"{context}: {result} on a running controller"
        pytest.fail(f"{context}: slowed down ten times in a row")


class Checker:
    """What must hold in the journal a killed controller leaves behind."""

    def __init__(self, data_dir: Path, codes: list[Code]):
        self.data_dir = data_dir
        self.codes = {c.key: c for c in codes}
        self.seen: dict[int, tuple] = {}
        self.stats = Counter()

    def check(self, context: str) -> dict[str, tuple]:
        """Returns the code credits by key: (id, socket, at, kind, amount, energy, key, memo)."""
        path = self.data_dir / "journal.sqlite"
        conn = sqlite3.connect(str(path), timeout=30)
        try:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok", context
            entries = conn.execute("SELECT id, socket_id, at, kind, amount, energy_wh, idem_key, memo"
                                   " FROM entries ORDER BY id").fetchall()
            counters = {r[0]: (r[1], r[2], r[3]) for r in conn.execute(
                "SELECT socket_id, last_count, used_counts, issued_count FROM code_counters")}
            pending = dict(conn.execute("SELECT socket_id, pending_units FROM meter_state"))
            billed_wh = dict(conn.execute("SELECT socket_id, counter_wh FROM meter_state"))
        finally:
            conn.close()

        now = {e[0]: tuple(e) for e in entries}
        for entry_id, entry in self.seen.items():
            assert now.get(entry_id) == entry, f"{context}: entry {entry_id} changed or vanished: {entry}"
        self.seen = now

        kinds = Counter(e[3] for e in entries)
        assert set(kinds) <= {"credit", "usage"}, f"{context}: unexpected entries {kinds}"
        credits = [e for e in entries if e[3] == "credit"]
        keys = Counter(e[6] for e in credits)
        assert all(n == 1 for n in keys.values()), f"{context}: codes credited twice: {keys}"
        by_key = {e[6]: e for e in credits}
        for key, e in by_key.items():
            code = self.codes.get(key)
            assert code is not None, f"{context}: a credit {key} of no issued code"
            assert (e[1], e[4], e[5]) == (code.socket_id, code.tokens, None), (context, e, code)
            assert code.answers, f"{context}: {key} credited before it was ever entered"
        for code in self.codes.values():
            if any(outcome in ("booked", "used", "already") for outcome, _ in code.answers):
                assert code.key in by_key, f"{context}: {code} was answered {code.answers} but is not credited"

        for socket_id in SOCKETS:
            counts = sorted(int(k.rsplit(":", 1)[1]) for k in by_key if k.startswith(f"code:{socket_id}:"))
            last, used, issued = counters[socket_id]
            issued_counts = [c.count for c in self.codes.values() if c.socket_id == socket_id]
            assert issued == max(issued_counts), (context, socket_id, issued)
            # The decoder's memory and the credits are one transaction: they agree after any kill.
            assert last == (counts[-1] if counts else 0), (
                f"{context}: {socket_id} decoder's last count {last}, highest credited {counts[-1:]}")
            used_counts = [int(c) for c in used.split(",") if c]
            assert used_counts == [c for c in counts if c >= last - WINDOW], (
                f"{context}: {socket_id} used counts {used_counts}, credited {counts}")

        journal = SqliteJournal(path)
        try:
            assert journal.integrity_ok(), context
            for socket_id, load_w in SOCKETS.items():
                own = [e for e in entries if e[1] == socket_id]
                credited = sum(e[4] for e in own if e[3] in CREDIT_KINDS)
                debited = -sum(e[4] for e in own if e[3] not in CREDIT_KINDS)
                assert credited == sum(self.codes[e[6]].tokens for e in own if e[3] == "credit"), context
                expected = credited - debited - pending.get(socket_id, 0)
                assert journal.balance(socket_id) == expected, (context, socket_id)
                assert journal.recomputed_balance(socket_id) == expected, (context, socket_id)
                if not load_w:
                    assert debited == 0 and pending.get(socket_id, 0) == 0, (context, socket_id)
                    assert expected == credited, (context, socket_id)
                self.stats[f"billed:{socket_id}"] = debited + pending.get(socket_id, 0)
                if load_w:
                    # 1 token/Wh from a meter at 0 Wh: everything billed is the meter's billed counter.
                    assert debited + pending.get(socket_id, 0) == int(billed_wh[socket_id]), (context, socket_id)
        finally:
            journal.close()
        return by_key


def make_codes(port: int, data_dir: Path, rng: random.Random) -> list[Code]:
    """The landlord's side, through the API with the token: codes alternately for each socket."""
    token = (data_dir / "api-token").read_text().strip()
    made: list[Code] = []
    for i in range(CODES_PER_SOCKET * len(SOCKETS)):
        socket_id = list(SOCKETS)[i % len(SOCKETS)]
        tokens = 10 * rng.randint(1, 12)
        status, body = post(port, f"/api/sockets/{socket_id}/codes", {"tokens": tokens},
                            {"Authorization": f"Bearer {token}"})
        assert status == 201 and body["tokens"] == tokens and body["socket"] == socket_id, body
        made.append(Code(socket_id, body["code"], body["count"], tokens))
    for socket_id in SOCKETS:
        counts = [c.count for c in made if c.socket_id == socket_id]
        assert counts == list(range(2, 2 * CODES_PER_SOCKET + 1, 2)), counts  # Add-Time codes take even counts
    return made


def tenant_order(codes: list[Code], rng: random.Random) -> list[Code]:
    """Each socket's codes in order with some neighbours swapped, the sockets interleaved at random."""
    per_socket = {}
    for socket_id in SOCKETS:
        own = [c for c in codes if c.socket_id == socket_id]
        i = 0
        while i < len(own) - 1:
            if rng.random() < 0.3:
                own[i], own[i + 1] = own[i + 1], own[i]
                i += 2
            else:
                i += 1
        per_socket[socket_id] = own
    order = []
    while any(per_socket.values()):
        socket_id = rng.choice([s for s, left in per_socket.items() if left])
        order.append(per_socket[socket_id].pop(0))
    return order


def start(config: Path, log: Path) -> launcher.Process:
    return launcher.start(["--config", str(config)], cwd=log.parent, stdout=log)


def wait_up(proc: launcher.Process, port: int, log: Path) -> None:
    deadline = time.monotonic() + UP_TIMEOUT_S
    while get(port, "/api/sockets/hall") is None:
        assert proc.poll() is None, f"the controller exited ({proc.returncode}):\n{log_text(log)}"
        assert time.monotonic() < deadline, f"the controller did not come up:\n{log_text(log)}"
        time.sleep(0.01)


@pytest.mark.slow
def test_codes_redeemed_while_sigkilling_the_controller_credit_exactly_once(tmp_path: Path):
    rng = random.Random(7321)
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o700)
    config = tmp_path / "payg.toml"
    port = free_port()
    write_config(config, data_dir, port)
    lifetimes: list[Lifetime] = []

    # The landlord makes the codes, undisturbed.
    log = tmp_path / "issue.log"
    began = time.monotonic()
    proc = start(config, log)
    try:
        wait_up(proc, port, log)
        up_s = time.monotonic() - began  # how long a start takes here: the start-up kills aim within it
        codes = make_codes(port, data_dir, rng)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    checker = Checker(data_dir, codes)
    checker.check("after issuing")

    tenant = Tenant(tenant_order(codes, rng))
    tenant.port = port
    modes = Counter()
    schedule: list[str] = []
    trial = 0
    while tenant.queue:
        trial += 1
        assert trial <= 150, f"too many trials: {tenant.stats}"
        if not schedule:  # the kinds of kill in shuffled rounds, those around a commit the most
            schedule = ["startup"] * 2 + ["in-flight"] * 2 + ["at-commit"] * 3 + ["after-answer"] * 2
            rng.shuffle(schedule)
        mode = schedule.pop()
        modes[mode] += 1
        log = tmp_path / f"trial-{trial:03d}.log"
        context = f"trial {trial} ({mode}, log {log})"
        proc = start(config, log)
        lifetimes.append(Lifetime(time.time()))
        tenant.life = len(lifetimes) - 1
        killer = None
        try:
            if mode == "startup":
                # Anywhere from the start to just after the server answers; the tenant keeps trying.
                killer = Killer(proc, rng.uniform(0.0, 1.5 * up_s))
                killer.start()
                budget = rng.randint(1, 2)  # codes answered before the tenant waits for the kill
                while proc.poll() is None and tenant.queue and budget:
                    result = tenant.enter_next()
                    if result == "unreached":
                        time.sleep(0.01)  # not up yet: the tenant tries again
                    budget -= result == "answered"
            else:
                wait_up(proc, port, log)
                # Whatever was left unanswered by the last life is entered first (the tenant saw an error).
                while tenant.queue and any(o == "lost" for o, _ in tenant.queue[0].answers):
                    tenant.enter_answered(context)
                for _ in range(rng.randint(0, 1)):
                    if tenant.queue:
                        tenant.enter_answered(context)
                if mode == "in-flight":
                    killer = Killer(proc, rng.uniform(0.0, 0.02))
                elif mode == "at-commit":
                    killer = Killer(proc, rng.choice([0.0, rng.uniform(0.0, 0.0005), rng.uniform(0.0, 0.002)]),
                                    data_dir)
                else:  # the controller idle (ticking) after an answer
                    killer = Killer(proc, rng.uniform(0.0, 0.8))
                killer.start()
                killer.armed.wait()
                if mode != "after-answer":
                    # A code or two, the kill landing in one of them (or, late, just after them).
                    for _ in range(rng.randint(1, 2)):
                        if proc.poll() is not None or not tenant.queue or tenant.enter_next() in ("lost", "unreached"):
                            break
                if mode == "at-commit":
                    modes["at-commit-saw-write"] += killer.saw_write
        finally:
            if killer is not None:
                killer.join(timeout=30)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=30)
            lifetimes[-1].ended = killer.killed_at if killer and killer.killed_at else time.time()
        checker.check(context)

    # A clean run: codes entered again are refused as used, the API shows the balance, SIGTERM exits 0.
    log = tmp_path / "final.log"
    proc = start(config, log)
    lifetimes.append(Lifetime(time.time()))
    try:
        wait_up(proc, port, log)
        for code in (codes[0], codes[-1]):
            status, body = post(port, f"/api/sockets/{code.socket_id}/redeem", {"code": code.code},
                                {"Origin": f"http://127.0.0.1:{port}"})
            assert status == 400 and body["reason"] == "used", body
        deadline = time.monotonic() + 10
        while (hall := get(port, "/api/sockets/hall"))["relay"] != "on" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert hall["relay"] == "on", hall
        assert hall["balance_tokens"] == sum(c.tokens for c in codes if c.socket_id == "hall"), hall
        # The kitchen draws on its credit for a few ticks more: until its meter has counted 2 Wh in this run.
        counted = kitchen_wh(data_dir)
        deadline = time.monotonic() + 10
        while kitchen_wh(data_dir) < counted + 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert kitchen_wh(data_dir) >= counted + 2, f"the kitchen drew nothing in the final run:\n{log_text(log)}"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log_text(log)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
    lifetimes[-1].ended = time.time()
    credits = checker.check("final run")
    # A clean stop bills every Wh the kitchen's meter counted, across all the kills.
    meter = json.loads((data_dir / "simulated" / "kitchen.json").read_text())
    assert checker.stats["billed:kitchen"] == meter["counter_wh"] >= 2, (checker.stats, meter)

    # Every code credited exactly once, and every answer the tenant saw agrees with the journal.
    assert set(credits) == {c.key for c in codes}
    for code in codes:
        outcomes = [o for o, _ in code.answers]
        at = credits[code.key][2]
        assert outcomes.count("booked") + outcomes.count("already") <= 1, code
        assert outcomes[-1] in ("booked", "used", "already"), code
        assert "already" not in outcomes, f"{code}: the decoder's memory lagged its credit"
        if "booked" in outcomes:
            # Booked by the request that said so; any lost request before it booked nothing.
            assert outcomes.index("booked") == len(outcomes) - 1, code
            life = lifetimes[code.answers[-1][1]]
        else:
            # "used" on the first answer: only after a lost request, which is the one that booked it.
            assert outcomes[0] == "lost" and "booked" not in outcomes, code
            booked_in = [lifetimes[life] for o, life in code.answers if o == "lost"]
            life = next((lt for lt in booked_in if lt.started <= at <= lt.ended), None)
            assert life is not None, f"{code}: credited at {at}, in the life of none of its lost requests"
        assert life.started <= at <= life.ended, (code, at, life)
    expected_total = sum(c.tokens for c in codes)
    assert sum(e[4] for e in credits.values()) == expected_total

    kills = sum(v for k, v in modes.items() if k != "at-commit-saw-write")
    summary = (f"{len(codes)} codes, {kills} kills {dict(modes)}, answers {dict(tenant.stats)}, "
               f"usage billed {checker.stats['billed:kitchen']} tokens on kitchen")
    print("\n" + summary)
    # The campaign must have exercised what it claims: answers lost both before and after the commit.
    assert kills >= 15, summary
    assert tenant.stats["used_on_retry"] >= 3, summary
    assert tenant.stats["booked_on_retry"] >= 2, summary
