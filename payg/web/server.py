"""payg's web server: HTTP/1.1 and WebSockets for the Flask app, in the controller's own process.

Why not another server is written down in ARCHITECTURE.md ("The web server"). In short:
one thread waits on every connection at once (a selector) and gathers requests; a small,
fixed pool of worker threads runs the Flask app on complete requests only. So:

- An idle or a slow client costs a file descriptor and a few bytes, never a thread: 500
  idle connections are 500 entries in the selector, and the pool still answers the tenant page.
- A request head must arrive within `header_timeout_s`, its body within `body_timeout_s`, and
  a kept-alive connection with nothing to say is closed after `idle_timeout_s`.
- At `max_connections` the connection idle the longest makes room for a new one, so a flood
  of idle connections cannot keep a tenant out.
- A body over `max_body_bytes` is refused with 413 as soon as its length (or its running
  chunked length) shows it: it is never read, let alone buffered.
- A live connection gets a thread of its own, at most `max_live_connections` of them, so the
  pool stays free for pages: a WebSocket (Socket.IO's transport; two threads, with
  simple-websocket's reader) for its life, and a Socket.IO long-poll (a page whose WebSocket
  cannot get through, or past the cap) for the up to 25 s it waits.
- No `Server:` header: nothing tells a scanner what runs here.
"""

from __future__ import annotations

import logging
import queue
import selectors
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from payg.domain.settings import ServerConfig
from payg.web.http1 import BadRequest, Incoming, Response, environ_for, long_poll, simple_response

log = logging.getLogger("payg.web")


@dataclass(frozen=True)
class ServerLimits:
    max_connections: int = 512      # open connections in all
    workers: int = 16               # threads that run requests
    max_live_connections: int = 64  # WebSockets (two threads each) and Socket.IO long-polls (one) at once
    header_timeout_s: float = 10.0  # a request's head must be in within this of its first byte
    body_timeout_s: float = 30.0    # and its body within this of its head
    idle_timeout_s: float = 30.0    # a kept-alive connection with no request is closed after this
    write_timeout_s: float = 30.0   # a client that reads nothing of a response for this long is dropped
    max_body_bytes: int = 256 * 1024
    max_head_bytes: int = 16 * 1024
    backlog: int = 128

    @classmethod
    def of(cls, c: ServerConfig) -> ServerLimits:
        """The limits [web.server] sets."""
        return cls(max_connections=c.max_connections, workers=c.workers, max_live_connections=c.max_live_connections,
                   header_timeout_s=c.header_timeout_s, body_timeout_s=c.body_timeout_s,
                   idle_timeout_s=c.idle_timeout_s, max_body_bytes=c.max_body_kib * 1024)


@dataclass(eq=False)
class _Conn:
    sock: socket.socket
    client: tuple[str, int]
    incoming: Incoming
    deadline: float              # when it is closed if nothing more comes
    waiting: bool = False        # a request has begun (so a timeout is answered 408)
    continued: bool = False      # "100 Continue" sent for the present request
    pending: bytes = b""         # bytes past the present request (a pipelined next one)
    last: float = field(default=0.0)


class HttpServer:
    """Serve a WSGI app on (host, port); `serve_forever()` until `shutdown()`; then `server_close()`."""

    def __init__(self, app: Callable, host: str, port: int, limits: ServerLimits = ServerLimits(),
                 clock: Callable[[], float] = time.monotonic):
        self.app, self.limits, self._now = app, limits, clock
        self._listener = socket.create_server((host, port), backlog=limits.backlog)
        self._listener.setblocking(False)
        self.server_address = self._listener.getsockname()[:2]
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._back: queue.SimpleQueue = queue.SimpleQueue()   # (conn, keep) from workers and WebSockets
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()   # complete requests for the pool
        self._waiting: dict[int, _Conn] = {}  # connections the selector watches, by file descriptor
        self._busy = 0                        # connections a worker or a WebSocket thread has
        self._live = 0
        self._workers: list[threading.Thread] = []
        self._idle_workers = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._stopped = threading.Event()
        self._stopped.set()

    @property
    def port(self) -> int:
        return self.server_address[1]

    @property
    def open_connections(self) -> int:
        return len(self._waiting) + self._busy

    # -- the selector thread -------------------------------------------------------------------

    def serve_forever(self) -> None:
        self._stop.clear()
        self._stopped.clear()
        self._sel.register(self._listener, selectors.EVENT_READ, "accept")
        self._sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        swept = self._now()
        try:
            while not self._stop.is_set():
                for key, _ in self._sel.select(timeout=0.5):
                    if key.data == "accept":
                        self._accept()
                    elif key.data == "wake":
                        self._drain_wake()
                    else:
                        self._readable(key.data)
                self._take_back()
                if self._now() - swept >= 0.25:
                    swept = self._now()
                    self._sweep(swept)
        finally:
            for conn in list(self._waiting.values()):
                self._close(conn)
            for s in (self._listener, self._wake_r):
                try:
                    self._sel.unregister(s)
                except (KeyError, ValueError):
                    pass
            self._stopped.set()

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

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, OSError):
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
            if self.open_connections >= self.limits.max_connections and not self._evict():
                sock.close()
                continue
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            now = self._now()
            conn = _Conn(sock, client[:2], self._incoming(), now + self.limits.idle_timeout_s, last=now)
            self._watch(conn)

    def _evict(self) -> bool:
        """Close the connection idle the longest, to make room. False when every one is busy."""
        if not self._waiting:
            return False
        self._close(min(self._waiting.values(), key=lambda c: c.last))
        return True

    def _incoming(self) -> Incoming:
        return Incoming(self.limits.max_head_bytes, self.limits.max_body_bytes)

    def _watch(self, conn: _Conn) -> None:
        self._waiting[conn.sock.fileno()] = conn
        self._sel.register(conn.sock, selectors.EVENT_READ, conn)

    def _unwatch(self, conn: _Conn) -> None:
        self._waiting.pop(conn.sock.fileno(), None)
        try:
            self._sel.unregister(conn.sock)
        except (KeyError, ValueError):
            pass

    def _close(self, conn: _Conn, answer: bytes = b"") -> None:
        self._unwatch(conn)
        if answer:
            try:
                conn.sock.send(answer)  # small, and the socket's buffer is empty: it goes or it does not
            except OSError:
                pass
        try:
            conn.sock.close()
        except OSError:
            pass

    def _readable(self, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        if not data:
            self._close(conn)
            return
        self._received(conn, data)

    def _received(self, conn: _Conn, data: bytes) -> None:
        now = self._now()
        inc = conn.incoming
        had_head = inc.head is not None
        if not conn.waiting:
            conn.waiting = True
            conn.deadline = now + self.limits.header_timeout_s
        conn.last = now
        try:
            rest = inc.feed(data)
        except BadRequest as exc:
            self._close(conn, simple_response(exc.status, exc.reason))
            return
        if inc.head is not None and not had_head:
            conn.deadline = now + self.limits.body_timeout_s
        if inc.done:
            conn.pending = rest
            self._unwatch(conn)
            self._dispatch(conn)
        elif inc.expects_continue and not conn.continued:
            conn.continued = True
            try:
                conn.sock.send(b"HTTP/1.1 100 Continue\r\n\r\n")
            except OSError:
                self._close(conn)

    def _sweep(self, now: float) -> None:
        for conn in [c for c in self._waiting.values() if now > c.deadline]:
            self._close(conn, simple_response(408, "the request took too long") if conn.waiting else b"")

    def _dispatch(self, conn: _Conn) -> None:
        self._busy += 1
        head = conn.incoming.head
        if head.websocket or long_poll(head):
            if self._live >= self.limits.max_live_connections:
                self._busy -= 1
                self._close(conn, simple_response(503, "too many live connections; try again later"))
                return
            self._live += 1
            threading.Thread(target=self._live_connection, args=(conn, head.websocket), name="payg-live",
                             daemon=True).start()
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
                conn, keep, live = self._back.get_nowait()
            except queue.Empty:
                return
            self._busy -= 1
            self._live -= live
            if not keep or self._stop.is_set():
                self._close(conn)
                continue
            now = self._now()
            conn.incoming, conn.waiting, conn.continued, conn.last = self._incoming(), False, False, now
            conn.deadline = now + self.limits.idle_timeout_s
            pending, conn.pending = conn.pending, b""
            try:
                conn.sock.setblocking(False)
            except OSError:
                conn.sock.close()
                continue
            self._watch(conn)
            if pending:
                self._received(conn, pending)

    # -- worker threads ------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._lock:
                self._idle_workers += 1
            conn = self._jobs.get()
            with self._lock:
                self._idle_workers -= 1
            if conn is None:
                return
            keep = False
            try:
                keep = self._respond(conn)
            except Exception:
                log.exception("serving %s failed", conn.incoming.head.target if conn.incoming.head else "?")
            self._back.put((conn, keep, False))
            self._wake()

    def _live_connection(self, conn: _Conn, websocket: bool) -> None:
        keep = False
        try:
            keep = self._respond(conn, websocket=websocket)
        except Exception:
            log.exception("a live connection failed")
        finally:
            self._back.put((conn, keep, True))
            self._wake()

    def _respond(self, conn: _Conn, websocket: bool = False) -> bool:
        """Run the app on the request and send its answer. True: the connection may carry another."""
        head = conn.incoming.head
        env = environ_for(head, bytes(conn.incoming.body), server=self.server_address, client=conn.client)
        sock = conn.sock
        sock.setblocking(True)
        sock.settimeout(self.limits.write_timeout_s)
        if websocket:
            env["werkzeug.socket"] = sock  # simple-websocket (Flask-SocketIO's threading mode) takes it over
        out = Response(sock, head, keep=head.keep_alive and not websocket and not self._stop.is_set())
        try:
            result = self.app(env, out.start_response)
            try:
                for chunk in result:
                    out.write(chunk)
                out.finish()
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
        except ConnectionError:  # the client went away, or a WebSocket ended (simple-websocket says so this way)
            return False
        except OSError:  # a write timed out
            return False
        except Exception:
            if not out.sent:
                sock.sendall(simple_response(500, "the server failed on this request"))
            raise
        return out.keep
