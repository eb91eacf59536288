"""The pages: the socket list, a tenant page per socket with its QR code, and the landlord view.

Tenant pages only read. The landlord's actions are JSON requests under /api/sockets/<id>/
(the guard in payg/web/__init__.py wants the landlord's session and a CSRF token for them).
"""

from __future__ import annotations

import csv
import io
import logging
import math
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import qrcode
import qrcode.image.svg
from flask import Flask, Response, abort, jsonify, redirect, render_template, request, send_file, stream_with_context

from payg.errors import InvalidAmount
from payg.ports import DepositSource

if TYPE_CHECKING:
    from payg.web import Web, WebServices

log = logging.getLogger("payg.web")

# Browser libraries, installed from npm by the Makefile (package.json), served from here:
ASSETS = {
    "socket.io.min.js": "socket.io-client/dist/socket.io.min.js",
    "uPlot.iife.min.js": "uplot/dist/uPlot.iife.min.js",
    "uPlot.min.css": "uplot/dist/uPlot.min.css",
}
MAX_QR_TOKENS = 10**12
REQUEST_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
BACKEND_NAMES = {"mock": "mock ledger", "ethereum": "Ethereum", "iota": "IOTA"}
CSV_FIELDS = ["id", "socket", "time_utc", "kind", "amount_tokens", "energy_wh", "key", "memo"]


def with_topup(state: dict, deposits: DepositSource) -> dict:
    return dict(state, topup={"address": deposits.address_for(state["id"]),
                              "uri": deposits.payment_uri(state["id"], None),
                              "backend": deposits.name,
                              "units_per_token": deposits.units_per_token})


def qr_svg(data: str) -> bytes:
    """A QR code as a small SVG: one path, black on white, with the standard quiet zone."""
    qr = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=4, box_size=10,
                       image_factory=qrcode.image.svg.SvgPathFillImage)
    qr.add_data(data)
    qr.make(fit=True)
    return qr.make_image().to_string(encoding="unicode").encode()


def csv_cell(value) -> str:
    """Text a spreadsheet will not run as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") and not _is_number(text) else text


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def safe_next(target: str | None) -> str:
    """Only a path on this site (never //host or a scheme) may be the page after the login."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/landlord"


def register(app: Flask, web: "Web", services: "WebServices", json_body: Callable[[], dict], assets: Path) -> None:
    ctl = services.controller
    settings = services.settings
    guard, hub, throttle = web.guard, web.hub, web.throttle
    def asset_path(name: str) -> Path | None:
        """In node_modules (a source tree) or flat in share/payg/assets (installed by pip)."""
        rel = ASSETS.get(name)
        if rel is None:
            return None
        for path in (assets / rel, assets / name):
            if path.is_file():
                return path
        return None

    missing = [name for name in ASSETS if asset_path(name) is None]
    if missing:
        log.warning("browser libraries missing in %s (%s): pages work without live updates; run `make assets`",
                    assets, ", ".join(missing))

    def page_settings() -> dict:
        return {"tokens_per_wh": float(ctl.tariff.tokens_per_wh), "low_credit_tokens": settings.low_credit_tokens,
                "history_s": 3600}

    def topup_of(socket_id: str) -> dict:
        d = services.deposits
        return {"address": d.address_for(socket_id), "uri": d.payment_uri(socket_id, None), "backend": d.name,
                "backend_name": BACKEND_NAMES.get(d.name, d.name), "presets": list(settings.topup_presets),
                "uris": {str(p): d.payment_uri(socket_id, p) for p in settings.topup_presets},
                "qr_url": f"/s/{socket_id}/qr.svg"}

    def fresh_view(socket_id: str) -> dict:
        hub.dashboard.refresh()
        return hub.view(socket_id)

    @app.get("/assets/<name>")
    def asset(name: str):
        path = asset_path(name)
        if path is None:
            abort(404, description=f"no asset {name} (run `make assets` to install the browser libraries)")
        return send_file(path, max_age=86400)

    @app.get("/")
    def index():
        socket_list = [{"id": s.id, "name": s.name} for s in ctl.sockets.values()]
        if len(socket_list) == 1:
            return redirect(f"/s/{socket_list[0]['id']}")
        return render_template("sockets.html", sockets=socket_list, landlord_enabled=guard.landlord_enabled)

    @app.get("/s/<socket_id>")
    def tenant(socket_id: str):
        view = fresh_view(socket_id)
        topup, page = topup_of(socket_id), page_settings()
        return render_template("tenant.html", view=view, topup=topup, page=page,
                               boot={"socket": socket_id, "view": view, "topup": topup, "page": page})

    @app.get("/s/<socket_id>/qr.svg")
    def qr(socket_id: str):
        ctl.socket(socket_id)
        amount = request.args.get("amount")
        if amount is not None and (not amount.isdigit() or not 0 < int(amount) <= MAX_QR_TOKENS):
            abort(400, description=f"amount must be a whole number of tokens from 1 to {MAX_QR_TOKENS}")
        try:
            uri = services.deposits.payment_uri(socket_id, int(amount) if amount else None)
        except InvalidAmount as exc:
            abort(400, description=str(exc))
        resp = Response(qr_svg(uri), mimetype="image/svg+xml")
        resp.headers["Cache-Control"] = "public, max-age=3600"
        return resp

    # --- the landlord ---------------------------------------------------------

    @app.get("/landlord")
    def landlord():
        if not guard.landlord_enabled:
            return landlord_off()
        if not guard.landlord():
            return redirect("/landlord/login?next=/landlord")
        hub.dashboard.refresh()
        views, page = hub.views(), page_settings()
        # The rows are rendered here for a first look; the script builds its table from the full
        # push that follows its connection, so the views are not sent twice.
        return render_template("landlord.html", views=views, page=page, boot={"page": page})

    def landlord_off():
        ref = settings.landlord_password
        return render_template("landlord_off.html", env_name=ref.env if ref else None,
                               file_path=str(ref.file) if ref and ref.file else None), 503

    @app.route("/landlord/login", methods=["GET", "POST"])
    def login():
        if not guard.landlord_enabled:
            return landlord_off()
        next_page = safe_next(request.values.get("next"))
        if request.method == "GET":
            return render_template("login.html", error=None, retry_after_s=None, next=next_page)
        address = request.remote_addr or "?"
        wait = throttle.retry_after(address)
        if wait is not None:
            seconds = max(1, math.ceil(wait))
            resp = Response(render_template("login.html", error="Too many attempts.", retry_after_s=seconds,
                                            next=next_page), status=429)
            resp.headers["Retry-After"] = str(seconds)
            return resp
        if guard.check_password(request.form.get("password", "")):
            throttle.succeeded(address)
            guard.log_in()
            log.info("landlord logged in from %s", address)
            return redirect(next_page)
        throttle.failed(address)
        log.warning("failed landlord login from %s", address)
        return render_template("login.html", error="Wrong password.", retry_after_s=None, next=next_page)

    @app.post("/landlord/logout")
    def logout():
        from flask import session

        session.clear()
        return redirect("/landlord/login")

    @app.get("/landlord/journal.csv")
    def journal_csv():
        if not guard.landlord():
            return redirect("/landlord/login?next=/landlord/journal.csv")
        socket_id = request.args.get("socket")
        ids = [ctl.socket(socket_id).id] if socket_id else list(ctl.sockets)
        upt = ctl.tariff.units_per_token

        def rows():
            buf = io.StringIO()
            out = csv.writer(buf)
            out.writerow(CSV_FIELDS)
            for sid in ids:
                for e in services.journal.all_entries(sid):
                    amount = e.amount // upt if e.amount % upt == 0 else e.amount / upt
                    out.writerow([e.id, csv_cell(e.socket_id),
                                  datetime.fromtimestamp(e.at, timezone.utc).isoformat(timespec="seconds"),
                                  e.kind, amount, "" if e.energy_wh is None else float(e.energy_wh),
                                  csv_cell(e.idem_key), csv_cell(e.memo)])
                    if buf.tell() > 64 * 1024:
                        yield buf.getvalue()
                        buf.seek(0)
                        buf.truncate()
            yield buf.getvalue()

        stamp = datetime.fromtimestamp(ctl.clock.now(), timezone.utc).strftime("%Y%m%d-%H%M%S")
        name = f"payg-journal-{socket_id or 'all'}-{stamp}.csv"
        return Response(stream_with_context(rows()), mimetype="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})

    # --- the landlord's actions (JSON; the guard checks the session and the CSRF token) ----

    @app.post("/api/sockets/<socket_id>/override")
    def override(socket_id: str):
        body = json_body()
        mode = body.get("mode")
        if mode not in ("off", "auto"):
            abort(400, description='mode must be "off" (hold the relay open) or "auto" (follow the balance)')
        ctl.set_override(socket_id, None if mode == "auto" else "off")
        return jsonify(fresh_view(socket_id))

    @app.post("/api/sockets/<socket_id>/adjust")
    def adjust(socket_id: str):
        body = json_body()
        unknown = set(body) - {"amount_tokens", "reason", "request_id"}
        if unknown:
            abort(400, description=f"unknown field(s): {', '.join(sorted(unknown))}")
        amount, reason, request_id = body.get("amount_tokens"), body.get("reason"), body.get("request_id")
        if not isinstance(amount, int) or isinstance(amount, bool) or amount == 0:
            abort(400, description="amount_tokens must be a non-zero whole number (negative for a debit)")
        if not isinstance(reason, str) or not reason.strip() or len(reason) > 200:
            abort(400, description="reason is required (at most 200 characters)")
        if not isinstance(request_id, str) or not REQUEST_ID.match(request_id):
            abort(400, description="request_id must be 8 to 64 letters, digits, '-' or '_'")
        booked = ctl.adjust(socket_id, amount, reason, request_id)
        if booked:
            log.info("landlord %s %d tokens on %s: %s", "credited" if amount > 0 else "debited", abs(amount),
                     socket_id, reason)
        return jsonify(booked=booked, view=fresh_view(socket_id)), 201 if booked else 200

    @app.post("/api/sockets/<socket_id>/alarms/ack")
    def acknowledge(socket_id: str):
        json_body()
        ctl.acknowledge_alarms(socket_id)
        return jsonify(fresh_view(socket_id))
