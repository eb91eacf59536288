"""Issue 25's defects of the web server, one regression test each, on real sockets on 127.0.0.1.

Each of these failed against the hand-written HTTP parser (payg/web/http1.py, gone): a Content-Length that
str.isdigit() accepts and int() does not ended the process; a bare LF hid a header and desynchronised the
framing; trailers swallowed a pipelined request; header values went out as they were; RFC 9112's Host and
control-byte rules were not kept; slow readers held the workers; one address could take every live slot; the
first WebSocket frame sent with the upgrade was lost; chunk framing had no budget.
"""

from __future__ import annotations

import http.client
import os
import threading
import time

import h11
import pytest
import socketio

from tests.support import wait_until
from tests.support.served import Served, read_all
from tests.support.web_beds import make_web_bed


def echo(environ, start_response):
    if environ["PATH_INFO"] == "/inject":
        start_response("200 OK", [("Content-Length", "2"), ("X-Planted", "a\r\nSet-Cookie: pwned=1")])
        return [b"ok"]
    if environ["PATH_INFO"] == "/big":
        body = b"b" * int(environ["QUERY_STRING"] or 4_000_000)
        start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(body)))])
        return [body]
    body = environ["wsgi.input"].read()
    text = f"{environ['REQUEST_METHOD']} {environ['PATH_INFO']} {environ.get('HTTP_HOST')} {len(body)}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(text)))])
    return [text]


@pytest.fixture
def served():
    s = Served(echo, workers=4, max_body_kib=64, header_timeout_s=1, body_timeout_s=1, idle_timeout_s=0.5)
    yield s
    s.close()


def responses(data: bytes, methods: list[bytes] | None = None) -> list[tuple[int, dict, bytes]]:
    """The responses in `data`, parsed by h11 as a client (each must be well formed): (status, headers, body)."""
    out = []
    while data:
        client = h11.Connection(h11.CLIENT)
        method = methods[len(out)] if methods and len(out) < len(methods) else b"GET"
        client.send(h11.Request(method=method, target="/", headers=[("Host", "x")]))
        client.send(h11.EndOfMessage())
        client.receive_data(data)
        status, headers, body = 0, {}, b""
        while True:
            event = client.next_event()
            if event is h11.NEED_DATA:
                client.receive_data(b"")
                continue
            if isinstance(event, h11.Response):
                status, headers = event.status_code, {k.decode(): v.decode() for k, v in event.headers}
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                break
        out.append((status, headers, body))
        data = client.trailing_data[0]
    return out


def send_and_read(served, raw: bytes) -> list[tuple[int, dict, bytes]]:
    s = served.connect()
    s.sendall(raw)
    return responses(read_all(s))


# 1. One request must not stop the controller -------------------------------------------------------------------

@pytest.mark.parametrize("length", [b"\xb2", b"\xb3", b"\xb9", b"1\xb2", b"\xd9\xa3"])
def test_a_content_length_of_unicode_digits_is_a_400_and_the_server_goes_on(served, length):
    got = send_and_read(served, b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: " + length + b"\r\n\r\nab")
    assert [status for status, _, _ in got] == [400]
    assert served.thread.is_alive() and served.get() == 200 and served.seen == [("GET", "/fine", b"")]


# 2. Request desync -----------------------------------------------------------------------------------------------

def test_a_bare_lf_in_a_header_value_does_not_hide_the_next_header(served):
    smuggled = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
    raw = (b"POST /x HTTP/1.1\r\nHost: x\r\nX-A: a\nContent-Length: %d\r\n\r\n" % len(smuggled)) + smuggled
    got = send_and_read(served, raw)
    assert [status for status, _, _ in got] == [200]  # one request, framed as h11 frames it
    assert served.seen == [("POST", "/x", smuggled)]


@pytest.mark.parametrize("last_chunk", [b"0\r\n", b"0\r\n\r\n"])
def test_a_pipelined_request_is_never_taken_for_trailers(served, last_chunk):
    raw = (b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n" + last_chunk
           + b"GET /second HTTP/1.1\r\nHost: x\r\n\r\n")
    got = send_and_read(served, raw)
    if last_chunk == b"0\r\n":  # "GET /second HTTP/1.1" is no trailer line: the request is refused whole
        assert [status for status, _, _ in got] == [400] and served.seen == []
    else:                       # the body ended: the next request is a request
        assert [status for status, _, _ in got] == [200, 200]
        assert served.seen == [("POST", "/c", b"hello"), ("GET", "/second", b"")]


# 3. Response header injection ------------------------------------------------------------------------------------

def test_a_header_value_from_the_app_with_a_line_break_is_never_sent(served):
    got = send_and_read(served, b"GET /inject HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert [status for status, _, _ in got] == [500]
    assert not any("set-cookie" in headers for _, headers, _ in got)
    assert served.server.status()["failures"]["respond"] == 1 and served.get() == 200


def test_an_origin_with_a_bare_lf_gives_engine_io_no_second_header(tmp_path):
    bed = make_web_bed(tmp_path)
    served = Served(bed.web.app)
    try:
        # Engine.IO copies an Origin that matches the Host into Access-Control-Allow-Origin
        raw = (b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: 127.0.0.1\nSet-Cookie: pwned=1\r\n"
               b"Origin: http://127.0.0.1\nSet-Cookie: pwned=1\r\nConnection: close\r\n\r\n")
        s = served.connect()
        s.sendall(raw)
        data = read_all(s)
        got = responses(data)
        assert got and all(status in (200, 400, 403) for status, _, _ in got)
        assert b"pwned" not in data
    finally:
        served.close()
        bed.close()


# 4. RFC 9112 -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("raw, status", [
    (b"GET /x HTTP/1.1\r\n\r\n", 400),                                           # no Host
    (b"GET /x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),                     # two
    (b"GET /x HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n", 400),                 # a control byte in a value
    (b"GET /x HTTP/1.1\r\nHost: x\r\nX-A: a\x7fb\r\n\r\n", 400),
    (b"GET /x HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", 400),
    (b"GET /x HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n", 400),
    (b"GET /x\x01y HTTP/1.1\r\nHost: x\r\n\r\n", 400),                            # and in the target
    (b"GET /x\x00 HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    (b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\x0b\r\n\r\n0\r\n\r\n", 400),
    (b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: \xa0chunked\r\n\r\n0\r\n\r\n", 501),
    (b"GET /x HTTP/2.0\r\nHost: x\r\n\r\n", 505),
])
def test_what_rfc_9112_forbids_never_reaches_the_app(served, raw, status):
    assert [s for s, _, _ in send_and_read(served, raw)] == [status] and served.seen == []


def test_an_absolute_form_target_is_served_with_its_authority_as_the_host(served):
    got = send_and_read(served, b"GET http://payg.example:8080/s/kitchen?x=1 HTTP/1.1\r\nHost: other\r\n"
                                b"Connection: close\r\n\r\n")
    assert got[0][0] == 200 and got[0][2] == b"GET /s/kitchen payg.example:8080 0"


def test_http_1_2_is_served_as_1_1(served):
    got = send_and_read(served, b"GET /x HTTP/1.2\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert [status for status, _, _ in got] == [200] and served.seen == [("GET", "/x", b"")]


# 5. Slow readers -------------------------------------------------------------------------------------------------

def test_clients_that_never_read_do_not_hold_the_workers():
    """Six clients ask for 4 MB each and read nothing; with two workers, a page still answers at once."""
    served = Served(echo, workers=2, write_timeout_s=20, response_high_water=8 * 1024 * 1024,
                    buffer_budget_kib=64 * 1024)
    stalled = []
    try:
        for _ in range(6):
            s = served.connect(rcvbuf=4096)
            s.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
            stalled.append(s)
        wait_until(lambda: served.server.status()["writing"] == 6, 10, "the answers to wait in the server's buffers")
        started = time.monotonic()
        assert served.get() == 200
        assert time.monotonic() - started < 1.0
        wait_until(lambda: served.server.status()["busy"] == 0, 2, "no thread held by a stalled reader")
        assert served.server.status()["writing"] == 6
    finally:
        for s in stalled:
            s.close()
        served.close()


def test_the_buffer_budget_closes_the_longest_stalled_reader_to_make_room():
    budget = 10 * 1024 * 1024
    served = Served(echo, workers=2, buffer_budget_kib=budget // 1024, response_high_water=16 * 1024 * 1024,
                    write_timeout_s=20)
    stalled = []
    try:
        for _ in range(4):  # 8 MB each: what the kernel's buffers do not take stays in the server's
            s = served.connect(rcvbuf=4096)
            s.sendall(b"GET /big?8000000 HTTP/1.1\r\nHost: x\r\n\r\n")
            stalled.append(s)
            time.sleep(0.2)
        wait_until(lambda: served.server.status()["refused"].get(503, 0) >= 1, 5, "a stalled reader to be closed")
        assert served.server.status()["buffered_bytes"] <= budget
        first = read_all(stalled[0], 5)  # the first one, closed: what it gets ends before the 8 MB
        assert len(first) < 8_000_000
        assert served.get() == 200
    finally:
        for s in stalled:
            s.close()
        served.close()


# 6. Live connections ---------------------------------------------------------------------------------------------

def websocket_upgrade(port: int, extra: bytes = b"") -> bytes:
    return (f"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            f"\r\n").encode() + extra


def masked_text(text: str) -> bytes:
    """A client's WebSocket text frame (FIN, masked), as a browser sends it."""
    payload, mask = text.encode(), os.urandom(4)
    assert len(payload) < 126
    return bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def test_one_address_cannot_take_every_live_slot_and_the_threads_stay_bounded(tmp_path):
    bed = make_web_bed(tmp_path)
    workers, live, per_client = 2, 6, 3
    served = Served(bed.web.app, workers=workers, max_live_connections=live, max_live_per_client=per_client)
    before = threading.active_count()
    opened = []

    def upgrade(source: str) -> bytes:
        s = served.connect(source=source)
        opened.append(s)
        s.sendall(websocket_upgrade(served.port))
        return s.recv(12)

    try:
        flood = [upgrade("127.0.0.2") for _ in range(12)]  # a flood from one address
        assert flood.count(b"HTTP/1.1 101") == per_client and flood.count(b"HTTP/1.1 503") == 12 - per_client
        others = [upgrade(f"127.0.0.{3 + i % 2}") for i in range(live - per_client)]  # everyone else still gets in
        assert others == [b"HTTP/1.1 101"] * (live - per_client)
        wait_until(lambda: served.server.live_connections == live, 5, "every slot to be taken")
        time.sleep(0.5)  # Engine.IO's writer and ping threads start just after the upgrade
        # the documented bound: the selector, the workers, four threads per WebSocket (the clients here have none)
        assert threading.active_count() - before <= 1 + workers + 4 * live
        assert upgrade("127.0.0.5") == b"HTTP/1.1 503"  # the total holds too
        client = socketio.Client(reconnection=False)
        with pytest.raises(socketio.exceptions.ConnectionError):
            client.connect(f"http://127.0.0.1:{served.port}", transports=["websocket"], wait_timeout=3)
    finally:
        for s in opened:
            s.close()
        served.close()
        bed.close()


def server_texts(data: bytes) -> list[str]:
    """The text frames of a server's (unmasked) WebSocket stream after its 101 head."""
    data = data.partition(b"\r\n\r\n")[2]
    texts = []
    while len(data) >= 2:
        length, at = data[1] & 0x7F, 2
        if length == 126:
            length, at = int.from_bytes(data[2:4], "big"), 4
        elif length == 127:
            length, at = int.from_bytes(data[2:10], "big"), 10
        if len(data) < at + length:
            break
        if data[0] & 0x0F == 1:
            texts.append(data[at:at + length].decode())
        data = data[at + length:]
    return texts


def test_a_websocket_frame_sent_with_the_upgrade_reaches_the_app(tmp_path):
    bed = make_web_bed(tmp_path)
    served = Served(bed.web.app)
    try:
        s = served.connect()
        s.sendall(websocket_upgrade(served.port, masked_text("40")))  # Socket.IO's connect, in the same packet
        data = b""
        deadline = time.monotonic() + 5
        while not any(t.startswith("40") for t in server_texts(data)) and time.monotonic() < deadline:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                got = s.recv(65536)
            except TimeoutError:
                break
            if not got:
                break
            data += got
        assert data.startswith(b"HTTP/1.1 101")
        assert any(t.startswith("40") for t in server_texts(data)), data  # Socket.IO's connect acknowledged
        s.close()
    finally:
        served.close()
        bed.close()


# 7. Chunk framing and held bodies --------------------------------------------------------------------------------

def test_a_body_in_too_many_chunks_is_refused(served):
    raw = b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + b"1\r\nx\r\n" * 1100 + b"0\r\n\r\n"
    got = send_and_read(served, raw)
    assert [status for status, _, _ in got] == [413] and served.seen == []


def test_chunk_extensions_have_a_budget(served):
    s = served.connect()
    s.sendall(b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    try:
        for _ in range(200):  # 200 chunk lines of 1000 bytes of extensions: 200 KB of framing for 200 bytes
            s.sendall(b"1;" + b"e" * 1000 + b"\r\nx\r\n")
        s.sendall(b"0\r\n\r\n")
    except OSError:
        pass
    got = responses(read_all(s))
    assert [status for status, _, _ in got] == [400] and served.seen == []


def test_the_body_budget_gives_way_to_small_bodies():
    """Big bodies held just under the limit fill the budget; a small POST still gets in, one of them goes."""
    served = Served(echo, workers=2, max_body_kib=64, buffer_budget_kib=256, body_timeout_s=10)
    held = []
    try:
        for _ in range(5):
            s = served.connect()
            s.sendall(b"POST /held HTTP/1.1\r\nHost: x\r\nContent-Length: 65535\r\n\r\n" + b"h" * 65534)
            held.append(s)
        wait_until(lambda: served.server.status()["buffered_bytes"] >= 3 * 65534, 5, "the bodies to be held")
        assert served.server.status()["buffered_bytes"] <= 256 * 1024
        conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=5)
        conn.request("POST", "/small", body=b"x" * 1000)
        assert conn.getresponse().status == 200
        assert served.server.status()["refused"].get(503, 0) >= 1
        assert served.server.status()["buffered_bytes"] <= 256 * 1024
        for s in held:
            s.close()
        wait_until(lambda: served.server.status()["buffered_bytes"] == 0, 5, "the budget to come back")
    finally:
        for s in held:
            s.close()
        served.close()
