"""The fleet as the hub has seen it: every controller, every socket's last published state, who is online, the recent
events, the commands sent from here with their answers, and how complete each controller's events are (sequence.py).

The hub keeps no money of its own. A balance here is the integer a controller last published on its state
topic, nothing added, nothing inferred: a controller's journal stays the only record. So this model is
fed by messages only (the MQTT link calls `status`, `state`, `event`, `response` and `link` from paho's
thread) and read by the web (snapshots, changes since a version for the live pushes). One lock guards it;
every change bumps one version number, which is how a push knows what is new, and a Condition wakes
whoever waits for it. Time comes from the injected clock: the command timeouts and the receive times
(kept per state message for a benchmark's state-to-hub delay) depend on it.
"""

from __future__ import annotations

import re
import secrets
import threading
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

from payg.hub.sequence import Sequences
from payg.ports import Clock

COMMANDS = ("force_off", "automatic", "credit")
REQUEST_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")  # what a page may choose itself (the wire allows more)
ONLINE, OFFLINE = "online", "offline"
RELAYS = ("on", "off")


class UnknownTarget(LookupError):
    """No such controller or socket has been seen."""


class Refused(ValueError):
    """A command the hub will not send now (the controller is offline, the request id was used)."""


@dataclass
class ControllerSeen:
    name: str
    status: str | None = None          # "online" / "offline" as last published; None: never said
    status_at: float | None = None     # when the hub received that
    last_seen: float | None = None     # the last message of any kind from it
    version: int = 0


@dataclass
class SocketSeen:
    controller: str
    socket: str
    state: dict                         # the published body, as published (scalars only)
    received_at: float
    version: int = 0


@dataclass
class CommandSent:
    request_id: str
    controller: str
    socket: str
    command: str
    tokens: int | None
    reason: str | None
    sent_at: float
    status: str = "pending"             # pending, ok, refused, timeout
    error: str | None = None
    booked: bool | None = None          # a credit: False when the controller had booked this id before
    answered_at: float | None = None
    late: bool = False                  # answered after it was shown as timed out
    version: int = 0


@dataclass(frozen=True)
class StateReceipt:
    """One state message as received: its controller's time ("at") and the hub's."""

    controller: str
    socket: str
    at: float | None
    received_at: float


@dataclass
class _Event:
    body: dict
    received_at: float
    version: int = 0


def _scalars(body: dict) -> dict:
    return {k: v for k, v in body.items() if isinstance(k, str) and (v is None or isinstance(v, (str, int, float)))}


def _integer(x: object) -> int | None:
    return x if isinstance(x, int) and not isinstance(x, bool) else None


def _number(x: object) -> float | int | None:
    return x if isinstance(x, (int, float)) and not isinstance(x, bool) else None


@dataclass
class _Totals:
    sockets: int = 0
    on: int = 0
    off: int = 0
    power_w: float = 0.0
    balance: int = 0
    balance_tokens: float | int = 0
    controllers: set = field(default_factory=set)

    def add(self, row: dict) -> None:
        self.sockets += 1
        self.controllers.add(row["controller"])
        self.on += row.get("relay") == "on"
        self.off += row.get("relay") == "off"
        self.power_w += _number(row.get("power_w")) or 0
        self.balance += _integer(row.get("balance")) or 0
        self.balance_tokens += _number(row.get("balance_tokens")) or 0

    def out(self) -> dict:
        tokens = self.balance_tokens
        return {"sockets": self.sockets, "on": self.on, "off": self.off, "power_w": round(self.power_w, 3),
                "balance": self.balance,
                "balance_tokens": tokens if isinstance(tokens, int) else round(tokens, 6)}


def totals(rows: Iterable[dict]) -> dict:
    """Per controller and over all the rows given: sockets, relays on and off, power, balances."""
    overall, per = _Totals(), dict[str, _Totals]()
    for row in rows:
        overall.add(row)
        per.setdefault(row["controller"], _Totals()).add(row)
    return {"all": {**overall.out(), "controllers": len(overall.controllers)},
            "controllers": {name: t.out() for name, t in sorted(per.items())}}


def matches(row: dict, controller: str | None = None, relay: str | None = None, text: str | None = None) -> bool:
    """The filters of the table, the API and the CSV: one controller, one relay state, a piece of text in
    "controller/socket" or in the socket's name (case does not matter)."""
    if controller and row["controller"] != controller:
        return False
    if relay and row.get("relay") != relay:
        return False
    name = row.get("name")
    where = row["key"] + ("\n" + name if isinstance(name, str) else "")
    return not text or text.strip().lower() in where.lower()


class Fleet:
    def __init__(self, clock: Clock, *, command_timeout_s: float = 10.0, events_max: int = 200,
                 commands_max: int = 200, receipts_max: int = 10_000, event_ids_max: int = 20_000,
                 replay_settle_s: float = 0.0):
        self.clock = clock
        self.command_timeout_s = command_timeout_s
        self._cond = threading.Condition()
        self._version = 0
        self._controllers: dict[str, ControllerSeen] = {}
        self._sockets: dict[tuple[str, str], SocketSeen] = {}
        self._removed: OrderedDict[tuple[str, str], int] = OrderedDict()  # cleared states, for the pushes
        self._events: deque[_Event] = deque(maxlen=events_max)
        self._event_ids: OrderedDict[str, None] = OrderedDict()
        self._event_ids_max = event_ids_max
        self._commands: OrderedDict[str, CommandSent] = OrderedDict()
        self._commands_max = commands_max
        self._receipts: deque[StateReceipt] = deque(maxlen=receipts_max)
        self._sequences = Sequences(command_timeout_s, replay_settle_s)
        self.broker_connected = False
        self.broker_error: str | None = None
        self.counts = {"states": 0, "events": 0, "duplicate_events": 0, "responses": 0, "unmatched_responses": 0}

    def _bump(self) -> int:
        self._version += 1
        self._cond.notify_all()
        return self._version

    def _seen(self, name: str, now: float) -> ControllerSeen:
        c = self._controllers.get(name)
        if c is None:
            c = self._controllers[name] = ControllerSeen(name)
        c.last_seen = now
        return c

    def status(self, controller: str, value: str | None) -> None:
        """A controller's status topic: "online", "offline" (its last will when it dies), None when cleared."""
        now = self.clock.now()
        with self._cond:
            c = self._seen(controller, now)
            c.status = value if value in (ONLINE, OFFLINE) else None
            c.status_at = now
            c.version = self._bump()

    def state(self, controller: str, socket: str, body: dict | None) -> None:
        """A socket's retained state; None (an empty retained message) removes the socket from the table."""
        now = self.clock.now()
        with self._cond:
            c = self._seen(controller, now)
            key = (controller, socket)
            if body is None:
                if self._sockets.pop(key, None) is not None:
                    self._removed[key] = self._bump()
                    while len(self._removed) > 1000:
                        self._removed.popitem(last=False)
                    c.version = self._version
                return
            clean = _scalars(body)
            self._sequences.hint(controller, clean.get("events_through"), now)  # its last events, if lost, are asked
            self._receipts.append(StateReceipt(controller, socket, _number(clean.get("at")), now))
            self.counts["states"] += 1
            self._removed.pop(key, None)
            version = self._bump()
            self._sockets[key] = SocketSeen(controller, socket, clean, now, version)
            c.version = version

    def event(self, controller: str, body: dict) -> None:
        """An event; one with an id already seen (a QoS 1 redelivery) is dropped."""
        eid = body.get("id")
        if not isinstance(eid, str):
            return
        now = self.clock.now()
        with self._cond:
            c = self._seen(controller, now)
            if eid in self._event_ids:
                self.counts["duplicate_events"] += 1
                return
            self._event_ids[eid] = None
            while len(self._event_ids) > self._event_ids_max:
                self._event_ids.popitem(last=False)
            self.counts["events"] += 1
            self._sequences.seen(controller, body.get("seq"), now)
            version = self._bump()
            self._events.append(_Event({**_scalars(body), "controller": controller}, now, version))
            c.version = version

    def response(self, controller: str, body: dict) -> None:
        """A controller's answer to a command, matched to the command sent from here by its request id."""
        rid = body.get("request_id")
        now = self.clock.now()
        with self._cond:
            c = self._seen(controller, now)
            self.counts["responses"] += 1
            if self._sequences.answered(controller, body):  # a replay's answer: what the controller still keeps
                c.version = self._bump()
                return
            cmd = self._commands.get(rid) if isinstance(rid, str) else None
            if cmd is None or cmd.controller != controller or cmd.status not in ("pending", "timeout"):
                self.counts["unmatched_responses"] += cmd is None
                return
            cmd.late = cmd.status == "timeout"
            cmd.status = "ok" if body.get("ok") is True else "refused"
            error = body.get("error")
            cmd.error = str(error)[:300] if error is not None else None
            booked = body.get("booked")
            cmd.booked = booked if isinstance(booked, bool) else None
            cmd.answered_at = now
            cmd.version = self._bump()

    def link(self, connected: bool, error: str | None = None) -> None:
        """The hub's own connection to the broker."""
        with self._cond:
            self.broker_connected, self.broker_error = connected, error
            self._bump()

    def begin(self, controller: str, socket: str, command: str, tokens: int | None = None,
              reason: str | None = None, request_id: str | None = None) -> CommandSent:
        """Note a command about to be sent (so its answer, however quick, finds it) with a fresh request id,
        or the page's own (one per action, so a repeated click books once)."""
        if command not in COMMANDS:
            raise ValueError(f"command must be one of {', '.join(COMMANDS)}")
        if request_id is not None and not REQUEST_ID.match(request_id):
            raise ValueError("request_id must be 8 to 64 letters, digits, '-' or '_'")
        now = self.clock.now()
        with self._cond:
            c = self._controllers.get(controller)
            if c is None:
                raise UnknownTarget(f"no controller {controller!r} has been seen on the broker")
            if (controller, socket) not in self._sockets:
                raise UnknownTarget(f"controller {controller!r} has published no socket {socket!r}")
            if c.status == OFFLINE:
                raise Refused(f"controller {controller!r} is offline: a command now would be lost")
            rid = request_id or f"hub-{secrets.token_hex(12)}"
            if rid in self._commands:
                raise Refused(f"request {rid} was sent before (its result: {self._commands[rid].status})")
            cmd = CommandSent(rid, controller, socket, command, tokens, reason, now)
            cmd.version = self._bump()
            self._commands[rid] = cmd
            while len(self._commands) > self._commands_max:
                self._commands.popitem(last=False)
            return cmd

    def replays_due(self) -> list[tuple[str, int, str]]:
        """(controller, from_seq, request_id) for each replay to ask now, noted as asked: the link sends them."""
        now = self.clock.now()
        with self._cond:
            due = [(name, first, f"replay-{secrets.token_hex(8)}") for name, first in self._sequences.due(now)]
            for name, _, rid in due:
                self._sequences.asked(name, rid, now)
            return due

    def replay_unsent(self, controller: str, request_id: str) -> None:
        with self._cond:
            self._sequences.unsent(controller, request_id)

    def forget(self, request_id: str) -> None:
        """A command that could not be sent after all."""
        with self._cond:
            if self._commands.pop(request_id, None) is not None:
                self._bump()

    def expire(self) -> int:
        """Mark the commands without an answer after the timeout; how many were marked now."""
        now = self.clock.now()
        with self._cond:
            late = [c for c in self._commands.values()
                    if c.status == "pending" and now - c.sent_at >= self.command_timeout_s]
            for c in late:
                c.status = "timeout"
                c.error = f"no response from {c.controller} within {self.command_timeout_s:g} s"
                c.version = self._bump()
            return len(late)

    def command(self, request_id: str) -> dict | None:
        self.expire()
        with self._cond:
            c = self._commands.get(request_id)
            return asdict(c) if c is not None else None

    @property
    def version(self) -> int:
        with self._cond:
            return self._version

    def wait(self, since: int, timeout_s: float) -> int:
        """Block until the version is past `since` or the timeout; the version then."""
        with self._cond:
            self._cond.wait_for(lambda: self._version > since, timeout_s)
            return self._version

    def _row(self, s: SocketSeen) -> dict:
        c = self._controllers[s.controller]
        return {**s.state, "controller": s.controller, "socket": s.socket, "key": f"{s.controller}/{s.socket}",
                "controller_status": c.status, "received_at": s.received_at}

    def rows(self, controller: str | None = None, relay: str | None = None, text: str | None = None) -> list[dict]:
        with self._cond:
            rows = [self._row(s) for _, s in sorted(self._sockets.items())]
        return [r for r in rows if matches(r, controller, relay, text)]

    def events_complete(self) -> dict:
        with self._cond:
            return self._sequences.summary()

    def controllers(self) -> list[dict]:
        with self._cond:
            return [{**asdict(c), **self._sequences.of(n)} for n, c in sorted(self._controllers.items())]

    def events(self, limit: int | None = None) -> list[dict]:
        """The recent events, newest first, each once."""
        with self._cond:
            found = [{**e.body, "received_at": e.received_at} for e in reversed(self._events)]
        return found[:limit] if limit is not None else found

    def commands(self) -> list[dict]:
        """The commands sent from here, newest first."""
        self.expire()
        with self._cond:
            return [asdict(c) for c in reversed(self._commands.values())]

    def receipts(self) -> list[StateReceipt]:
        """Per state message received (oldest first, the last `receipts_max`): its "at" and the receive time."""
        with self._cond:
            return list(self._receipts)

    def snapshot(self, controller: str | None = None, relay: str | None = None, text: str | None = None) -> dict:
        """Everything the page shows, the rows and totals filtered as asked."""
        self.expire()
        rows = self.rows(controller, relay, text)
        with self._cond:
            version, broker = self._version, {"connected": self.broker_connected, "error": self.broker_error}
            complete = self._sequences.summary()
        return {"version": version, "at": self.clock.now(), "broker": broker, "controllers": self.controllers(),
                "events_complete": complete, "rows": rows, "totals": totals(rows), "events": self.events(50),
                "commands": self.commands()[:50]}

    def changes(self, since: int) -> dict:
        """What changed after version `since`, for a live push: the rows and commands with a newer version, the
        keys of removed rows, the new events, and every controller (a handful)."""
        self.expire()
        with self._cond:
            version = self._version
            rows = [self._row(s) for _, s in sorted(self._sockets.items()) if s.version > since]
            removed = [f"{c}/{s}" for (c, s), v in self._removed.items() if v > since]
            events = [{**e.body, "received_at": e.received_at} for e in reversed(self._events) if e.version > since]
            commands = [asdict(c) for c in reversed(self._commands.values()) if c.version > since]
            broker = {"connected": self.broker_connected, "error": self.broker_error}
            complete = self._sequences.summary()
        return {"version": version, "since": since, "at": self.clock.now(), "broker": broker,
                "controllers": self.controllers(), "events_complete": complete, "rows": rows, "removed": removed,
                "events": events, "commands": commands}
