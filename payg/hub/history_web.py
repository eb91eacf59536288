"""The hub's history routes: the fleet's totals per day and one socket's days, as JSON and as CSV, from the
archive (payg/adapters/fleet_archive.py). Behind the hub's login like every other route (payg/hub/web.py)."""

from __future__ import annotations

import dataclasses
import re
from typing import Protocol
from urllib.parse import quote

from flask import Flask, abort, jsonify, redirect, render_template, request

from payg.domain.fleet_history import FleetDay, SocketDay

DAYS_DEFAULT = 90
DAYS_MAX = 366
FLEET_DAY_FIELDS = [f.name for f in dataclasses.fields(FleetDay)]
SOCKET_DAY_FIELDS = [f.name for f in dataclasses.fields(SocketDay)]


class HistoryReader(Protocol):
    """What the routes read (payg.adapters.fleet_archive.FleetArchive matches it)."""

    def socket_days(self, controller: str, socket: str, days: int = DAYS_DEFAULT) -> list[SocketDay]: ...

    def fleet_days(self, days: int = DAYS_DEFAULT) -> list[FleetDay]: ...

    def status(self) -> dict: ...


def days_asked() -> int:
    raw = request.args.get("days")
    if raw is None:
        return DAYS_DEFAULT
    if not raw.isdigit() or not 1 <= int(raw) <= DAYS_MAX:
        abort(400, description=f"days must be a whole number from 1 to {DAYS_MAX}")
    return int(raw)


def register_history(app: Flask, history: HistoryReader, csv_response, sockets) -> None:
    """The routes; `csv_response(fields, rows, name)` is the hub's CSV answer (payg/hub/web.py), `sockets()` the
    (controller, socket) pairs the fleet knows now, for the page's picker."""

    def read(what):
        try:
            return what()
        except Exception as exc:  # the database is away: say so, never an empty history that looks true
            abort(503, description=f"the fleet's history cannot be read now: {type(exc).__name__}: {exc}")

    def fleet_rows() -> tuple[int, list[FleetDay]]:
        days = days_asked()
        return days, read(lambda: history.fleet_days(days))

    def socket_rows(controller: str, socket: str) -> tuple[int, list[SocketDay]]:
        days = days_asked()
        return days, read(lambda: history.socket_days(controller, socket, days))

    @app.get("/api/history")
    def api_fleet_history():
        days, rows = fleet_rows()
        return jsonify(days=[dataclasses.asdict(r) for r in rows], archive=history.status())

    @app.get("/history.csv")
    def fleet_history_csv():
        days, rows = fleet_rows()
        return csv_response(FLEET_DAY_FIELDS, [dataclasses.asdict(r) for r in rows], "fleet-days")

    @app.get("/api/history/<controller>/<socket>")
    def api_socket_history(controller: str, socket: str):
        days, rows = socket_rows(controller, socket)
        return jsonify(controller=controller, socket=socket, days=[dataclasses.asdict(r) for r in rows])

    @app.get("/history/<controller>/<socket>.csv")
    def socket_history_csv(controller: str, socket: str):
        days, rows = socket_rows(controller, socket)
        return csv_response(SOCKET_DAY_FIELDS, [dataclasses.asdict(r) for r in rows],
                            re.sub(r"[^A-Za-z0-9_-]", "_", f"{controller}-{socket}-days"))

    @app.get("/history")
    def fleet_history_page():
        days, rows = fleet_rows()
        return render_template("hub/history.html", rows=rows, days=days, socket=None, controller=None,
                               csv_url=f"/history.csv?days={days}", choices=sorted(sockets()))

    @app.get("/history/socket")
    def pick_socket():
        controller, _, socket = (request.args.get("id") or "").partition("/")
        if not controller or not socket:
            abort(400, description="id must be controller/socket")
        return redirect(f"/history/{quote(controller, safe='')}/{quote(socket, safe='')}")

    @app.get("/history/<controller>/<socket>")
    def socket_history_page(controller: str, socket: str):
        days, rows = socket_rows(controller, socket)
        path = f"/history/{quote(controller, safe='')}/{quote(socket, safe='')}"
        return render_template("hub/history.html", rows=rows, days=days, socket=socket, controller=controller,
                               csv_url=f"{path}.csv?days={days}", choices=[])
