"""The landlord's view: login, the table of every socket, and the landlord's actions (a socket's own page and the
journal as CSV: payg/web/landlord_socket.py).

The actions are JSON requests under /api/sockets/<id>/ (the guard in payg/web/__init__.py wants the
landlord's session and a CSRF token for them, or the API token).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

from flask import Blueprint, abort, jsonify, redirect, render_template, request, session
from flask.typing import ResponseReturnValue

from payg.web.landlord_socket import routes as socket_routes
from payg.web.setup import routes as setup_routes
from payg.web.views import fresh_view, page_settings
from payg.webkit.pages import login_pages, too_many

log = logging.getLogger("payg.web")

REQUEST_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")


def blueprint(web, services, json_body: Callable[[], dict]) -> Blueprint:
    bp = Blueprint("landlord", __name__)
    ctl = services.metering
    desk = services.landlord
    settings = services.settings
    guard, hub, throttle = web.guard, web.hub, web.throttle

    @bp.get("/landlord")
    def landlord():
        if not guard.landlord_enabled:
            return landlord_off()
        if not guard.landlord():
            return redirect("/landlord/login?next=/landlord")
        hub.dashboard.refresh()
        views = hub.views()
        page = page_settings(ctl, settings, services.codes.tokens_per_unit if services.codes else None,
                             services.money)
        # The rows are rendered here for a first look; the script builds its table from the full
        # push that follows its connection, so the views are not sent twice.
        return render_template("landlord.html", views=views, page=page, boot={"page": page},
                               resale_warnings=services.resale_warnings)

    def landlord_off() -> ResponseReturnValue:
        ref = settings.landlord_password
        page = render_template("landlord_off.html", env_name=ref.env if ref else None,
                               file_path=str(ref.file) if ref and ref.file else None)
        # The page has no form, but rendered under /landlord it made a CSRF token (base.html), which would start an
        # anonymous session and set its cookie for a view that is off: drop it.
        session.clear()
        return page, 503

    login_pages(web.kit, log, before=lambda: None if guard.landlord_enabled else landlord_off())
    socket_routes(bp, web, services, landlord_off)
    if services.setup is not None:
        setup_routes(bp, web, services.setup, json_body, landlord_off)

    @bp.post("/api/login-links")
    def make_login_link():
        if not guard.token():  # only `payg login-link` on the device: a session cannot make itself another
            abort(403, description="login links are made on the controller's machine: run `payg login-link`")
        token, until = web.sessions.login_link()
        base = (settings.public_url or request.host_url).rstrip("/")
        return jsonify(url=f"{base}/landlord/link/{token}", expires_at=until), 201

    @bp.route("/landlord/link/<token>", methods=["GET", "POST"])
    def use_login_link(token: str):
        if not guard.landlord_enabled:
            return landlord_off()
        address = request.remote_addr or "?"
        wait = throttle.retry_after(address)
        if wait is not None:
            return too_many("login_link.html", wait, token=None)
        if request.method == "GET":  # a page with a button: a link preview fetching the URL logs nobody in
            if web.sessions.link_valid(token):
                return render_template("login_link.html", token=token, retry_after_s=None)
        elif web.sessions.use_link(token):
            throttle.succeeded(address)
            guard.log_in()
            log.info("landlord logged in from %s with a login link", address)
            return redirect("/landlord")
        throttle.failed(address)
        return render_template("login_link.html", token=None, retry_after_s=None), 404

    @bp.post("/api/sockets/<socket_id>/override")
    def override(socket_id: str):
        body = json_body()
        mode = body.get("mode")
        if mode not in ("off", "auto"):
            abort(400, description='mode must be "off" (hold the relay open) or "auto" (follow the balance)')
        desk.set_override(socket_id, None if mode == "auto" else "off")
        return jsonify(fresh_view(hub, socket_id))

    @bp.post("/api/sockets/<socket_id>/adjust")
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
        booked = desk.adjust(socket_id, amount, reason, request_id)
        if booked:
            log.info("landlord %s %d tokens on %s: %s", "credited" if amount > 0 else "debited", abs(amount),
                     socket_id, reason)
        return jsonify(booked=booked, view=fresh_view(hub, socket_id)), 201 if booked else 200

    @bp.post("/api/sockets/<socket_id>/codes")
    def make_code(socket_id: str):
        if services.codes is None:
            abort(404, description="top-up codes are off on this controller")
        body = json_body()
        unknown = set(body) - {"tokens", "request_id"}
        if unknown:
            abort(400, description=f"unknown field(s): {', '.join(sorted(unknown))}")
        request_id = body.get("request_id")
        if request_id is not None and (not isinstance(request_id, str) or not REQUEST_ID.match(request_id)):
            abort(400, description="request_id must be 8 to 64 letters, digits, '-' or '_'")
        issued = services.codes.issue(socket_id, body.get("tokens"), request_id)
        if not issued.repeated:
            log.info("landlord made top-up code %d (count %d) for %s: %d tokens", issued.number, issued.count,
                     socket_id, issued.tokens)
        # `number` is what people call it (code 1, 2, 3 ...); `count` is OpenPAYGO's, for a back office
        made = dict(code=issued.code, spaced=issued.spaced, number=issued.number, count=issued.count,
                    tokens=issued.tokens, socket=socket_id, repeated=issued.repeated)
        return jsonify(made), 200 if issued.repeated else 201

    @bp.post("/api/sockets/<socket_id>/alarms/ack")
    def acknowledge(socket_id: str):
        json_body()
        desk.acknowledge_alarms(socket_id)
        return jsonify(fresh_view(hub, socket_id))

    return bp
