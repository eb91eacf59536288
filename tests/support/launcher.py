"""Controllers and commands for the tests, each a process of its own, started from a warm interpreter.

A fresh `python app.py` spends about a second of CPU importing Flask, Socket.IO, APScheduler and payg before
the controller does anything, and the suite starts one several hundred times. So each test worker keeps one
launcher: a process that has imported all of that once and, for every start, forks a child that runs the same
`main` as app.py with the arguments, working directory, environment, input and output files asked for. The
child is a process like any other (its own pid, files and signals; SIGKILL kills it where it stands), and the
test gets a handle that answers as subprocess.Popen does (pid, poll, wait, send_signal, kill, returncode).

What a child does not repeat is the interpreter's start and those imports; the tests that are about the entry
itself (`python app.py` run as systemd or a shell runs it) pass `fresh=True`, and PAYG_TEST_FORK=0 runs every
start in a fresh interpreter. The launcher forks only while it is single-threaded: it imports, never runs,
payg, so no lock or thread of a controller is ever copied into a child.

Run as a script, this file is the launcher: requests (one JSON line each) on stdin; on stdout the child's pid
for each, then, whenever a child ends, its exit status as Popen reports it (negative: the signal).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
from collections import deque
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
APP = ROOT / "app.py"

# What a controller, the hub and the CLI import on their way up, imported once by the launcher.
PRELOAD = (
    "payg.bootstrap", "payg.cli", "payg.web", "payg.hub", "payg.adapters.scheduler", "payg.adapters.process",
    "payg.adapters.lock", "payg.adapters.notify", "payg.adapters.secrets", "payg.adapters.journal",
    "payg.webkit.proxies", "payg.wiring.mqtt", "ledgers.mock", "urllib.request",
)


def forking() -> bool:
    return os.environ.get("PAYG_TEST_FORK", "1") != "0"


class Child:
    """A child of the launcher, seen from the test: the part of subprocess.Popen the tests use."""

    def __init__(self, args: list[str]):
        self.args = args
        self.pid = 0
        self.returncode: int | None = None
        self.error: str | None = None
        self._started = threading.Event()
        self._ended = threading.Event()

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if not self._ended.wait(timeout):
            raise subprocess.TimeoutExpired(self.args, timeout or 0)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, signum: int) -> None:
        """As Popen does: nothing once the child is known to have ended, nor if it ended a moment ago (the
        launcher reaps at once, so a second SIGKILL can find no process where Popen would find a zombie)."""
        if self.returncode is None:
            try:
                os.kill(self.pid, signum)
            except ProcessLookupError:
                pass

    def terminate(self) -> None:
        self.send_signal(15)

    def kill(self) -> None:
        self.send_signal(9)

    def _ended_with(self, code: int) -> None:
        self.returncode = code
        self._ended.set()


class Launcher:
    """The test worker's side of one launcher process."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__))], cwd=str(ROOT), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE)
        self.lock = threading.Lock()
        self.pending: deque[Child] = deque()
        self.children: dict[int, Child] = {}
        threading.Thread(target=self._read, name="launcher-replies", daemon=True).start()

    def start(self, request: dict) -> Child:
        child = Child([sys.executable, str(APP), *request["args"]])
        with self.lock:
            self.pending.append(child)
            assert self.proc.stdin is not None
            self.proc.stdin.write(json.dumps(request).encode() + b"\n")
            self.proc.stdin.flush()
        if not child._started.wait(60) or child.error:
            raise RuntimeError(f"the test launcher could not start {request['args']}: {child.error or 'no answer'}")
        return child

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            message = json.loads(line)
            if "exit" in message:
                self.children.pop(message["exit"])._ended_with(message["code"])
                continue
            child = self.pending.popleft()
            if "pid" in message:
                child.pid = message["pid"]
                self.children[child.pid] = child
            else:
                child.error = message["error"]
            child._started.set()
        for child in [*self.pending, *self.children.values()]:  # the launcher is gone: nothing more will come
            child.error = child.error or "the launcher exited"
            child._started.set()


Process = Child | subprocess.Popen  # what start() returns

_launcher: Launcher | None = None
_launcher_lock = threading.Lock()


def _the_launcher() -> Launcher:
    global _launcher
    with _launcher_lock:
        if _launcher is None or _launcher.proc.poll() is not None:
            _launcher = Launcher()
        return _launcher


def start(args: list[str], *, cwd: Path, stdout: Path, stderr: Path | None = None, env: dict[str, str] | None = None,
          input_file: Path | None = None, append: bool = False, fresh: bool = False) -> Process:
    """`app.py ARGS` as a process of its own, its output in `stdout` (and `stderr`, else with the output)."""
    if fresh or not forking():
        mode = "ab" if append else "wb"
        with open(stdout, mode) as out, open(stderr or os.devnull, mode) as err, \
                open(input_file or os.devnull, "rb") as inp:
            return subprocess.Popen([sys.executable, str(APP), *args], cwd=str(cwd), env=env, stdin=inp, stdout=out,
                                    stderr=err if stderr else subprocess.STDOUT)
    for path in (stdout, stderr):  # there (and empty unless appended to) on return, as subprocess.Popen leaves them
        if path is not None:
            open(path, "ab" if append else "wb").close()
    return _the_launcher().start({
        "args": list(args), "cwd": str(cwd), "env": dict(os.environ if env is None else env),
        "stdout": str(stdout), "stderr": str(stderr) if stderr else None,
        "stdin": str(input_file) if input_file else None})


def run(*args: str, cwd: Path, env: dict[str, str] | None = None, input: str | None = None, timeout: float = 60,
        fresh: bool = False) -> subprocess.CompletedProcess:
    """`app.py ARGS` to its end, its output captured and decoded (as subprocess.run(..., capture_output=True) and
    bytes.decode() give it)."""
    with tempfile.TemporaryDirectory(prefix="payg-run-") as tmp:
        out, err, inp = Path(tmp, "stdout"), Path(tmp, "stderr"), Path(tmp, "stdin")
        inp.write_text(input or "")
        proc = start(list(args), cwd=cwd, stdout=out, stderr=err, env=env, input_file=inp, fresh=fresh)
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
        return subprocess.CompletedProcess([sys.executable, str(APP), *args], code, _text(out), _text(err))


def _text(path: Path) -> str:
    return path.read_bytes().decode()  # as written: Python writes "\n" on Linux, and a progress bar's "\r" stays


# The launcher itself (this file run as a script).

def _serve() -> None:
    import importlib
    import select
    import signal

    sys.path[0] = str(ROOT)  # as for `python app.py`: the repository first
    for name in PRELOAD:
        importlib.import_module(name)
    if threading.active_count() != 1:
        raise SystemExit(f"the launcher must not fork with threads running: {threading.enumerate()}")
    requests, replies = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so that a child's end wakes the select below

    def reply(message: dict) -> None:
        os.write(replies, json.dumps(message).encode() + b"\n")

    def reap() -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            reply({"exit": pid, "code": os.waitstatus_to_exitcode(status)})

    buffered = b""
    while True:
        ready, _, _ = select.select([requests, wake_r], [], [])
        if wake_r in ready:
            while True:
                try:
                    if not os.read(wake_r, 4096):
                        break
                except BlockingIOError:
                    break
            reap()
        if requests in ready:
            chunk = os.read(requests, 1 << 16)
            if not chunk:
                return  # the test worker is gone
            buffered += chunk
            while b"\n" in buffered:
                line, buffered = buffered.split(b"\n", 1)
                request = json.loads(line)
                try:
                    pid = os.fork()
                except OSError as exc:
                    reply({"error": str(exc)})
                    continue
                if pid == 0:
                    os.close(requests)
                    os.close(replies)
                    os.close(wake_r)
                    os.close(wake_w)
                    os._exit(_child(request, devnull))
                reply({"pid": pid})


def _child(request: dict, devnull: int) -> int:
    """In the forked child: become `python app.py ARGS` as the request describes it, and run it to its end."""
    import atexit
    import signal
    import time
    import traceback

    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        time.tzset()  # TZ from the environment, as a fresh interpreter reads it
        flags = os.O_WRONLY | os.O_APPEND  # made (or emptied) by the test before the request
        os.dup2(os.open(request["stdin"], os.O_RDONLY) if request["stdin"] else devnull, 0)
        os.dup2(os.open(request["stdout"], flags), 1)
        os.dup2(os.open(request["stderr"], flags) if request["stderr"] else 1, 2)
        sys.argv = [str(APP), *request["args"]]
        from payg.bootstrap import main
        code: object = main(request["args"])
    except SystemExit as exc:
        code = exc.code
    except BaseException:  # noqa: BLE001 - as the interpreter does: the traceback on stderr, status 1
        traceback.print_exc()
        code = 1
    # What the interpreter does on its way out: wait for the threads, run atexit, flush.
    threading._shutdown()  # type: ignore[attr-defined]
    atexit._run_exitfuncs()
    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    return (code or 0) & 0xFF


if __name__ == "__main__":
    _serve()
