"""How a hub worker hands what it received to the hub's front: JSON lines on a pipe (the worker's standard output).

A worker (payg/wiring/hub_workers.py) is a HubLink on shared subscriptions whose sink is a `PipeSink`: it does the
expensive part of every message (MQTT, the topic, the JSON) and writes what the link parsed, as plain values, one
JSON array of messages per line. The front reads each worker's lines with `feed` and calls its own sink (the
Fleet and the archive) as its own link would have.

States are "latest value wins" and most of the traffic: they are gathered and written together every `batch_s`
(one line of many states, one `json.loads` at the front for all of them). A status or an event is written at once,
before paho acknowledges it to the broker (it does so when the callback returns), so an event a worker has
acknowledged is in the pipe even if the worker is killed the next moment; the front still reads it.

A line: `[["s", controller, socket, body or null], ["e", controller, body], ["t", controller, status or null],
["l", connected, error or null], ...]`.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import IO, Any, Protocol

log = logging.getLogger("payg.hub")


class Sink(Protocol):
    """What `feed` calls (the front's FleetSink)."""

    def status(self, controller: str, value: str | None) -> None: ...

    def state(self, controller: str, socket: str, body: dict | None) -> None: ...

    def event(self, controller: str, body: dict) -> None: ...


class PipeSink:
    """A worker's FleetSink: everything it is handed goes to `out` (a binary stream) as JSON lines."""

    def __init__(self, out: IO[bytes], batch_s: float = 0.05, batch_max: int = 2000):
        self.out, self.batch_s, self.batch_max = out, batch_s, batch_max
        self._lock = threading.Lock()     # the stream's: paho's thread and the flusher both write
        self._states: list[list[Any]] = []
        self._stopped = threading.Event()
        self._flusher = threading.Thread(target=self._flush_every, name="payg-hub-worker-flush", daemon=True)
        self.broken = threading.Event()   # the front is gone (the pipe is closed): the worker should end

    def start(self) -> None:
        self._flusher.start()

    def stop(self) -> None:
        self._stopped.set()
        self._flusher.join(2)
        self.flush()

    def status(self, controller: str, value: str | None) -> None:
        self._now(["t", controller, value])

    def state(self, controller: str, socket: str, body: dict | None) -> None:
        with self._lock:
            self._states.append(["s", controller, socket, body])
            full = len(self._states) >= self.batch_max
        if full:
            self.flush()

    def event(self, controller: str, body: dict) -> None:
        self._now(["e", controller, body])

    def response(self, controller: str, body: dict) -> None:
        """Not a worker's: the front reads the answers to what it sent itself."""

    def link(self, connected: bool, error: str | None = None) -> None:
        self._now(["l", connected, error])

    def replays_due(self) -> list[tuple[str, int, str]]:
        return []  # the front holds the sequences and asks for replays

    def replay_unsent(self, controller: str, request_id: str) -> None:
        pass

    def flush(self) -> None:
        with self._lock:
            states, self._states = self._states, []
            if states:
                self._write(states)

    def _now(self, message: list[Any]) -> None:
        with self._lock:  # the states gathered so far go first: one controller's messages stay in order
            states, self._states = self._states, []
            self._write([*states, message])

    def _write(self, messages: list[list[Any]]) -> None:
        try:
            self.out.write(json.dumps(messages, separators=(",", ":")).encode() + b"\n")
            self.out.flush()
        except (BrokenPipeError, ValueError, OSError):
            self.broken.set()

    def _flush_every(self) -> None:
        while not self._stopped.wait(self.batch_s):
            self.flush()


def feed(lines: IO[bytes], sink: Sink, on_link: Any = None) -> int:
    """Read a worker's lines until the pipe ends, calling `sink` for each message; how many messages were read.
    `on_link(connected, error)` hears of the worker's broker connection. A line that is not ours is logged and
    skipped (a worker is our own code, but the front must not stop for one bad line)."""
    count = 0
    for line in lines:
        try:
            messages = json.loads(line)
        except ValueError:
            log.warning("hub: a worker wrote a line that is not JSON (%d bytes); skipped", len(line))
            continue
        for message in messages if isinstance(messages, list) else ():
            try:
                kind = message[0]
                if kind == "s":
                    sink.state(message[1], message[2], message[3])
                elif kind == "e":
                    sink.event(message[1], message[2])
                elif kind == "t":
                    sink.status(message[1], message[2])
                elif kind == "l":
                    if on_link is not None:
                        on_link(bool(message[1]), message[2])
                else:
                    log.warning("hub: a worker wrote a message of no known kind (%r); skipped", kind)
                    continue
                count += 1
            except Exception:  # one bad message must not stop the rest of the worker's
                log.exception("hub: a message from a worker could not be handled")
    return count
