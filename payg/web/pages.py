"""What the controller's web app and the hub's share around their pages: the error pages and the
password login (the limiter's wait, the check, the session), each app with its own templates."""

from __future__ import annotations

import logging
import math
from typing import Callable

from flask import Flask, Response, jsonify, redirect, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from payg.web.security import Guard, Limiter


def error_pages(app: Flask, template: str, wants_json: Callable[[], bool]) -> None:
    """A failed CSRF check and every HTTP error: JSON for the API, the app's error page for a person."""

    @app.errorhandler(CSRFError)
    def csrf_error(exc: CSRFError):
        if wants_json():
            return jsonify(error="Bad Request", message=f"CSRF check failed: {exc.description}"), 400
        return render_template(template, code=400, title="Form expired",
                               message="This form was open too long or came from elsewhere. Reload the page "
                                       "and try again."), 400

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        if wants_json():
            return jsonify(error=exc.name, message=exc.description), exc.code
        return render_template(template, code=exc.code, title=exc.name, message=exc.description), exc.code


def password_login(guard: Guard, throttle: Limiter, template: str, next_page: str, log: logging.Logger, *,
                   who: str = "landlord", wrong_status: int = 200):
    """A POSTed password: 429 while the address must wait, the session and a redirect when it is right."""
    address = request.remote_addr or "?"
    wait = throttle.retry_after(address)
    if wait is not None:
        seconds = max(1, math.ceil(wait))
        resp = Response(render_template(template, error="Too many attempts.", retry_after_s=seconds,
                                        next=next_page), status=429)
        resp.headers["Retry-After"] = str(seconds)
        return resp
    if guard.check_password(request.form.get("password", "")):
        throttle.succeeded(address)
        guard.log_in()
        log.info("%s logged in from %s", who, address)
        return redirect(next_page)
    throttle.failed(address)
    log.warning("failed %s login from %s", who, address)
    return render_template(template, error="Wrong password.", retry_after_s=None, next=next_page), wrong_status
