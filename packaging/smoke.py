"""The smoke test of an installed payg, with nothing but the standard library (it runs on the target's python3).

    python3 smoke.py --payg /usr/bin/payg --config /etc/payg/payg.toml --socket socket1

The Debian package's test (packaging/test-deb.sh) runs it in a fresh Bookworm root, and `make dist-test` on the
wheel installed into a fresh venv, with the embedded default that wheel carries.

Runs the controller on a copy of the configuration whose only change is a free port on 127.0.0.1, then checks:
/healthz answers ok; the tenant page and a browser library are served (the wheel's share/payg files were
found); `payg deposit` on the mock ledger adds to the socket's balance and its relay is on; SIGTERM ends the
controller with exit code 0. With --name, the socket must have that name. Prints each check and exits non-zero
at the first that fails.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

START_TIMEOUT_S = 60  # a first start on a Pi compiles nothing (pip compiled at install) but imports a lot
CREDIT_TIMEOUT_S = 20


class SmokeFailed(Exception):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def with_port(config_text: str, port: int) -> str:
    """The configuration with its [web] port (and only that) replaced."""
    web = re.search(r"(?ms)^\[web\]\s*$(.*?)(?=^\[)", config_text)
    if web is None or not re.search(r"(?m)^port\s*=", web.group(1)):
        raise SmokeFailed("the configuration has no [web] port to replace")
    body = re.sub(r"(?m)^port\s*=\s*\d+", f"port = {port}", web.group(1), count=1)
    return config_text[:web.start(1)] + body + config_text[web.end(1):]


def get(port: int, path: str, timeout_s: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout_s) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait_for(what: str, check, timeout_s: float, proc: subprocess.Popen):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SmokeFailed(f"the controller exited with code {proc.returncode} while waiting for {what}")
        try:
            result = check()
        except OSError:
            result = None
        if result:
            return result
        time.sleep(0.2)
    raise SmokeFailed(f"no {what} within {timeout_s} s")


def run(payg: str, config: Path, socket_id: str, amount: int, name: str | None, patience: float = 1.0) -> None:
    """`patience` multiplies every wait (an emulated CPU is some ten times slower)."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="payg-smoke-") as tmp:
        smoke_config = Path(tmp) / "payg.toml"
        smoke_config.write_text(with_port(config.read_text(), port))
        log = open(Path(tmp) / "controller.log", "w+b")  # read back when a check fails
        # in the temporary directory: a relative data_dir (the embedded default's "var") lands there
        proc = subprocess.Popen([payg, "run", "--config", str(smoke_config)], cwd=tmp, stdout=log,
                                stderr=subprocess.STDOUT)
        try:
            started = time.monotonic()

            def healthy():
                status, body = get(port, "/healthz", 5 * patience)
                return status == 200 and json.loads(body).get("status") == "ok"

            wait_for("/healthz answering ok", healthy, START_TIMEOUT_S * patience, proc)
            print(f"ok   /healthz answers ok on 127.0.0.1:{port} ({time.monotonic() - started:.1f} s after start)")

            status, body = get(port, "/", 5 * patience)
            if status != 200 or b"<html" not in body.lower():
                raise SmokeFailed(f"GET / answered {status}: the templates were not found")
            status, body = get(port, "/assets/socket.io.min.js", 5 * patience)
            if status != 200 or len(body) < 1000:
                raise SmokeFailed(f"GET /assets/socket.io.min.js answered {status}: the browser libraries are missing")
            print("ok   the tenant page and the browser libraries are served")

            def socket_state() -> dict:
                status, body = get(port, f"/api/sockets/{socket_id}", 5 * patience)
                if status != 200:
                    raise SmokeFailed(f"GET /api/sockets/{socket_id} answered {status}")
                return json.loads(body)

            before = socket_state()
            if name is not None and before["name"] != name:
                raise SmokeFailed(f"{socket_id} is named {before['name']!r}, not {name!r}: another configuration?")
            deposit = subprocess.run([payg, "deposit", "--config", str(smoke_config), "--socket", socket_id,
                                      "--amount", str(amount)], cwd=tmp, capture_output=True, text=True,
                                     timeout=60 * patience)
            if deposit.returncode != 0 or "deposit mock-" not in deposit.stdout:
                raise SmokeFailed(f"payg deposit failed ({deposit.returncode}): {deposit.stdout}{deposit.stderr}")

            def credited():
                # the load may use up to one token of it while we wait
                state = socket_state()
                return state if state["balance_tokens"] >= before["balance_tokens"] + amount - 1 \
                    and state["relay"] == "on" else None

            state = wait_for(f"the deposit credited to {socket_id}", credited, CREDIT_TIMEOUT_S * patience, proc)
            print(f"ok   a mock deposit of {amount} tokens was credited: {before['name']} ({socket_id}) went from "
                  f"{before['balance_tokens']} to {state['balance_tokens']} tokens, relay {state['relay']}")

            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=30 * patience)
            if code != 0:
                raise SmokeFailed(f"SIGTERM: the controller exited with code {code}, not 0")
            print("ok   SIGTERM: the controller stopped with exit code 0")
        except BaseException:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.seek(0)
            sys.stderr.write("--- the controller's output ---\n" + log.read().decode(errors="replace")[-4000:])
            raise
        finally:
            log.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payg", default="payg", help="the payg command to test")
    parser.add_argument("--config", type=Path, required=True, help="the configuration to copy (port replaced)")
    parser.add_argument("--socket", default="socket1", help="the socket to pay into")
    parser.add_argument("--amount", type=int, default=5)
    parser.add_argument("--name", help="the name the socket must have (checks which configuration was read)")
    parser.add_argument("--patience", type=float, default=1.0,
                        help="multiply every wait by this (10 for a root of another architecture under qemu-user)")
    args = parser.parse_args()
    try:
        payg = shutil.which(args.payg)  # a path or a command name, as the controller's cwd is not ours
        if payg is None:
            raise SmokeFailed(f"no {args.payg} to run")
        run(str(Path(payg).resolve()), args.config.resolve(), args.socket, args.amount, args.name, args.patience)
    except SmokeFailed as e:
        print(f"FAIL {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
