"""The MQTT contract between a controller and whoever listens (Home Assistant, the hub, a script).

Topics under <prefix>/<controller>/ (prefix "payg" unless configured):

    status              "online" / "offline", retained; "offline" is the connection's last will
    <socket>/state      the socket's state, JSON, retained (STATE_KEYS, "name": the socket's name as configured,
                        "currency": the code its amounts' minor unit is of, or null for tokens, "debt" when owed,
                        "at": the controller's time of that state, and "events_through": the seq of the last
                        event it had sent before this state, once it sent one since it started); sent when
                        something but "at" changed, and again after an event of that socket is sent
    events              JSON, QoS 1, not retained: {"id", "seq", "controller", "socket", "kind", "at", ...}; "id" is
                        unique and the same on every redelivery, so a subscriber drops duplicates by it; "seq" is
                        1 for the controller's first event and 1 more for each next one, in the order they
                        happened: no gaps, never reused, through restarts (the journal keeps it), so a subscriber
                        that sees a seq jump knows it missed events and asks for them (replay)
    command             JSON, from a broker user of [mqtt] command_users (the broker's ACL enforces it):
                        {"command": "force_off" | "automatic" | "credit", "socket", "request_id",
                         "tokens" and "reason" for credit}, or {"command": "replay", "from_seq", "request_id"}
                        (no socket; from_seq a whole number >= 1): the events kept with seq >= from_seq sent
                        again on the events topic, in seq order, each exactly as first sent (same "id" and
                        "seq"), QoS 1, beside the new ones; at most 10,000 per command (REPLAY_MAX_ROWS: ask
                        again from the next seq for more). An event is kept for [mqtt] event_retention_h (7 days
                        unless configured) once the broker acknowledged it; one not acknowledged yet, until it is
    response            JSON, one per command: {"request_id", "ok", "command", "socket", "error"?, "booked"?};
                        for a replay {"request_id", "ok": true, "command": "replay", "from_seq", "oldest_seq"
                        (the oldest seq still kept, null when none is), "last_seq" (the last seq given, 0 before
                        the first event), "replayed" (how many events follow: those from max(from_seq,
                        oldest_seq) to last_seq, at most 10,000)}; a refused replay is answered as any other
                        refusal ("socket" null)

Everything here is pure: topic names, and payloads to and from bytes.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from payg import serialize
from payg.domain.socket import SocketSnapshot

STATE_KEYS = ("name", "balance", "balance_tokens", "relay", "power_w", "voltage_v", "current_a", "energy_wh",
              "meter", "override", "credit_exhausted")
COMMANDS = ("force_off", "automatic", "credit", "replay")
REPLAY_MAX_ROWS = 10_000  # events one replay command sends at most
SEQ_MAX = 2**63 - 1  # SQLite's largest integer
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
REASON_MAX = 200
CREDIT_MAX_TOKENS = 10**9
ONLINE, OFFLINE = "online", "offline"


@dataclass(frozen=True)
class Topics:
    prefix: str
    controller: str

    @property
    def base(self) -> str:
        return f"{self.prefix}/{self.controller}"

    @property
    def status(self) -> str:
        return f"{self.base}/status"

    def state(self, socket_id: str) -> str:
        return f"{self.base}/{socket_id}/state"

    @property
    def events(self) -> str:
        return f"{self.base}/events"

    @property
    def command(self) -> str:
        return f"{self.base}/command"

    @property
    def response(self) -> str:
        return f"{self.base}/response"


def parse_topic(prefix: str, topic: str) -> tuple[str, str, str | None] | None:
    """(controller, what, socket) of a topic under the prefix: what is status, state, events, command or
    response; None for anything else."""
    if not topic.startswith(prefix + "/"):
        return None
    parts = topic[len(prefix) + 1:].split("/")
    if len(parts) == 2 and parts[1] in ("status", "events", "command", "response"):
        return parts[0], parts[1], None
    if len(parts) == 3 and parts[2] == "state":
        return parts[0], "state", parts[1]
    return None


def state_payload(state: SocketSnapshot, currency: str | None = None) -> dict[str, Any]:
    """What goes on a socket's state topic: the JSON API's keys that describe it now, the currency its amounts are
    in (`[tariff] currency`: balance and debt in its minor unit; None: tokens); debt only when owed."""
    api = serialize.socket_state(state)
    body = {key: api[key] for key in STATE_KEYS}
    body["currency"] = currency
    if state.balance.debt:
        body["debt"] = api["debt"]
        body["debt_tokens"] = api["debt_tokens"]
    return body


def encode(body: dict) -> bytes:
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


def event_id(controller: str, outbox_uid: str) -> str:
    return f"{controller}:{outbox_uid}"


class BadCommand(ValueError):
    """A command payload refused, with the reason sent back on the response topic."""

    def __init__(self, reason: str, request_id: str | None = None, command: str | None = None,
                 socket: str | None = None):
        super().__init__(reason)
        self.reason, self.request_id, self.command, self.socket = reason, request_id, command, socket


@dataclass(frozen=True)
class Command:
    """force_off or automatic: the socket's override."""

    command: str
    socket: str
    request_id: str | None


@dataclass(frozen=True)
class Credit:
    """A manual credit (or debit, tokens < 0), booked once per request id."""

    socket: str
    request_id: str
    tokens: int
    reason: str
    command: Literal["credit"] = field(default="credit", init=False)


@dataclass(frozen=True)
class Replay:
    """The events kept from a seq on, sent again."""

    from_seq: int
    request_id: str | None
    command: Literal["replay"] = field(default="replay", init=False)


def parse_command(payload: bytes, sockets: set[str] | frozenset[str]) -> Command | Credit | Replay:
    """A command checked field by field; BadCommand says what is wrong (and echoes a usable request id)."""
    try:
        body = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise BadCommand("the payload is not JSON") from None
    if not isinstance(body, dict):
        raise BadCommand("the payload is not a JSON object")
    rid = body.get("request_id")
    rid_ok = isinstance(rid, str) and REQUEST_ID.match(rid) is not None
    echo = rid if rid_ok else None
    command, socket = body.get("command"), body.get("socket")
    command_s = command if isinstance(command, str) and command in COMMANDS else None
    socket_s = socket if isinstance(socket, str) and socket in sockets and command_s != "replay" else None

    def bad(reason: str) -> BadCommand:
        return BadCommand(reason, echo, command_s, socket_s)

    if rid is not None and not rid_ok:
        raise bad("request_id must be 1 to 64 letters, digits or ._:-")
    unknown = set(body) - {"command", "socket", "request_id", "tokens", "reason", "from_seq"}
    if unknown:
        raise bad(f"unknown field(s): {', '.join(sorted(unknown))}")
    if command_s is None:
        raise bad(f"command must be one of {', '.join(COMMANDS)}")
    if command_s == "replay":
        return _replay(body, bad, echo)
    if "from_seq" in body:
        raise bad(f"{command_s} takes no from_seq")
    if socket_s is None:
        raise bad("socket must be the id of one of this controller's sockets")
    if command_s != "credit":
        if "tokens" in body or "reason" in body:
            raise bad(f"{command_s} takes no tokens or reason")
        return Command(command_s, socket_s, echo)
    tokens, reason = body.get("tokens"), body.get("reason")
    if rid is None:
        raise bad("a credit needs a request_id (a repeated id books once)")
    if isinstance(tokens, float) and math.isfinite(tokens) and tokens.is_integer():
        tokens = int(tokens)
    if (not isinstance(tokens, int) or isinstance(tokens, bool) or tokens == 0
            or abs(tokens) > CREDIT_MAX_TOKENS):
        raise bad(f"tokens must be a whole number of tokens, not 0, at most {CREDIT_MAX_TOKENS:,} either way")
    if not isinstance(reason, str) or not reason.strip() or len(reason) > REASON_MAX:
        raise bad(f"a credit needs a reason (1 to {REASON_MAX} characters)")
    return Credit(socket_s, rid, tokens, reason.strip())


def _replay(body: dict, bad: Callable[[str], BadCommand], request_id: str | None) -> Replay:
    if set(body) & {"socket", "tokens", "reason"}:
        raise bad("replay takes no socket, tokens or reason")
    from_seq = body.get("from_seq")
    if not isinstance(from_seq, int) or isinstance(from_seq, bool) or not 1 <= from_seq <= SEQ_MAX:
        raise bad("replay needs from_seq, a whole number from 1 (the first seq to send again)")
    return Replay(from_seq, request_id)


def replay_response(request_id: str | None, from_seq: int, oldest_seq: int | None, last_seq: int,
                    replayed: int) -> dict:
    return {"request_id": request_id, "ok": True, "command": "replay", "from_seq": from_seq,
            "oldest_seq": oldest_seq, "last_seq": last_seq, "replayed": replayed}


def response_payload(request_id: str | None, ok: bool, command: str | None, socket: str | None,
                     error: str | None = None, booked: bool | None = None) -> dict:
    body: dict = {"request_id": request_id, "ok": ok, "command": command, "socket": socket}
    if error is not None:
        body["error"] = error
    if booked is not None:
        body["booked"] = booked
    return body
