"""[tariff]: the currency (looked up in Babel's ISO 4217 data), the rates, bands, standing charge, VAT and changes.

Prices are exact: an integer or a decimal string; a float is refused (0.1 is not one tenth).
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

import babel
import babel.numbers

from payg.adapters.config.tables import Table, exact
from payg.domain.friendly import WEEKDAYS, parse_window
from payg.domain.tariff import STANDARD, STANDING, Band, TariffPeriod
from payg.domain.tariff_settings import CHANGE_KEYS, TariffChange, TariffConfig

DECIMAL = 'a decimal string such as "0.2450", or an integer'


def currency_digits(code: str) -> int:
    """The decimal places of an ISO 4217 currency (2 for GBP, 0 for JPY); KeyError for a code Babel does not know."""
    if not babel.numbers.is_currency(code):
        raise KeyError(code)
    return babel.numbers.get_currency_precision(code)


def decimal(t: Table, name: str, default: Any = ..., *, positive: bool = False,
            maximum: Decimal | None = None) -> Decimal:
    expected = DECIMAL + (" > 0" if positive else " >= 0") + (f", at most {maximum}" if maximum is not None else "")
    value = t.raw(name, default, expected)
    if isinstance(value, Decimal):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise t.error(name, expected, value)  # a float is refused: money is exact
    try:
        result = Decimal(value.strip()) if isinstance(value, str) else Decimal(value)
    except InvalidOperation:
        raise t.error(name, expected, value) from None
    if not result.is_finite() or result < 0 or (positive and result == 0) or (maximum is not None and result > maximum):
        raise t.error(name, expected, value)
    return result


def _tables(t: Table, name: str, example: str) -> list[Table]:
    """The list of tables under `name` (none: empty), each a Table named `name[i]` for its errors."""
    expected = f"a list of tables such as {example}"
    raw = t.raw(name, [], expected)
    if not isinstance(raw, list):
        raise t.error(name, expected, raw)
    return [Table(t.file, f"{t.key(name)}[{i}]", item) for i, item in enumerate(raw)]


def _bands(t: Table) -> tuple[Band, ...]:
    bands: list[Band] = []
    for b in _tables(t, "bands", '{ name = "night", hours = "00:30-07:30", unit_rate = "0.12" }'):
        name = b.string("name")
        if not name.strip() or name in (STANDARD, STANDING) or any(o.name == name for o in bands):
            raise b.error("name", f"a name of its own (not {STANDARD!r} or {STANDING!r}, not another band's)", name)
        try:
            start, end = parse_window(b.string("hours"))
        except ValueError as exc:
            raise b.error("hours", f'a window "HH:MM-HH:MM" ({exc})', b.raw("hours")) from None
        days_raw = b.raw("days", [], "a list of weekdays")
        if not isinstance(days_raw, list) or not all(isinstance(d, str) and d.lower() in WEEKDAYS for d in days_raw):
            raise b.error("days", f"a list of weekdays ({', '.join(WEEKDAYS)})", days_raw)
        days = frozenset(WEEKDAYS.index(d.lower()) for d in days_raw)
        bands.append(Band(name, start, end, decimal(b, "unit_rate"), days))
        b.finish()
    return tuple(bands)


def _period_values(t: Table, keys: tuple[str, ...]) -> dict[str, Any]:
    readers = {
        "unit_rate": lambda: decimal(t, "unit_rate", positive=True),
        "bands": lambda: _bands(t),
        "standing_charge": lambda: decimal(t, "standing_charge", Decimal(0)),
        "vat_percent": lambda: decimal(t, "vat_percent", Decimal(0), maximum=Decimal(100)),
        "vat_included": lambda: t.boolean("vat_included", True),
    }
    return {k: readers[k]() for k in keys}


def _changes(t: Table) -> tuple[TariffChange, ...]:
    changes: list[TariffChange] = []
    for c in _tables(t, "changes", '{ since = "2027-04-01", unit_rate = "0.2600" }'):
        since_raw = c.raw("since", ..., 'a date "YYYY-MM-DD"')
        try:
            since = since_raw if isinstance(since_raw, date) else date.fromisoformat(str(since_raw))
        except ValueError:
            raise c.error("since", 'a date "YYYY-MM-DD"', since_raw) from None
        if any(o.since == since for o in changes):
            raise c.error("since", "a date no other change starts on", since_raw)
        values = _period_values(c, tuple(k for k in CHANGE_KEYS if c.has(k)))
        if not values:
            raise c.error("unit_rate", f"at least one of {', '.join(CHANGE_KEYS)}", has_got=False)
        c.finish()
        changes.append(TariffChange(since, tuple(values.items())))
    return tuple(sorted(changes, key=lambda ch: ch.since))


def tariff(t: Table) -> TariffConfig:
    currency = None
    minor = 0
    if t.has("currency"):
        currency = t.string("currency")
        try:
            minor = currency_digits(currency)
        except KeyError:
            raise t.error("currency", 'an ISO 4217 currency code such as "GBP", "EUR" or "KES"', currency) from None
        if t.has("tokens_per_wh"):
            raise t.error("tokens_per_wh", "no tokens_per_wh with a currency: price energy with unit_rate, per kWh "
                          "in the currency", t.raw("tokens_per_wh"))
        if not t.has("unit_rate"):
            raise t.error("unit_rate", f"a price per kWh in {currency} (with a currency there is no default)",
                          has_got=False)
    locale = t.string("locale", TariffConfig.locale)
    try:
        babel.Locale.parse(locale)
    except (ValueError, babel.UnknownLocaleError):
        raise t.error("locale", 'a locale such as "en_GB", "fr_FR" or "sw_KE"', locale) from None
    tokens_per_wh = exact(t, "tokens_per_wh", TariffConfig.tokens_per_wh)
    values = _period_values(t, tuple(k for k in CHANGE_KEYS if k != "unit_rate" or t.has("unit_rate")))
    supply = None
    if t.has("supply"):
        st = t.table("supply")
        supply = TariffPeriod(**_period_values(st, CHANGE_KEYS))
        st.finish()
    return TariffConfig(currency=currency, locale=locale, tokens_per_wh=tokens_per_wh, changes=_changes(t),
                        minor=minor, supply=supply, **values)


SHARED = ("currency", "locale", "tokens_per_wh", "supply")  # the controller's, in [tariff] only


def named(t: Table, base: TariffConfig) -> TariffConfig:
    """A `[tariffs.NAME]` table: a tariff of its own for the sockets that name it, in [tariff]'s currency."""
    for key in SHARED:
        if t.has(key):
            raise t.error(key, f"no {key} here: it is the controller's, set in [tariff]", t.raw(key))
    values = _period_values(t, CHANGE_KEYS)
    return TariffConfig(currency=base.currency, locale=base.locale, changes=_changes(t), minor=base.minor, **values)


def named_tables(root: Table, base: TariffConfig) -> tuple[tuple[str, TariffConfig], ...]:
    tables = root.table("tariffs", {})
    found = []
    for name in sorted(tables.data):
        sub = tables.table(str(name))
        found.append((str(name), named(sub, base)))
        sub.finish()
    tables.finish()
    return tuple(found)
