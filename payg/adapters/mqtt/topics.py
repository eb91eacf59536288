"""The MQTT contract between a controller and whoever listens (Home Assistant, the hub, a script).

Topics under <prefix>/<controller>/ (prefix "payg" unless configured):

    status              "online" / "offline", retained; "offline" is the connection's last will
    <socket>/state      the socket's state, JSON, retained (STATE_KEYS, "name": the socket's name as configured,
                        "currency": the code its amounts' minor unit is of, or null for tokens, "debt" when owed,
                        and "at": the controller's time of that state); sent when something but "at" changed
    events              JSON, QoS 1, not retained: {"id", "seq", "controller", "socket", "kind", "at", ...}; "id" is
                        unique and the same on every redelivery, so a subscriber drops duplicates by it; "seq"
                        grows with every event of the controller (the order they happened in)
    command             JSON, from a broker user of [mqtt] command_users (the broker's ACL enforces it):
                        {"command": "force_off" | "automatic" | "credit", "socket", "request_id",
                         "tokens" and "reason" for credit}
    response            JSON, one per command: {"request_id", "ok", "command", "socket", "error"?, "booked"?}

Everything here is pure: topic names, and payloads to and from bytes.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from payg import serialize
from payg.domain.socket import SocketSnapshot

STATE_KEYS = ("name", "balance", "balance_tokens", "relay", "power_w", "voltage_v", "current_a", "energy_wh",
              "meter", "override", "credit_exhausted")
COMMANDS = ("force_off", "automatic", "credit")
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


def parse_command(payload: bytes, sockets: set[str] | frozenset[str]) -> Command | Credit:
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
    socket_s = socket if isinstance(socket, str) and socket in sockets else None

    def bad(reason: str) -> BadCommand:
        return BadCommand(reason, echo, command_s, socket_s)

    if rid is not None and not rid_ok:
        raise bad("request_id must be 1 to 64 letters, digits or ._:-")
    unknown = set(body) - {"command", "socket", "request_id", "tokens", "reason"}
    if unknown:
        raise bad(f"unknown field(s): {', '.join(sorted(unknown))}")
    if command_s is None:
        raise bad(f"command must be one of {', '.join(COMMANDS)}")
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


def response_payload(request_id: str | None, ok: bool, command: str | None, socket: str | None,
                     error: str | None = None, booked: bool | None = None) -> dict:
    body: dict = {"request_id": request_id, "ok": ok, "command": command, "socket": socket}
    if error is not None:
        body["error"] = error
    if booked is not None:
        body["booked"] = booked
    return body
