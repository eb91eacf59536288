"""One connection of payg's web server (payg/webkit/server.py): its state, and the worker's side of an exchange.

A worker (or a live connection's thread) runs the app with `respond`: the answer goes through h11
(payg/webkit/wsgi.py) into the connection's buffer, as much as the socket takes at once is sent, and the rest is
left for the selector to write, so a client that does not read holds buffer space, not the thread. Only an
answer over `response_high_water` makes the thread wait for its client (`drain`). A WebSocket takes the socket
over (`Handover`), with whatever bytes came in the same packets as the upgrade.
"""

from __future__ import annotations

import ctypes
import select
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

import h11
from h11 import Connection as H11Connection
from h11 import Request as H11Request

import payg.webkit.wsgi as wsgi
from payg.domain.config_keys import made_from
from payg.domain.settings import ServerConfig

SEND_BYTES = 256 * 1024
# The kernel's send buffer per connection, fixed: left to autotune it grows to 4 MiB on Linux, room for dozens
# of answers to a client that reads nothing, all served before the others' requests (measured: with 24 such
# clients pipelining GETs of a 51 KB asset, a legitimate GET took 40 to 160 ms for 1.7 s; with this, one GET
# took 77 ms and the rest under 30 ms).
KERNEL_SEND_BYTES = 64 * 1024


def prepare(sock: socket.socket) -> None:
    """A connection just accepted: non-blocking, no Nagle delay, a fixed send buffer."""
    sock.setblocking(False)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, KERNEL_SEND_BYTES)


@dataclass(frozen=True)
class ServerLimits(ServerConfig):
    """The limits [web.server] sets (ServerConfig: their defaults, bounds and meanings), and the fixed ones."""

    write_timeout_s: float = 30.0   # a client that reads nothing of an answer for this long is dropped
    max_head_bytes: int = 16 * 1024
    max_chunks: int = 1024          # chunks in one request's body
    max_framing_bytes: int = 16 * 1024     # chunk-size lines, chunk extensions and trailers of one request
    response_high_water: int = 1024 * 1024       # an answer buffered beyond this makes its worker wait
    events_per_round: int = 256     # h11 events parsed for one connection before the others get their turn
    backlog: int = 128

    @classmethod
    def of(cls, c: ServerConfig) -> ServerLimits:
        """The limits [web.server] sets."""
        return made_from(cls, c)


@dataclass(eq=False)
class Conn:
    sock: socket.socket
    client: tuple[str, int]
    h11: H11Connection
    deadline: float                 # when it is closed if nothing more comes (or nothing more is read)
    last: float                     # its last progress, for eviction
    state: str = "read"             # read (the selector reads it), busy (a thread has it), write, closed
    started: bool = False           # bytes of a request have come (a timeout is answered 408)
    request: H11Request | None = None
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


class Handover:
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


def heap_trimmer() -> Callable[[], object]:
    """glibc's malloc_trim: after a flood of bodies or answers, the freed heap goes back to the system (measured:
    +18 MiB of RSS kept after 200 bodies held at the budget, none after a trim). A no-op on another libc."""
    try:
        trim = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return lambda: None
    return lambda: trim(0)


def respond(conn: Conn, app: Callable, limits: ServerLimits, server: tuple[str, int], websocket: bool,
            closing: bool, send: bool = True) -> bool:
    """Run the app on the connection's request; its answer goes to `conn.out`, as much as the socket takes at
    once sent now unless `send` is false (then the event loop writes all of it). True: the connection may
    carry another request."""
    request = conn.request
    assert request is not None
    env = wsgi.environ(request, b"".join(conn.body), server=server, client=conn.client)
    sock = conn.sock
    if websocket:
        # simple-websocket (Flask-SocketIO's threading mode) takes the socket over, blocking
        env["werkzeug.socket"] = Handover(sock, conn.h11.trailing_data[0])
        sock.setblocking(True)
        sock.settimeout(limits.write_timeout_s)

    def emit(data: bytes) -> None:
        conn.out += data
        if len(conn.out) > limits.response_high_water:
            drain(conn, limits.response_high_water // 2, limits.write_timeout_s)

    exchange = wsgi.Exchange(conn.h11, request, emit, close=websocket or closing)
    try:
        exchange.run(app, env)
        if send and not websocket:
            send_now(conn)
    except OSError:  # the client went away or read nothing in time, or a WebSocket ended (simple-websocket's way)
        return False
    except Exception:
        if not exchange.sent:
            conn.out += wsgi.refusal(conn.h11, 500, "the server failed on this request")
            send_now(conn)
        raise
    return not websocket and conn.h11.our_state is h11.DONE


def send_now(conn: Conn) -> None:
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


def drain(conn: Conn, down_to: int, timeout_s: float) -> None:
    """A thread's wait for its client to take a large answer, at most `timeout_s` without progress."""
    poller = select.poll()
    poller.register(conn.sock, select.POLLOUT)
    while len(conn.out) > down_to:
        if not poller.poll(timeout_s * 1000):
            raise TimeoutError("the client read nothing")
        send_now(conn)
