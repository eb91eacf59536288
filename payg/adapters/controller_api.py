"""ControllerApi: the running controller's JSON API, as the `payg` commands on its machine call it.

They authenticate with the API token the controller keeps in its data directory (readable
only by the user that runs it); without it the API answers 401.
"""

from __future__ import annotations

from pathlib import Path

from payg.adapters.http import Reply, request_json
from payg.adapters.secrets import API_TOKEN_FILE
from payg.domain.settings import Config
from payg.errors import Unreachable

__all__ = ["ControllerApi", "Unreachable"]


class ControllerApi:
    def __init__(self, config: Config):
        self.config = config
        host = "127.0.0.1" if config.web.host in ("0.0.0.0", "::", "") else config.web.host
        if ":" in host:
            host = f"[{host}]"
        self.url = f"http://{host}:{config.web.port}"

    @property
    def token_file(self) -> Path:
        return self.config.controller.data_dir / API_TOKEN_FILE

    def _token(self) -> str | None:
        try:
            return self.token_file.read_text(encoding="ascii").strip() or None
        except OSError:
            return None

    def request(self, method: str, path: str, body: dict | None = None, timeout_s: float = 60.0,
                headers: dict[str, str] | None = None) -> Reply:
        """The controller's answer; raises Unreachable when no controller answers."""
        token = self._token()
        headers = {"Content-Type": "application/json", **(headers or {})}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return request_json(method, self.url + path, body, headers=headers, timeout_s=timeout_s)

    def states(self, timeout_s: float = 2.0) -> list[dict] | None:
        """Every socket's live state, or None when the controller does not answer (or another one answers)."""
        if not self.config.web.enabled:
            return None
        try:
            reply = self.request("GET", "/api/sockets", timeout_s=timeout_s)
        except Unreachable:
            return None
        states = reply.body
        if not reply.ok or not isinstance(states, list) or not all(isinstance(st, dict) for st in states):
            return None
        if sorted(str(st.get("id")) for st in states) != sorted(s.id for s in self.config.sockets):
            return None
        return states
