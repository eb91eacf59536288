"""The tenant's pages: the socket list, a page per socket with its QR code, its history (top-ups and daily use,
GET /s/<id>/history) and its chart's data from the journal (GET /api/sockets/<id>/history?span=hour|day|month,
public like the socket's state; static/chart.js draws it).

They only read, but for the tenant's actions: entering a top-up code (POST /api/sockets/<id>/redeem) and taking
emergency credit.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import cast
from zoneinfo import ZoneInfo

import qrcode  # type: ignore[import-untyped]  # no type information shipped
import qrcode.image.svg  # type: ignore[import-untyped]
from flask import Blueprint, Response, abort, jsonify, redirect, render_template, request

from payg import serialize
from payg.domain.history import SPANS, Span
from payg.domain.money import tokens_shown
from payg.errors import CodeRefused, InvalidAmount
from payg.services.history import HistoryDesk
from payg.services.statements import MAX_RECEIPTS, StatementDesk
from payg.web.statements import Figures
from payg.web.views import fresh_view, page_settings, topup_of

log = logging.getLogger("payg.web")

MAX_QR_TOKENS = 10**12
HISTORY_DAYS = 30  # what the tenant's history page covers


def qr_svg(data: str) -> bytes:
    """A QR code as a small SVG: one path, black on white, with the standard quiet zone."""
    qr = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=4, box_size=10,
                       image_factory=qrcode.image.svg.SvgPathFillImage)
    qr.add_data(data)
    qr.make(fit=True)
    return qr.make_image().to_string(encoding="unicode").encode()


def blueprint(web, services, json_body: Callable[[], dict]) -> Blueprint:
    bp = Blueprint("tenant", __name__)
    ctl = services.metering
    settings = services.settings
    guard, hub = web.guard, web.hub
    upt = ctl.tariff.units_per_token
    past = HistoryDesk(services.journal, ctl.clock, upt, ZoneInfo(settings.timezone) if settings.timezone else None,
                       ctl.settings.usage_entry_s)

    @bp.get("/")
    def index():
        socket_list = [{"id": s.id, "name": s.name} for s in ctl.sockets.values()]
        if len(socket_list) == 1:
            return redirect(f"/s/{socket_list[0]['id']}")
        return render_template("sockets.html", sockets=socket_list, landlord_enabled=guard.landlord_enabled)

    @bp.get("/s/<socket_id>")
    def tenant(socket_id: str):
        view = fresh_view(hub, socket_id)
        topup = topup_of(services.deposits, settings, socket_id)
        page = page_settings(ctl, settings, services.codes.tokens_per_unit if services.codes else None,
                             services.money)
        return render_template("tenant.html", view=view, topup=topup, page=page,
                               boot={"socket": socket_id, "view": view, "topup": topup, "page": page,
                                     "emergency": emergency_of(socket_id)})

    def emergency_of(socket_id: str) -> dict:
        """What the page offers: emergency credit to take now (tokens, or None) and what is owed of it."""
        desk = web.emergency
        return {"offer_tokens": desk.offer(socket_id), "owed_tokens": desk.owed_tokens(socket_id),
                "tokens": desk.tokens(socket_id), "below_tokens": desk.below_tokens(socket_id)}

    @bp.get("/api/sockets/<socket_id>/history")
    def history_json(socket_id: str):
        ctl.socket(socket_id)
        span = request.args.get("span", "hour")
        if span not in SPANS:
            abort(400, description=f"span must be one of {', '.join(SPANS)}")
        return jsonify(serialize.chart(socket_id, past.chart(socket_id, cast(Span, span)), ctl.clock.now()))

    @bp.get("/s/<socket_id>/history")
    def history_page(socket_id: str):
        """The last HISTORY_DAYS days: the top-ups with their receipts, and the energy and money used each day."""
        socket = ctl.socket(socket_id)
        desk: StatementDesk = services.statements  # made by create_web before any request
        days = past.days(socket_id, HISTORY_DAYS)
        since = days[-1].start
        topups = [r for r in desk.receipts(socket_id, MAX_RECEIPTS) if r.at >= since]
        rows = [{"day": desk.local_day(d.start), "energy_wh": d.energy_wh,
                 "used_tokens": tokens_shown(d.used_units, upt)} for d in days]
        return render_template("tenant_history.html", socket=socket, topups=topups, days=rows,
                               fig=Figures(desk.money, desk.tz), since=desk.local_day(since),
                               energy_wh=sum(d.energy_wh for d in days),
                               used_tokens=tokens_shown(sum(d.used_units for d in days), upt))

    @bp.get("/s/<socket_id>/qr.svg")
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

    @bp.post("/api/sockets/<socket_id>/redeem")
    def redeem(socket_id: str):
        """The tenant's one action: enter a top-up code. No cookie and no CSRF token: it must be a same-origin
        JSON request (checked by the guard), and wrong codes slow down their address and their socket."""
        if services.codes is None:
            abort(404, description="top-up codes are off on this controller")
        ctl.socket(socket_id)
        body = json_body()
        code = body.get("code")
        address = request.remote_addr or "?"
        wait = max(web.code_limiter.retry_after(address) or 0, web.code_limiter.retry_after(f"socket:{socket_id}") or 0)
        if wait:
            seconds = max(1, math.ceil(wait))
            return jsonify(error="Too Many Requests", reason="slow_down", retry_after_s=seconds,
                           message=f"Too many wrong codes. Wait {seconds} s and try again."), 429, \
                {"Retry-After": str(seconds)}
        try:
            done = services.codes.redeem(socket_id, code if isinstance(code, str) else "")
        except CodeRefused as exc:
            if exc.reason in ("invalid", "malformed"):  # a code entered twice is a mistake, not a guess
                web.code_limiter.failed(address)
                web.code_limiter.failed(f"socket:{socket_id}")
            log.info("top-up code refused on %s from %s: %s", socket_id, address, exc.reason)
            return jsonify(error="Refused", reason=exc.reason, message=str(exc)), 423 if exc.reason == "locked" else 400
        web.code_limiter.succeeded(address)
        return jsonify(tokens=done.tokens, booked=done.booked, view=fresh_view(hub, socket_id),
                       emergency=emergency_of(socket_id))

    @bp.post("/api/sockets/<socket_id>/emergency")
    def emergency(socket_id: str):
        """The tenant takes emergency credit (a same-origin JSON request, as a code is entered)."""
        json_body()
        try:
            tokens = web.emergency.take(socket_id)
        except CodeRefused as exc:
            return jsonify(error="Refused", reason=exc.reason, message=str(exc)), 409
        return jsonify(tokens=tokens, view=fresh_view(hub, socket_id), emergency=emergency_of(socket_id))

    return bp
