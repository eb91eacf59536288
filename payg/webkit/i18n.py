"""The languages people read payg in: English (the words written in the code) and French.

The catalogues are gettext's text files in payg/locale/ (`messages.pot`, `<lang>/LC_MESSAGES/messages.po`, made by
`make messages`). Each is read once, when first asked for, and compiled in memory with Babel: no `.mo` binary in
git and no build step before `make run`; a wheel carries the `.po` files as package data. A fuzzy or empty
translation is left out, so its English shows rather than a guess.

No Flask here: the pages (payg/webkit/language.py), the notifications and the CLI all translate through `gettext_for`.
"""

from __future__ import annotations

import functools
import gettext
import io
from collections.abc import Callable, Mapping
from pathlib import Path

from babel.core import negotiate_locale
from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations
from werkzeug.datastructures import LanguageAccept
from werkzeug.http import parse_accept_header

from payg.domain import settings

SOURCE = "en"  # the language of the msgids themselves
NAMES = {"en": "English", "fr": "Français"}  # each in its own words, as the switcher names it
LANGUAGES = {code: NAMES[code] for code in settings.LANGUAGES}  # a language added there needs its name here
LOCALE_DIR = Path(__file__).resolve().parent.parent / "locale"
DOMAIN = "messages"
SCRIPTS = "static/"  # messages used by a page's script (a location under static/) go to the page as JSON

Gettext = Callable[[str], str]


def N_(message: str) -> str:
    """A message marked for the catalogue where it is defined, and translated where it is shown."""
    return message


def po_path(lang: str) -> Path:
    return LOCALE_DIR / lang / "LC_MESSAGES" / f"{DOMAIN}.po"


@functools.cache
def catalogue(lang: str) -> Catalog:
    with po_path(lang).open("rb") as f:
        return read_po(f, locale=lang)


@functools.cache
def translations(lang: str) -> gettext.NullTranslations:
    """The language's translations (English: none, the msgids are the text)."""
    if lang == SOURCE or lang not in LANGUAGES:
        return gettext.NullTranslations()
    compiled = io.BytesIO()
    write_mo(compiled, catalogue(lang), use_fuzzy=False)
    compiled.seek(0)
    return Translations(compiled, domain=DOMAIN)


def gettext_for(lang: str) -> Gettext:
    return translations(lang).gettext


def ngettext_for(lang: str) -> Callable[[str, str, int], str]:
    return translations(lang).ngettext


def known(lang: str | None) -> str | None:
    """The supported language a tag names ("fr", "fr-CA", "FR_be"), or None."""
    if not lang:
        return None
    primary = lang.strip().replace("_", "-").split("-")[0].lower()
    return primary if primary in LANGUAGES else None


def accepted(header: str | None) -> str | None:
    """The supported language an `Accept-Language` header prefers most: Werkzeug parses and orders it by its q
    values, Babel matches a regional tag ("fr-CA") to its language."""
    ranked = [tag.replace("-", "_") for tag, q in parse_accept_header(header or "", LanguageAccept) if q > 0]
    return known(negotiate_locale(ranked, list(LANGUAGES), sep="_"))


def choose(cookie: str | None, accept_language: str | None, default: str) -> str:
    """A request's language: the switcher's cookie, else the browser's preference, else the configured default."""
    return known(cookie) or accepted(accept_language) or known(default) or SOURCE


def from_environment(environ: Mapping[str, str], default: str) -> str:
    """A command's language: gettext's variables (LANGUAGE, LC_ALL, LC_MESSAGES, LANG: the first set), when they name
    a language payg has; else `default` (`[web] language`)."""
    for name in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):
        value = environ.get(name)
        if value:
            for tag in value.split(":"):
                lang = known(tag.split(".")[0])
                if lang is not None:
                    return lang
            break
    return known(default) or SOURCE


def script_strings(lang: str) -> dict[str, str | list[str]]:
    """What a page's scripts say, in `lang`: msgid -> text (a plural's msgid -> its forms); empty in English."""
    if lang == SOURCE or lang not in LANGUAGES:
        return {}
    out: dict[str, str | list[str]] = {}
    for m in catalogue(lang):
        if not m.id or m.fuzzy or not any(path.startswith(SCRIPTS) for path, _line in m.locations):
            continue
        if isinstance(m.id, tuple | list):
            forms = [str(s) for s in m.string] if isinstance(m.string, tuple | list) else []
            if forms and all(forms):
                out[str(m.id[0])] = forms
        elif m.string:
            out[str(m.id)] = str(m.string)
    return out
