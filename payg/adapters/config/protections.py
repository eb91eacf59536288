"""[protections] and a socket's own `protections = { ... }`: what a prepaid tenant is owed (payg/domain)."""

from __future__ import annotations

from datetime import date, tzinfo

from payg.adapters.config.tables import Table, fill, read_key
from payg.domain.friendly import WEEKDAYS, FriendlyCredit, parse_window
from payg.domain.settings import ProtectionsConfig

# keys a socket may set for itself, over the controller's
SOCKET_KEYS = ("debt_recovery_percent", "emergency_credit_tokens", "emergency_below_tokens", "warn_hours")


def _warn_hours(t: Table) -> tuple[float, ...]:
    expected = "a list of 0 to 2 numbers of hours > 0 (at most 744), such as [24, 2]"
    warn = t.raw("warn_hours", [], expected)
    if (not isinstance(warn, list) or len(warn) > 2
            or not all(isinstance(h, (int, float)) and not isinstance(h, bool) and 0 < h <= 24 * 31 for h in warn)):
        raise t.error("warn_hours", expected, warn)
    return tuple(sorted((float(h) for h in warn), reverse=True))


def _values(t: Table, present_only: bool) -> dict:
    """The keys a socket may set too, validated; with `present_only`, only those the table sets."""
    return {k: _warn_hours(t) if k == "warn_hours" else read_key(t, ProtectionsConfig, k)
            for k in SOCKET_KEYS if not present_only or t.has(k)}


def socket(t: Table) -> tuple[tuple[str, object], ...]:
    """A socket's `protections = { ... }`: the keys it sets over the controller's."""
    values = _values(t, present_only=True)
    t.finish()
    return tuple(sorted(values.items()))


def controller(t: Table, tz: tzinfo | None, per_socket: dict[str, tuple[tuple[str, object], ...]]) -> ProtectionsConfig:
    return fill(t, ProtectionsConfig, **_values(t, present_only=False),
                friendly_credit=_friendly(t.table("friendly_credit", {}), tz),
                per_socket=tuple((sid, o) for sid, o in per_socket.items() if o))


def _friendly(t: Table, tz: tzinfo | None) -> FriendlyCredit:
    def strings(name: str, expected: str) -> list[str]:
        value = t.raw(name, [], expected)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise t.error(name, expected, value)
        return value

    hours = []
    for text in strings("hours", 'a list of daily windows such as ["16:00-08:00"]'):
        try:
            hours.append(parse_window(text))
        except ValueError as exc:
            raise t.error("hours", f'windows "HH:MM-HH:MM" ({exc})', text) from None
    days = set()
    for text in strings("days", "a list of weekdays such as [\"saturday\", \"sunday\"]"):
        if text.lower() not in WEEKDAYS:
            raise t.error("days", f"weekdays: {', '.join(WEEKDAYS)}", text)
        days.add(WEEKDAYS.index(text.lower()))
    holidays = set()
    for text in strings("holidays", 'a list of dates such as ["2026-12-25"]'):
        try:
            holidays.add(date.fromisoformat(text))
        except ValueError:
            raise t.error("holidays", "dates as YYYY-MM-DD", text) from None
    t.finish()
    return FriendlyCredit(tuple(hours), frozenset(days), frozenset(holidays), tz)
