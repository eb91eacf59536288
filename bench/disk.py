"""What a controller writes to its disk: the footprint bench's persistence phases (bench/footprint.py).

Runs the real controller under `strace -f -y` (the writes and syncs, each with its file's path) with 16
simulated sockets, every one paid for and drawing, for a window of wall time, twice: `persist_interval_s = 0`
(the billing state written every tick the counter moves, as before issue 29) and the default (60 s). For
each: the journal's bytes written and fsyncs per hour (journal.sqlite and its -wal and -shm), the
simulated meters' state files apart (a real meter keeps its own counter), and the whole process's
write_bytes from /proc/<pid>/io (what reached the block layer, the page cache's writeback included).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

CALL = re.compile(r"^(\d+)\s+(\w+)\((\d+)<([^>]*)>")  # pid, syscall, fd, its path (strace -f -y)
RESUMED = re.compile(r"^(\d+)\s+<\.\.\. (\w+) resumed>")
RESULT = re.compile(r"\)\s+=\s+(-?\d+)")
CHECKPOINT_FRAMES = 1000  # SQLite's wal_autocheckpoint: 1000 frames of a 4096-byte page and a 24-byte header
WRITES = {"write", "pwrite64", "writev", "pwritev", "pwritev2"}
SYNCS = {"fsync", "fdatasync", "sync_file_range"}
# A write transaction takes WAL_WRITE_LOCK, byte 120 of the -shm file: one per commit, each an fsync with FULL.
WRITE_LOCK = re.compile(r"F_SETLK, \{l_type=F_WRLCK, l_whence=SEEK_SET, l_start=120, l_len=1")


@dataclass
class DiskFigures:
    seconds: float
    journal_bytes: int = 0
    journal_syncs: int = 0
    journal_commits: int = 0
    meter_bytes: int = 0
    meter_writes: int = 0  # each a new file (written, then renamed over the old): a 4 KiB page of the cache each
    meter_syncs: int = 0
    other_bytes: int = 0
    process_write_bytes: int = 0  # /proc/<pid>/io write_bytes over the window

    def per_hour(self, value: float) -> float:
        return value * 3600.0 / self.seconds

    def syncs_per_hour(self) -> float:
        """The fsyncs seen, or if more, those the WAL's checkpoints will make (two each: the WAL, the database):
        a window can end before the first checkpoint."""
        checkpoints = self.per_hour(self.journal_bytes) / (CHECKPOINT_FRAMES * (4096 + 24))
        return max(self.per_hour(self.journal_syncs), 2 * checkpoints)


def count(trace: Path, offset: int, data_dir: Path, into: DiskFigures, end: int | None = None) -> None:
    """Sum the writes and syncs of the trace from byte `offset` (where the window began) to `end`."""
    with open(trace, "rb") as fh:
        fh.seek(offset)
        lines = fh.read(None if end is None else end - offset).decode(errors="replace").splitlines()
    unfinished: dict[str, tuple[str, str]] = {}  # pid -> (syscall, path) of a call another thread interrupted
    for line in lines:
        call = CALL.match(line)
        if call is not None:
            pid, name, path = call.group(1), call.group(2), call.group(4)
            if line.endswith("<unfinished ...>"):
                unfinished[pid] = (name, path)
                continue
        else:
            resumed = RESUMED.match(line)
            if resumed is None or resumed.group(1) not in unfinished:
                continue
            name, path = unfinished.pop(resumed.group(1))
        if name == "fcntl" and WRITE_LOCK.search(line) and path.endswith("journal.sqlite-shm"):
            into.journal_commits += 1
            continue
        result = RESULT.search(line)
        if result is not None:
            add(into, name, path, int(result.group(1)), data_dir)


def add(into: DiskFigures, name: str, path: str, result: int, data_dir: Path) -> None:
    journal = os.path.basename(path).startswith("journal.sqlite")
    meter = f"{data_dir}/simulated/" in path
    if name in SYNCS:
        if journal:
            into.journal_syncs += 1
        elif meter:
            into.meter_syncs += 1
    elif name in WRITES and result > 0:
        if journal:
            into.journal_bytes += result
        elif meter:
            into.meter_bytes += result
            into.meter_writes += 1
        elif path.startswith(str(data_dir)):
            into.other_bytes += result


def write_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/io") as fh:
        for line in fh:
            if line.startswith("write_bytes:"):
                return int(line.split()[1])
    return 0


def strace_or_none(problems: list[str]) -> str | None:
    strace = shutil.which("strace")
    if strace is None:
        problems.append("strace is not installed (apt-get install strace): no disk figures")
    return strace


def traced(strace: str, trace: Path, *python_args: str) -> list[str]:
    """This Python running `python_args` under strace: the writes, syncs and locks of every thread, with paths."""
    return [strace, "-f", "-qq", "-y", "-o", str(trace), "-e", "trace=" + ",".join(sorted(WRITES | SYNCS | {"fcntl"})),
            sys.executable, *python_args]


def stop(pid: int | None, timeout_s: float = 30.0) -> None:
    """SIGTERM to a process that is not our child, then SIGKILL if it is still there after `timeout_s`."""
    if pid is None:
        return
    try:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            os.kill(pid, 0)
            time.sleep(0.1)
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def child_of(pid: int, timeout_s: float = 10.0) -> int:
    """The controller's pid under strace."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for task in Path(f"/proc/{pid}/task").iterdir():
            children = (task / "children").read_text().split()
            if children:
                return int(children[0])
        time.sleep(0.05)
    raise RuntimeError("the controller did not start under strace")


def phase(root: Path, write_config, api_for, ids: list[str], persist_interval_s: float | None, seconds: float,
          problems: list[str], usage_entry_s: float | None = None) -> DiskFigures | None:
    """One controller under strace, every socket paid for; returns its figures over `seconds` of steady state."""
    strace = strace_or_none(problems)
    if strace is None:
        return None
    with tempfile.TemporaryDirectory(prefix="payg-disk-") as tmp_name:
        tmp = Path(tmp_name)
        data_dir, config, trace = tmp / "data", tmp / "disk.toml", tmp / "strace.log"
        from tests.support import free_port
        port = free_port()
        write_config(config, data_dir, port, persist_interval_s, usage_entry_s)
        api = api_for(f"http://127.0.0.1:{port}", data_dir)
        proc = subprocess.Popen(traced(strace, trace, "app.py", "--config", str(config)),
                                cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        pid = None
        try:
            pid = child_of(proc.pid)
            if not wait_healthy(api, proc):
                problems.append(f"persist_interval_s = {persist_interval_s}: the controller did not come up")
                return None
            for sid in ids:
                api.request("POST", "/api/mock/deposits", {"socket": sid, "amount": 10_000_000})
            time.sleep(5.0)  # credited, relays on, the first writes done: the steady state begins
            offset = trace.stat().st_size
            io0 = write_bytes(pid)
            started = time.perf_counter()
            time.sleep(seconds)
            figures = DiskFigures(time.perf_counter() - started)
            figures.process_write_bytes = write_bytes(pid) - io0
            _, states = api.request("GET", "/api/sockets")
            off = [s["id"] for s in states if s["relay"] != "on"]
            if off:
                problems.append(f"persist_interval_s = {persist_interval_s}: relays off: {', '.join(off)}")
        finally:
            # the controller itself: SIGTERM to strace only detaches it, and the controller ran on
            stop(pid)
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        count(trace, offset, data_dir, figures)
        return figures


def virtual_phase(root: Path, write_config, persist_interval_s: float | None, usage_entry_s: float | None,
                  hours: float, problems: list[str]) -> DiskFigures | None:
    """The controller's own loop on a virtual clock (payg.adapters.virtual.VirtualDriver, as bench/billing.py),
    under strace: `hours` of simulated time in a few minutes, so that the quarter-hour usage entries (and any
    other period longer than a wall-clock window) are in the figures. The figures are per virtual hour."""
    strace = strace_or_none(problems)
    if strace is None:
        return None
    with tempfile.TemporaryDirectory(prefix="payg-vdisk-") as tmp_name:
        tmp = Path(tmp_name)
        data_dir, config, trace = tmp / "data", tmp / "disk.toml", tmp / "strace.log"
        write_config(config, data_dir, 5000, persist_interval_s, usage_entry_s)
        proc = subprocess.Popen(traced(strace, trace, __file__, "--virtual", str(config), str(hours)),
                                cwd=root, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert proc.stdin is not None and proc.stdout is not None
        try:
            marks = []
            for expected in ("steady", "done"):  # the child waits at each mark until told to go on
                line = proc.stdout.readline().strip()
                if line != expected:
                    problems.append(f"virtual run: expected {expected!r}, got {line!r} (exit {proc.poll()})")
                    return None
                time.sleep(0.5)  # strace's last lines reach its file
                marks.append(trace.stat().st_size)
                proc.stdin.write("go\n")
                proc.stdin.flush()
            proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        figures = DiskFigures(hours * 3600.0)
        count(trace, marks[0], data_dir, figures, marks[1])
        return figures


def run_virtual(config_path: str, hours: float) -> None:
    """The child of `virtual_phase`: every socket paid for, ten minutes to settle, then `hours` measured."""
    from payg import bootstrap
    from payg.adapters.clocks import ManualClock
    from payg.adapters.config import load
    from payg.adapters.virtual import VirtualDriver

    start = 1_800_000_000.0  # a quarter hour of epoch time
    rt = bootstrap.build(load(config_path), ManualClock(start))
    rt.site.start()
    for socket_id in rt.metering.sockets:
        rt.ledger.pay(socket_id, 10**9)
    loop = VirtualDriver(rt.site, rt.clock)
    loop.run_until(start + 600.0)
    for mark, until in (("steady", start + 600.0 + hours * 3600.0), ("done", None)):
        print(mark, flush=True)
        sys.stdin.readline()
        if until is not None:
            loop.run_until(until)
    rt.site.shutdown()
    rt.close()


def wait_healthy(api, proc: subprocess.Popen) -> bool:
    deadline = time.perf_counter() + 60.0
    while time.perf_counter() < deadline and proc.poll() is None:
        try:
            status, health = api.request("GET", "/healthz", timeout=2.0)
            if status == 200 and health.get("status") == "ok":
                return True
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        time.sleep(0.2)
    return False


def report(phases: list[tuple[str, DiskFigures]], problems: list[str],
           virtual: list[tuple[str, DiskFigures]] = ()) -> None:
    """The wall-clock phases side by side (the first is "before", the second the default: the fsync goal), then the
    virtual-clock ones (the first is the default: the bytes-a-day goal, over whole quarter hours of entries)."""
    mb = 1e6
    rows: list[tuple[str, Callable[[DiskFigures], str]]] = [
        ("journal: commits per hour", lambda f: f"{f.per_hour(f.journal_commits):.0f}"),
        ("journal: fsyncs in the window", lambda f: f"{f.journal_syncs}"),
        ("journal: fsyncs per hour (with checkpoints)", lambda f: f"{f.syncs_per_hour():.1f}"),
        ("journal: bytes written per hour", lambda f: f"{f.per_hour(f.journal_bytes) / mb:.2f} MB"),
        ("journal: bytes written per day", lambda f: f"{f.per_hour(f.journal_bytes) * 24 / mb:.1f} MB"),
        ("simulated meters' files per hour (apart)", lambda f: f"{f.per_hour(f.meter_bytes) / mb:.2f} MB"),
        ("  their writes per hour (a 4 KiB page each)", lambda f: f"{f.per_hour(f.meter_writes):.0f}"),
        ("other files in data_dir per hour", lambda f: f"{f.per_hour(f.other_bytes) / mb:.2f} MB"),
    ]
    tables = [("wall clock", phases, [("measured window (wall)", lambda f: f"{f.seconds:.0f} s"), *rows,
                                      ("process write_bytes (/proc/<pid>/io) per hour",
                                       lambda f: f"{f.per_hour(f.process_write_bytes) / mb:.2f} MB")])]
    if virtual:
        tables.append(("virtual clock", virtual,
                       [("simulated window", lambda f: f"{f.seconds / 3600:.1f} h"), *rows]))
    for title, measured, lines in tables:
        print()
        print(f"    {'16 sockets all drawing, ' + title:<46}" + "".join(f"{name:>18}" for name, _ in measured))
        for label, cell in lines:
            print(f"    {label:<46}" + "".join(f"{cell(f):>18}" for _, f in measured))
    before, after = phases[0][1], phases[1][1]
    # before issue 29 every commit was synced (synchronous=FULL): its fsyncs were its commits
    was = max(before.per_hour(before.journal_commits), before.syncs_per_hour())
    ratio = was / max(after.syncs_per_hour(), 1e-9)
    print()
    print(f"    journal fsyncs: {was:.0f} an hour before (a commit each, with FULL), {after.syncs_per_hour():.1f} with "
          f"the default: {ratio:.0f}x fewer (goal: 30x)")
    if ratio < 30:
        problems.append(f"journal fsyncs only {ratio:.0f}x fewer (goal: 30x)")
    if virtual:
        default = virtual[0][1]
        per_day = default.per_hour(default.journal_bytes) * 24 / mb
        print(f"    journal writes with the default settings, over {default.seconds / 3600:g} virtual hours: "
              f"{per_day:.1f} MB a day (goal: at most 10)")
        if per_day > 10:
            problems.append(f"journal writes {per_day:.1f} MB a day with the default settings (goal: 10)")

if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "--virtual":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    run_virtual(sys.argv[2], float(sys.argv[3]))
