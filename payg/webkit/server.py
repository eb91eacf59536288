"""payg's web server: HTTP/1.1 and WebSockets for the Flask app, in the controller's own process (and the hub's).

ARCHITECTURE.md ("The web server") says why this server, what h11 does (payg/webkit/wsgi.py is the rest of the
HTTP side) and the bounds. This module is the selector thread: it accepts, reads, feeds h11, dispatches
complete requests to a fixed pool of workers (or a live connection's own thread), writes the answers their
clients have not taken yet, and keeps the budgets (time, connections, live slots per client, chunks,
framing, one buffer budget for bodies and unread answers). Every step runs in a guard: an exception closes
one connection, is logged once per stage and kind, and is counted (`status()`, /metrics). No `Server:` header.
"""

from __future__ import annotations

import logging
import queue
import selectors
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable

import h11

import payg.webkit.wsgi as wsgi
from payg.webkit.connection import SEND_BYTES, Conn, ServerLimits, heap_trimmer, prepare, respond
from payg.webkit.intake import Intake

log = logging.getLogger("payg.web")

STAGES = ("accept", "read", "parse", "dispatch", "respond", "write", "loop")
DEFAULT_LIMITS = ServerLimits()
FLOOD_BYTES = 4 * 1024 * 1024  # held at once, then back under a quarter of it: the heap is trimmed


class HttpServer(Intake):
    """Serve a WSGI app on (host, port); `serve_forever()` until `shutdown()`; then `server_close()`.

    `client_of(peer_address, x_forwarded_for)` names the client a live connection counts against (behind a
    trusted reverse proxy, the forwarded address; payg/webkit/proxies.py); by default the peer's address."""

    def __init__(self, app: Callable, host: str, port: int, limits: ServerLimits = DEFAULT_LIMITS,
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
        self._conns: set[Conn] = set()       # every open connection (the selector's own; no lock)
        self._backlog: set[Conn] = set()     # connections whose received bytes h11 has not all parsed yet
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
        self._trim_heap = heap_trimmer()

    @property
    def port(self) -> int:
        return self.server_address[1]

    @property
    def live_connections(self) -> int:
        return sum(list(self._live.values()))  # list() copies at once: /metrics reads this from a worker

    def status(self) -> dict:
        """What /metrics shows of the server."""
        with self._lock:
            failures, refused = dict(self.failures), dict(self.refused)
        return {"connections": len(self._conns), "live": self.live_connections, "buffered_bytes": self._buffered,
                "writing": sum(1 for c in tuple(self._conns) if c.state == "write"), "busy": self._busy,
                "failures": {s: failures.get(s, 0) for s in STAGES}, "refused": refused}

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

    def _guard(self, stage: str, conn: Conn | None, step: Callable, *args) -> None:
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
                continue
        except OSError:
            return

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
                prepare(sock)
            except OSError:
                sock.close()
                continue
            conn = Conn(sock, client[:2], self._h11(), self._now() + self.limits.idle_timeout_s, self._now())
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

    def _unwatch(self, conn: Conn) -> None:
        try:
            self._sel.unregister(conn.sock)
        except (KeyError, ValueError):
            pass

    def _close(self, conn: Conn, answer: bytes = b"") -> None:
        if conn.state == "closed":
            return
        if conn.state in ("read", "write"):
            self._unwatch(conn)
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

    def _refuse(self, conn: Conn, status: int, reason: str) -> None:
        with self._lock:
            self.refused[status] += 1
        self._close(conn, wsgi.refusal(conn.h11, status, reason))

    def _dispatch_or_close(self, conn: Conn) -> None:
        try:
            self._dispatch(conn)
        except BaseException:
            self._busy -= 1
            conn.state = "read"  # registered nowhere: _close only closes it
            raise

    def _dispatch(self, conn: Conn) -> None:
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

    def _start_writing(self, conn: Conn) -> None:
        conn.state = "write"
        self._sel.register(conn.sock, selectors.EVENT_WRITE, conn)
        now = self._now()
        conn.last, conn.deadline = now, now + self.limits.write_timeout_s
        size = len(conn.out)
        if not self._make_room(conn, size, self._stalled_reader):
            self._shed(conn)
            return
        conn.held_out = size
        self._buffered += size

    def _next_request(self, conn: Conn) -> None:
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

    def _write(self, conn: Conn) -> None:
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
            self._unwatch(conn)
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

    def _live_connection(self, conn: Conn) -> None:
        assert conn.request is not None
        # a long poll's answer is written by the loop once it has given the live slot back: sent from here,
        # the client's next poll could arrive (on its other connection) while the slot still looked taken
        self._serve(conn, websocket=wsgi.is_websocket(conn.request), send=False)

    def _serve(self, conn: Conn, websocket: bool, send: bool = True) -> None:
        keep = False
        try:
            keep = self._respond(conn, websocket, send)
        except Exception as exc:
            self._failed("respond", exc)
        finally:
            self._back.put((conn, keep))
            self._wake()

    def _respond(self, conn: Conn, websocket: bool, send: bool = True) -> bool:
        """Run the app on the request (a worker's or a live thread's step). True: the connection may carry
        another request."""
        return respond(conn, self.app, self.limits, self.server_address, websocket, closing=self._stop.is_set(),
                       send=send)
