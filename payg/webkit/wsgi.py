"""One HTTP exchange between h11 and a WSGI app: what payg's server (payg/webkit/server.py) adds to h11.

h11 (python-hyper's sans-I/O HTTP/1.1) does the framing both ways: it parses the request line, the
headers and the body (Content-Length or chunked, trailers), refuses what RFC 9112 forbids (a
missing or a second Host on HTTP/1.1, both Content-Length and Transfer-Encoding, a transfer coding
other than chunked, a bare CR, NUL or whitespace in a header value, a malformed chunk), and frames
each response (a length or chunked, nothing after HEAD, 204 and 304, HTTP/1.0 ended by the close),
checking the header names and values the app hands it. What is ours is narrower:

- `check`: what h11 lets through and payg refuses: other control bytes in a header value (h11
  accepts them for old cookies), an HTTP major version other than 1 (505; 1.2 is served as 1.1),
  both Content-Length and Transfer-Encoding (h11 would let the coding win), CONNECT, a target that is
  neither a path, an absolute URL nor `*`, a body over the limit from its Content-Length (413, before it
  is read).
- `environ`: the WSGI environ of a complete request (its whole body already received).
- `Exchange`: the app's answer handed to h11, its bytes given to `emit` (the server decides when
  they reach the socket).
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable, Iterable
from email.utils import formatdate
from io import BytesIO
from urllib.parse import unquote_to_bytes, urlsplit

import h11

CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")  # C0 controls but HTAB, and DEL
NO_BODY = {204, 304}
REASONS = {400: "Bad Request", 405: "Method Not Allowed", 408: "Request Timeout", 413: "Content Too Large",
           431: "Request Header Fields Too Large", 500: "Internal Server Error", 501: "Not Implemented",
           503: "Service Unavailable", 505: "HTTP Version Not Supported"}


class Refused(Exception):
    """A request the server answers itself with `status`, then closes the connection."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason


def header(request: h11.Request, name: bytes) -> bytes | None:
    values = [v for k, v in request.headers if k == name]
    return b", ".join(values) if values else None


def tokens(request: h11.Request, name: bytes) -> set[bytes]:
    return {t.strip().lower() for t in (header(request, name) or b"").split(b",") if t.strip()}


def is_websocket(request: h11.Request) -> bool:
    return request.method == b"GET" and b"websocket" in tokens(request, b"upgrade") \
        and b"upgrade" in tokens(request, b"connection")


def is_long_poll(request: h11.Request) -> bool:
    """A Socket.IO (Engine.IO) polling GET of an open session: the app holds it until it has something to
    send, up to the ping interval (25 s)."""
    path, _, query = _path_query(request.target)
    fields = query.split(b"&")
    names = {f.partition(b"=")[0] for f in fields}
    return request.method == b"GET" and path.startswith(b"/socket.io/") and {b"transport", b"sid"} <= names \
        and b"transport=polling" in fields


def check(request: h11.Request, max_body: int, max_head: int) -> None:
    """Refused when payg will not serve what h11 framed; see the module's docstring."""
    # h11 bounds a head that comes in pieces; one that came whole in a packet is measured here
    if len(request.method) + len(request.target) + 12 + sum(len(k) + len(v) + 4 for k, v in request.headers) \
            > max_head:
        raise Refused(431, "request head too large")
    if not request.http_version.startswith(b"1."):
        raise Refused(505, "HTTP/1.x only")
    for _, value in request.headers:
        if CONTROL.search(value):
            raise Refused(400, "a control character in a header value")
    if request.method == b"CONNECT":
        raise Refused(405, "CONNECT is not served here")
    target = request.target
    if not (target.startswith(b"/") or target == b"*" or _absolute(target)):
        raise Refused(400, "the request target must be a path or an absolute URL")
    length = header(request, b"content-length")
    if length is not None and header(request, b"transfer-encoding") is not None:
        raise Refused(400, "both Content-Length and Transfer-Encoding")  # RFC 9112 6.3: the smuggling shape
    if length is not None and int(length) > max_body:  # h11 has checked it is one run of ASCII digits
        raise Refused(413, f"the body is over {max_body} bytes")


def _absolute(target: bytes) -> bool:
    return target[:7].lower() == b"http://" or target[:8].lower() == b"https://"


def _path_query(target: bytes) -> tuple[bytes, bytes, bytes]:
    """(path, "?", query) of an origin-form or absolute-form target."""
    if _absolute(target):
        parts = urlsplit(target)
        return parts.path or b"/", b"?" if parts.query else b"", parts.query
    return target.partition(b"?")


def environ(request: h11.Request, body: bytes, *, server: tuple[str, int], client: tuple[str, int],
            url_scheme: str = "http") -> dict:
    """The WSGI environ of a complete request. Header names with an underscore are left out: X_Forwarded_For
    must not pass for X-Forwarded-For."""
    path, _, query = _path_query(request.target)
    version = request.http_version.decode("ascii")
    env = {
        "REQUEST_METHOD": request.method.decode("ascii"),
        "SCRIPT_NAME": "",
        "PATH_INFO": unquote_to_bytes(path).decode("latin-1"),
        "QUERY_STRING": query.decode("latin-1"),
        "REQUEST_URI": request.target.decode("latin-1"),
        "RAW_URI": request.target.decode("latin-1"),
        "SERVER_NAME": server[0],
        "SERVER_PORT": str(server[1]),
        "SERVER_PROTOCOL": "HTTP/1.0" if version == "1.0" else "HTTP/1.1",
        "REMOTE_ADDR": client[0],
        "REMOTE_PORT": str(client[1]),
        "CONTENT_LENGTH": str(len(body)) if body or header(request, b"content-length") else "",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": url_scheme,
        "wsgi.input": BytesIO(body),
        "wsgi.input_terminated": True,
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    for raw_name, raw_value in request.headers:  # h11 gives the names lower-cased
        name, value = raw_name.decode("ascii"), raw_value.decode("latin-1")
        if "_" in name:
            continue
        key = name.upper().replace("-", "_")
        if key in ("CONTENT_LENGTH", "TRANSFER_ENCODING"):
            continue  # the body is handed over whole: its length is the one above
        if key == "CONTENT_TYPE":
            env["CONTENT_TYPE"] = value
            continue
        key = "HTTP_" + key
        env[key] = f"{env[key]},{value}" if key in env else value
    if _absolute(request.target):  # RFC 9112 3.2.2: the target's authority wins over Host
        env["HTTP_HOST"] = urlsplit(request.target).netloc.decode("latin-1")
    return env


_date: tuple[int, bytes] = (0, b"")


def http_date() -> bytes:
    global _date
    now = int(time.time())
    if _date[0] != now:
        _date = (now, formatdate(now, usegmt=True).encode("ascii"))
    return _date[1]


def refusal(conn: h11.Connection, status: int, reason: str) -> bytes:
    """The bytes of the server's own short answer, closing the connection. h11 may send a response even
    after the client broke the protocol (that is what a 400 is for); b"" when it cannot."""
    body = f"{status} {reason}\n".encode()
    try:
        return b"".join((
            conn.send(h11.Response(status_code=status, reason=REASONS.get(status, "Error").encode(),
                                   headers=[(b"content-type", b"text/plain; charset=utf-8"),
                                            (b"content-length", str(len(body)).encode()),
                                            (b"connection", b"close"), (b"date", http_date())])) or b"",
            conn.send(h11.Data(data=body)) or b"", conn.send(h11.EndOfMessage()) or b""))
    except h11.LocalProtocolError:
        return b""


class Exchange:
    """The app's answer to one request, through h11. `emit` gets the bytes to send, in order.

    The head waits for the first bytes of the body (or the end), so that a body given as a list gets a
    Content-Length. A `Server` header from the app is dropped; `close` adds `Connection: close`."""

    def __init__(self, conn: h11.Connection, request: h11.Request, emit: Callable[[bytes], None], close: bool):
        self.conn, self.emit, self.close = conn, emit, close
        self.head_request = request.method == b"HEAD"
        self.status: int | None = None
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.sent = False       # the head has gone to emit
        self.bodyless = False

    def start_response(self, status: str, headers: list[tuple[str, str]], exc_info=None):
        if exc_info is not None and self.sent:
            raise exc_info[1].with_traceback(exc_info[2])
        code, _, reason = status.partition(" ")
        self.status, self.reason = int(code), reason.encode("latin-1")
        self.headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers if k.lower() != "server"]
        self.bodyless = self.head_request or self.status in NO_BODY or self.status < 200
        return self.write

    def _send_head(self, length: int | None) -> None:
        if self.status is None:
            raise RuntimeError("the app sent a body before start_response()")
        headers = list(self.headers)
        names = {k.lower() for k, _ in headers}
        if length is not None and b"content-length" not in names and b"transfer-encoding" not in names \
                and not self.bodyless:
            headers.append((b"content-length", str(length).encode()))
        if self.close:
            headers.append((b"connection", b"close"))
        headers.append((b"date", http_date()))
        # h11 checks every name and value as it makes the event, before anything is sent: a line break in a
        # value raises here and the server can still answer 500
        response = h11.Response(status_code=self.status, reason=self.reason, headers=headers)
        self.sent = True
        self.emit(self.conn.send(response) or b"")

    def write(self, data: bytes) -> None:
        if not self.sent:
            if not data:
                return
            self._send_head(None)
        if data and not self.bodyless:
            self.emit(self.conn.send(h11.Data(data=data)) or b"")

    def run(self, app: Callable, env: dict) -> None:
        """Call the app and hand its whole answer to h11."""
        result: Iterable[bytes] = app(env, self.start_response)
        try:
            if isinstance(result, (list, tuple)) and not self.sent:
                body = b"".join(result)
                self._send_head(len(body))
                self.write(body)
            else:
                for chunk in result:
                    self.write(chunk)
                if not self.sent:
                    self._send_head(0)
            self.emit(self.conn.send(h11.EndOfMessage()) or b"")
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
