"""HttpPeerLink: JSON messages to other controllers over HTTP (the PeerLink port), with urllib."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from payg import errors

MAX_REPLY_BYTES = 1 << 20


def error_from_reply(status: int, body: dict) -> errors.PaygError:
    """The payg error a peer raised, rebuilt from its reply ({"error": class name, "message": ...})."""
    name = str(body.get("error", ""))
    message = str(body.get("message", f"HTTP {status}"))
    return errors.error_named(name, message) or errors.LedgerUnavailable(
        f"peer answered HTTP {status}: {name or 'error'}: {message}")


class HttpPeerLink:
    def __init__(self, timeout_s: float = 10.0):
        self.timeout_s = timeout_s

    def post(self, base_url: str, kind: str, payload: dict) -> dict:
        url = f"{base_url.rstrip('/')}/api/peer/{kind}"
        request = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as reply:
                return json.loads(reply.read(MAX_REPLY_BYTES) or b"{}")
        except urllib.error.HTTPError as exc:
            try:
                body = json.loads(exc.read(MAX_REPLY_BYTES) or b"{}")
            except ValueError:
                body = {}
            raise error_from_reply(exc.code, body if isinstance(body, dict) else {}) from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise errors.LedgerUnavailable(f"peer {base_url} unreachable: {exc}") from exc
