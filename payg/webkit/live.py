"""The landlord's live pages in one Socket.IO namespace, each connection tied to its session.

A page connects with its landlord session or is refused. Its connection closes the moment the session ends
(logout, a new password: `Sessions.on_end`), or at the app's next push once the session lapsed (idle, too
old), so no landlord data reaches a page whose session is over.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from flask import Flask, request
from flask_socketio import ConnectionRefusedError as Refused  # type: ignore[attr-defined]  # absent from the stubs
from flask_socketio import SocketIO, disconnect

from payg.webkit.sessions import Sessions

log = logging.getLogger("payg.web")


def connection() -> str:
    """The Socket.IO connection a handler runs for."""
    return request.sid  # type: ignore[attr-defined]  # set by Flask-SocketIO, unknown to Flask's types


class LandlordPages:
    """Registers the namespace's connect and disconnect; `welcome(sid)` runs for an admitted connection."""

    def __init__(self, app: Flask, socketio: SocketIO, namespace: str, landlord_key: Callable[[], str | None],
                 sessions: Sessions, welcome: Callable[[str], None]):
        self.app, self.namespace = app, namespace
        self._landlord_key = landlord_key  # the request's landlord session key, or None
        self._sessions = sessions
        self._pages: dict[str, str] = {}  # connection id -> its session's key
        self._lock = threading.Lock()
        sessions.on_end(self.end_session)

        @socketio.on("connect", namespace=namespace)
        def connect(*_: object) -> None:
            key = self._landlord_key()
            if key is None or not self._sessions.alive(key):
                raise Refused("login required")
            with self._lock:
                self._pages[connection()] = key
            welcome(connection())

        @socketio.on("disconnect", namespace=namespace)
        def gone(*_: object) -> None:
            with self._lock:
                self._pages.pop(connection(), None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._pages)

    def drop_lapsed(self) -> None:
        """Close the pages whose session is no longer current."""
        with self._lock:
            keys = set(self._pages.values())
        for key in keys:
            if not self._sessions.alive(key):
                self.end_session(key)

    def end_session(self, key: str | None) -> None:
        """Close the pages of the session `key` (None: of every session), at once."""
        with self._lock:
            ended = [sid for sid, k in self._pages.items() if key is None or k == key]
            for sid in ended:
                self._pages.pop(sid, None)
        with self.app.app_context():  # a push's thread has none
            for sid in ended:
                try:
                    disconnect(sid=sid, namespace=self.namespace)
                except Exception:  # already gone
                    log.debug("closing landlord page %s", sid, exc_info=True)
