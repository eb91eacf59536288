"""The hub's workers (`[hub] mqtt_workers = N`): N processes sharing the fleet's traffic on the broker, behind one
front.

What costs a hub CPU is the messages themselves: MQTT's packets, the topics, the JSON of 10,000 states a second.
With workers, the front (the web pages, the fleet model, the history, the commands and the replays) subscribes
only to the answers to what it sends; each worker subscribes to the controllers' status, states and events
through MQTT shared subscriptions (`$share/<group>/...`, Mosquitto 2, EMQX, VerneMQ), so the broker hands each
message to one worker of the group. A worker parses it and writes it to the front on its standard output
(payg/adapters/mqtt/hub_pipe.py: states a batch at a time, a status or an event at once, before it is
acknowledged to the broker). The front reads every worker's pipe on a thread of its own and feeds its fleet and
archive as its own link would have. Adding a worker adds what the front spared: the front's share of a state is
one `json.loads` of a batch and the fleet's update.

A worker is started as `python -m payg.wiring.hub_workers --config FILE --index I` with the front's environment
(so it reads the same broker password), as MQTT client `<client>-w<I>` with a persistent session: a worker that
dies is started again under the same id and the broker gives it what was queued for it. What a worker received
and had not written when it was killed (states of the last `batch_s`; no acknowledged event) is what the front's
replays by seq recover. Its standard input is its lifeline: when the front is gone, the worker ends.

A worker's session outlives it on the broker, and so does its shared subscription: the broker would go on giving
it a part of the events, queued for nobody. So the hub notes in its data directory how many workers it ran
(`hub-workers.json`), and when it starts with fewer (or none), it has the broker forget the sessions of the others
first (`forget_stale`), on a thread of its own, retried at the next start if the broker could not be reached.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import signal
import subprocess
import sys
import threading
import time

from payg.adapters.mqtt.hub_pipe import Sink, feed
from payg.domain.hub_settings import HubConfig
from payg.errors import ConfigError

log = logging.getLogger("payg.hub")

RESTART_MIN_S, RESTART_MAX_S = 0.5, 30.0  # a worker that keeps dying is started again less and less often
STEADY_S = 60.0  # a worker that ran this long before it ended is started again at once (its backoff is reset)
STOP_S = 0.8  # how long a stop waits for the workers to end on SIGTERM before it kills them
WORKERS_FILE = "hub-workers.json"  # in the hub's data_dir: how many workers it ran last


def worker_client(config: HubConfig, index: int) -> str:
    return f"{config.mqtt.client}-w{index}"


def forget_stale(config: HubConfig) -> list[int]:
    """Have the broker forget the sessions of the workers a previous run had and this one has not; then note this
    run's count. The indexes forgotten (none when the broker could not be reached: the next start tries again)."""
    from payg.adapters.mqtt.hub_link import forget_session
    from payg.wiring.mqtt import connection

    path = config.data_dir / WORKERS_FILE
    try:
        before = int(json.loads(path.read_text())["workers"])
    except (OSError, ValueError, KeyError, TypeError):
        before = 0
    stale = list(range(config.mqtt_workers, before))
    for index in stale:
        if not forget_session(connection(config.mqtt, str(config.path), worker_client(config, index))):
            log.warning("hub: the broker was not reached to forget worker %d's session; trying at the next start",
                        index)
            return []
        log.info("hub: worker %d's session forgotten (this hub runs %d workers)", index, config.mqtt_workers)
    config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_suffix(".tmp")  # whole or not at all: a reader never sees it half written
    temporary.write_text(json.dumps({"workers": config.mqtt_workers}) + "\n")
    temporary.replace(path)
    return stale


def share_group(config: HubConfig) -> str:
    """The shared subscriptions' group: the hub's client id (two hubs on one broker do not split each other's
    traffic), with what a group name may not hold (`/`, `+`, `#`) replaced."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", config.mqtt.client)


class _Counting:
    """The front's sink for one worker's pipe, counting what it passes on."""

    def __init__(self, sink: Sink):
        self.sink, self.count = sink, 0

    def status(self, controller: str, value: str | None) -> None:
        self.count += 1
        self.sink.status(controller, value)

    def state(self, controller: str, socket: str, body: dict | None) -> None:
        self.count += 1
        self.sink.state(controller, socket, body)

    def event(self, controller: str, body: dict) -> None:
        self.count += 1
        self.sink.event(controller, body)


class HubWorkers:
    """The front's side: it starts `count` workers, reads their pipes into `sink`, and starts again one that ends."""

    def __init__(self, config: HubConfig, sink: Sink, count: int, python: str = sys.executable):
        self.config, self.sink, self.count, self.python = config, sink, count, python
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._procs: list[subprocess.Popen | None] = [None] * count
        self._counters = [_Counting(sink) for _ in range(count)]
        self._threads: list[threading.Thread] = []
        self.restarts = [0] * count
        self.connected = [False] * count

    def start(self) -> None:
        for index in range(self.count):
            thread = threading.Thread(target=self._run, args=(index,), name=f"payg-hub-worker-{index}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def pids(self) -> list[int | None]:
        with self._lock:
            return [p.pid if p is not None and p.poll() is None else None for p in self._procs]

    def received(self) -> list[int]:
        """Messages each worker has passed to the front since the hub started."""
        return [c.count for c in self._counters]

    def _spawn(self, index: int) -> subprocess.Popen:
        return subprocess.Popen([self.python, "-m", "payg.wiring.hub_workers", "--config", str(self.config.path),
                                 "--index", str(index)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def _run(self, index: int) -> None:
        delay = RESTART_MIN_S
        while not self._stopping.is_set():
            with self._lock:
                if self._stopping.is_set():
                    return
                try:
                    proc = self._procs[index] = self._spawn(index)
                except OSError as exc:
                    proc = None
                    log.error("hub: worker %d could not be started (%s); trying again in %.1f s", index, exc, delay)
            if proc is None:
                if self._stopping.wait(delay):
                    return
                delay = min(delay * 2, RESTART_MAX_S)
                continue
            began = time.monotonic()
            log.info("hub: worker %d started (pid %d)", index, proc.pid)

            def on_link(connected: bool, error: str | None, index: int = index) -> None:
                self.connected[index] = connected

            assert proc.stdout is not None
            feed(proc.stdout, self._counters[index], on_link)
            code = proc.wait()
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    stream.close()
            self.connected[index] = False
            if self._stopping.is_set():
                return
            self.restarts[index] += 1
            if time.monotonic() - began >= STEADY_S:
                delay = RESTART_MIN_S
            log.warning("hub: worker %d (pid %d) ended (exit status %s); starting it again in %.1f s", index,
                        proc.pid, code, delay)
            if self._stopping.wait(delay):
                return
            delay = min(delay * 2, RESTART_MAX_S)

    def stop(self) -> None:
        """SIGTERM to every worker at once, then a kill for any still running after STOP_S."""
        with self._lock:
            self._stopping.set()
            procs = [p for p in self._procs if p is not None]
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_S
        for proc in procs:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("hub: worker pid %d did not end on SIGTERM; killed", proc.pid)
                proc.kill()
                proc.wait()
        for thread in self._threads:  # each reads its worker's pipe to its end, now near
            thread.join(2)
        for proc in procs:
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    stream.close()


def worker_main(argv: list[str] | None = None) -> int:
    """One worker, until SIGTERM, SIGINT or the end of its standard input (the front is gone)."""
    from payg.adapters.config.hub import load
    from payg.adapters.mqtt.hub_link import HubLink, ingest_subscriptions
    from payg.adapters.mqtt.hub_pipe import PipeSink
    from payg.wiring.mqtt import connection

    parser = argparse.ArgumentParser(prog="payg hub worker")
    parser.add_argument("--config", required=True)
    parser.add_argument("--index", type=int, required=True)
    args = parser.parse_args(argv)
    out = sys.stdout.buffer
    sys.stdout = sys.stderr  # the pipe is the front's: nothing else may write to it
    try:
        config = load(args.config)
    except ConfigError as exc:  # the front read the same file; it changed since
        print(f"payg hub worker {args.index}: invalid configuration: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=config.log_level.upper(),
                        format=f"%(asctime)s %(levelname)s %(name)s (worker {args.index}): %(message)s")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())

    def lifeline() -> None:
        sys.stdin.buffer.read()
        stop.set()

    threading.Thread(target=lifeline, name="payg-hub-worker-lifeline", daemon=True).start()
    sink = PipeSink(out)
    sink.start()
    conn = connection(config.mqtt, str(config.path), worker_client(config, args.index))
    link = HubLink(conn, config.topic_prefix, sink, replay_check_s=None,
                   topics=ingest_subscriptions(config.topic_prefix, share=share_group(config)))
    link.start()
    try:
        while not stop.wait(0.2) and not sink.broken.is_set():
            pass
    finally:
        link.stop()
        sink.stop()
    return 0


if __name__ == "__main__":
    sys.exit(worker_main())
