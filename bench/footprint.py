"""Memory and CPU footprint of the real controller process with 16 simulated sockets.

Starts `sys.executable app.py --config <tmp config>` as a subprocess: 16
simulated sockets with varied loads (constant, scheduled, random), polling at
1 Hz, the mock ledger, the web server on a free 127.0.0.1 port, data_dir in a
temporary directory. Once /healthz answers "ok" the measured window starts;
during it (default 65 s of wall time, `--seconds N`) the bench makes a few
mock deposits (POST /api/mock/deposits) and a few API requests, and samples
VmRSS once a second. At the end it reads peak RSS (VmHWM in
/proc/<pid>/status, over the whole life of the process) and the CPU time
consumed during the window (utime + stime from /proc/<pid>/stat, divided by
SC_CLK_TCK), then sends SIGTERM and checks that the process exits 0.

Then the disk (bench/disk.py): the same 16 sockets, all paid for and drawing,
each phase a controller under strace for `--disk-seconds` (default 120; 0
skips them): `persist_interval_s = 0` (the billing state written every tick,
as before) and the default, with the journal's bytes and fsyncs per hour, the
simulated meters' files apart, and the process's write_bytes. Then the same
controller's loop on a virtual clock under strace for `--disk-hours` simulated
hours (default 2; 0 skips them), so that whole quarter hours of usage entries
are counted: the default and `usage_entry_s = 60`. The bytes-a-day goal is
judged on the virtual default, the fsync goal on the wall-clock phases.

Prints figures; exits 1 if the controller is clearly broken (does not start,
dies, misses ticks, loses a deposit, or does not exit 0 on SIGTERM) or the disk
goals are missed (30x fewer journal fsyncs, at most 10 MB a day of journal writes).
Run from the repository root: `.venv/bin/python bench/footprint.py [--seconds N] [--disk-seconds N]
[--disk-hours H]`.
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import disk  # noqa: E402  (bench/disk.py, next to this script)
from report import CLK_TCK, proc_cpu_s, verdict  # noqa: E402  (bench/report.py, next to this script)

from tests.support import free_port  # noqa: E402

CONSTANT_W = (5, 60, 150, 400, 800, 1200, 2000, 3000)  # loads of sockets const0..const7


def socket_tables() -> list[str]:
    """16 sockets: constant loads from 5 W to 3 kW, washing-machine schedules, random desks."""
    tables = []
    for i, w in enumerate(CONSTANT_W):
        tables.append(f'id = "const{i}"\nmeter = {{ kind = "simulated", load_w = {w} }}')
    for i in range(4):
        tables.append(
            f'id = "wash{i}"\nmeter = {{ kind = "simulated", schedule = [\n'
            f'    {{ at_s = 0, load_w = 2000 }}, {{ at_s = {20 + 10 * i}, load_w = 400 }},\n'
            f'    {{ at_s = {45 + 10 * i}, load_w = 650 }}, {{ at_s = {60 + 10 * i}, load_w = 5 }},\n'
            f'], repeat_s = {90 + 10 * i} }}')
    for i in range(4):
        tables.append(f'id = "desk{i}"\nmeter = {{ kind = "simulated", random = {{ seed = {11 + i}, min_w = 40, '
                      f'max_w = {250 + 500 * i}, step_s = {5 + 5 * i} }} }}')
    return [t + '\nrelay = { kind = "simulated" }' for t in tables]


def write_config(path: Path, data_dir: Path, port: int, persist_interval_s: float | None = None,
                 usage_entry_s: float | None = None) -> list[str]:
    tables = socket_tables()
    persist = "" if persist_interval_s is None else f"persist_interval_s = {persist_interval_s}\n"
    persist += "" if usage_entry_s is None else f"usage_entry_s = {usage_entry_s}\n"
    text = (f'[controller]\ndata_dir = "{data_dir}"\npoll_interval_s = 1.0\nmeter_offline_grace_s = 10\n{persist}'
            f'log_level = "warning"\n\n[web]\nhost = "127.0.0.1"\nport = {port}\n\n[ledger]\nbackend = "mock"\n\n'
            f'[tariff]\ntokens_per_wh = 1\n\n' + "\n\n".join(f"[[sockets]]\n{t}" for t in tables) + "\n")
    path.write_text(text)
    return [t.split('"')[1] for t in tables]


def proc_status(pid: int) -> dict[str, str]:
    out = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            out[key] = value.strip()
    return out


def kib(value: str) -> int:
    number, unit = value.split()
    assert unit == "kB"
    return int(number)


class Api:
    """The controller's API with the token from its data directory, as `payg` commands send it."""

    def __init__(self, base: str, data_dir: Path):
        self.base = base
        self.data_dir = data_dir
        self.latencies_ms: list[float] = []

    def request(self, method: str, path: str, body: dict | None = None, timeout: float = 10.0):
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data else {}
        token = self.data_dir / "api-token"
        if token.exists():
            headers["Authorization"] = "Bearer " + token.read_text().strip()
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        started = time.perf_counter()
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        self.latencies_ms.append((time.perf_counter() - started) * 1e3)
        ctype_json = raw[:1] in (b"{", b"[")
        return status, (json.loads(raw) if ctype_json else raw)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=65.0, help="measured window in wall seconds (default 65)")
    parser.add_argument("--disk-seconds", type=float, default=120.0,
                        help="each disk phase's window in wall seconds (default 120; 0 skips them)")
    parser.add_argument("--disk-hours", type=float, default=2.0,
                        help="each virtual-clock disk phase's simulated hours (default 2; 0 skips them)")
    args = parser.parse_args(argv)
    problems: list[str] = []

    with tempfile.TemporaryDirectory(prefix="payg-footprint-") as tmp_name:
        tmp = Path(tmp_name)
        data_dir = tmp / "data"
        port = free_port()
        config = tmp / "footprint.toml"
        ids = write_config(config, data_dir, port)
        log_path = tmp / "controller.log"
        api = Api(f"http://127.0.0.1:{port}", data_dir)
        print(f"payg footprint bench — {len(ids)} simulated sockets, poll 1 Hz, mock ledger, web on 127.0.0.1:{port}")
        print(f"    {sys.executable} app.py --config {config}")
        with open(log_path, "wb") as log_fh:
            launched = time.perf_counter()
            proc = subprocess.Popen([sys.executable, "app.py", "--config", str(config)], cwd=ROOT,
                                    stdout=log_fh, stderr=subprocess.STDOUT)
            try:
                rc = run_window(proc, api, ids, args.seconds, launched, problems)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        if problems or rc != 0:
            print()
            print(f"controller output ({log_path}), last lines:")
            lines = log_path.read_text(errors="replace").splitlines()
            for line in lines[-30:]:
                print(f"    {line}")
    if args.disk_seconds > 0 and rc == 0:
        print()
        print(f"disk: 16 sockets all drawing, {args.disk_seconds:g} s per phase under strace")
        phases = [("every tick (0)", disk.phase(ROOT, write_config, Api, ids, 0, args.disk_seconds, problems)),
                  ("default", disk.phase(ROOT, write_config, Api, ids, None, args.disk_seconds, problems))]
        virtual = []
        if args.disk_hours > 0:
            print(f"      and {args.disk_hours:g} simulated hours per phase on a virtual clock under strace")
            virtual = [("default", disk.virtual_phase(ROOT, write_config, None, None, args.disk_hours, problems)),
                       ("entries 60 s", disk.virtual_phase(ROOT, write_config, None, 60, args.disk_hours, problems))]
        measured = [(name, f) for name, f in phases if f is not None]
        measured_virtual = [(name, f) for name, f in virtual if f is not None]
        if len(measured) == len(phases) and len(measured_virtual) == len(virtual):
            disk.report(measured, problems, measured_virtual)
    return verdict(problems, "controller healthy throughout; exited 0 on SIGTERM")


def run_window(proc: subprocess.Popen, api: Api, ids: list[str], seconds: float, launched: float,
               problems: list[str]) -> int:
    pid = proc.pid
    deadline = time.perf_counter() + 30.0
    health = None
    while time.perf_counter() < deadline:
        if proc.poll() is not None:
            problems.append(f"the controller exited during start-up with status {proc.returncode}")
            return 1
        try:
            status, health = api.request("GET", "/healthz", timeout=2.0)
            if status == 200 and health.get("status") == "ok":
                break
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        time.sleep(0.1)
    else:
        problems.append(f"/healthz did not answer ok within 30 s (last answer: {health})")
        return 1
    startup_s = time.perf_counter() - launched
    startup_cpu = proc_cpu_s(pid)
    startup_rss = kib(proc_status(pid)["VmRSS"])
    api.latencies_ms.clear()

    # (offset s, socket, amount): big ones keep relays on; small ones run out during the window.
    deposits = [(1.0, "const6", 100_000), (1.0, "wash0", 100_000), (1.5, "desk2", 100_000),
                (2.0, "const7", 5), (15.0, "const4", 3), (30.0, "const5", 50_000), (45.0, "const3", 2)]
    deposits = [d for d in deposits if d[0] < seconds - 3.0] or deposits[:1]
    requests = ["/api/sockets", "/api/sockets/const6", "/api/sockets/wash0/journal?limit=20", "/", "/healthz"]
    pending = sorted(deposits)
    made: dict[str, int] = {}
    rss_samples = []
    errors = 0
    t0 = time.perf_counter()
    cpu0 = proc_cpu_s(pid)
    _, h0 = api.request("GET", "/healthz")
    ticks0 = h0["ticks"]
    api.latencies_ms.clear()
    next_sample = 0.0
    next_request = 0.5
    k = 0
    while True:
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds:
            break
        if proc.poll() is not None:
            problems.append(f"the controller died during the window with status {proc.returncode}")
            return 1
        while pending and pending[0][0] <= elapsed:
            _, sid, amount = pending.pop(0)
            status, body = api.request("POST", "/api/mock/deposits", {"socket": sid, "amount": amount})
            if status != 201:
                problems.append(f"deposit to {sid} answered {status}: {body}")
            made[sid] = made.get(sid, 0) + 1
        if elapsed >= next_request:
            status, _ = api.request("GET", requests[k % len(requests)])
            errors += status != 200
            k += 1
            next_request += 2.0
        if elapsed >= next_sample:
            rss_samples.append(kib(proc_status(pid)["VmRSS"]))
            next_sample += 1.0
        time.sleep(0.05)
    wall = time.perf_counter() - t0
    cpu = proc_cpu_s(pid) - cpu0
    status = proc_status(pid)
    hwm_kib, rss_kib, threads = kib(status["VmHWM"]), kib(status["VmRSS"]), int(status["Threads"])
    n_api = len(api.latencies_ms)
    lat = sorted(api.latencies_ms)
    _, h1 = api.request("GET", "/healthz")
    ticks = h1["ticks"] - ticks0
    _, states = api.request("GET", "/api/sockets")
    by_id = {s["id"]: s for s in states}
    credited = {}
    for sid, n in made.items():
        _, j = api.request("GET", f"/api/sockets/{sid}/journal?limit=500")
        credited[sid] = sum(1 for e in j["entries"] if e["kind"] == "deposit")
        if credited[sid] != n:
            problems.append(f"{sid}: {n} deposits made, {credited[sid]} credited")
    big = [sid for _, sid, amount in deposits if amount >= 1000]
    off = [sid for sid in big if by_id[sid]["relay"] != "on"]
    if off:
        problems.append(f"relay off despite ample credit: {', '.join(off)}")
    ran_out = [sid for at, sid, amount in deposits if amount < 1000 and sid.startswith("const")
               and at + amount / CONSTANT_W[int(sid[5:])] * 3600.0 + 3.0 < wall]
    still_on = [sid for sid in ran_out if by_id[sid]["relay"] == "on"]
    if still_on:
        problems.append(f"relay still on after a small deposit must have run out: {', '.join(still_on)}")
    unpaid_on = [s["id"] for s in states if s["id"] not in made and s["relay"] == "on"]
    if unpaid_on:
        problems.append(f"relay on without any credit: {', '.join(unpaid_on)}")
    if errors:
        problems.append(f"{errors} API requests did not answer 200")
    if ticks < 0.9 * wall:
        problems.append(f"only {ticks} ticks in {wall:.1f} s at 1 Hz")

    proc.send_signal(signal.SIGTERM)
    stop_started = time.perf_counter()
    try:
        rc = proc.wait(timeout=20.0)
    except subprocess.TimeoutExpired:
        problems.append("no exit within 20 s of SIGTERM")
        return 1
    stop_s = time.perf_counter() - stop_started
    if rc != 0:
        problems.append(f"exit status {rc} after SIGTERM (expected 0)")

    mib = 1024.0
    print()
    print(f"    {'figure':<48} value")
    rows = [
        ("measured window (wall)", f"{wall:.1f} s"),
        ("ticks in window", f"{ticks}"),
        ("peak RSS (VmHWM, whole life)", f"{hwm_kib / mib:.1f} MiB"),
        ("RSS at end of window (VmRSS)", f"{rss_kib / mib:.1f} MiB"),
        ("RSS after start-up", f"{startup_rss / mib:.1f} MiB"),
        ("RSS samples in window: min / mean / max",
         f"{min(rss_samples) / mib:.1f} / {statistics.mean(rss_samples) / mib:.1f} / {max(rss_samples) / mib:.1f} MiB"),
        ("CPU in window (utime+stime)", f"{cpu:.2f} s"),
        ("CPU per minute of wall time", f"{cpu / wall * 60:.2f} s/min"),
        ("  = average load of one core", f"{cpu / wall * 100:.2f} %"),
        ("CPU per tick (16 sockets, incl. web + deposits)", f"{cpu / max(ticks, 1) * 1e3:.2f} ms"),
        ("start-up to /healthz ok (wall / CPU)", f"{startup_s:.2f} s / {startup_cpu:.2f} s"),
        ("threads at end of window", f"{threads}"),
        ("deposits made / credited", f"{sum(made.values())} / {sum(credited.values())}"),
        ("API requests in window (GETs + deposit POSTs)", f"{n_api}, {errors} GETs not 200"),
        ("API latency p50 / max", f"{lat[len(lat) // 2]:.1f} / {lat[-1]:.1f} ms" if lat else "-"),
        ("SIGTERM to exit", f"{stop_s:.2f} s, status {rc}"),
    ]
    for name, value in rows:
        print(f"    {name:<48} {value}")
    print(f"    (SC_CLK_TCK {CLK_TCK}: CPU figures have {1000 // CLK_TCK} ms steps; relays on at end: "
          f"{', '.join(s['id'] for s in states if s['relay'] == 'on') or 'none'}; "
          f"small deposits that ran out and were cut: {', '.join(ran_out) or 'none'})")
    return rc


if __name__ == "__main__":
    sys.exit(main())
