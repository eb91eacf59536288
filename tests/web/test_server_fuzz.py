"""payg's web server (payg/webkit/server.py) fuzzed on a real socket, with h11 as the reference for HTTP/1.1 framing.

Hypothesis takes well-formed requests (a GET, a HEAD, a POST with a length, a chunked POST with extensions
and trailers, HTTP/1.0, two of them pipelined), mutates a few bytes or headers (control bytes, bare CR or
LF, non-ASCII digits, a duplicated header line, no Host, HTTP/1.2 or 2.0, strange or second Content-Length
or Transfer-Encoding, an absolute-form target), sends them in one to three pieces, half-closes and reads
until the server closes. For every example:

1. the server lives: its `serve_forever` thread is running and a fresh well-formed GET gets 200 (after a
   death, the next example gets a fresh server, so the shrinker is not led astray by a dead one);
2. what it sent back is a well-formed sequence of HTTP/1.1 responses to h11 as the client: each one ends,
   or the connection closes right after a response whose end is the close, and no byte follows it;
3. the app only ever ran requests h11 would frame the same way: the (method, target, body) the app saw
   are a prefix of what an h11 server makes of the same bytes. The server may refuse more than h11 (its
   limits: duplicate Host, control bytes, 413 and so on), never less: a request that h11 would frame
   differently is a request smuggled past a proxy that frames like h11.

Bounded: at most 300 examples, and once BUDGET_S has passed the remaining examples return at once (unless
one has failed, so that shrinking and the final replay see the same test). One server for the module.
"""

from __future__ import annotations

import http.client
import re
import socket
import threading
import time
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

import h11
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from payg.webkit.server import HttpServer, ServerLimits
from tests.support import wait_until

BUDGET_S = 40.0        # examples after this return at once: the module stays under a minute on 2 cores
READ_FOR_S = 1.5       # how long an answer may take to come and the connection to close after the half-close
PIECE_PAUSE_S = 0.01   # between the pieces of a request, so that the server reads them apart
PROBE_PATH = "/__alive"

LIMITS = dict(workers=4, max_body_kib=64, header_timeout_s=1.0, body_timeout_s=1.0, idle_timeout_s=1.0,
              max_connections=40)


# -- the app and the server --------------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """A request as the app saw it, in WSGI's terms: the path %-decoded (latin-1), the query as sent."""
    method: str
    path: str
    query: str
    body: bytes

    def __str__(self) -> str:
        return f"{self.method} {self.path}{'?' + self.query if self.query else ''} body={self.body!r}"


class Recorder:
    """The echo app: records each request (thread-safe) and answers it in one of several ways:
    /stream* streamed (no Content-Length: chunked, or until the close for HTTP/1.0), /empty* 204,
    /same* 304, anything else 200 with a Content-Length. HEAD gets the same (the server drops the body)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._seen: list[Seen] = []
        self._running = 0

    def app(self, environ, start_response):
        with self._lock:
            self._running += 1
        try:
            body = environ["wsgi.input"].read()
            method, path = environ["REQUEST_METHOD"], environ["PATH_INFO"]
            if path != PROBE_PATH:
                with self._lock:
                    self._seen.append(Seen(method, path, environ.get("QUERY_STRING", ""), body))
            if path.startswith("/stream"):
                start_response("200 OK", [("Content-Type", "text/plain")])
                return iter([b"one,", b"two,", body])
            if path.startswith("/empty"):
                start_response("204 No Content", [])
                return []
            if path.startswith("/same"):
                start_response("304 Not Modified", [("ETag", '"v1"')])
                return []
            data = f"{method} {len(body)}\n".encode() + body
            start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(data)))])
            return [data]
        finally:
            with self._lock:
                self._running -= 1

    def take(self) -> list[Seen]:
        """The requests seen since the last take, once none is running."""
        wait_until(lambda: self._running == 0, 5, "the app to finish its requests")
        with self._lock:
            seen, self._seen = self._seen, []
        return seen


class Served:
    """The real server on 127.0.0.1 with the recording app; `restart()` puts a fresh one in its place."""

    def __init__(self):
        self.recorder = Recorder()
        self._start()

    def _start(self) -> None:
        self.server = HttpServer(self.recorder.app, "127.0.0.1", 0, ServerLimits(**LIMITS))
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return self.server.port

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def restart(self) -> None:
        self.close()
        self._start()
        self.recorder.take()

    def trouble(self) -> str | None:
        """None while the server lives and answers a well-formed GET with 200; else what is wrong."""
        if not self.thread.is_alive():
            return "the server's serve_forever thread died"
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.request("GET", PROBE_PATH)
            resp = conn.getresponse()
            resp.read()
            return None if resp.status == 200 else f"a well-formed GET got {resp.status}"
        except (OSError, http.client.HTTPException) as exc:
            if not self.thread.is_alive():  # it was on its way out
                return "the server's serve_forever thread died"
            return f"a well-formed GET failed: {exc!r}"
        finally:
            conn.close()


@pytest.fixture(scope="module")
def served():
    s = Served()
    yield s
    s.close()


class Budget:
    """Wall-clock bound: spent once `seconds` have passed, unless an example has failed."""

    def __init__(self, seconds: float):
        self.ends = time.monotonic() + seconds
        self.failed = False

    @property
    def spent(self) -> bool:
        return not self.failed and time.monotonic() > self.ends


@pytest.fixture(scope="module")
def budget():
    return Budget(BUDGET_S)


# -- the requests ------------------------------------------------------------------------------------

TEMPLATES = [
    b"GET /echo?q=1 HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n",
    b"HEAD /echo HTTP/1.1\r\nHost: x\r\n\r\n",
    b"HEAD /stream HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /empty HTTP/1.1\r\nHost: x\r\n\r\n",
    b'GET /same HTTP/1.1\r\nHost: x\r\nIf-None-Match: "v1"\r\n\r\n',
    b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /stream?c=1 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n"
    b'5;ext=1\r\nhello\r\n6;name="v"\r\n world\r\n0\r\nX-Trailer: y\r\n\r\n',
    b"GET /stream HTTP/1.0\r\n\r\n",
    b"POST /echo HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 3\r\n\r\nabc",
]

INTERESTING = [b"\r", b"\n", b"\x00", b"\x0b", b"\xa0", b"\xb2", b"\xb3", b"\xb9", b" ", b"\t", b":", b";", b"0",
               b"1", b"f"]
VERSIONS = [b"HTTP/1.0", b"HTTP/1.1", b"HTTP/1.2", b"HTTP/2.0", b"HTTP/0.9", b"HTTP/1.10", b"http/1.1"]
LENGTHS = [b"0", b"3", b"4", b"6", b"-1", b"+5", b"05", b" 5", b"5 ", b"5, 5", b"5, 6", b"0x5", b"1e1", b"",
           b"\xb2", b"\xb9", b"\xd9\xa5", b"65537", b"99999999999999999999999", b"5\x0b"]
FRAMING = [b"Content-Length: 3", b"Content-Length: 5", b"Transfer-Encoding: chunked",
           b"Transfer-Encoding: gzip, chunked", b"Transfer-Encoding: chunked, identity",
           b"Transfer-Encoding : chunked", b"Transfer-Encoding:\tchunked", b"transfer-encoding: CHUNKED"]
TARGETS = [b"http://x", b"http://x:80", b"HTTP://other.example"]
LINE_ENDS = [b"\n", b"\r", b"\r\r\n", b"\n\r", b"\r\n\r\n"]


def position(data: bytes) -> st.SearchStrategy[int]:
    return st.integers(0, len(data))


def insert_byte(draw, data: bytes) -> bytes:
    at = draw(position(data))
    return data[:at] + draw(st.sampled_from(INTERESTING)) + data[at:]


def replace_byte(draw, data: bytes) -> bytes:
    at = draw(position(data))
    return data[:at] + draw(st.sampled_from(INTERESTING)) + data[at + 1:]


def delete_bytes(draw, data: bytes) -> bytes:
    at = draw(position(data))
    return data[:at] + data[at + draw(st.integers(1, 3)):]


def duplicate_header_line(draw, data: bytes) -> bytes:
    lines = data.split(b"\r\n")
    fields = [i for i, line in enumerate(lines) if i and b":" in line]
    if not fields:
        return data
    i = draw(st.sampled_from(fields))
    return b"\r\n".join(lines[:i + 1] + lines[i:])


def change_line_end(draw, data: bytes) -> bytes:
    ends = [m.start() for m in re.finditer(rb"\r\n", data)]
    if not ends:
        return data
    at = draw(st.sampled_from(ends))
    return data[:at] + draw(st.sampled_from(LINE_ENDS)) + data[at + 2:]


def drop_host(draw, data: bytes) -> bytes:
    return re.sub(rb"Host: [^\r\n]*\r\n", b"", data, count=1)


def change_version(draw, data: bytes) -> bytes:
    return re.sub(rb"HTTP/1\.[01]", draw(st.sampled_from(VERSIONS)), data, count=1)


def after_request_line(data: bytes, line: bytes) -> bytes:
    end = data.find(b"\r\n")
    return data + line if end < 0 else data[:end + 2] + line + b"\r\n" + data[end + 2:]


def change_content_length(draw, data: bytes) -> bytes:
    value = draw(st.sampled_from(LENGTHS))
    if b"Content-Length:" not in data:
        return after_request_line(data, b"Content-Length: " + value)
    return re.sub(rb"(Content-Length:) ?[^\r\n]*", lambda m: m.group(1) + b" " + value, data, count=1)


def add_framing_header(draw, data: bytes) -> bytes:
    return after_request_line(data, draw(st.sampled_from(FRAMING)))


def absolute_target(draw, data: bytes) -> bytes:
    return data.replace(b" /", b" " + draw(st.sampled_from(TARGETS)) + b"/", 1)


MUTATIONS = [insert_byte, replace_byte, delete_bytes, change_line_end, duplicate_header_line, drop_host,
             change_version, change_content_length, add_framing_header, absolute_target]


@st.composite
def attempts(draw) -> list[bytes]:
    """One or two (pipelined) template requests, mutated up to four times, cut into one to three pieces."""
    data = b"".join(draw(st.lists(st.sampled_from(TEMPLATES), min_size=1, max_size=2)))
    for mutate in draw(st.lists(st.sampled_from(MUTATIONS), max_size=4)):
        data = mutate(draw, data)
    cuts = sorted(set(draw(st.lists(st.integers(1, max(1, len(data) - 1)), max_size=2))))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True) if data[a:b]]


# -- the exchange and the two readings with h11 -----------------------------------------------------


@dataclass
class Reply:
    data: bytes
    closed: bool  # the server closed the connection (an orderly FIN) within READ_FOR_S
    reset: bool   # it reset it: the last bytes it sent may be lost


def exchange(port: int, pieces: list[bytes]) -> Reply:
    """Send the pieces, half-close, and read until the server closes or READ_FOR_S pass."""
    s = socket.create_connection(("127.0.0.1", port), timeout=2)
    data, closed, reset = b"", False, False
    try:
        try:
            for i, piece in enumerate(pieces):
                if i:
                    time.sleep(PIECE_PAUSE_S)
                s.sendall(piece)
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server answered and closed before it had everything: what it sent is still to read
        ends = time.monotonic() + READ_FOR_S
        while (left := ends - time.monotonic()) > 0:
            s.settimeout(left)
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                break
            except ConnectionResetError:
                reset = True
                break
            if not chunk:
                closed = True
                break
            data += chunk
    finally:
        s.close()
    return Reply(data, closed, reset)


def framed_by_h11(data: bytes) -> list[Seen]:
    """The requests an h11 server frames from `data`, up to its first error, a lack of bytes or a close."""
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(data)
    framed: list[Seen] = []
    request, body = None, b""
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError:
            return framed
        if isinstance(event, h11.Request):
            request, body = event, b""
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            framed.append(as_wsgi(request, body))
            conn.send(h11.Response(status_code=200, headers=[("Content-Length", "0")]))
            conn.send(h11.EndOfMessage())
            if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return framed  # HTTP/1.0 or Connection: close: nothing after it is a request
            conn.start_next_cycle()
        else:  # NEED_DATA, PAUSED, ConnectionClosed
            return framed


def as_wsgi(request: h11.Request, body: bytes) -> Seen:
    """h11's request in the app's terms (an absolute-form target stands for its path and query)."""
    target = request.target.decode("ascii")
    if m := re.match(r"[A-Za-z][A-Za-z0-9+.-]*://[^/?]*", target):
        target = target[m.end():]
        if not target.startswith("/"):  # an empty path is "/", also when a query follows the authority
            target = "/" + target
    path, _, query = target.partition("?")
    return Seen(request.method.decode("ascii"), unquote_to_bytes(path).decode("latin-1"), query, body)


class Malformed(Exception):
    """The server's bytes are not a well-formed sequence of HTTP/1.1 responses."""


def read_responses(reply: Reply, methods: list[str]) -> list[h11.Response]:
    """The final responses in `reply`, read by an h11 client that sent, for the i-th, a HEAD where methods[i]
    is HEAD and a GET otherwise (only HEAD changes how a response is framed). Raises Malformed."""
    conn = h11.Connection(h11.CLIENT)
    conn.receive_data(reply.data)
    if reply.closed:
        conn.receive_data(b"")
    responses: list[h11.Response] = []
    while conn.trailing_data[0]:
        if conn.their_state is not h11.IDLE:
            raise Malformed(f"bytes after response {len(responses)}, which ended the connection")
        method = "HEAD" if methods[len(responses):len(responses) + 1] == ["HEAD"] else "GET"
        conn.send(h11.Request(method=method, target="/", headers=[("Host", "x")]))
        conn.send(h11.EndOfMessage())
        interim = False
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                if interim and reply.closed and not conn.trailing_data[0]:
                    return responses  # "100 Continue", then the close: the body never came
                raise Malformed(f"response {len(responses)} (to a {method}): {exc}") from None
            if event is h11.NEED_DATA:
                if reply.reset:
                    return responses  # the reset may have cost the rest
                raise Malformed(f"response {len(responses)} (to a {method}) never ends")
            if isinstance(event, h11.InformationalResponse):
                interim = True
            elif isinstance(event, h11.Response):
                responses.append(event)
            elif isinstance(event, h11.EndOfMessage):
                break
        if conn.their_state is h11.DONE:
            conn.start_next_cycle()
    if conn.their_state is h11.MUST_CLOSE and not (reply.closed or reply.reset):
        raise Malformed("the connection stayed open after a response that closes it")
    return responses


def check_responses(reply: Reply, seen: list[Seen], framed: list[Seen]) -> None:
    """Each response the app gave answers its request in order (so a HEAD's has no body); one the server
    made itself (an error, then the close) answers a request the server could not read: read as answering
    h11's reading of that request, or, should that be a HEAD, a GET (the server may not have known)."""
    methods = [s.method for s in seen] + [f.method for f in framed[len(seen):]]
    try:
        read_responses(reply, methods)
    except Malformed as exc:
        if "HEAD" not in methods[len(seen):]:
            raise AssertionError(f"{exc}; the server sent {reply.data!r}") from None
        try:
            read_responses(reply, [m if i < len(seen) else "GET" for i, m in enumerate(methods)])
        except Malformed:
            raise AssertionError(f"{exc}; the server sent {reply.data!r}") from None


# -- the test ----------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(pieces=attempts())
# Always tried first: a length in Unicode digits ("²" is a digit to str.isdigit, not to int), and a bare LF
# that ends a header line for h11 (so it sees a Content-Length) and not for a parser that splits on CRLF.
@example(pieces=[b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: \xb2\r\n\r\nhi"])
@example(pieces=[b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\nContent-Length: 5\r\n\r\nhello"])
@example(pieces=[b"GET HTTP://other.example?q=1 HTTP/1.0\r\nHost: x\r\n\r\n"])  # a query, no path
def test_mutated_requests_never_kill_the_server_nor_reach_the_app_framed_unlike_h11(served, budget, pieces):
    if budget.spent:
        return
    try:
        reply = exchange(served.port, pieces)
        trouble = served.trouble()
        if trouble:
            served.restart()
        assert trouble is None, f"{trouble} (after {b''.join(pieces)!r})"
        seen = served.recorder.take()
        framed = framed_by_h11(b"".join(pieces))
        check_responses(reply, seen, framed)
        assert seen == framed[:len(seen)], (
            "the app ran requests h11 frames otherwise:\n  app: " + "\n       ".join(map(str, seen))
            + "\n  h11: " + "\n       ".join(map(str, framed)))
    except BaseException:
        budget.failed = True
        raise
