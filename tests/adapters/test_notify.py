"""SystemdNotifier against real AF_UNIX datagram sockets, as systemd listens on them."""

from __future__ import annotations

import logging
import os
import socket
import uuid

import pytest

from payg.adapters.notify import SystemdNotifier


@pytest.fixture
def listener(tmp_path):
    path = tmp_path / "notify.sock"
    if len(str(path).encode()) >= 100:  # sun_path holds 108 bytes
        pytest.skip("tmp_path too long for a unix socket path")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2)
    yield str(path), sock
    sock.close()


def received(sock: socket.socket, count: int) -> list[str]:
    return [sock.recv(4096).decode() for _ in range(count)]


def test_messages_reach_a_socket_path(listener):
    path, sock = listener
    notifier = SystemdNotifier({"NOTIFY_SOCKET": path})
    assert notifier.enabled
    assert notifier.ready() and notifier.watchdog() and notifier.stopping()
    assert notifier.status("3 sockets\nall ok")
    assert received(sock, 4) == ["READY=1", "WATCHDOG=1", "STOPPING=1", "STATUS=3 sockets all ok"]
    notifier.close()


def test_messages_reach_an_abstract_socket():
    name = f"payg-test-{os.getpid()}-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2)
    try:
        notifier = SystemdNotifier({"NOTIFY_SOCKET": "@" + name})
        notifier.ready()
        notifier.watchdog()
        notifier.stopping()
        assert received(sock, 3) == ["READY=1", "WATCHDOG=1", "STOPPING=1"]
        notifier.close()
    finally:
        sock.close()


def test_without_notify_socket_everything_is_a_no_op():
    notifier = SystemdNotifier({})
    assert not notifier.enabled
    assert notifier.ready() is False and notifier.watchdog() is False and notifier.stopping() is False
    assert notifier.status("x") is False
    assert notifier.watchdog_interval_s() is None


def test_the_process_environment_is_the_default():
    assert SystemdNotifier().enabled == bool(os.environ.get("NOTIFY_SOCKET"))


def test_an_unusable_notify_socket_value_disables_notifications():
    assert not SystemdNotifier({"NOTIFY_SOCKET": "relative/path"}).enabled


def test_a_vanished_systemd_is_logged_once_and_never_raised(tmp_path, caplog):
    notifier = SystemdNotifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    with caplog.at_level(logging.WARNING, logger="payg.notify"):
        for _ in range(5):
            assert notifier.watchdog() is False
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
    notifier.close()


def test_delivery_resumes_after_a_failure(listener, tmp_path, caplog):
    path, sock = listener
    sock.close()
    os.unlink(path)
    notifier = SystemdNotifier({"NOTIFY_SOCKET": path})
    assert notifier.watchdog() is False
    again = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    again.bind(path)
    again.settimeout(2)
    try:
        assert notifier.watchdog() is True
        assert received(again, 1) == ["WATCHDOG=1"]
    finally:
        again.close()
        notifier.close()


def test_watchdog_interval_is_half_of_watchdog_usec():
    assert SystemdNotifier({"WATCHDOG_USEC": "10000000"}).watchdog_interval_s() == 5.0
    env = {"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": str(os.getpid())}
    assert SystemdNotifier(env).watchdog_interval_s() == 5.0


@pytest.mark.parametrize("env", [
    {},
    {"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": str(os.getpid() + 1)},  # meant for another process
    {"WATCHDOG_USEC": "soon"},
    {"WATCHDOG_USEC": "0"},
    {"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": "me"},
])
def test_no_watchdog_interval_when_none_applies(env):
    assert SystemdNotifier(env).watchdog_interval_s() is None
