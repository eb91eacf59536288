"""HTTP/1.1 framing for payg's server (payg/web/server.py): a request head, its body, and the WSGI environ.

Everything here works on bytes already received; nothing waits on the network. A
connection's bytes go into `Incoming.feed` as they arrive and it says when a whole request
(head and body) is there, or what is wrong with it. That lets the server hold hundreds of
slow or idle connections in one thread and hand a worker only complete requests.

Refused on purpose: a head over the size limit (431), a body over the limit, with a length
or chunked (413, decided before the body is read), a request with both Content-Length and
Transfer-Encoding, or a transfer coding other than chunked (the request-smuggling shapes),
header names with underscores (which would alias dashes in the environ), folded header lines.
"""

from __future__ import annotations

import re
import socket
import sys
from dataclasses import dataclass, field
from email.utils import formatdate
from io import BytesIO
from urllib.parse import unquote_to_bytes

TOKEN = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
MAX_HEADERS = 100
MAX_CHUNK_LINE = 1024


class BadRequest(Exception):
    """A request the server answers itself, then closes the connection."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason


@dataclass
class Head:
    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]

    def get(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k.lower() == name]
        return ", ".join(values) if values else None

    def tokens(self, name: str) -> set[str]:
        return {t.strip().lower() for t in (self.get(name) or "").split(",") if t.strip()}

    @property
    def keep_alive(self) -> bool:
        return self.version == "HTTP/1.1" and "close" not in self.tokens("connection")

    @property
    def websocket(self) -> bool:
        return (self.method == "GET" and "websocket" in self.tokens("upgrade")
                and "upgrade" in self.tokens("connection"))


def long_poll(head: Head) -> bool:
    """A Socket.IO (Engine.IO) polling GET of an open session: the server holds it until it has something
    to send, up to the ping interval (25 s)."""
    path, _, query = head.target.partition("?")
    fields = {kv.partition("=")[0] for kv in query.split("&")}
    return head.method == "GET" and path.startswith("/socket.io/") and {"transport", "sid"} <= fields \
        and "transport=polling" in query.split("&")


def parse_head(raw: bytes) -> Head:
    lines = raw.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not TOKEN.match(parts[0]) or not parts[1]:
        raise BadRequest(400, "malformed request line")
    method, target, version = (p.decode("latin-1") for p in parts)
    if version not in ("HTTP/1.0", "HTTP/1.1"):
        raise BadRequest(505, "HTTP/1.0 or HTTP/1.1 only")
    if not (target.startswith("/") or target == "*"):
        raise BadRequest(400, "the request target must be a path")
    headers = []
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(b":")
        if not sep or not TOKEN.match(name):
            raise BadRequest(400, "malformed header line")
        headers.append((name.decode("latin-1"), value.strip(b" \t").decode("latin-1")))
    if len(headers) > MAX_HEADERS:
        raise BadRequest(431, "too many header fields")
    return Head(method, target, version, headers)


@dataclass
class Incoming:
    """One request being received: feed it bytes; `done` once the head and the whole body are in."""

    max_head: int
    max_body: int
    buf: bytearray = field(default_factory=bytearray)
    head: Head | None = None
    body: bytearray = field(default_factory=bytearray)
    done: bool = False
    expects_continue: bool = False
    _length: int | None = None       # bytes of body still to come (Content-Length or the current chunk)
    _chunked: bool = False
    _chunk_state: str = "size"       # size | data | crlf | trailers

    def feed(self, data: bytes) -> bytes:
        """Take bytes; return those past the end of this request (the next pipelined one's)."""
        self.buf += data
        if self.head is None:
            self._take_head()
            if self.head is None:
                return b""
        if self._chunked:
            self._take_chunks()
        elif self._length:
            take = min(self._length, len(self.buf))
            self.body += self.buf[:take]
            del self.buf[:take]
            self._length -= take
            self.done = self._length == 0
        if self.done:
            rest, self.buf = bytes(self.buf), bytearray()
            return rest
        return b""

    def _take_head(self) -> None:
        while self.buf.startswith(b"\r\n"):  # a stray line break between requests is tolerated
            del self.buf[:2]
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buf) > self.max_head:
                raise BadRequest(431, "request head too large")
            return
        if end > self.max_head:
            raise BadRequest(431, "request head too large")
        head = parse_head(bytes(self.buf[:end]))
        del self.buf[:end + 4]
        length, coding = head.get("content-length"), head.get("transfer-encoding")
        if length is not None and coding is not None:
            raise BadRequest(400, "both Content-Length and Transfer-Encoding")
        if coding is not None:
            if coding.strip().lower() != "chunked":
                raise BadRequest(501, "only the chunked transfer coding is supported")
            self._chunked = True
        elif length is not None:
            if not length.isdigit() or len(length) > 18:
                raise BadRequest(400, "invalid Content-Length")
            if int(length) > self.max_body:
                raise BadRequest(413, f"the body is over {self.max_body} bytes")
            self._length = int(length)
        self.head = head
        self.expects_continue = "100-continue" in head.tokens("expect") and head.version == "HTTP/1.1"
        self.done = not self._chunked and not self._length

    def _take_chunks(self) -> None:
        while not self.done:
            if self._chunk_state == "size":
                end = self.buf.find(b"\r\n")
                if end < 0:
                    if len(self.buf) > MAX_CHUNK_LINE:
                        raise BadRequest(400, "chunk size line too long")
                    return
                size = bytes(self.buf[:end]).split(b";")[0].strip()
                del self.buf[:end + 2]
                if not size or len(size) > 16 or not all(c in b"0123456789abcdefABCDEF" for c in size):
                    raise BadRequest(400, "invalid chunk size")
                self._length = int(size, 16)
                if len(self.body) + self._length > self.max_body:
                    raise BadRequest(413, f"the body is over {self.max_body} bytes")
                self._chunk_state = "data" if self._length else "trailers"
            elif self._chunk_state == "data":
                take = min(self._length, len(self.buf))
                self.body += self.buf[:take]
                del self.buf[:take]
                self._length -= take
                if self._length:
                    return
                self._chunk_state = "crlf"
            elif self._chunk_state == "crlf":
                if len(self.buf) < 2:
                    return
                if self.buf[:2] != b"\r\n":
                    raise BadRequest(400, "chunk not followed by CRLF")
                del self.buf[:2]
                self._chunk_state = "size"
            else:  # trailers: ignored, up to the empty line
                end = self.buf.find(b"\r\n")
                if end < 0:
                    if len(self.buf) > self.max_head:
                        raise BadRequest(431, "trailers too large")
                    return
                del self.buf[:end + 2]
                self.done = end == 0


def environ_for(head: Head, body: bytes, *, server: tuple[str, int], client: tuple[str, int]) -> dict:
    path, _, query = head.target.partition("?")
    env = {
        "REQUEST_METHOD": head.method,
        "SCRIPT_NAME": "",
        "PATH_INFO": unquote_to_bytes(path).decode("latin-1"),
        "QUERY_STRING": query,
        "REQUEST_URI": head.target,
        "RAW_URI": head.target,
        "SERVER_NAME": server[0],
        "SERVER_PORT": str(server[1]),
        "SERVER_PROTOCOL": head.version,
        "REMOTE_ADDR": client[0],
        "REMOTE_PORT": str(client[1]),
        "CONTENT_LENGTH": str(len(body)) if body or head.get("content-length") else "",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": BytesIO(body),
        "wsgi.input_terminated": True,
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    for name, value in head.headers:
        if "_" in name:
            continue  # X_Forwarded_For must not pass for X-Forwarded-For
        key = name.upper().replace("-", "_")
        if key in ("CONTENT_LENGTH", "TRANSFER_ENCODING"):
            continue  # the body is handed over whole: its length is the one above
        if key == "CONTENT_TYPE":
            env["CONTENT_TYPE"] = value
            continue
        key = "HTTP_" + key
        env[key] = f"{env[key]},{value}" if key in env else value
    return env


def simple_response(status: int, reason: str, *, close: bool = True) -> bytes:
    body = f"{status} {reason}\n".encode()
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}", "Content-Type: text/plain; charset=utf-8",
             f"Content-Length: {len(body)}"] + (["Connection: close"] if close else [])
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


REASONS = {400: "Bad Request", 408: "Request Timeout", 413: "Content Too Large", 431: "Request Header Fields Too Large",
           500: "Internal Server Error", 501: "Not Implemented", 503: "Service Unavailable",
           505: "HTTP Version Not Supported"}


NO_BODY = {204, 304}


class Response:
    """What the app answers, written to the socket: Content-Length when the app gave one, else chunked."""

    def __init__(self, sock: socket.socket, head: Head, keep: bool):
        self.sock, self.head, self.keep = sock, head, keep
        self.status: str | None = None
        self.headers: list[tuple[str, str]] = []
        self.sent = False
        self.chunked = False

    def start_response(self, status: str, headers: list[tuple[str, str]], exc_info=None):
        if exc_info is not None and self.sent:
            raise exc_info[1].with_traceback(exc_info[2])
        self.status, self.headers = status, [(k, v) for k, v in headers if k.lower() != "server"]
        return self.write

    def _send_head(self, first: bytes, final: bool) -> None:
        code = int(self.status.split(" ", 1)[0])
        names = {k.lower() for k, _ in self.headers}
        headers = list(self.headers)
        bodyless = self.head.method == "HEAD" or code in NO_BODY or code < 200
        if "content-length" not in names and not bodyless:
            if final:
                headers.append(("Content-Length", str(len(first))))
            elif self.head.version == "HTTP/1.1":
                self.chunked = True
                headers.append(("Transfer-Encoding", "chunked"))
            else:
                self.keep = False  # HTTP/1.0 without a length: the end of the body is the end of the connection
        if any(k.lower() == "connection" and "close" in v.lower() for k, v in self.headers):
            self.keep = False
        if not self.keep and "connection" not in names:
            headers.append(("Connection", "close"))
        headers.append(("Date", formatdate(usegmt=True)))
        text = f"HTTP/1.1 {self.status}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
        self.sent = True
        self.sock.sendall(text.encode("latin-1") + (b"" if bodyless else self._frame(first)))

    def _frame(self, data: bytes) -> bytes:
        if not self.chunked or not data:
            return data
        return b"%x\r\n%s\r\n" % (len(data), data)

    def write(self, data: bytes) -> None:
        if self.status is None:
            raise AssertionError("write() before start_response()")
        if not self.sent:
            self._send_head(data, final=False)
        elif data and self.head.method != "HEAD":
            self.sock.sendall(self._frame(data))

    def finish(self) -> None:
        if self.status is None:
            raise AssertionError("the app returned without calling start_response()")
        if not self.sent:
            self._send_head(b"", final=True)
        elif self.chunked:
            self.sock.sendall(b"0\r\n\r\n")
