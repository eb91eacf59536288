"""The hub's live pushes: Socket.IO, as the controller's landlord page has them (payg/web/live.py).

A page connects to the /hub namespace with its landlord session (refused without one) and gets the whole
fleet once (`full`). After that one background task waits on the fleet's version and, when it moved, sends
every page what changed since the previous push: the rows and commands with a newer version, the keys of
removed rows, the new events, the controllers. Pushes are at most one per `min_interval_s`, so a burst of
states from 50 controllers is one message, not 500. The task also marks commands that timed out (once a
second at least), so a page learns of a timeout without asking. A session that lapsed, or was ended by
logout or a new password, loses its connections at the next push at the latest.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

from flask import request
from flask_socketio import ConnectionRefusedError as SocketRefused
from flask_socketio import SocketIO

from payg.hub.fleet import Fleet

log = logging.getLogger("payg.hub")

NAMESPACE = "/hub"
EVENT = "fleet"


class FleetPusher:
    def __init__(self, socketio: SocketIO, fleet: Fleet, landlord_key: Callable[[], str | None], sessions,
                 min_interval_s: float = 0.25):
        self.socketio, self.fleet = socketio, fleet
        self._landlord_key = landlord_key  # the request's landlord session key, or None
        self._sessions = sessions          # payg.web.sessions.Sessions
        self.min_interval_s = min_interval_s
        self._pages: dict[str, str] = {}   # connection id -> its session's key
        self._lock = threading.Lock()
        self._push_lock = threading.Lock() # a connect's full view and a push's changes never cross
        self._last = fleet.version         # the version the pages have
        self._stop = threading.Event()
        self.pushes = 0
        self._register()

    def _register(self) -> None:
        sio = self.socketio

        @sio.on("connect", namespace=NAMESPACE)
        def connect(*_):
            key = self._landlord_key()
            if key is None or not self._sessions.alive(key):
                raise SocketRefused("login required")
            with self._lock:
                self._pages[request.sid] = key
            with self._push_lock:
                sio.emit(EVENT, {**self.fleet.snapshot(), "full": True}, to=request.sid, namespace=NAMESPACE)

        @sio.on("disconnect", namespace=NAMESPACE)
        def disconnect(*_):
            with self._lock:
                self._pages.pop(request.sid, None)

    @property
    def pages(self) -> int:
        with self._lock:
            return len(self._pages)

    def push(self) -> bool:
        """Send the changes since the last push to every page, if there are any; True when something went."""
        self.fleet.expire()
        with self._lock:
            keys = set(self._pages.values())
        for key in keys:
            if not self._sessions.alive(key):
                self.end_session(key)
        with self._push_lock:
            if self.fleet.version <= self._last:
                return False
            changes = self.fleet.changes(self._last)
            self._last = changes["version"]
            if self.pages:
                self.socketio.emit(EVENT, {**changes, "full": False}, namespace=NAMESPACE)
        self.pushes += 1
        return True

    def end_session(self, key: str | None) -> None:
        """Close the pages of the session `key` (None: of every session), at once."""
        with self._lock:
            ended = [sid for sid, k in self._pages.items() if key is None or k == key]
            for sid in ended:
                self._pages.pop(sid, None)
        for sid in ended:
            try:
                self.socketio.server.disconnect(sid, namespace=NAMESPACE)
            except Exception:  # already gone
                log.debug("closing hub page %s", sid, exc_info=True)

    def start(self) -> None:
        self.socketio.start_background_task(self._run)

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.fleet.wait(self._last, 1.0)
            if self._stop.is_set():
                return
            try:
                self.push()
            except Exception:  # one failed push must not end the ones after it
                log.exception("hub: a live push failed")
            self._stop.wait(self.min_interval_s)
