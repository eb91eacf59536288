"""HttpPeerLink: JSON messages to other controllers over HTTP (the PeerLink port)."""

from __future__ import annotations

from payg.adapters.http import Unreachable, request_json
from payg.errors import LedgerUnavailable, error_from_reply


class HttpPeerLink:
    def __init__(self, timeout_s: float = 10.0):
        self.timeout_s = timeout_s

    def post(self, base_url: str, kind: str, payload: dict) -> dict:
        try:
            reply = request_json("POST", f"{base_url.rstrip('/')}/api/peer/{kind}", payload, timeout_s=self.timeout_s)
        except Unreachable as exc:
            raise LedgerUnavailable(f"peer {base_url} unreachable: {exc}") from exc
        if not reply.ok:
            raise error_from_reply(reply.status, reply.body)
        return reply.body
