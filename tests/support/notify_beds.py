"""Real receivers for the notification tests: an SMTP server on 127.0.0.1 (aiosmtpd), which can be stopped and
started again on the same port, and an HTTP endpoint for Apprise's `json://` (http.server in a thread)."""

from __future__ import annotations

import email
import email.policy
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiosmtpd.controller import Controller


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Mail:
    to: list[str]
    subject: str
    body: str
    at: float


class SmtpServer:
    """Every mail it accepts, in `mails`; `stop()` and `start()` make an outage on the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.mails: list[Mail] = []
        self._controller: Controller | None = None
        self.start()

    async def handle_DATA(self, server, session, envelope):  # aiosmtpd's handler hook
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        part = msg.get_body(preferencelist=("plain", "html"))
        self.mails.append(Mail(list(envelope.rcpt_tos), str(msg["subject"]), part.get_content() if part else "",
                               time.monotonic()))
        return "250 OK"

    def url(self, to: str) -> str:
        """Apprise's URL for a mail to `to` through this server, without TLS or a login; `cto`: connect timeout."""
        return f"mailto://127.0.0.1:{self.port}?from=payg@example.com&to={to}&mode=insecure&cto=1"

    def start(self) -> None:
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def to(self, address: str) -> list[Mail]:
        return [m for m in self.mails if address in m.to]


@dataclass
class JsonEndpoint:
    """POSTs from Apprise's `json://` in `posts` (title, message); `delay_s` makes every answer slow."""

    delay_s: float = 0.0
    posts: list[dict] = field(default_factory=list)
    arrived: list[float] = field(default_factory=list)  # when each POST came in, before its slow answer

    def __post_init__(self) -> None:
        bed = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                bed.arrived.append(time.monotonic())
                time.sleep(bed.delay_s)
                bed.posts.append({**json.loads(body), "at": time.monotonic()})
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.server.server_address[1]}/"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def wait_for(predicate, timeout_s: float = 20.0, step_s: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step_s)
    return predicate()
