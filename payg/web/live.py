"""Live pages: the last hour of history and the Socket.IO pushes (the views are payg/services/dashboard.py's).

Metering calls `LiveHub.publish` once per tick (and when a credit or an override
re-decides a relay). That call only hands the states over; a background task of the hub
builds the views and emits them, so a slow browser never slows the metering loop, and
pushes that pile up while one is being sent collapse into the latest.

Per push: ONE `states` event to the landlord namespace (batched, not one per socket), and
one `state` event per socket that a tenant page is watching. A landlord page gets every
socket's view once when it connects (`full`), then only the views that changed since the
previous push: with 200 sockets, most of them idle, that is a few KB a second, not 100.
"""

from __future__ import annotations

import logging
import math
import threading
from array import array
from threading import Thread

from flask import request
from flask_socketio import join_room, leave_room

from payg import serialize
from payg.domain.socket import SocketSnapshot
from payg.services.dashboard import Dashboard, ViewSettings, socket_view
from payg.services.metering import Metering
from payg.webkit.app import Kit
from payg.webkit.live import LandlordPages

log = logging.getLogger("payg.web")

HISTORY_S = 3600
HISTORY_STEP_S = 10.0   # one point per socket every 10 s is kept for the chart's first draw
LANDLORD_NS = "/landlord"


class History:
    """The last hour of (time, power, balance) per socket, one point per HISTORY_STEP_S.

    Kept as three arrays of doubles per socket (24 bytes a point; tuples of Python floats
    would take over 100), NaN standing for "no reading"."""

    def __init__(self, span_s: float = HISTORY_S, step_s: float = HISTORY_STEP_S):
        self.span_s, self.step_s = span_s, step_s
        self.max_points = int(span_s / step_s) + 2
        self._series: dict[str, tuple[array, array, array]] = {}
        self._lock = threading.Lock()

    def record(self, views: list[dict]) -> None:
        with self._lock:
            for v in views:
                series = self._series.get(v["id"])
                if series is None:
                    series = self._series[v["id"]] = (array("d"), array("d"), array("d"))
                t, power, balance = series
                at = v["updated_at"]
                if t and at - t[-1] < self.step_s:
                    continue
                t.append(at)
                power.append(math.nan if v["power_w"] is None else v["power_w"])
                balance.append(v["balance_tokens"])
                if len(t) > self.max_points:
                    for a in series:
                        del a[0]

    def of(self, socket_id: str, now: float) -> dict:
        with self._lock:
            t, power, balance = self._series.get(socket_id, ((), (), ()))
            keep = [i for i, at in enumerate(t) if at >= now - self.span_s]
            return {"t": [t[i] for i in keep],
                    "power_w": [None if math.isnan(power[i]) else power[i] for i in keep],
                    "balance_tokens": [_number(balance[i]) for i in keep]}


def _number(x: float) -> int | float:
    return int(x) if x.is_integer() else x


def _same(a: dict | None, b: dict) -> bool:
    """The same view but for its time stamp."""
    return a is not None and all(a.get(k) == v for k, v in b.items() if k != "updated_at")


class LiveHub:
    """The StatePublisher for browsers (see the module's docstring)."""

    def __init__(self, kit: Kit, metering: Metering, dashboard: Dashboard, settings: ViewSettings,
                 addresses: dict[str, str] | None = None):
        self.socketio = socketio = kit.socketio
        self.metering = metering
        self.dashboard = dashboard
        self.settings = settings
        self.addresses = addresses or {}  # top-up address per socket, shown with the QR code
        self.history = History()
        self.pushes = 0
        self._pending: list[SocketSnapshot] | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._task: Thread | None = None
        self._watched: dict[str, int] = {}   # socket id -> tenant connections watching it
        self._watching: dict[str, str] = {}  # connection id -> the socket it watches
        self._sent: dict[str, dict] = {}     # the views the landlord pages have, by socket id
        self._lock = threading.Lock()
        self._push_lock = threading.Lock()   # a connect's full table and a push's changes never cross
        self.landlords = LandlordPages(kit.app, socketio, LANDLORD_NS, kit.guard.landlord_key, kit.sessions,
                                       self._welcome)
        self._register()

    def publish(self, states: list[SocketSnapshot]) -> None:
        self._pending = states
        self._wake.set()

    def views(self, states: list[SocketSnapshot] | None = None) -> list[dict]:
        if states is None:
            states = self.metering.states()
        return [self._view(st) for st in states]

    def view(self, socket_id: str) -> dict:
        return self._view(self.metering.state(socket_id))

    def _view(self, state: SocketSnapshot) -> dict:
        view = serialize.socket_view(socket_view(state, self.dashboard, self.settings))
        view["address"] = self.addresses.get(state.id)
        return view

    def flush(self) -> bool:
        """Build and emit the latest published states, if any. True when something was pushed."""
        states, self._pending = self._pending, None
        if states is None:
            return False
        self.dashboard.refresh()
        views = self.views(states)
        self.history.record(views)
        now = self.metering.clock.now()
        with self._lock:
            watched = set(self._watched)
        self.landlords.drop_lapsed()
        landlords = len(self.landlords)
        at = views[0]["updated_at"] if views else now
        with self._push_lock:
            changed = [v for v in views if not _same(self._sent.get(v["id"]), v)]
            for v in changed:
                self._sent[v["id"]] = v
            if landlords:
                self.socketio.emit("states", {"at": at, "full": False, "views": changed}, namespace=LANDLORD_NS)
        for v in views:
            if v["id"] in watched:
                self.socketio.emit("state", v, to=f"socket:{v['id']}")
        self.pushes += 1
        return True

    def start(self) -> None:
        self._task = self.socketio.start_background_task(self._run)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait()
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.flush()
            except Exception:  # a push that fails must not end the pushes that follow
                log.exception("pushing live state failed")

    def _welcome(self, sid: str) -> None:
        """A landlord page's first message: every socket's view."""
        with self._push_lock:
            if len(self._sent) == len(self.metering.sockets):
                views = list(self._sent.values())   # what the next push's changes are relative to
            else:
                self.dashboard.refresh()
                views = self.views()
            self.socketio.emit("states", {"at": self.metering.clock.now(), "full": True, "views": views},
                               to=sid, namespace=LANDLORD_NS)

    def _register(self) -> None:
        sio = self.socketio

        @sio.on("watch")
        def watch(data):
            socket_id = data.get("socket") if isinstance(data, dict) else None
            if not isinstance(socket_id, str) or socket_id not in self.metering.sockets:
                return {"ok": False, "error": f"unknown socket {socket_id!r}"}
            self._unwatch(request.sid)
            join_room(f"socket:{socket_id}")
            with self._lock:
                self._watching[request.sid] = socket_id
                self._watched[socket_id] = self._watched.get(socket_id, 0) + 1
            self.dashboard.refresh()
            view = self.view(socket_id)
            return {"ok": True, "view": view, "history": self.history.of(socket_id, self.metering.clock.now())}

        @sio.on("disconnect")
        def tenant_gone(*_):
            self._unwatch(request.sid)

    def _unwatch(self, sid: str) -> None:
        with self._lock:
            previous = self._watching.pop(sid, None)
            if previous is None:
                return
            left = self._watched.get(previous, 1) - 1
            if left <= 0:
                self._watched.pop(previous, None)
            else:
                self._watched[previous] = left
        leave_room(f"socket:{previous}")
