"""The hub's side of the broker: it subscribes to every controller's status, states, events and responses,
and sends the landlord's commands.

The wire format is topics.py's and stays here: a message is parsed (topic and JSON) on paho's thread and
handed to a `FleetSink` as plain values, so the fleet model (payg/hub, an entry point) never sees a topic
or bytes, and this adapter never imports it. A command is checked with the controllers' own parser
(`parse_command`) before it goes out, so a command the controller would refuse is refused here, at once,
with the same words. Commands are QoS 1 and never retained (a controller ignores a retained one).

The link also asks for missing events: after an event, and every `replay_check_s` on a thread of its own, it
sends the replays the sink says are due (`replays_due`: a gap in a controller's "seq", payg/hub/sequence.py)
with `send_replay`, and tells the sink of one that could not go out.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
from typing import Protocol

from payg.adapters.mqtt import client as mqtt_client
from payg.adapters.mqtt.client import MQTT_ERR_SUCCESS, Connection
from payg.adapters.mqtt.topics import OFFLINE, ONLINE, BadCommand, Topics, encode, parse_command, parse_topic

log = logging.getLogger("payg.hub")

MAX_PAYLOAD = 64 * 1024  # a state or event is a few hundred bytes; anything huge is not ours


class FleetSink(Protocol):
    """What the link feeds (payg.hub.fleet.Fleet matches it)."""

    def status(self, controller: str, value: str | None) -> None: ...

    def state(self, controller: str, socket: str, body: dict | None) -> None: ...

    def event(self, controller: str, body: dict) -> None: ...

    def response(self, controller: str, body: dict) -> None: ...

    def link(self, connected: bool, error: str | None = None) -> None: ...

    def replays_due(self) -> list[tuple[str, int, str]]:
        """(controller, from_seq, request_id) for each replay to send now, already noted as asked."""
        ...

    def replay_unsent(self, controller: str, request_id: str) -> None: ...


class NotConnected(ConnectionError):
    """The hub is not connected to the broker: a command sent now would wait in paho's queue for who knows
    how long, so none is sent."""


def subscriptions(prefix: str) -> list[tuple[str, int]]:
    """The hub's topics with the QoS it asks for each. States are "latest value wins": QoS 0, so the broker does
    not queue them in the hub's persistent session while the hub is away (at 1 Hz, 10,000 sockets would queue
    10,000 a second and fill `max_queued_messages` with states that the next one supersedes, crowding out the
    events); the retained state is what the hub gets on its return. Status, events and responses must all
    arrive: QoS 1, queued for the hub while it is away (and past the queue's limit, replayed by seq)."""
    return [*ingest_subscriptions(prefix), (f"{prefix}/+/response", 1)]


def ingest_subscriptions(prefix: str, share: str | None = None) -> list[tuple[str, int]]:
    """What the controllers publish by themselves (status, states, events), as `subscriptions` asks for them;
    with `share`, as members of the MQTT shared subscription `$share/<share>/...`: the broker hands each message
    to one member of the group, so hub workers split the fleet between them (payg/wiring/hub_workers.py)."""
    topics = [(f"{prefix}/+/status", 1), (f"{prefix}/+/+/state", 0), (f"{prefix}/+/events", 1)]
    return [(f"$share/{share}/{topic}", qos) for topic, qos in topics] if share else topics


def response_subscriptions(prefix: str) -> list[tuple[str, int]]:
    """The answers to the commands and replays this hub sends: never shared, the sender reads them."""
    return [(f"{prefix}/+/response", 1)]


def replay_body(from_seq: int, request_id: str) -> dict:
    """The controller re-publishes the events it keeps with seq >= from_seq (no "socket": it is the whole
    controller's)."""
    return {"command": "replay", "from_seq": from_seq, "request_id": request_id}


def command_body(command: str, socket: str, request_id: str, tokens: int | None = None,
                 reason: str | None = None) -> dict:
    body: dict = {"command": command, "socket": socket, "request_id": request_id}
    if tokens is not None:
        body["tokens"] = tokens
    if reason is not None:
        body["reason"] = reason
    return body


class HubLink:
    def __init__(self, conn: Connection, prefix: str, sink: FleetSink, replay_check_s: float | None = 1.0,
                 topics: list[tuple[str, int]] | None = None, drop: list[str] | None = None):
        """`topics`: what to subscribe to (default: `subscriptions(prefix)`, everything a hub reads); `drop`: topics
        to unsubscribe from first (the session is persistent: a hub that read everything itself before it had
        workers would go on receiving it); `replay_check_s` None: no replay checks (a worker's link, which holds
        no sequences)."""
        self.conn, self.prefix, self.sink = conn, prefix, sink
        self.replay_check_s = replay_check_s
        self.topics = subscriptions(prefix) if topics is None else topics
        self.drop = drop or []
        self._stopped = threading.Event()
        self._checker: threading.Thread | None = None
        self._lock = threading.Lock()
        self._connected = False
        self._stopping = False
        self.last_error: str | None = None
        self.ignored = 0  # messages not of the contract (bad JSON, unknown topic)
        self.ready = threading.Event()  # connected and the subscriptions acknowledged
        self._subscribe_mids: set[int] = set()
        # a persistent session: QoS 1 events sent while the hub is away (restarting, a broker restart) wait for it
        self._client = mqtt_client.make_client(conn, on_connect=self._on_connect, on_disconnect=self._on_disconnect,
                                               on_message=self._on_message, clean=False)
        self._client.on_subscribe = self._on_subscribe

    @property
    def connected(self) -> bool:
        with self._lock:
            return self._connected

    def start(self) -> None:
        """Connect in the background; a broker that is down is retried until it is up."""
        mqtt_client.start(self._client, self.conn)
        if self.replay_check_s is not None:
            self._checker = threading.Thread(target=self._check_replays, name="payg-hub-replays", daemon=True)
            self._checker.start()

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
        self._stopped.set()
        if self._checker is not None:
            self._checker.join(5)
        mqtt_client.stop(self._client)

    def send_replay(self, controller: str, from_seq: int, request_id: str | None = None) -> str:
        """Ask a controller to replay its events from `from_seq`; the request id (a fresh one unless given).
        NotConnected: the hub has no broker now."""
        rid = request_id or f"replay-{secrets.token_hex(8)}"
        if not self.connected:
            raise NotConnected("the hub is not connected to the broker")
        info = self._client.publish(Topics(self.prefix, controller).command, encode(replay_body(from_seq, rid)),
                                    qos=1, retain=False)
        if info.rc != MQTT_ERR_SUCCESS:
            raise NotConnected(f"the broker did not take the replay ({info.rc})")
        log.info("hub: asked %s to replay its events from seq %d (request %s)", controller, from_seq, rid)
        return rid

    def ask_replays(self) -> int:
        """Send the replays due now; how many went out."""
        if not self.connected:
            return 0
        sent = 0
        for controller, from_seq, rid in self.sink.replays_due():
            try:
                self.send_replay(controller, from_seq, rid)
                sent += 1
            except NotConnected as exc:
                log.warning("hub: the replay for %s was not sent (%s)", controller, exc)
                self.sink.replay_unsent(controller, rid)
        return sent

    def _check_replays(self) -> None:
        assert self.replay_check_s is not None
        while not self._stopped.wait(self.replay_check_s):
            try:
                self.ask_replays()
            except Exception:  # the check runs again in a second; it must not die
                log.exception("hub: the replay check failed")

    def send_command(self, controller: str, command: str, socket: str, request_id: str, tokens: int | None = None,
                     reason: str | None = None) -> None:
        """Publish a command to <prefix>/<controller>/command. ValueError: the controller would refuse it (the
        reason is its parser's); NotConnected: the hub has no broker now."""
        payload = encode(command_body(command, socket, request_id, tokens, reason))
        try:
            parse_command(payload, frozenset({socket}))
        except BadCommand as exc:
            raise ValueError(exc.reason) from None
        if not self.connected:
            raise NotConnected("the hub is not connected to the broker")
        info = self._client.publish(Topics(self.prefix, controller).command, payload, qos=1, retain=False)
        if info.rc != MQTT_ERR_SUCCESS:
            raise NotConnected(f"the broker did not take the command ({info.rc})")
        log.info("hub: %s on %s/%s sent (request %s)", command, controller, socket, request_id)

    def _on_connect(self, ok: bool, reason: str) -> None:
        if not ok:
            with self._lock:
                self.last_error = f"the broker refused the connection: {reason}"
            log.warning("hub: %s", self.last_error)
            self.sink.link(False, self.last_error)
            return
        if self.drop:
            self._client.unsubscribe(self.drop)
        result, mid = self._client.subscribe(self.topics)
        with self._lock:
            self._connected, self.last_error = True, None
            if result == MQTT_ERR_SUCCESS and mid is not None:
                self._subscribe_mids.add(mid)
        log.info("hub: connected to %s:%s as %s", self.conn.host, self.conn.port, self.conn.client_id)
        self.sink.link(True, None)

    def _on_subscribe(self, _client, _userdata, mid, reason_codes, _props=None) -> None:
        with self._lock:
            ours = mid in self._subscribe_mids
            self._subscribe_mids.discard(mid)
        refused = [str(r) for r in reason_codes if getattr(r, "is_failure", False)]
        if refused:  # the ACL lets this user read nothing of payg: say so, the table would stay empty
            log.error("hub: the broker refused the subscriptions (%s): is the hub's user a command user in the "
                      "ACL (payg mqtt-acl)?", ", ".join(refused))
        elif ours:
            self.ready.set()

    def _on_disconnect(self, reason: str) -> None:
        with self._lock:
            was = self._connected
            self._connected = False
            self.ready.clear()
            if was:
                self.last_error = f"disconnected: {reason}"
            error, stopping = self.last_error, self._stopping
        if was and not stopping:
            log.warning("hub: disconnected from the broker (%s); retrying", reason)
        if was:
            self.sink.link(False, error)

    def _on_message(self, topic: str, payload: bytes, retained: bool) -> None:
        try:
            self._handle(topic, payload)
        except Exception:  # a bad message must never stop the others (paho's thread is everyone's)
            log.exception("hub: a message on %s could not be handled", topic)

    def _handle(self, topic: str, payload: bytes) -> None:
        found = parse_topic(self.prefix, topic)
        if found is None or len(payload) > MAX_PAYLOAD:
            self._ignore(topic, "not a topic of the contract" if found is None else "too large")
            return
        controller, what, socket = found
        if what == "status":
            text = payload.decode("utf-8", "replace").strip()
            self.sink.status(controller, text if text in (ONLINE, OFFLINE) else None)
            return
        if what == "state" and not payload:  # a retained state cleared: the socket is gone
            assert socket is not None
            self.sink.state(controller, socket, None)
            return
        try:
            body = json.loads(payload.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            body = None
        if not isinstance(body, dict):
            self._ignore(topic, "not a JSON object")
            return
        if what == "state":
            assert socket is not None
            self.sink.state(controller, socket, body)
        elif what == "events":
            self.sink.event(controller, body)
            if self.replay_check_s is not None:
                self.ask_replays()
        elif what == "response":
            self.sink.response(controller, body)

    def _ignore(self, topic: str, why: str) -> None:
        with self._lock:
            self.ignored += 1
        log.debug("hub: ignored a message on %s (%s)", topic, why)


def forget_session(conn: Connection, timeout_s: float = 10.0) -> bool:
    """Make the broker drop the persistent session of `conn.client_id` (its subscriptions and its queue): connect
    under that id with a clean session, then leave. True once done; False when the broker could not be reached.
    For a hub worker that is no more, whose shared subscriptions would go on taking its part of the messages."""
    done = threading.Event()

    def connected(ok: bool, _reason: str) -> None:
        if ok:
            done.set()

    client = mqtt_client.make_client(conn, on_connect=connected, on_disconnect=lambda _reason: None, clean=True)
    mqtt_client.start(client, conn)
    try:
        return done.wait(timeout_s)
    finally:
        mqtt_client.stop(client)
