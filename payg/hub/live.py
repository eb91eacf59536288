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

from payg.hub.fleet import Fleet
from payg.webkit.app import Kit
from payg.webkit.live import LandlordPages

log = logging.getLogger("payg.hub")

NAMESPACE = "/hub"
EVENT = "fleet"


class FleetPusher:
    def __init__(self, kit: Kit, fleet: Fleet, min_interval_s: float = 0.25):
        self.socketio, self.fleet = kit.socketio, fleet
        self.min_interval_s = min_interval_s
        self._push_lock = threading.Lock()  # a connect's full view and a push's changes never cross
        self._last = fleet.version          # the version the pages have
        self._stop = threading.Event()
        self.pushes = 0
        self.landlords = LandlordPages(kit.app, kit.socketio, NAMESPACE, kit.guard.landlord_key, kit.sessions,
                                       self._welcome)

    def _welcome(self, sid: str) -> None:
        with self._push_lock:
            self.socketio.emit(EVENT, {**self.fleet.snapshot(), "full": True}, to=sid, namespace=NAMESPACE)

    @property
    def pages(self) -> int:
        return len(self.landlords)

    def push(self) -> bool:
        """Send the changes since the last push to every page, if there are any; True when something went."""
        self.fleet.expire()
        self.landlords.drop_lapsed()
        with self._push_lock:
            version = self.fleet.version
            if version <= self._last:
                return False
            if not self.pages:  # nobody to tell (a page that connects gets the whole fleet): no changes made up
                self._last = version
                return False
            changes = self.fleet.changes(self._last)
            self._last = changes["version"]
            if self.pages:
                self.socketio.emit(EVENT, {**changes, "full": False}, namespace=NAMESPACE)
        self.pushes += 1
        return True

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
