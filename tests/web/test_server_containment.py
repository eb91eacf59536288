"""No exception at any stage of the web server ends its selector thread: it closes that connection, is logged once
per kind and counted. Each stage is made to fail by a server whose step raises the first time (a subclass that
overrides the step, as a bug there would), on real sockets on 127.0.0.1; tests/e2e/test_web_server.py shows the
same from outside, on a real controller whose ticks go on."""

from __future__ import annotations

import http.client
import logging
import socket
import threading

import pytest

from payg.webkit.server import STAGES, HttpServer, ServerLimits
from tests.support import wait_until


def app(environ, start_response):
    size = int(environ["QUERY_STRING"] or 10)
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(size))])
    return [b"x" * size]


class Faulty(HttpServer):
    """Fails once at `stage`, with an error no step expects."""

    def __init__(self, stage: str, *args, **kwargs):
        self.stage, self.planted = stage, 0
        super().__init__(*args, **kwargs)

    def _plant(self, stage: str) -> None:
        if stage == self.stage and not self.planted:
            self.planted += 1
            raise RuntimeError(f"planted in {stage}")

    def _accept(self):
        self._plant("accept")
        super()._accept()

    def _read(self, conn):
        self._plant("read")
        super()._read(conn)

    def _parse(self, conn):
        self._plant("parse")
        super()._parse(conn)

    def _dispatch(self, conn):
        self._plant("dispatch")
        super()._dispatch(conn)

    def _respond(self, conn, websocket, send=True):
        self._plant("respond")
        return super()._respond(conn, websocket, send)

    def _write(self, conn):
        self._plant("write")
        super()._write(conn)

    def _round(self):
        self._plant("loop")
        super()._round()


def get(port: int, size: int = 10) -> int | None:
    """A GET on a fresh connection; its status, or None when the server closed it."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", f"/?{size}")
        resp = conn.getresponse()
        body = resp.read()
        return resp.status if len(body) == size else None
    except (ConnectionError, http.client.HTTPException, TimeoutError):
        return None
    finally:
        conn.close()


@pytest.mark.parametrize("stage", STAGES)
def test_a_failure_at_any_stage_closes_one_connection_and_the_server_goes_on(stage, caplog):
    server = Faulty(stage, app, "127.0.0.1", 0, ServerLimits(workers=2, response_high_water=16 * 1024 * 1024))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with caplog.at_level(logging.DEBUG, logger="payg.web"):
            if stage == "write":  # a big answer not read at first: part of it is left for the selector to write
                s = socket.socket()
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                s.settimeout(5)
                s.connect(("127.0.0.1", server.port))
                s.sendall(b"GET /?8000000 HTTP/1.1\r\nHost: x\r\n\r\n")
                wait_until(lambda: server.status()["writing"] == 1, 5, "the answer to wait for its client")
                while s.recv(1 << 20):
                    pass  # until the server closes it
                s.close()
            else:
                assert get(server.port) in (200, 500, None)  # the one connection: answered, refused or closed
            wait_until(lambda: server.planted == 1, 5, f"the failure planted in {stage}")
            for _ in range(3):
                assert get(server.port) == 200
        assert thread.is_alive()
        assert server.status()["failures"][stage] == 1
        assert sum(server.status()["failures"].values()) == 1
        logged = [r for r in caplog.records if r.levelno == logging.ERROR and "planted" in r.getMessage()]
        assert len(logged) == 1
    finally:
        server.shutdown()
        server.server_close()


def test_the_same_failure_again_is_counted_not_logged_again(caplog):
    def failing(environ, start_response):
        raise ValueError("a bug in the app")

    server = HttpServer(failing, "127.0.0.1", 0, ServerLimits(workers=2))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with caplog.at_level(logging.INFO, logger="payg.web"):
            assert [get(server.port) for _ in range(5)] == [None] * 5  # each a 500 with no body of 10 bytes
        wait_until(lambda: server.status()["failures"]["respond"] == 5, 5, "five failures counted")

        def errors() -> list[logging.LogRecord]:
            return [r for r in caplog.records if r.levelno == logging.ERROR]

        # the first failure's thread counts it, then logs it: on a starved machine the other worker has counted the
        # four after it by then
        wait_until(errors, 5, "the first failure logged")
        assert len(errors()) == 1
    finally:
        server.shutdown()
        server.server_close()
