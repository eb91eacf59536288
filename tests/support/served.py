"""payg's HttpServer on 127.0.0.1 in a thread, with what the app saw, for the web server's tests."""

from __future__ import annotations

import http.client
import io
import socket
import threading

from payg.webkit.server import HttpServer, ServerLimits


class Served:
    """`app` served by `server_class` with the given ServerLimits fields; `seen` is (method, path, body) of each
    request the app ran, in order."""

    def __init__(self, app, server_class=HttpServer, **limits):
        self.seen: list[tuple[str, str, bytes]] = []

        def recording(environ, start_response):
            body = environ["wsgi.input"].read()
            environ["wsgi.input"] = io.BytesIO(body)
            self.seen.append((environ["REQUEST_METHOD"], environ["PATH_INFO"], body))
            return app(environ, start_response)

        self.server = server_class(recording, "127.0.0.1", 0, ServerLimits(**limits))
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def calls(self) -> int:
        return len(self.seen)

    def connect(self, source: str = "127.0.0.1", rcvbuf: int | None = None) -> socket.socket:
        """A client socket from `source`; its small send buffer makes what is "sent" mostly what was read."""
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32 * 1024)
        if rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.bind((source, 0))
        s.settimeout(5)
        s.connect(("127.0.0.1", self.port))
        return s

    def get(self, path: str = "/fine") -> int:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.request("GET", path)
            return conn.getresponse().status
        finally:
            conn.close()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def read_all(sock: socket.socket, timeout_s: float = 5) -> bytes:
    """Everything the server sends until it closes (or goes quiet for `timeout_s`)."""
    sock.settimeout(timeout_s)
    out = b""
    try:
        while chunk := sock.recv(65536):
            out += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    return out
