"""The reading side of payg's web server (payg/webkit/server.py): bytes to h11, h11's events to complete requests.

The selector thread calls `_read` when a connection is readable and `_parse` for connections with bytes
left unparsed: at most `events_per_round` h11 events per connection per round, so a flood of one-byte chunks
waits its turn. A request payg will not serve is answered here (payg/webkit/wsgi.py `check`); a body is kept
within `max_body_bytes`, `max_chunks`, `max_framing_bytes` and the one `buffer_budget_bytes` of the server.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable

import h11

import payg.webkit.wsgi as wsgi
from payg.webkit.connection import Conn, ServerLimits

RECV_BYTES = 65536
HOLDING = "the server is holding too much; try again later"


class Intake:
    """HttpServer's reading steps; the server gives the state and the steps below."""

    limits: ServerLimits
    refused: Counter[int]
    _conns: set[Conn]
    _backlog: set[Conn]
    _buffered: int
    _busy: int
    _lock: threading.Lock
    _now: Callable[[], float]

    def _close(self, conn: Conn, answer: bytes = b"") -> None:
        raise NotImplementedError

    def _refuse(self, conn: Conn, status: int, reason: str) -> None:
        raise NotImplementedError

    def _guard(self, stage: str, conn: Conn | None, step: Callable, *args) -> None:
        raise NotImplementedError

    def _unwatch(self, conn: Conn) -> None:
        raise NotImplementedError

    def _dispatch_or_close(self, conn: Conn) -> None:
        raise NotImplementedError

    def _read(self, conn: Conn) -> None:
        if conn in self._backlog:
            return  # what it sent before is parsed first
        try:
            data = conn.sock.recv(RECV_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        if not data:  # the client has closed its side: nothing more will come, and nothing is left to answer
            self._close(conn)
            return
        conn.last = now = self._now()
        conn.fed += len(data)
        if not conn.started:
            conn.started = True
            conn.deadline = now + self.limits.header_timeout_s
        conn.h11.receive_data(data)
        self._guard("parse", conn, self._parse, conn)

    def _parse(self, conn: Conn) -> None:
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
            if isinstance(event, h11.Data):
                if not self._take_data(conn, event):
                    return
            elif isinstance(event, h11.Request):
                try:
                    wsgi.check(event, self.limits.max_body_bytes, self.limits.max_head_bytes)
                except wsgi.Refused as exc:
                    self._refuse(conn, exc.status, exc.reason)
                    return
                conn.request = event
                conn.deadline = self._now() + self.limits.body_timeout_s
                if conn.h11.they_are_waiting_for_100_continue:
                    try:
                        conn.sock.send(conn.h11.send(h11.InformationalResponse(status_code=100, headers=[])) or b"")
                    except OSError:
                        pass
            elif isinstance(event, h11.EndOfMessage):
                self._backlog.discard(conn)
                self._unwatch(conn)
                conn.state = "busy"
                self._busy += 1
                self._guard("dispatch", None, self._dispatch_or_close, conn)
                return
            elif isinstance(event, h11.ConnectionClosed):
                self._close(conn)
                return
        self._backlog.add(conn)  # more to parse: after the others have had their turn

    def _take_data(self, conn: Conn, event: h11.Data) -> bool:
        size = len(event.data)
        conn.chunks += event.chunk_start
        if conn.chunks > self.limits.max_chunks:
            self._refuse(conn, 413, f"more than {self.limits.max_chunks} chunks")
            return False
        if conn.body_bytes + size > self.limits.max_body_bytes:
            self._refuse(conn, 413, f"the body is over {self.limits.max_body_bytes} bytes")
            return False
        if not self._make_room(conn, size, self._biggest_body):
            self._shed(conn)
            return False
        conn.body.append(event.data)
        conn.body_bytes += size
        conn.held_body += size
        self._buffered += size
        return True

    def _check_framing(self, conn: Conn) -> None:
        """What the present request has cost beyond its body (its head, chunk lines, extensions, trailers)."""
        consumed = conn.fed - len(conn.h11.trailing_data[0]) - conn.request_start
        if consumed - conn.body_bytes > self.limits.max_head_bytes + self.limits.max_framing_bytes:
            self._refuse(conn, 400, "too much chunk framing")

    def _make_room(self, conn: Conn, size: int, victim: Callable[[Conn, int], Conn | None]) -> bool:
        """Room for `size` more bytes in the buffer budget, closing others' connections as `victim` picks."""
        while self._buffered + size > self.limits.buffer_budget_bytes:
            other = victim(conn, size)
            if other is None:
                return False
            self._shed(other)
        return True

    def _shed(self, conn: Conn) -> None:
        """Closed for lack of room in the buffer budget: a 503 where the server is still reading its request."""
        if conn.state == "read":
            self._refuse(conn, 503, HOLDING)
        else:
            with self._lock:
                self.refused[503] += 1
            self._close(conn)

    def _biggest_body(self, conn: Conn, size: int) -> Conn | None:
        """The unfinished body bigger than this one will be: a flood of big bodies gives way to small ones."""
        bodies = [c for c in self._conns if c.state == "read" and c is not conn and c.held_body]
        other = max(bodies, key=lambda c: c.held_body, default=None)
        return other if other is not None and other.held_body > conn.held_body + size else None

    def _stalled_reader(self, conn: Conn, size: int) -> Conn | None:
        """The answer its client has left unread the longest."""
        writers = [c for c in self._conns if c.state == "write" and c is not conn]
        return min(writers, key=lambda c: c.last, default=None)
