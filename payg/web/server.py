"""payg's web server: HTTP/1.1 and WebSockets for the Flask app, in the controller's own process (and the hub's).

Why not another server is written down in ARCHITECTURE.md ("The web server"). h11 frames the requests and the
responses (payg/web/wsgi.py says what h11 does and what is ours); this module decides who gets which thread,
which bytes and how long:

- One thread, the selector, waits on every connection at once: it accepts, reads, feeds h11, and writes
  whatever answers their clients have not taken yet. An idle, slow or non-reading client costs a file
  descriptor and a bounded number of bytes, never a thread.
- A fixed pool of workers (`workers`) runs the app on complete requests only. A worker hands its answer to the
  selector and goes back to the pool; only an answer over `response_high_water` (a large stream) makes it wait
  for its client, with `write_timeout_s`.
- A live connection (a WebSocket, or a Socket.IO long-poll that waits up to 25 s) gets a thread of its own, at
  most `max_live_connections` of them and `max_live_per_client` per client address, so pages and the API
  always have the pool. A WebSocket costs four threads in all: this one, simple-websocket's reader, and
  Engine.IO's writer and ping timer.
- Budgets: a request's head within `header_timeout_s`, its body within `body_timeout_s`, an idle kept-alive
  connection closed after `idle_timeout_s`; a body over `max_body_bytes` refused from its length or as it
  comes; `max_chunks` chunks and `max_framing_bytes` of chunk lines, extensions and trailers per request; one
  `buffer_budget_bytes` for every body held and every answer not yet read, past which the biggest unfinished
  body or the longest-stalled reader is closed to make room; `events_per_round` h11 events per connection
  per round of the selector, so one client's flood of tiny chunks waits its turn like everyone else.
- At `max_connections` the connection idle the longest makes room for a new one.
- Containment: an exception at any stage (accept, read, parse, dispatch, respond, write, or the loop itself)
  closes that connection only, is logged once per stage and kind, and is counted (`status()`, on /metrics).
  Nothing a client sends can end the selector thread or the process.
- No `Server:` header: nothing tells a scanner what runs here.
"""

from __future__ import annotations

import ctypes
import logging
import queue
import select
import selectors
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

import h11

from payg.domain.settings import ServerConfig
from payg.web import wsgi

log = logging.getLogger("payg.web")

STAGES = ("accept", "read", "parse", "dispatch", "respond", "write", "loop")
FLOOD_BYTES = 4 * 1024 * 1024  # held at once, then back under a quarter of it: the heap is trimmed
RECV_BYTES = 65536
SEND_BYTES = 256 * 1024


@dataclass(frozen=True)
class ServerLimits:
    max_connections: int = 512      # open connections in all
    workers: int = 16               # threads that run requests
    max_live_connections: int = 64  # WebSockets and Socket.IO long-polls at once
    max_live_per_client: int = 8    # of those, from one client address
    header_timeout_s: float = 10.0  # a request's head must be in within this of its first byte
    body_timeout_s: float = 30.0    # and its body within this of its head
    idle_timeout_s: float = 30.0    # a kept-alive connection with no request is closed after this
    write_timeout_s: float = 30.0   # a client that reads nothing of an answer for this long is dropped
    max_body_bytes: int = 256 * 1024
    max_head_bytes: int = 16 * 1024
    max_chunks: int = 1024          # chunks in one request's body
    max_framing_bytes: int = 16 * 1024     # chunk-size lines, chunk extensions and trailers of one request
    buffer_budget_bytes: int = 16 * 1024 * 1024  # bodies held and answers not yet read, all connections together
    response_high_water: int = 1024 * 1024       # an answer buffered beyond this makes its worker wait
    events_per_round: int = 256     # h11 events parsed for one connection before the others get their turn
    backlog: int = 128

    @classmethod
    def of(cls, c: ServerConfig) -> ServerLimits:
        """The limits [web.server] sets."""
        return cls(max_connections=c.max_connections, workers=c.workers, max_live_connections=c.max_live_connections,
                   max_live_per_client=c.max_live_per_client, header_timeout_s=c.header_timeout_s,
                   body_timeout_s=c.body_timeout_s, idle_timeout_s=c.idle_timeout_s,
                   max_body_bytes=c.max_body_kib * 1024, buffer_budget_bytes=c.buffer_budget_kib * 1024)


@dataclass(eq=False)
class _Conn:
    sock: socket.socket
    client: tuple[str, int]
    h11: h11.Connection
    deadline: float                 # when it is closed if nothing more comes (or nothing more is read)
    last: float                     # its last progress, for eviction
    state: str = "read"             # read (the selector reads it), busy (a thread has it), write, closed
    started: bool = False           # bytes of a request have come (a timeout is answered 408)
    request: h11.Request | None = None
    body: list[bytes] = field(default_factory=list)
    body_bytes: int = 0
    chunks: int = 0
    fed: int = 0                    # bytes given to h11 on this connection
    request_start: int = 0          # of those, where the present request began
    held_body: int = 0              # bytes of the buffer budget it holds
    held_out: int = 0
    out: bytearray = field(default_factory=bytearray)
    keep: bool = True
    live_key: str | None = None     # the client address it counts against, while it is live


def _heap_trimmer() -> Callable[[], object]:
    """glibc's malloc_trim: after a flood of bodies or answers, the freed heap goes back to the system (measured:
    +18 MiB of RSS kept after 200 bodies held at the budget, none after a trim). A no-op on another libc."""
    try:
        trim = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return lambda: None
    return lambda: trim(0)


class _Handover:
    """The socket a WebSocket takes over, with the bytes that came in the same packets as the upgrade request
    (a client may send its first frame at once) returned by the first recv()."""

    def __init__(self, sock: socket.socket, early: bytes):
        self._sock, self._early = sock, early

    def recv(self, n: int) -> bytes:
        if self._early:
            data, self._early = self._early[:n], self._early[n:]
            return data
        return self._sock.recv(n)

    def __getattr__(self, name: str):
        return getattr(self._sock, name)


class HttpServer:
    """Serve a WSGI app on (host, port); `serve_forever()` until `shutdown()`; then `server_close()`.

    `client_of(peer_address, x_forwarded_for)` names the client a live connection counts against (behind a
    trusted reverse proxy, the forwarded address; payg/web/proxies.py); by default the peer's address."""

    def __init__(self, app: Callable, host: str, port: int, limits: ServerLimits = ServerLimits(),
                 clock: Callable[[], float] = time.monotonic,
                 client_of: Callable[[str, str | None], str] | None = None):
        self.app, self.limits, self._now = app, limits, clock
        self._client_of = client_of or (lambda peer, _forwarded: peer)
        self._listener = socket.create_server((host, port), backlog=limits.backlog)
        self._listener.setblocking(False)
        self.server_address = self._listener.getsockname()[:2]
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._back: queue.SimpleQueue = queue.SimpleQueue()   # (conn, keep) from workers and live threads
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()   # complete requests for the pool
        self._conns: set[_Conn] = set()       # every open connection (the selector's own; no lock)
        self._backlog: set[_Conn] = set()     # connections whose received bytes h11 has not all parsed yet
        self._busy = 0                        # connections a worker or a live thread has
        self._live: Counter[str] = Counter()  # live connections by client
        self._buffered = 0                    # bytes held against buffer_budget_bytes
        self._workers: list[threading.Thread] = []
        self._idle_workers = 0
        self._lock = threading.Lock()         # the pool's counts, and the failure counts workers add to
        self._stop = threading.Event()
        self._stopped = threading.Event()
        self._stopped.set()
        self.failures: Counter[str] = Counter()   # by stage
        self.refused: Counter[int] = Counter()    # the server's own answers, by status
        self._logged: set[tuple[str, str]] = set()
        self._flooded = False                 # the buffers have held over FLOOD_BYTES since the last trim
        self._trim_heap = _heap_trimmer()

    @property
    def port(self) -> int:
        return self.server_address[1]

    @property
    def open_connections(self) -> int:
        return len(self._conns)

    @property
    def live_connections(self) -> int:
        return sum(self._live.values())

    def status(self) -> dict:
        """What /metrics shows of the server."""
        with self._lock:
            failures, refused = dict(self.failures), dict(self.refused)
        return {"connections": len(self._conns), "live": self.live_connections, "buffered_bytes": self._buffered,
                "writing": sum(1 for c in self._conns if c.state == "write"),
                "failures": {s: failures.get(s, 0) for s in STAGES}, "refused": refused}

    # -- the selector thread -------------------------------------------------------------------

    def serve_forever(self) -> None:
        self._stop.clear()
        self._stopped.clear()
        self._sel.register(self._listener, selectors.EVENT_READ, "accept")
        self._sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        swept = self._now()
        try:
            while not self._stop.is_set():
                try:
                    self._round()
                    if self._now() - swept >= 0.25:
                        swept = self._now()
                        self._sweep(swept)
                except Exception as exc:  # a bug of ours in the loop itself: counted, and the loop goes on
                    self._failed("loop", exc)
                    time.sleep(0.01)
        finally:
            for conn in list(self._conns):
                if conn.state != "busy":
                    self._close(conn)
            for s in (self._listener, self._wake_r):
                try:
                    self._sel.unregister(s)
                except (KeyError, ValueError):
                    pass
            self._stopped.set()

    def _round(self) -> None:
        for key, mask in self._sel.select(timeout=0 if self._backlog else 0.5):
            if key.data == "accept":
                self._guard("accept", None, self._accept)
            elif key.data == "wake":
                self._drain_wake()
            elif mask & selectors.EVENT_WRITE:
                self._guard("write", key.data, self._write, key.data)
            else:
                self._guard("read", key.data, self._read, key.data)
        for conn in list(self._backlog):
            if conn.state == "read":
                self._guard("parse", conn, self._parse, conn)
            else:
                self._backlog.discard(conn)
        self._take_back()

    def shutdown(self) -> None:
        self._stop.set()
        self._wake()
        self._stopped.wait(5.0)

    def server_close(self) -> None:
        self._stop.set()
        for _ in self._workers:
            self._jobs.put(None)
        for s in (self._listener, self._wake_r, self._wake_w):
            s.close()
        self._sel.close()

    def _guard(self, stage: str, conn: _Conn | None, step: Callable, *args) -> None:
        """Run one step for one connection; whatever it raises closes that connection and nothing else."""
        try:
            step(*args)
        except Exception as exc:
            self._failed(stage, exc)
            if conn is not None and conn.state != "busy":
                self._close(conn)

    def _failed(self, stage: str, exc: BaseException) -> None:
        kind = (stage, type(exc).__name__)
        with self._lock:
            self.failures[stage] += 1
            first = kind not in self._logged
            self._logged.add(kind)
        if first:
            log.error("web server: %s failed (%s); that connection is closed. Further %s failures of %s are "
                      "counted on /metrics, not logged", stage, exc, stage, kind[1], exc_info=exc)
        else:
            log.debug("web server: %s failed again (%s)", stage, exc)

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except OSError:
            pass

    def _accept(self) -> None:
        for _ in range(64):
            try:
                sock, client = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # out of file descriptors, say: try again on the next round
                log.warning("cannot accept a connection: %s", exc)
                return
            if len(self._conns) >= self.limits.max_connections and not self._evict_idle():
                sock.close()
                continue
            try:
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                sock.close()
                continue
            now = self._now()
            conn = _Conn(sock, client[:2], self._h11(), now + self.limits.idle_timeout_s, now)
            self._conns.add(conn)
            self._sel.register(sock, selectors.EVENT_READ, conn)

    def _h11(self) -> h11.Connection:
        return h11.Connection(h11.SERVER, max_incomplete_event_size=self.limits.max_head_bytes)

    def _evict_idle(self) -> bool:
        """Close the connection the selector has been reading from for the longest without progress."""
        waiting = [c for c in self._conns if c.state == "read"]
        if not waiting:
            return False
        self._close(min(waiting, key=lambda c: c.last))
        return True

    def _close(self, conn: _Conn, answer: bytes = b"") -> None:
        if conn.state == "closed":
            return
        if conn.state in ("read", "write"):
            try:
                self._sel.unregister(conn.sock)
            except (KeyError, ValueError):
                pass
        conn.state = "closed"
        self._conns.discard(conn)
        self._backlog.discard(conn)
        self._buffered -= conn.held_body + conn.held_out
        conn.held_body = conn.held_out = 0
        conn.body, conn.out = [], bytearray()
        if answer:
            try:
                conn.sock.send(answer)  # small: it goes now or never
            except OSError:
                pass
        try:
            conn.sock.close()
        except OSError:
            pass

    def _refuse(self, conn: _Conn, status: int, reason: str) -> None:
        with self._lock:
            self.refused[status] += 1
        self._close(conn, wsgi.refusal(conn.h11, status, reason))

    # reading -------------------------------------------------------------------------------

    def _read(self, conn: _Conn) -> None:
        if conn in self._backlog:
            return  # what it sent before is parsed first
        try:
            data = conn.sock.recv(RECV_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        now = self._now()
        conn.last = now
        if data:
            conn.fed += len(data)
            if not conn.started:
                conn.started = True
                conn.deadline = now + self.limits.header_timeout_s
        if not data:  # the client has closed its side: nothing more will come, and nothing is left to answer
            self._close(conn)
            return
        conn.h11.receive_data(data)
        self._guard("parse", conn, self._parse, conn)

    def _parse(self, conn: _Conn) -> None:
        """Take h11's events for this connection, up to `events_per_round`; a whole request is dispatched."""
        for _ in range(self.limits.events_per_round):
            try:
                event = conn.h11.next_event()
            except h11.RemoteProtocolError as exc:
                self._refuse(conn, exc.error_status_hint, str(exc))
                return
            if event is h11.NEED_DATA or event is h11.PAUSED:
                self._backlog.discard(conn)
                if event is h11.NEED_DATA and conn.request is not None:
                    self._check_framing(conn)
                return
            kind = type(event)
            if kind is h11.Data:
                if not self._take_data(conn, event):
                    return
            elif kind is h11.Request:
                try:
                    wsgi.check(event, self.limits.max_body_bytes, self.limits.max_head_bytes)
                except wsgi.Refused as exc:
                    self._refuse(conn, exc.status, exc.reason)
                    return
                conn.request = event
                conn.deadline = self._now() + self.limits.body_timeout_s
                if conn.h11.they_are_waiting_for_100_continue:
                    try:
                        conn.sock.send(conn.h11.send(h11.InformationalResponse(status_code=100)) or b"")
                    except OSError:
                        pass
            elif kind is h11.EndOfMessage:
                self._backlog.discard(conn)
                self._sel.unregister(conn.sock)
                conn.state = "busy"
                self._busy += 1
                self._guard("dispatch", None, self._dispatch_or_close, conn)
                return
            elif kind is h11.ConnectionClosed:
                self._close(conn)
                return
        self._backlog.add(conn)  # more to parse: after the others have had their turn

    def _take_data(self, conn: _Conn, event: h11.Data) -> bool:
        size = len(event.data)
        conn.chunks += event.chunk_start
        if conn.chunks > self.limits.max_chunks:
            self._refuse(conn, 413, f"more than {self.limits.max_chunks} chunks")
            return False
        if conn.body_bytes + size > self.limits.max_body_bytes:
            self._refuse(conn, 413, f"the body is over {self.limits.max_body_bytes} bytes")
            return False
        if not self._make_room(conn, size, self._biggest_body):
            self._refuse(conn, 503, "the server is holding too much; try again later")
            return False
        conn.body.append(event.data)
        conn.body_bytes += size
        conn.held_body += size
        self._buffered += size
        return True

    def _check_framing(self, conn: _Conn) -> None:
        """What the present request has cost beyond its body (its head, chunk lines, extensions, trailers)."""
        consumed = conn.fed - len(conn.h11.trailing_data[0]) - conn.request_start
        if consumed - conn.body_bytes > self.limits.max_head_bytes + self.limits.max_framing_bytes:
            self._refuse(conn, 400, "too much chunk framing")

    def _make_room(self, conn: _Conn, size: int, victim: Callable[[_Conn, int], _Conn | None]) -> bool:
        """Room for `size` more bytes in the buffer budget, closing others' connections as `victim` picks."""
        while self._buffered + size > self.limits.buffer_budget_bytes:
            other = victim(conn, size)
            if other is None:
                return False
            with self._lock:
                self.refused[503] += 1
            self._close(other, wsgi.refusal(other.h11, 503, "the server is holding too much; try again later")
                        if other.state == "read" else b"")
        return True

    def _biggest_body(self, conn: _Conn, size: int) -> _Conn | None:
        """The unfinished body bigger than this one will be: a flood of big bodies gives way to small ones."""
        bodies = [c for c in self._conns if c.state == "read" and c is not conn and c.held_body]
        other = max(bodies, key=lambda c: c.held_body, default=None)
        return other if other is not None and other.held_body > conn.held_body + size else None

    def _stalled_reader(self, conn: _Conn, size: int) -> _Conn | None:
        """The answer its client has left unread the longest."""
        writers = [c for c in self._conns if c.state == "write" and c is not conn]
        return min(writers, key=lambda c: c.last, default=None)

    # dispatching ----------------------------------------------------------------------------

    def _dispatch_or_close(self, conn: _Conn) -> None:
        try:
            self._dispatch(conn)
        except BaseException:
            self._busy -= 1
            conn.state = "read"  # registered nowhere: _close only closes it
            raise

    def _dispatch(self, conn: _Conn) -> None:
        request = conn.request
        assert request is not None
        if wsgi.is_websocket(request) or wsgi.is_long_poll(request):
            key = self._client_of(conn.client[0], (wsgi.header(request, b"x-forwarded-for") or b"").decode("latin-1")
                                  or None)
            if self.live_connections >= self.limits.max_live_connections \
                    or self._live[key] >= self.limits.max_live_per_client:
                self._busy -= 1
                conn.state = "read"
                self._refuse(conn, 503, "too many live connections; try again later")
                return
            self._live[key] += 1
            conn.live_key = key
            threading.Thread(target=self._live_connection, args=(conn,), name="payg-live", daemon=True).start()
            return
        self._jobs.put(conn)
        with self._lock:
            spawn = self._idle_workers == 0 and len(self._workers) < self.limits.workers
        if spawn:
            worker = threading.Thread(target=self._work, name=f"payg-http-{len(self._workers)}", daemon=True)
            self._workers.append(worker)
            worker.start()

    def _take_back(self) -> None:
        while True:
            try:
                conn, keep = self._back.get_nowait()
            except queue.Empty:
                return
            self._busy -= 1
            if conn.live_key is not None:
                self._live[conn.live_key] -= 1
                if not self._live[conn.live_key]:
                    del self._live[conn.live_key]
                conn.live_key = None
            self._buffered -= conn.held_body
            conn.held_body, conn.body = 0, []
            conn.keep = keep and not self._stop.is_set()
            if conn.state == "closed":
                continue
            if not conn.keep and not conn.out:
                conn.state = "read"
                self._close(conn)
            elif conn.out:
                self._guard("write", conn, self._start_writing, conn)
            else:
                self._guard("parse", conn, self._next_request, conn)

    def _start_writing(self, conn: _Conn) -> None:
        conn.state = "write"
        self._sel.register(conn.sock, selectors.EVENT_WRITE, conn)
        now = self._now()
        conn.last, conn.deadline = now, now + self.limits.write_timeout_s
        size = len(conn.out)
        if not self._make_room(conn, size, self._stalled_reader):
            with self._lock:
                self.refused[503] += 1
            self._close(conn)
            return
        conn.held_out = size
        self._buffered += size

    def _next_request(self, conn: _Conn) -> None:
        """The answer is out: read the connection's next request, or close it."""
        conn.state = "read"
        if not conn.keep or conn.h11.our_state is not h11.DONE or conn.h11.their_state is not h11.DONE:
            self._close(conn)
            return
        conn.h11.start_next_cycle()
        now = self._now()
        conn.request, conn.body, conn.body_bytes, conn.chunks, conn.started = None, [], 0, 0, False
        conn.request_start = conn.fed - len(conn.h11.trailing_data[0])
        conn.last, conn.deadline = now, now + self.limits.idle_timeout_s
        self._sel.register(conn.sock, selectors.EVENT_READ, conn)
        if conn.request_start < conn.fed:  # a pipelined request is waiting in h11
            conn.started = True
            conn.deadline = now + self.limits.header_timeout_s
            self._parse(conn)

    # writing ---------------------------------------------------------------------------------

    def _write(self, conn: _Conn) -> None:
        try:
            sent = conn.sock.send(memoryview(conn.out)[:SEND_BYTES])
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        del conn.out[:sent]
        conn.held_out -= sent
        self._buffered -= sent
        now = self._now()
        conn.last, conn.deadline = now, now + self.limits.write_timeout_s
        if not conn.out:
            self._sel.unregister(conn.sock)
            conn.state = "read"  # registered nowhere until _next_request
            if conn.keep:
                self._next_request(conn)
            else:
                self._close(conn)

    def _sweep(self, now: float) -> None:
        if self._buffered > FLOOD_BYTES:
            self._flooded = True
        elif self._flooded and self._buffered < FLOOD_BYTES // 4:
            self._flooded = False
            self._trim_heap()
        for conn in [c for c in self._conns if c.state in ("read", "write") and now > c.deadline]:
            if conn.state == "read" and conn.started:
                self._refuse(conn, 408, "the request took too long")
            else:
                self._close(conn)

    # worker and live threads -----------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._lock:
                self._idle_workers += 1
            conn = self._jobs.get()
            with self._lock:
                self._idle_workers -= 1
            if conn is None:
                return
            self._serve(conn, websocket=False)

    def _live_connection(self, conn: _Conn) -> None:
        assert conn.request is not None
        self._serve(conn, websocket=wsgi.is_websocket(conn.request))

    def _serve(self, conn: _Conn, websocket: bool) -> None:
        keep = False
        try:
            keep = self._respond(conn, websocket)
        except Exception as exc:
            self._failed("respond", exc)
        finally:
            self._back.put((conn, keep))
            self._wake()

    def _respond(self, conn: _Conn, websocket: bool) -> bool:
        """Run the app on the request; its answer goes to `conn.out`, as much as the socket takes at once
        sent now. True: the connection may carry another request."""
        request = conn.request
        assert request is not None
        env = wsgi.environ(request, b"".join(conn.body), server=self.server_address, client=conn.client)
        sock = conn.sock
        if websocket:
            # simple-websocket (Flask-SocketIO's threading mode) takes the socket over, blocking
            env["werkzeug.socket"] = _Handover(sock, conn.h11.trailing_data[0])
            sock.setblocking(True)
            sock.settimeout(self.limits.write_timeout_s)
        exchange = wsgi.Exchange(conn.h11, request, lambda data: self._emit(conn, data),
                                 close=websocket or self._stop.is_set())
        try:
            exchange.run(self.app, env)
            if not websocket:
                self._send_now(conn)
        except (ConnectionError, TimeoutError):  # the client went away, or a WebSocket ended (simple-websocket's way)
            return False
        except OSError:
            return False
        except Exception:
            if not exchange.sent:
                conn.out += wsgi.refusal(conn.h11, 500, "the server failed on this request")
                self._send_now(conn)
            raise
        return not websocket and conn.h11.our_state is h11.DONE

    def _emit(self, conn: _Conn, data: bytes) -> None:
        conn.out += data
        if len(conn.out) > self.limits.response_high_water:
            self._drain(conn, self.limits.response_high_water // 2)

    def _send_now(self, conn: _Conn) -> None:
        """What the socket takes without waiting; the rest is the selector's to write."""
        while conn.out:
            try:
                sent = conn.sock.send(memoryview(conn.out)[:SEND_BYTES])
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                conn.out.clear()
                raise ConnectionResetError("the client went away") from None
            del conn.out[:sent]

    def _drain(self, conn: _Conn, down_to: int) -> None:
        """A worker's wait for its client to take a large answer, at most write_timeout_s without progress."""
        poller = select.poll()
        poller.register(conn.sock, select.POLLOUT)
        while len(conn.out) > down_to:
            if not poller.poll(self.limits.write_timeout_s * 1000):
                raise TimeoutError("the client read nothing")
            self._send_now(conn)
