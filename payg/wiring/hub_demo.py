"""`make hub-demo` (`python -m payg.wiring.hub_demo`): the fleet view on one machine, with one command.

It brings up, in a temporary directory, a Mosquitto broker on 127.0.0.1 (Debian's `mosquitto`; a password
file made with its `mosquitto_passwd`, or written here in the same format when that tool is missing, and the ACL
of `payg mqtt-acl`), two controllers with simulated sockets and MQTT on ("home" and "shop", some sockets given
credit through the hub), and `payg hub` logged in to the broker as a command user. It prints the
hub's address and the landlord's password, and stops everything, the hub first and the broker last, on Ctrl-C
(SIGINT) or SIGTERM. Each part is a process of its own, started as an operator would start it; their logs are
files in the directory.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from payg.adapters.mqtt.acl import mosquitto_acl

PAYG = [sys.executable, "-c", "import sys; from payg.bootstrap import main; sys.argv[0] = 'payg'; sys.exit(main())"]
# controller -> its sockets: (id, name, simulated load in W, tokens credited from the hub once it sees them)
FLEET = {
    "home": [("kitchen", "Kitchen", 450, 5000), ("laundry", "Laundry", 1200, 0)],
    "shop": [("till", "Till", 60, 800), ("cold-room", "Cold room", 300, 3000)],
}
START_S = 30.0


def mosquitto() -> str | None:
    found = os.environ.get("PAYG_MOSQUITTO") or shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    return found if os.access(found, os.X_OK) else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def password_line(user: str, password: str) -> str:
    """A Mosquitto 2 password file's line ($7$: PBKDF2-SHA512, 101 rounds, as `mosquitto_passwd` writes it)."""
    salt = secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, 101, 64)
    return f"{user}:$7$101${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def password_file(path: Path, users: dict[str, str]) -> None:
    tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    path.write_text("")
    path.chmod(0o600)
    if os.access(tool, os.X_OK):
        for user, password in users.items():
            subprocess.run([tool, "-b", str(path), user, password], check=True, capture_output=True)
    else:
        path.write_text("".join(password_line(u, p) + "\n" for u, p in users.items()))


def controller_toml(name: str, data_dir: Path, broker_port: int) -> str:
    sockets = "".join(f'\n[[sockets]]\nid = "{sid}"\nname = "{label}"\n'
                      f'meter = {{ kind = "simulated", load_w = {load} }}\nrelay = {{ kind = "simulated" }}\n'
                      for sid, label, load, _ in FLEET[name])
    return (f'[controller]\ndata_dir = "{data_dir}"\n\n[web]\nenabled = false\n\n[ledger]\nbackend = "mock"\n\n'
            f'[mqtt]\nenabled = true\nhost = "127.0.0.1"\nport = {broker_port}\ncontroller = "{name}"\n'
            f'username = "ctl-{name}"\npassword_env = "PAYG_DEMO_MQTT_PASSWORD"\ncommand_users = ["hub"]\n'
            f'discovery = false\nkeepalive_s = 10\n{sockets}')


def hub_toml(data_dir: Path, port: int, broker_port: int) -> str:
    return (f'[hub]\ndata_dir = "{data_dir}"\nhost = "127.0.0.1"\nport = {port}\n'
            f'landlord_password_hash_env = "PAYG_DEMO_HUB_HASH"\ncommand_timeout_s = 10\n\n'
            f'[mqtt]\nhost = "127.0.0.1"\nport = {broker_port}\nusername = "hub"\n'
            f'password_env = "PAYG_DEMO_MQTT_PASSWORD"\nkeepalive_s = 10\n')


class Demo:
    def __init__(self, directory: Path, port: int):
        self.dir, self.port = directory, port
        self.procs: list[tuple[str, subprocess.Popen]] = []  # in the order started
        self.token_file = directory / "hub-data" / "api-token"  # the hub's, made at its first start

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        log = open(self.dir / f"{name}.log", "ab")  # noqa: SIM115 (the child keeps it; closed when we stop)
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, **(env or {})}, cwd=self.dir, start_new_session=True)
        log.close()
        self.procs.append((name, proc))
        return proc

    def check(self) -> None:
        for name, proc in self.procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} stopped (exit {proc.returncode}); see {self.dir / (name + '.log')}")

    def wait_for(self, what: str, ready, timeout_s: float = START_S) -> None:
        deadline = time.monotonic() + timeout_s
        while not ready():
            self.check()
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} was not ready within {timeout_s:g} s; the logs are in {self.dir}")
            time.sleep(0.1)

    def start(self, broker: str) -> str:
        """Everything up; the landlord's password."""
        from werkzeug.security import generate_password_hash

        mqtt_password = secrets.token_urlsafe(12)
        landlord = secrets.token_urlsafe(9)
        users = {f"ctl-{name}": mqtt_password for name in FLEET} | {"hub": mqtt_password}
        broker_dir = self.dir / "broker"
        broker_dir.mkdir(mode=0o700)
        password_file(broker_dir / "passwd", users)
        (broker_dir / "acl").write_text(mosquitto_acl("payg", {n: f"ctl-{n}" for n in FLEET}, ["hub"],
                                                      discovery_prefix=None))
        (broker_dir / "acl").chmod(0o600)
        broker_port = free_port()
        (broker_dir / "mosquitto.conf").write_text("\n".join([
            f"user {pwd.getpwuid(os.getuid()).pw_name}",  # no privilege drop: the files are ours
            f"listener {broker_port} 127.0.0.1", "allow_anonymous false",
            f"password_file {broker_dir / 'passwd'}", f"acl_file {broker_dir / 'acl'}",
            "persistence false", "log_dest stdout", ""]))
        self.spawn("mosquitto", [broker, "-c", str(broker_dir / "mosquitto.conf")])
        self.wait_for("the broker", lambda: not port_free(broker_port), 10)

        env = {"PAYG_DEMO_MQTT_PASSWORD": mqtt_password, "PAYG_DEMO_HUB_HASH": generate_password_hash(landlord)}
        for name in FLEET:
            path = self.dir / f"{name}.toml"
            path.write_text(controller_toml(name, self.dir / name, broker_port))
            self.spawn(name, [*PAYG, "run", "--config", str(path)], env)
        (self.dir / "hub.toml").write_text(hub_toml(self.dir / "hub-data", self.port, broker_port))
        self.spawn("hub", [*PAYG, "hub", "--config", str(self.dir / "hub.toml")], env)
        self.wait_for("the hub", lambda: self.token_file.exists() and len(self.rows()) == sum(
            len(s) for s in FLEET.values()))
        for name, sockets in FLEET.items():  # some credit, through the hub as the landlord would give it
            for sid, _, _, tokens in sockets:
                if tokens:
                    self.api("/api/commands", {"controller": name, "socket": sid, "command": "credit",
                                               "tokens": tokens, "reason": "the demo's opening credit"})
        return landlord

    def api(self, path: str, body: dict | None = None) -> object:
        """The hub's JSON API with its API token, as a script on its machine would call it."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {self.token_file.read_text().strip()}",
                     "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=5) as answer:
            return json.load(answer)

    def rows(self) -> list:
        try:
            found = self.api("/api/fleet")
        except (OSError, ValueError):
            return []
        return found.get("rows", []) if isinstance(found, dict) else []

    def stop(self) -> None:
        """The hub first, then the controllers, the broker last (so their last wills and states are sent)."""
        for name, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    print(f"payg hub demo: {name} did not stop within 10 s: killed", file=sys.stderr)
                    proc.kill()
                    proc.wait()
        self.procs.clear()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make hub-demo", description="A local broker, two simulated "
                                     "controllers and the hub, until Ctrl-C.")
    parser.add_argument("--port", type=int, default=5080, help="the hub's port (default 5080; another free one "
                        "when it is taken; 0: any free port)")
    parser.add_argument("--dir", type=Path, help="keep the files here (default: a temporary directory, removed "
                        "at the end)")
    args = parser.parse_args(argv)
    broker = mosquitto()
    if broker is None:
        print("payg hub demo: needs Mosquitto (Debian: sudo apt-get install mosquitto); "
              "or set PAYG_MOSQUITTO to its path", file=sys.stderr)
        return 1
    port = args.port if args.port and port_free(args.port) else free_port()
    directory = args.dir or Path(tempfile.mkdtemp(prefix="payg-hub-demo-"))
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        if not stopping:
            stopping = True
            raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    demo = Demo(directory, port)
    status = 0
    try:
        print(f"payg hub demo: starting a broker, two controllers and the hub in {directory} ...", flush=True)
        password = demo.start(broker)
        print(f"\n  The hub:   http://127.0.0.1:{port}/\n  Login:     the landlord, password {password}\n"
              f"  Sockets:   {', '.join(f'{c}/{s[0]}' for c, ss in FLEET.items() for s in ss)}"
              f" (simulated; Force off, Automatic and Credit go to their controller over MQTT)\n"
              f"  Logs:      {directory}/*.log\n\nCtrl-C stops all of it.", flush=True)
        while True:
            demo.check()
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("\npayg hub demo: stopping ...", flush=True)
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        print(f"payg hub demo: {exc}", file=sys.stderr)
        status = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the shutdown short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        demo.stop()
        if args.dir is None and status == 0:
            shutil.rmtree(directory, ignore_errors=True)
        elif status:
            print(f"payg hub demo: the files and logs are kept in {directory}", file=sys.stderr)
    print("payg hub demo: stopped", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
