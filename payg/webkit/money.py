"""Money as people read it, for every edge that writes it: the pages (both web apps), the JSON API's texts and
the CLI. A journal amount is an integer: tokens, or with `[tariff] currency` the currency's minor unit
(`payg/domain/money.py` `MoneyUnit`). In a currency it is written by Babel for the locale (`£12.34`,
`1 234,50 €`); in tokens for the reader's language (`1,234 tokens`, `1 234 jetons`). The pages' scripts write the
same with `Intl.NumberFormat` (static/common.js `money`), from `page(unit)`: both read CLDR's data.

A currency is written for `[tariff] locale` whatever language the page is in: it is the landlord's money, and a
receipt, the CLI and the page then agree on it to the character. Only tokens, which have no locale of their own,
follow the reader's language (payg/webkit/i18n.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import babel.numbers

from payg.domain.money import TOKENS, MoneyUnit
from payg.webkit import i18n


def number(x: int | float | None, digits: int = 0, lang: str = i18n.SOURCE) -> str:
    """A number with `digits` decimals, grouped for the language ("1,234.5" is "1 234,5" in French); "—" for none."""
    if x is None:
        return "—"
    pattern = "#,##0" + ("." + "0" * digits if digits else "")
    return babel.numbers.format_decimal(x + 0, format=pattern, locale=lang, decimal_quantization=True)


def figure(x: int | float | None, unit: MoneyUnit = TOKENS, lang: str = i18n.SOURCE) -> str:
    """An amount without its unit when it is tokens ("1,234", "1,234.50"), with its currency sign otherwise
    ("£12.34"); "—" for none."""
    if x is None:
        return "—"
    if unit.currency is None:
        return number(int(x), 0, lang) if x == int(x) else number(x, 2, lang)
    if isinstance(x, float):  # a journal amount in a currency is whole minor units
        raise TypeError(f"an amount in {unit.currency} is an integer of its minor unit, got {x!r}")
    return babel.numbers.format_currency(unit.major(x), unit.currency, locale=unit.locale)


def text(x: int | float | None, unit: MoneyUnit = TOKENS, lang: str = i18n.SOURCE) -> str:
    """An amount with its unit: "1,234 tokens" (1 token), or "£12.34"."""
    if unit.currency is None and x is not None:
        n = int(abs(x)) if x == int(x) else 2  # a fraction of a token is plural in both languages
        ngettext = i18n.ngettext_for(lang)
        return ngettext("%(amount)s token", "%(amount)s tokens", n) % {"amount": figure(x, unit, lang)}
    return figure(x, unit, lang)


def word(unit: MoneyUnit = TOKENS, lang: str = i18n.SOURCE) -> str:
    """What amounts are counted in, for a label: "tokens", or the currency's code."""
    gettext = i18n.gettext_for(lang)
    return gettext("tokens") if unit.currency is None else unit.currency


def page(unit: MoneyUnit) -> dict[str, Any]:
    """What a page's script is told to write money as (static/common.js `useMoney`): the currency (None: tokens),
    its minor digits and the locale as a browser names it (en-GB)."""
    return {"currency": unit.currency, "minor": unit.minor, "locale": unit.locale.replace("_", "-")}


def of(currency: object, locale: str) -> MoneyUnit:
    """The unit of an amount another controller published (the hub): its currency code, the digits from Babel's
    ISO 4217 data as the controller's loader took them; tokens for no code or one Babel does not know."""
    if not isinstance(currency, str) or not babel.numbers.is_currency(currency):
        return TOKENS
    return MoneyUnit(currency, babel.numbers.get_currency_precision(currency), locale)


def template_globals(unit: MoneyUnit, lang: Callable[[], str] = lambda: i18n.SOURCE) -> dict[str, Any]:
    """The Jinja globals the pages write money with, in the page's language `lang()`: `money` (with its unit),
    `money_figure` (the balance's big number), `money_word` ("tokens" or the code), `currency`, `money_of` (a row of
    the hub's own unit), and `number` (a number to d places, templates/numbers.html)."""
    return {"money": lambda x, u=unit: text(x, u, lang()), "money_figure": lambda x, u=unit: figure(x, u, lang()),
            "money_word": _Word(unit, lang), "currency": unit.currency, "money_unit": unit,
            "money_of": lambda code: of(code, unit.locale), "number": lambda x, d=0: number(x, d, lang())}


class _Word:
    """`money_word` as the templates write it, `{{ money_word }}`: in the page's language when it is rendered."""

    def __init__(self, unit: MoneyUnit, lang: Callable[[], str]):
        self.unit, self.lang = unit, lang

    def __str__(self) -> str:
        return word(self.unit, self.lang())

    def __html__(self) -> str:
        from markupsafe import escape

        return str(escape(str(self)))
