"""A real Mosquitto broker (Debian's `mosquitto`) on 127.0.0.1, with a password file and an ACL.

`Broker.start()` picks a free port once; `restart()` comes back on the same port with its persistence
file (retained messages, persistent sessions), `pause()` / `resume()` stall it (SIGSTOP / SIGCONT) to
play a broker that accepts connections and answers nothing.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.support import free_port, terminate

MOSQUITTO = os.environ.get("PAYG_MOSQUITTO") or shutil.which("mosquitto") or "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"


def require_mosquitto() -> None:
    if not (os.access(MOSQUITTO, os.X_OK) and os.access(MOSQUITTO_PASSWD, os.X_OK)):
        pytest.fail("Debian's mosquitto is not installed (apt-get install mosquitto; .ci/run and make test do it)")


class Broker:
    def __init__(self, directory: Path, users: dict[str, str], acl: str, extra_conf: tuple[str, ...] = ()):
        require_mosquitto()
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.users = dict(users)
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        passwd = self.dir / "passwd"
        passwd.write_text("")
        for user, password in users.items():
            subprocess.run([MOSQUITTO_PASSWD, "-b", str(passwd), user, password], check=True, capture_output=True)
        passwd.chmod(0o600)
        (self.dir / "acl").write_text(acl)
        (self.dir / "acl").chmod(0o600)
        (self.dir / "data").mkdir(exist_ok=True)
        self.log = self.dir / "mosquitto.log"
        (self.dir / "mosquitto.conf").write_text("\n".join([
            f"user {pwd.getpwuid(os.getuid()).pw_name}",  # no privilege drop: the files are ours
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous false",
            f"password_file {passwd}",
            f"acl_file {self.dir / 'acl'}",
            "persistence true",
            f"persistence_location {self.dir / 'data'}/",
            "autosave_interval 1",
            "max_queued_messages 100000",
            f"log_dest file {self.log}",
            "log_type error", "log_type warning", "log_type notice", "log_type information",
            *extra_conf,
            "",
        ]))

    def start(self) -> Broker:
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.dir / "mosquitto.conf")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"mosquitto exited: {self.proc.stderr.read().decode()}"
                                       f"{self.log.read_text() if self.log.exists() else ''}") from None
                if time.monotonic() > deadline:
                    raise RuntimeError("mosquitto did not listen within 10 s") from None
                time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                os.kill(self.proc.pid, signal.SIGCONT)
            terminate(self.proc, 10)
            self.proc = None

    def restart(self, down_s: float = 0.0) -> None:
        self.stop()
        time.sleep(down_s)
        self.start()

    def pause(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)
