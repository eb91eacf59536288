"""A page's language, per request (the catalogues are payg/webkit/i18n.py's): the switcher's `lang` cookie, else the
browser's `Accept-Language`, else the site's default. Jinja gets `_`, `ngettext` and `{% trans %}` in that language;
the base template its `<html lang>`, the switcher's links and, on a page with scripts, their strings as JSON
(static/common.js `_`). The switcher is a plain link, `/lang/<code>?next=<page>`: it sets the cookie and goes back to
the page, with no script (the CSP allows none inline) and no form."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from flask import Flask, Response, current_app, g, has_request_context, redirect, request
from flask.typing import ResponseReturnValue

from payg.webkit import i18n
from payg.webkit.security import safe_next

COOKIE = "lang"
SWITCH = "/lang/"
KEEP_S = 365 * 86400  # a tenant's choice outlives any session: it is no secret and names nobody
DEFAULT_KEY = "PAYG_LANGUAGE"


def current() -> str:
    """The language of the request being answered (outside one: the site's default)."""
    if has_request_context() and "lang" in g:
        return str(g.lang)
    return str(current_app.config.get(DEFAULT_KEY, i18n.SOURCE)) if has_request_context() else i18n.SOURCE


def gettext(message: str) -> str:
    return i18n.gettext_for(current())(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    return i18n.ngettext_for(current())(singular, plural, n)


def install(app: Flask, default: str, *, secure_cookies: bool) -> None:
    """The per-request language, Jinja's i18n in it, and the switcher's route."""
    app.config[DEFAULT_KEY] = i18n.known(default) or i18n.SOURCE
    app.jinja_env.add_extension("jinja2.ext.i18n")
    app.jinja_env.install_gettext_callables(gettext, ngettext, newstyle=True)  # type: ignore[attr-defined]

    @app.before_request
    def _choose() -> None:
        g.lang = i18n.choose(request.cookies.get(COOKIE), request.headers.get("Accept-Language"),
                             app.config[DEFAULT_KEY])

    @app.after_request
    def _vary(resp: Response) -> Response:
        if resp.mimetype == "text/html":  # a cache must not hand one language's page to another's reader
            resp.vary.add("Accept-Language")
            resp.vary.add("Cookie")
        return resp

    @app.context_processor
    def _language() -> dict[str, Any]:
        lang = current()
        return {"lang": lang, "languages": i18n.LANGUAGES, "switch_to": switch_url,
                "script_strings": lambda: i18n.script_strings(lang)}

    @app.get(SWITCH + "<code>")
    def switch_language(code: str) -> ResponseReturnValue:
        lang = i18n.known(code)
        back = safe_next(request.args.get("next"), "/")
        resp = redirect(back)
        if lang is not None and lang == code:
            resp.set_cookie(COOKIE, lang, max_age=KEEP_S, samesite="Lax", secure=secure_cookies, httponly=True)
        return resp


def switch_url(code: str) -> str:
    """The switcher's link to `code`, back to the page it is on."""
    here = request.full_path.rstrip("?") if has_request_context() else "/"
    return f"{SWITCH}{code}?next={quote(here, safe='/')}"
