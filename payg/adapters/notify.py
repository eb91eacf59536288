"""Tell systemd how the controller is doing (sd_notify), with the standard library only.

Under `Type=notify` systemd sets NOTIFY_SOCKET; without it every method is a
no-op, so the same code runs from a terminal. Send failures are logged, never
raised: losing contact with systemd must not stop the metering loop (if the
watchdog pings stop arriving, systemd restarts the service anyway).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Mapping

log = logging.getLogger("payg.notify")


class SystemdNotifier:
    def __init__(self, env: Mapping[str, str] | None = None):
        self._env = os.environ if env is None else env
        self._address = self._parse_address(self._env.get("NOTIFY_SOCKET", ""))
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._failing = False  # log the first failure of a run of failures, not every ping

    @staticmethod
    def _parse_address(value: str) -> str | bytes | None:
        if not value:
            return None
        if value.startswith("@"):
            return b"\0" + value[1:].encode()  # Linux abstract namespace
        if value.startswith("/"):
            return value
        log.warning("NOTIFY_SOCKET=%r is not a socket path or an abstract name; systemd will not be notified",
                    value)
        return None

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def ready(self) -> bool:
        return self.notify("READY=1")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    def status(self, text: str) -> bool:
        # One line: a newline would start another KEY=value assignment.
        return self.notify("STATUS=" + " ".join(str(text).splitlines()))

    def notify(self, message: str) -> bool:
        """Send one datagram; True if it was sent, False when disabled or on failure."""
        if self._address is None:
            return False
        with self._lock:
            try:
                if self._sock is None:
                    self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.sendto(message.encode(), self._address)
            except OSError as exc:
                if not self._failing:
                    log.warning("cannot notify systemd (%s); carrying on without it", exc)
                self._failing = True
                return False
            if self._failing:
                log.info("systemd notifications delivered again")
                self._failing = False
            return True

    def watchdog_interval_s(self) -> float | None:
        """How often to call watchdog(): half of WatchdogSec, or None when no watchdog applies to this process."""
        usec = self._env.get("WATCHDOG_USEC")
        if not usec:
            return None
        pid = self._env.get("WATCHDOG_PID")
        if pid:
            try:
                if int(pid) != os.getpid():
                    return None
            except ValueError:
                return None
        try:
            value = int(usec)
        except ValueError:
            return None
        return value / 2 / 1_000_000 if value > 0 else None

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None
