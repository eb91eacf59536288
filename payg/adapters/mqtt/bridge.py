"""A controller on MQTT: retained states, the events outbox, Home Assistant discovery, and commands.

The metering tick only calls `publish(states)`, which compares each socket's payload with the last
one and notes what changed: no I/O, no waiting. One worker thread of the bridge does the rest:
sends the changed states (at most one per socket per poll interval), hands the outbox's events to
paho in seq order (QoS 1; a row is marked delivered once the broker acknowledged it, so a broker that
is down, slow or refusing the login keeps them, and a controller killed before the acknowledgement
sends them again: at least once, and in order), announces the sockets to Home Assistant, and runs the
commands that arrive. At most `window` messages wait for an acknowledgement at a time: a stalled
broker holds the states (one per socket, the newest) and the outbox rows where they are.

Delivered events are kept for `retention_s` ([mqtt] event_retention_h; pruned at most once an hour) so
that a `replay` command can send them again (replay.py), through the same window as the new ones.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

from payg.adapters.mqtt import client as mqtt_client
from payg.adapters.mqtt import discovery
from payg.adapters.mqtt.client import MQTT_ERR_NO_CONN, MQTT_ERR_SUCCESS, Connection
from payg.adapters.mqtt.outbox import Outbox, OutboxRow
from payg.adapters.mqtt.replay import Replays
from payg.adapters.mqtt.topics import (
    OFFLINE,
    ONLINE,
    BadCommand,
    Credit,
    Replay,
    Topics,
    encode,
    event_id,
    parse_command,
    parse_topic,
    response_payload,
    state_payload,
)
from payg.domain.money import TOKENS, MoneyUnit
from payg.domain.socket import SocketSnapshot
from payg.errors import InvalidAmount, UnknownSocket

log = logging.getLogger("payg.mqtt")

COMMAND_QUEUE_MAX = 1000
STATES_SUBSCRIPTION_S = 5.0  # how long after connecting the bridge listens for stale retained states
PRUNE_EVERY_S = 3600.0  # delivered events older than the retention are deleted at most this often
RETENTION_S = 168 * 3600.0  # [mqtt] event_retention_h's default


class Landlord(Protocol):
    """What commands do (payg.services.landlord.LandlordDesk matches it)."""

    def set_override(self, socket_id: str, mode: str | None) -> None: ...

    def adjust(self, socket_id: str, amount_tokens: int, reason: str, request_id: str) -> bool: ...


class MqttBridge:
    def __init__(self, conn: Connection, topics: Topics, sockets: dict[str, str], landlord: Landlord,
                 outbox: Outbox, *, discovery_prefix: str | None, version: str, min_interval_s: float,
                 window: int = 100, monotonic: Callable[[], float] = time.monotonic, money: MoneyUnit = TOKENS,
                 clock: Callable[[], float] = time.time, retention_s: float = RETENTION_S):
        self.conn, self.topics, self.sockets, self.landlord, self.outbox = conn, topics, dict(sockets), landlord, outbox
        self.discovery_prefix = discovery_prefix
        self.version = version
        self.money = money  # [tariff] currency: the state payload's "currency", the balance sensor's unit
        self.min_interval_s = min_interval_s
        self.window = window
        self.monotonic = monotonic
        self.clock = clock  # the controller's time: when an event was delivered, and which ones are old enough
        self.retention_s = retention_s
        self._replays = Replays(outbox)          # the worker thread's
        self._pruned_at: float | None = None     # monotonic
        self._cond = threading.Condition()
        self._compared: dict[str, dict] = {}     # the newest payload per socket, without its time
        self._latest: dict[str, dict] = {}       # the same with "at": what is sent
        self._sent: dict[str, dict] = {}         # the last payload handed to paho per socket
        self._sent_at: dict[str, float] = {}
        self._dirty: set[str] = set()
        self._commands: deque[tuple[str, bytes]] = deque()
        self._clears: set[str] = set()           # discovery topics of sockets no longer configured
        self._connected = False
        self._fresh = False                      # connected since the worker last looked
        self._stopping = False
        self._inflight: dict[int, int | None] = {}   # mid -> outbox row id (None: a state or a reply)
        self._early: set[int] = set()            # acknowledged before publish() returned its mid
        self._acked: list[int] = []              # outbox rows (ids) to mark delivered
        self._handed = 0                         # the seq of the last new outbox row handed to paho
        self._states_sub_until: float | None = None
        self.online = threading.Event()          # the broker has our "online" (so our subscriptions are in place)
        self._online_mid: int | None = None
        self.last_error: str | None = None
        self.counts = {"states": 0, "events": 0, "commands": 0, "refused": 0, "replayed": 0}
        self._client = mqtt_client.make_client(conn, on_connect=self._on_connect, on_disconnect=self._on_disconnect,
                                               on_message=self._on_message, on_publish=self._on_publish,
                                               will=(topics.status, OFFLINE.encode()))
        self._thread = threading.Thread(target=self._run, name="payg-mqtt", daemon=True)

    def publish(self, states: list[SocketSnapshot]) -> None:
        with self._cond:
            for state in states:
                body = state_payload(state, self.money.currency)
                sid = state.id
                if self._compared.get(sid) != body:
                    self._compared[sid] = body
                    self._latest[sid] = {**body, "at": state.updated_at}
                    self._dirty.add(sid)
            self._cond.notify()  # also: a tick may have written events

    def start(self) -> None:
        self._thread.start()
        mqtt_client.start(self._client, self.conn)

    def stop(self, timeout_s: float = 2.0) -> None:
        """Say offline (when connected), then disconnect; what is not acknowledged stays in the outbox."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join(timeout_s)
        if self._connected:
            info = self._client.publish(self.topics.status, OFFLINE, qos=1, retain=True)
            try:
                info.wait_for_publish(timeout_s)
            except (RuntimeError, ValueError):
                pass
        mqtt_client.stop(self._client)
        self._flush_acks()
        self.outbox.close()

    def status(self) -> dict:
        """connected, last_error, in_flight (events sent, not yet acknowledged), outbox (events waiting, those in
        flight included) and the counts of states, events and commands handled and commands refused."""
        with self._cond:
            status = {"connected": self._connected, "last_error": self.last_error, "in_flight": len(self._inflight),
                      **self.counts}
        return {**status, "outbox": self.outbox.pending()}

    def _on_connect(self, ok: bool, reason: str) -> None:
        if not ok:
            with self._cond:
                self.last_error = f"the broker refused the connection: {reason}"
            log.warning("MQTT: %s", self.last_error)
            return
        self._client.subscribe(self.topics.command, qos=1)
        # the retained states of sockets no longer configured, to clear them; left again once they came (our own
        # states would echo back every tick)
        self._client.subscribe(self.topics.state("+"), qos=1)
        if self.discovery_prefix:
            self._client.subscribe(discovery.subscription(self.discovery_prefix, self.topics.controller), qos=1)
        with self._cond:
            self._connected, self._fresh, self.last_error = True, True, None
            self._states_sub_until = self.monotonic() + STATES_SUBSCRIPTION_S
            self._cond.notify()
        log.info("MQTT: connected to %s:%s as %s", self.conn.host, self.conn.port, self.conn.client_id)

    def _on_disconnect(self, reason: str) -> None:
        with self._cond:
            was = self._connected
            self._connected = False
            self.online.clear()
            if was and not self._stopping:  # (a refused login keeps its own reason)
                self.last_error = f"disconnected: {reason}"
        if was and not self._stopping:
            log.warning("MQTT: disconnected (%s); retrying, billing goes on", reason)

    def _on_message(self, topic: str, payload: bytes, retained: bool) -> None:
        if topic == self.topics.command:
            if retained:  # a retained command would run again on every reconnect
                log.warning("MQTT: a retained command on %s ignored", topic)
                return
            with self._cond:
                if len(self._commands) >= COMMAND_QUEUE_MAX:
                    log.warning("MQTT: command queue full, a command dropped")
                    return
                self._commands.append((topic, payload))
                self._cond.notify()
            return
        if not payload:
            return
        if topic.endswith("/state"):
            parsed = parse_topic(self.topics.prefix, topic)
            # retained, or live: the last state the controller before this one published as it stopped can reach
            # the broker after this one's clear, and would then stay retained
            if parsed is not None and parsed[2] not in self.sockets:
                with self._cond:
                    self._clears.add(topic)
                    self._cond.notify()
            return
        if self.discovery_prefix:
            found = discovery.socket_of(self.discovery_prefix, self.topics.controller, topic)
            if found is not None and found[0] not in self.sockets:
                with self._cond:
                    self._clears.add(topic)
                    self._cond.notify()

    def _on_publish(self, mid: int) -> None:
        with self._cond:
            if mid == self._online_mid:
                self.online.set()
            if mid not in self._inflight:
                self._early.add(mid)
                return
            row = self._inflight.pop(mid)
            if row is not None:
                self._acked.append(row)
            self._cond.notify()

    def _run(self) -> None:
        last_flush = self.monotonic()
        while True:
            with self._cond:
                self._cond.wait(self._wait_s())
                if self._stopping:
                    return
                commands = list(self._commands)
                self._commands.clear()
                clears, self._clears = self._clears, set()
                fresh, self._fresh = self._fresh, False
                connected = self._connected
            try:
                for _topic, payload in commands:
                    self._command(payload)
                if not self._replays and (self._pruned_at is None
                                          or self.monotonic() - self._pruned_at >= PRUNE_EVERY_S):
                    self._prune()
                if not connected:
                    continue
                if fresh:
                    self._announce()
                for topic in clears:
                    self._send(topic, b"", retain=True)
                self._send_states()
                self._send_events()
                if self._states_sub_until is not None and self.monotonic() >= self._states_sub_until:
                    self._states_sub_until = None
                    self._client.unsubscribe(self.topics.state("+"))
                if self.monotonic() - last_flush >= 0.5:
                    self._flush_acks()
                    last_flush = self.monotonic()
            except Exception:  # the bridge must never stop: log it and go on at the next wake
                log.exception("MQTT bridge: unexpected error")

    def _wait_s(self) -> float:
        if self._commands or self._clears or self._fresh:
            return 0.0
        if self._dirty and self._connected:
            now = self.monotonic()
            due = min(self._sent_at.get(s, -1e18) + self.min_interval_s for s in self._dirty)
            return max(0.0, min(0.25, due - now))
        return 0.25

    def _room(self) -> int:
        with self._cond:
            return self.window - len(self._inflight)

    def _send(self, topic: str, payload: bytes, *, retain: bool = False, row: int | None = None) -> bool:
        info = self._client.publish(topic, payload, qos=1, retain=retain)
        if topic == self.topics.status and payload == ONLINE.encode():
            with self._cond:
                self._online_mid = info.mid
                if info.mid in self._early:
                    self.online.set()
        if info.rc not in (MQTT_ERR_SUCCESS, MQTT_ERR_NO_CONN):  # NO_CONN: paho keeps it and sends it on reconnect
            return False
        with self._cond:
            if info.mid in self._early:
                self._early.discard(info.mid)
                if row is not None:
                    self._acked.append(row)
            else:
                self._inflight[info.mid] = row
        return True

    def _announce(self) -> None:
        self._send(self.topics.status, ONLINE.encode(), retain=True)
        if self.discovery_prefix:
            for sid, name in self.sockets.items():
                for a in discovery.announcements(self.topics, self.discovery_prefix, sid, name, self.version,
                                                 self.money):
                    self._send(a.topic, encode(a.payload), retain=True)
        with self._cond:
            self._dirty |= set(self._latest)
            self._sent_at.clear()

    def _send_states(self) -> None:
        now = self.monotonic()
        with self._cond:
            due = [s for s in self._dirty if now - self._sent_at.get(s, -1e18) >= self.min_interval_s]
            room = self.window - len(self._inflight)
            due = due[:max(0, room)]
            bodies = {s: self._latest[s] for s in due}
        through = self._handed  # the last event handed to paho, before this state: a hub missing it asks for it
        for sid, body in bodies.items():
            if self._send(self.topics.state(sid), encode({**body, "events_through": through} if through else body),
                          retain=True):
                with self._cond:
                    self._sent[sid], self._sent_at[sid] = body, now
                    if self._latest.get(sid) is body:
                        self._dirty.discard(sid)
                    self.counts["states"] += 1

    def _send_events(self) -> None:
        """The new events, then a replay's in the room left; while a replay is under way the new ones take at most
        half the room (at least one message), so neither waits for the other to end."""
        room = self._room()
        if room <= 0:
            return
        for row in self.outbox.after(self._handed, max(1, room // 2) if self._replays else room):
            if not self._send(self.topics.events, encode(self._event(row)), row=row.id):
                return
            self._handed, room = row.seq, room - 1
            with self._cond:
                self.counts["events"] += 1
                if row.socket_id in self._latest:  # its state again, saying this one was sent ("events_through")
                    self._dirty.add(row.socket_id)
        for row in self._replays.due(room):
            if not self._send(self.topics.events, encode(self._event(row))):  # delivered before: nothing to mark
                return
            self._replays.sent(row)
            with self._cond:
                self.counts["replayed"] += 1

    def _event(self, row: OutboxRow) -> dict:
        return {**row.body, "id": event_id(self.topics.controller, row.uid), "seq": row.seq,
                "controller": self.topics.controller, "socket": row.socket_id, "kind": row.kind, "at": row.at}

    def _flush_acks(self) -> None:
        with self._cond:
            acked, self._acked = self._acked, []
        try:
            self.outbox.delivered(acked, self.clock())
        except Exception:
            log.exception("MQTT: could not mark delivered events (they will be sent again)")

    def _prune(self) -> None:
        self._pruned_at = self.monotonic()
        try:
            pruned = self.outbox.prune(self.clock() - self.retention_s)
        except Exception:
            log.exception("MQTT: could not prune delivered events (tried again in an hour)")
            return
        if pruned:
            log.info("MQTT: %d delivered events older than %g h pruned", pruned, self.retention_s / 3600)

    def _command(self, payload: bytes) -> None:
        try:
            cmd = parse_command(payload, frozenset(self.sockets))
            replay = self._replays.plan(cmd) if isinstance(cmd, Replay) else {}  # its response
        except BadCommand as exc:
            self._reply(response_payload(exc.request_id, False, exc.command, exc.socket, exc.reason))
            with self._cond:
                self.counts["refused"] += 1
            return
        if isinstance(cmd, Replay):
            log.info("MQTT: replay from seq %d (request %s): %d events", cmd.from_seq, cmd.request_id,
                     replay["replayed"])
            with self._cond:
                self.counts["commands"] += 1
            self._reply(replay)
            return
        booked = None
        try:
            if isinstance(cmd, Credit):
                booked = self.landlord.adjust(cmd.socket, cmd.tokens, cmd.reason, cmd.request_id)
            elif cmd.command == "force_off":
                self.landlord.set_override(cmd.socket, "off")
            else:
                self.landlord.set_override(cmd.socket, None)
        except (InvalidAmount, UnknownSocket, ValueError) as exc:
            self._reply(response_payload(cmd.request_id, False, cmd.command, cmd.socket, str(exc)))
            with self._cond:
                self.counts["refused"] += 1
            return
        except Exception as exc:
            log.exception("MQTT: command %s failed", cmd.command)
            self._reply(response_payload(cmd.request_id, False, cmd.command, cmd.socket,
                                         f"the controller could not do it: {type(exc).__name__}"))
            return
        log.info("MQTT: %s on %s (request %s)%s", cmd.command, cmd.socket, cmd.request_id,
                 "" if booked in (None, True) else ": booked before")
        with self._cond:
            self.counts["commands"] += 1
        self._reply(response_payload(cmd.request_id, True, cmd.command, cmd.socket, booked=booked))

    def _reply(self, body: dict) -> None:
        self._send(self.topics.response, encode(body))
