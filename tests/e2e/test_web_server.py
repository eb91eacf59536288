"""The controller's web server against a siege and an oversize chunked body (issue 14, defects 3 and 4).

A real controller (`app.py` on the embedded default: three simulated sockets, the mock ledger, 1 s ticks) in a
subprocess, whatever server app.py puts in front of the app:

- 500 TCP connections held open for 24 s: a third send nothing, a third send a request head one byte a second
  and never finish it (slowloris), a third send a whole head promising a body and then dribble the body one byte a
  second. A connection the server closes (or answers) is opened again at the next round, as an attacker would.
  The server's timeouts are set to a third of their defaults (SIEGE_LIMITS), so that the 24 s hold sees each kind
  of connection dropped and opened again at least twice, as 72 s would with the defaults.
  Meanwhile the controller's thread count (/proc/<pid>/status) stays under a bound, the tenant page answers 200
  within 3 s on a fresh connection every ~2 s, and /healthz shows the 1 s tick running: no two ticks further apart
  than 2.5 s, none missed.
- A chunked POST of 50 MB to /api/peer/vouchers (a route open to other controllers, no session needed) gets 413
  before 2 MB of it have been sent: the server refuses the body as it comes instead of reading it all.
"""

from __future__ import annotations

import errno
import http.client
import itertools
import json
import resource
import selectors
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from payg.adapters import config as cfg
from tests.support import free_port, wait_until
from tests.support.web_beds import embedded_default_toml

pytestmark = pytest.mark.slow

HOST = "127.0.0.1"
CONNECTIONS = 500
HOLD_S = 24.0
# The embedded default's [web.server] timeouts divided by three: 10 s / 30 s / 30 s by default.
SIEGE_LIMITS = {"header_timeout_s": 10 / 3, "body_timeout_s": 10.0, "idle_timeout_s": 10.0}
KINDS = ("silent", "slow head", "slow body")
PAGE_EVERY_S = 2.0
PAGE_TIMEOUT_S = 3.0
HEALTH_EVERY_S = 0.5   # often enough to see every 1 s tick one by one
MAX_TICK_GAP_S = 2.5
# The bound on the controller's threads. Without a connection the embedded default runs 6 (measured; the test
# prints the count before the siege): the main thread, the server's, APScheduler's scheduler and the executor
# threads it has started so far (its pool goes up to 10), the live pushes' thread. payg's own server adds a
# fixed pool of workers (ServerLimits.workers, 16 by default) to its one thread that accepts and watches every
# connection; a WebSocket would hold threads of its own, but the siege opens none. 6 + 16 + 10 (the scheduler's
# whole pool) is 32: 60 leaves room, and holds whatever the number of connections. A server with a thread per
# connection (Werkzeug's development server) passes 60 with its 55th connection.
MAX_THREADS = 60
BIG_BODY = 50 * 1000 * 1000
ANSWER_WITHIN = 2 * 1000 * 1000  # bytes of the body sent by the time the 413 must have come
CHUNK = 16 * 1024
CHUNK_EVERY_S = 0.008  # 16 KB each 8 ms, 2 MB/s: a server that refuses at once has a second to say so


def raise_fd_limit(need: int) -> None:
    """The soft limit of open files at least `need` (the controller, started after this, inherits it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            pytest.skip(f"the hard limit of open files is {hard}, the test needs {need}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))


def start_controller(controllers, tmp_path: Path, server: dict[str, float] | None = None):
    """A controller on the embedded default, with `server` as its [web.server] table if given."""
    port = free_port()
    data_dir = tmp_path / "var"
    config = tmp_path / "default.toml"
    text = embedded_default_toml(data_dir, port)
    if server:
        text += "\n[web.server]\n" + "".join(f"{key} = {value}\n" for key, value in server.items())
    config.write_text(text)
    if server:
        assert {key: getattr(cfg.load(config).web.server, key) for key in server} == server
    c = controllers(config, tmp_path, port)
    c.wait_ready()
    return c


def threads_of(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    raise AssertionError(f"no Threads: line in /proc/{pid}/status")


def get(port: int, path: str, timeout_s: float) -> tuple[int, bytes, float]:
    """One GET on a fresh connection: status, body, seconds taken."""
    t0 = time.monotonic()
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout_s)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        resp = conn.getresponse()
        return resp.status, resp.read(), time.monotonic() - t0
    finally:
        conn.close()


@dataclass(eq=False)  # kept in a set: each connection is itself
class Conn:
    sock: socket.socket
    kind: str
    since: float
    connected: bool = False
    sent: int = 0


@dataclass
class Siege:
    """CONNECTIONS connections of the three KINDS, driven by one thread; one byte a second on the slow ones."""

    port: int
    opened: int = 0          # connections that were established
    connect_failed: int = 0  # refused, reset or not established within 5 s
    closed_by_server: int = 0
    answered: int = 0        # the server sent something (a 408, a 503...) and we closed it
    open_now: int = 0
    fewest_open: int = CONNECTIONS  # fewest established at the start of a round, once the siege was full
    full: bool = False
    held: bool = False       # the siege went on until stopped
    errors: list[str] = field(default_factory=list)

    def __post_init__(self):
        self._stop = threading.Event()
        self._sel = selectors.DefaultSelector()
        self._conns: set[Conn] = set()
        self._kinds = itertools.cycle(KINDS)
        self.head = (f"GET /s/kitchen HTTP/1.1\r\nHost: {HOST}:{self.port}\r\nUser-Agent: slowloris\r\n"
                     f"X-Never-Ends: ").encode()
        self.body_head = (f"POST /api/peer/vouchers HTTP/1.1\r\nHost: {HOST}:{self.port}\r\n"
                          f"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n").encode()
        self.thread = threading.Thread(target=self._run, name="siege", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(30)

    def _open(self) -> None:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        err = s.connect_ex((HOST, self.port))
        if err not in (0, errno.EINPROGRESS):
            s.close()
            self.connect_failed += 1
            return
        c = Conn(s, next(self._kinds), time.monotonic())
        self._conns.add(c)
        self._sel.register(s, selectors.EVENT_WRITE, c)

    def _drop(self, c: Conn, why: str) -> None:
        if why == "closed":
            self.closed_by_server += 1
        elif why == "answered":
            self.answered += 1
        elif why == "connect failed":
            self.connect_failed += 1
        self._conns.discard(c)
        try:
            self._sel.unregister(c.sock)
        except (KeyError, ValueError):
            pass
        c.sock.close()

    def _send(self, c: Conn, data: bytes) -> None:
        try:
            c.sock.send(data)
            c.sent += len(data)
        except BlockingIOError:
            pass  # its buffer is full: the server reads nothing; the next byte next second
        except OSError:
            self._drop(c, "closed")

    def _connected(self, c: Conn) -> None:
        err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self._drop(c, "connect failed")
            return
        c.connected = True
        self.opened += 1
        self._sel.modify(c.sock, selectors.EVENT_READ, c)
        if c.kind == "slow body":
            self._send(c, self.body_head)

    def _drip(self, c: Conn) -> None:
        if c.kind == "slow head":
            self._send(c, self.head[c.sent:c.sent + 1] if c.sent < len(self.head) else b"a")
        elif c.kind == "slow body":
            self._send(c, b"{" if c.sent == len(self.body_head) else b" ")

    def _run(self) -> None:
        try:
            next_round = time.monotonic()
            while not self._stop.is_set():
                now = time.monotonic()
                if now >= next_round:  # once a second: every slow one gets a byte, the missing ones are reopened
                    next_round += 1.0
                    established = [c for c in self._conns if c.connected]
                    if self.full:
                        self.fewest_open = min(self.fewest_open, len(established))
                    self.full = self.full or len(established) == CONNECTIONS
                    for c in established:
                        self._drip(c)
                    for c in [c for c in self._conns if not c.connected and now - c.since > 5.0]:
                        self._drop(c, "connect failed")
                    while len(self._conns) < CONNECTIONS:
                        self._open()
                self.open_now = sum(1 for c in self._conns if c.connected)
                for key, _ in self._sel.select(timeout=max(0.0, min(0.2, next_round - time.monotonic()))):
                    c = key.data
                    if c not in self._conns:
                        continue
                    if not c.connected:
                        self._connected(c)
                        continue
                    try:
                        data = c.sock.recv(65536)
                    except BlockingIOError:
                        continue
                    except OSError:
                        data = b""
                    self._drop(c, "answered" if data else "closed")
            self.held = True
        except (OSError, ValueError) as exc:  # the test reports it instead of holding a dead siege
            self.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            for c in list(self._conns):
                self._drop(c, "")
            self._sel.close()


def tick_problems(samples: list[tuple[float, int, float | None]], interval: float) -> tuple[float, int, list[str]]:
    """From /healthz samples (when read, ticks so far, last tick's time): the longest time between two ticks seen
    (or since the last one, at a sample), ticks missed over the whole hold, and what looks wrong."""
    problems = []
    seen = [(at, n, last) for at, n, last in samples if last is not None]
    if len(seen) < 2:
        return float("inf"), 0, ["/healthz showed no ticks"]
    worst = 0.0
    for (_, n0, last0), (at1, n1, last1) in itertools.pairwise(seen):
        if n1 > n0:
            worst = max(worst, (last1 - last0) / (n1 - n0))  # one tick apart: the gap; several: their mean
        worst = max(worst, at1 - last1)  # how long since the last tick, at this sample
    (_, n_first, first), (_, n_last, last) = seen[0], seen[-1]
    missed = round((last - first) / interval) - (n_last - n_first)
    if worst > MAX_TICK_GAP_S:
        problems.append(f"two ticks {worst:.2f} s apart (at most {MAX_TICK_GAP_S} s)")
    if missed > 0:
        problems.append(f"{missed} ticks missed: {n_last - n_first} ticks in {last - first:.1f} s")
    return worst, missed, problems


def test_500_idle_and_dribbling_connections_through_two_timeouts_leave_threads_bounded_ticks_on_time_and_page_up(
        controllers, tmp_path):
    raise_fd_limit(4 * CONNECTIONS + 256)  # ours, the controller's (one each side), and some room
    c = start_controller(controllers, tmp_path, SIEGE_LIMITS)
    pid = c.proc.pid
    interval = cfg.load(c.config).controller.poll_interval_s
    wait_until(lambda: get(c.port, "/healthz", 5)[0] == 200, 10, "/healthz to show the first tick")  # 503 before
    time.sleep(1.5)
    before = threads_of(pid)
    assert before < MAX_THREADS, f"the idle controller already runs {before} threads"

    siege = Siege(c.port)
    most_threads = before
    pages: list[tuple[float, int | None, float, str]] = []  # (at, status, seconds, error)
    health: list[tuple[float, int, float | None]] = []
    health_errors: list[str] = []
    siege.start()
    try:
        t0 = time.monotonic()
        next_page = t0 + PAGE_EVERY_S
        while time.monotonic() - t0 < HOLD_S and siege.thread.is_alive():
            most_threads = max(most_threads, threads_of(pid))
            try:
                status, body, took = get(c.port, "/healthz", PAGE_TIMEOUT_S)
                h = json.loads(body)
                health.append((time.time(), h["ticks"], h["last_tick_at"]))
                if status != 200:
                    health_errors.append(f"/healthz {status} at {time.monotonic() - t0:.0f} s: {h.get('status')}")
            except (OSError, http.client.HTTPException, ValueError) as exc:
                health_errors.append(f"/healthz at {time.monotonic() - t0:.0f} s: {type(exc).__name__}: {exc}")
            if time.monotonic() >= next_page:
                next_page += PAGE_EVERY_S
                at = time.monotonic() - t0
                try:
                    status, body, took = get(c.port, "/s/kitchen", PAGE_TIMEOUT_S)
                    pages.append((at, status, took, "" if b"Kitchen" in body else "no socket name in the page"))
                except (OSError, http.client.HTTPException) as exc:
                    pages.append((at, None, time.monotonic() - t0 - at, f"{type(exc).__name__}: {exc}"))
            time.sleep(max(0.0, HEALTH_EVERY_S - (time.monotonic() - t0) % HEALTH_EVERY_S))
        held_open = siege.open_now
    finally:
        siege.stop()
    most_threads = max(most_threads, threads_of(pid))

    worst_gap, missed, tick_trouble = tick_problems(health, interval)
    bad_pages = [p for p in pages if p[1] != 200 or p[2] > PAGE_TIMEOUT_S or p[3]]
    summary = (f"threads: {before} before the siege, at most {most_threads} during it (bound {MAX_THREADS}); "
               f"connections: {siege.opened} established ({held_open} open at the end, at least {siege.fewest_open} "
               f"at each round once all {CONNECTIONS} were up: {siege.full}), {siege.closed_by_server} closed by the "
               f"server, {siege.answered} answered, {siege.connect_failed} failed to connect; tenant page: "
               f"{len(pages) - len(bad_pages)} of {len(pages)} fetches 200 within {PAGE_TIMEOUT_S} s, slowest "
               f"{max((p[2] for p in pages), default=0):.2f} s; ticks: longest gap {worst_gap:.2f} s, {missed} missed, "
               f"{len(health)} /healthz samples, {len(health_errors)} failed")
    print(summary)
    assert siege.held and not siege.errors, f"the siege broke down: {siege.errors}"
    assert siege.opened >= CONNECTIONS, f"the siege never reached {CONNECTIONS} connections: {summary}"
    # The timeouts did their work through the hold: every connection was dropped (or answered) twice or more.
    assert siege.closed_by_server + siege.answered >= 2 * CONNECTIONS, f"too few connections dropped: {summary}"
    problems = []
    if most_threads > MAX_THREADS:
        problems.append(f"the controller ran {most_threads} threads (bound {MAX_THREADS})")
    if bad_pages:
        problems.append(f"{len(bad_pages)} tenant page fetches failed, e.g. " + "; ".join(
            f"at {at:.0f} s: {st} after {took:.1f} s {err}" for at, st, took, err in bad_pages[:3]))
    if health_errors:
        problems.append(f"{len(health_errors)} /healthz reads failed, e.g. {health_errors[:3]}")
    problems += tick_trouble
    assert not problems, "; ".join(problems) + f"\n({summary})"


def test_a_chunked_50_mb_post_gets_413_before_the_server_reads_it(controllers, tmp_path):
    c = start_controller(controllers, tmp_path)
    s = socket.create_connection((HOST, c.port), timeout=10)
    s.sendall((f"POST /api/peer/vouchers HTTP/1.1\r\nHost: {HOST}:{c.port}\r\nContent-Type: application/json\r\n"
               f"Transfer-Encoding: chunked\r\n\r\n").encode())
    chunk = f"{CHUNK:x}\r\n".encode() + b"[" + b" " * (CHUNK - 1) + b"\r\n"
    sent = 0
    answer = b""
    sent_before_answer = None
    ended = ""
    t0 = time.monotonic()
    sel = selectors.DefaultSelector()
    sel.register(s, selectors.EVENT_READ)
    try:
        while sent < BIG_BODY:
            if sel.select(timeout=0):  # the server said something (or closed): stop sending
                sent_before_answer = sent
                break
            try:
                s.sendall(chunk)
            except OSError as exc:     # it closed the connection on us
                sent_before_answer = sent
                ended = f"sending failed: {type(exc).__name__}"
                break
            sent += CHUNK
            if sent < ANSWER_WITHIN:
                time.sleep(CHUNK_EVERY_S)  # past ANSWER_WITHIN the test has failed; the rest goes at full speed
        else:
            s.sendall(b"0\r\n\r\n")
            ended = "the whole body was sent"
        took = time.monotonic() - t0
        s.settimeout(30)
        try:
            while b"\r\n" not in answer:
                got = s.recv(65536)
                if not got:
                    break
                answer += got
        except OSError as exc:
            ended += f"; reading the answer: {type(exc).__name__}"
    finally:
        sel.close()
        s.close()
    status_line = answer.split(b"\r\n", 1)[0].decode("latin-1")
    status = int(status_line.split()[1]) if status_line.startswith("HTTP/1.") and len(status_line.split()) > 1 \
        else None
    summary = (f"status line {status_line!r} after {sent_before_answer if sent_before_answer is not None else sent} "
               f"bytes of the body sent ({took:.1f} s; {ended or 'the answer came while sending'})")
    print(summary)
    assert status == 413, summary
    assert sent_before_answer is not None and sent_before_answer < ANSWER_WITHIN, summary


# Issue 25: each of these ended the process ("controller stopped; all relays open") or reached the app.
HOSTILE = [
    b"POST /api/peer/vouchers HTTP/1.1\r\nHost: x\r\nContent-Length: \xb2\r\n\r\nab",
    b"POST /api/peer/vouchers HTTP/1.1\r\nHost: x\r\nContent-Length: 1\xb2\r\n\r\nab",
    b"GET /s/kitchen HTTP/1.1\r\nHost: x\r\nX-A: a\x01\r\n\r\n",
    b"GET /s/kitchen HTTP/1.1\r\n\r\n",
    b"POST /api/peer/vouchers HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nGET / HTTP/1.1\r\n\r\n",
]


def test_hostile_requests_are_refused_and_the_controller_ticks_on(controllers, tmp_path):
    c = start_controller(controllers, tmp_path)
    wait_until(lambda: get(c.port, "/healthz", 5)[0] == 200, 10, "/healthz to show the first tick")
    ticks_before = json.loads(get(c.port, "/healthz", 5)[1])["ticks"]
    for _ in range(3):  # what systemd would restart after, over and over
        for raw in HOSTILE:
            s = socket.create_connection((HOST, c.port), timeout=5)
            s.sendall(raw)
            s.settimeout(5)
            assert s.recv(12) == b"HTTP/1.1 400", raw
            s.close()
    time.sleep(2.5)
    assert c.proc.poll() is None, "the controller stopped"
    status, body, _ = get(c.port, "/healthz", 5)
    assert status == 200 and json.loads(body)["ticks"] >= ticks_before + 2
    status, metrics, _ = get(c.port, "/metrics", 5)  # from this machine: allowed without the token
    assert status == 200 and f'payg_http_refused_total{{status="400"}} {3.0 * len(HOSTILE)}'.encode() in metrics
    assert b'payg_http_failures_total{stage="loop"} 0.0' in metrics
