"""The landlord's password login and logout of every app on the kit, and the rules pages share (the page after
the login, the limiter's 429, a CSV cell a spreadsheet will not run)."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

from flask import Response, redirect, render_template, request
from flask.typing import ResponseReturnValue

from payg.webkit.app import Kit
from payg.webkit.language import gettext as _
from payg.webkit.security import Guard, Limiter, safe_next

LOGIN_TEMPLATE = "login.html"


def csv_cell(value: object) -> str:
    """Text a spreadsheet will not run as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") and not _is_number(text) else text


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def too_many(template: str, wait_s: float, **context: object) -> Response:
    """The limiter's 429: the page says how long to wait, and so does Retry-After."""
    seconds = max(1, math.ceil(wait_s))
    resp = Response(render_template(template, retry_after_s=seconds, **context), status=429)
    resp.headers["Retry-After"] = str(seconds)
    return resp


def password_login(guard: Guard, throttle: Limiter, next_page: str, log: logging.Logger, *, who: str,
                   wrong_status: int) -> ResponseReturnValue:
    """A POSTed password: 429 while the address must wait, the session and a redirect when it is right."""
    address = request.remote_addr or "?"
    wait = throttle.retry_after(address)
    if wait is not None:
        return too_many(LOGIN_TEMPLATE, wait, error=_("Too many attempts."), next=next_page)
    if guard.check_password(request.form.get("password", "")):
        throttle.succeeded(address)
        guard.log_in()
        log.info("%s logged in from %s", who, address)
        return redirect(next_page)
    throttle.failed(address)
    log.warning("failed %s login from %s", who, address)
    return render_template(LOGIN_TEMPLATE, error=_("Wrong password."), retry_after_s=None, next=next_page), wrong_status


def login_pages(kit: Kit, log: logging.Logger, *, before: Callable[[], ResponseReturnValue | None] | None = None,
                skip_when_in: bool = False) -> None:
    """The site's login (GET the form, POST the password, its CSRF token checked) and logout routes.
    `before` may answer first (a landlord view that is off); `skip_when_in` sends a landlord who is logged
    in already straight to the next page."""
    site, guard = kit.site, kit.guard

    def login() -> ResponseReturnValue:
        answer = before() if before is not None else None
        if answer is not None:
            return answer
        next_page = safe_next(request.values.get("next"), site.home)
        if request.method == "GET":
            if skip_when_in and guard.landlord():
                return redirect(next_page)
            return render_template(LOGIN_TEMPLATE, error=None, retry_after_s=None, next=next_page)
        kit.csrf.protect()
        return password_login(guard, kit.throttle, next_page, log, who=site.who,
                              wrong_status=site.wrong_password_status)

    def logout() -> ResponseReturnValue:
        guard.log_out()
        return redirect(site.login)

    kit.app.add_url_rule(site.login, "login", login, methods=["GET", "POST"])
    kit.app.add_url_rule(site.logout, "logout", logout, methods=["POST"])
