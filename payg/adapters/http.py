"""The one JSON-over-HTTP client payg has (urllib): peers, and the `payg` commands talking to a controller.

`request_json` answers every HTTP status with its JSON body (an error reply is data:
the caller decides what it means, usually `payg.errors.error_from_reply`) and raises
Unreachable when no usable answer came back (no connection, a timeout, a body that is
not JSON).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from payg.errors import Unreachable

__all__ = ["Reply", "Unreachable", "request_json"]

MAX_REPLY_BYTES = 1 << 20


@dataclass(frozen=True)
class Reply:
    status: int
    body: Any  # the decoded JSON ({} for an error reply without a JSON body)
    reason: str = ""  # the HTTP reason phrase

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def request_json(method: str, url: str, body: Any = None, *, headers: dict[str, str] | None = None,
                 timeout_s: float = 10.0) -> Reply:
    # Imported here: every controller makes a peer link, few ever send on it (urllib.request is ~5 ms of a start).
    import urllib.error
    import urllib.request

    data = None if body is None else json.dumps(body).encode()
    all_headers = {"Content-Type": "application/json"} if data is not None else {}
    all_headers.update(headers or {})
    request = urllib.request.Request(url, data=data, method=method, headers=all_headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as reply:
            return Reply(reply.status, json.loads(reply.read(MAX_REPLY_BYTES) or b"{}"))
    except urllib.error.HTTPError as exc:
        try:
            answer = json.loads(exc.read(MAX_REPLY_BYTES) or b"{}")
        except ValueError:
            answer = {}
        return Reply(exc.code, answer, str(exc.reason))
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise _unreachable(exc) from exc


def _unreachable(exc: Exception) -> Unreachable:
    """What went wrong in words, not urllib's `<urlopen error [Errno 111] Connection refused>`."""
    import urllib.error

    cause = exc.reason if isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, Exception) else exc
    if isinstance(cause, ConnectionRefusedError):
        return Unreachable("connection refused", refused=True)
    if isinstance(cause, TimeoutError):
        return Unreachable("no answer in time")
    if isinstance(cause, (json.JSONDecodeError, UnicodeDecodeError)):
        return Unreachable("the answer is not JSON")
    if isinstance(cause, OSError) and cause.strerror:
        return Unreachable(cause.strerror.lower())
    return Unreachable(str(cause))
