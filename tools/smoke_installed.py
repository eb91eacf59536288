"""The smoke test of an installed payg, away from any source tree: start, /healthz, a mock deposit, SIGTERM.

    python3 tools/smoke_installed.py --bin /path/to/venv/bin      (`make dist-test` makes that venv from the wheel)

Standard library only, so that it runs wherever payg was installed (a fresh venv, the Debian package's /opt/payg).
It copies the embedded default the installation carries (share/payg/config/default.toml) into an empty
directory with a free 127.0.0.1 port, and checks that: the installed `payg` finds that default by itself; the
controller starts and /healthz answers "ok"; the browser libraries are served from the installation (no
node_modules, no Node.js); a mock deposit switches the kitchen on; SIGTERM stops it with exit status 0.
Prints each step with its time; exits 1 at the first failure.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class Failed(Exception):
    pass


def wait_for(what: str, check, timeout_s: float, proc: subprocess.Popen) -> None:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise Failed(f"the controller exited ({proc.returncode}) while waiting for {what}")
        try:
            if check():
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.2)
    raise Failed(f"timed out after {timeout_s:g} s waiting for {what}")


def smoke(bin_dir: Path, work: Path) -> None:
    payg, python = bin_dir / "payg", bin_dir / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    started = time.monotonic()

    def step(text: str) -> None:
        print(f"  {time.monotonic() - started:6.1f} s  {text}", flush=True)

    found = subprocess.run([str(python), "-c", "from payg.cli.parser import default_config; print(default_config())"],
                           cwd=work, env=env, capture_output=True, text=True, check=True).stdout.strip()
    default = Path(found)
    if not default.is_absolute() or not default.is_file():
        raise Failed(f"the installed payg does not find its embedded default by itself (got {found!r})")
    step(f"the embedded default: {default}")
    port = free_port()
    config = work / "payg.toml"
    text = default.read_text()
    if "port = 5000" not in text:
        raise Failed(f"{default} has no `port = 5000` line to move to a free port")
    config.write_text(text.replace("port = 5000", f"port = {port}", 1))
    log = (work / "controller.log").open("w")
    proc = subprocess.Popen([str(payg), "--config", str(config)], cwd=work, env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for("/healthz to answer ok", lambda: get(f"{base}/healthz")[0] == 200, 30, proc)
        step(f"started; {base}/healthz answers 200")
        for name in ("socket.io.min.js", "uPlot.iife.min.js"):
            status, body = get(f"{base}/assets/{name}")
            if status != 200 or len(body) < 1000:
                raise Failed(f"/assets/{name} answered {status} ({len(body)} bytes): the wheel lacks the browser "
                             "libraries")
        step("the browser libraries are served from the installation")
        subprocess.run([str(payg), "deposit", "--socket", "kitchen", "--amount", "200", "--config", str(config)],
                       cwd=work, env=env, check=True, capture_output=True, text=True, timeout=60)

        def kitchen_on() -> bool:
            state = json.loads(get(f"{base}/api/sockets/kitchen")[1])
            return state["relay"] == "on" and state["balance"] > 0

        wait_for("the mock deposit to switch the kitchen on", kitchen_on, 30, proc)
        step("a mock deposit of 200 switched the kitchen on")
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=15)
        if code != 0:
            raise Failed(f"SIGTERM: exit status {code}, not 0")
        step("SIGTERM: exit status 0")
    except BaseException:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
        print((work / "controller.log").read_text()[-4000:], file=sys.stderr)
        raise
    log.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", type=Path, required=True,
                        help="the bin/ of the installation (a venv's, /opt/payg/bin)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="payg-smoke-") as tmp:
        try:
            smoke(args.bin.resolve(), Path(tmp))
        except (Failed, subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            detail = getattr(exc, "stderr", None)
            print(f"smoke test FAILED: {exc}" + (f"\n{detail}" if detail else ""), file=sys.stderr)
            return 1
    print("smoke test passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
