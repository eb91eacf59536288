"""Money as people read it, for every edge that writes it: the pages (both web apps), the JSON API's texts and
the CLI. A journal amount is an integer: tokens, or with `[tariff] currency` the currency's minor unit
(`payg/domain/money.py` `MoneyUnit`). In a currency it is written by Babel for the locale (`£12.34`,
`1 234,50 €`); in tokens exactly as the pages always wrote it (`1,234 tokens`). The pages' scripts write the same
with `Intl.NumberFormat` (static/common.js `money`), from `page(unit)`: both read CLDR's data.
"""

from __future__ import annotations

from typing import Any

import babel.numbers

from payg.domain.money import TOKENS, MoneyUnit


def figure(x: int | float | None, unit: MoneyUnit = TOKENS) -> str:
    """An amount without its unit when it is tokens ("1,234", "1,234.50"), with its currency sign otherwise
    ("£12.34"); "—" for none."""
    if x is None:
        return "—"
    if unit.currency is None:
        return f"{int(x):,}" if x == int(x) else f"{x:,.2f}"
    if isinstance(x, float):  # a journal amount in a currency is whole minor units
        raise TypeError(f"an amount in {unit.currency} is an integer of its minor unit, got {x!r}")
    return babel.numbers.format_currency(unit.major(x), unit.currency, locale=unit.locale)


def text(x: int | float | None, unit: MoneyUnit = TOKENS) -> str:
    """An amount with its unit: "1,234 tokens" (1 token), or "£12.34"."""
    if unit.currency is None and x is not None:
        return f"{figure(x, unit)} {'token' if x == 1 else 'tokens'}"
    return figure(x, unit)


def word(unit: MoneyUnit = TOKENS) -> str:
    """What amounts are counted in, for a label: "tokens", or the currency's code."""
    return "tokens" if unit.currency is None else unit.currency


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


def template_globals(unit: MoneyUnit) -> dict[str, Any]:
    """The Jinja globals the pages write money with: `money` (with its unit), `money_figure` (the balance's big
    number), `money_word` ("tokens" or the code), `currency`, and `money_of` (a row of the hub's own unit)."""
    return {"money": lambda x, u=unit: text(x, u), "money_figure": lambda x, u=unit: figure(x, u),
            "money_word": word(unit), "currency": unit.currency, "money_unit": unit,
            "money_of": lambda code: of(code, unit.locale)}
