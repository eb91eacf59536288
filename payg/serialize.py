"""The one place the core's typed values become JSON-ready dicts, for the edges that speak JSON: the web's JSON API
and pages, MQTT payloads. It imports the domain and the services' value types; neither imports it back."""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from typing import Any

from payg.domain.accounts import Entry
from payg.domain.money import MoneyUnit
from payg.domain.socket import Balance, SocketSnapshot
from payg.services.dashboard import SocketView
from payg.services.history import Chart


def number(value: int | Fraction) -> int | float:
    """An exact quantity as a JSON number: an integer when it is whole."""
    if isinstance(value, Fraction):
        return int(value) if value.denominator == 1 else float(value)
    return value


def entry(e: Entry) -> dict[str, Any]:
    """A journal entry as the JSON API and `payg journal` give it (a fractional energy as an exact string)."""
    return {"id": e.id, "socket": e.socket_id, "at": e.at, "kind": e.kind, "amount": e.amount,
            "energy_wh": None if e.energy_wh is None else exact(e.energy_wh), "key": e.idem_key, "memo": e.memo}


def exact(value: Fraction) -> int | str:
    return int(value) if value.denominator == 1 else str(value)


def balance(b: Balance) -> dict[str, Any]:
    return {"balance": b.units, "balance_tokens": b.tokens, "debt": b.debt, "debt_tokens": b.debt_tokens}


def money(b: Balance, unit: MoneyUnit, write: Callable[[int | float], str]) -> dict[str, Any]:
    """What a balance is counted in and how it reads: the currency's code (None: tokens) and the balance written
    by `write` (the edge's formatter, payg/webkit/money.py `text`: "£12.34", "1,234 tokens")."""
    return {"currency": unit.currency, "balance_text": write(b.tokens)}


def socket_state(s: SocketSnapshot) -> dict[str, Any]:
    """A socket's state with the JSON API's keys (the README's "JSON API": a socket state, without `topup` and
    the `money` keys, which the API adds)."""
    r = s.reading
    return {
        "id": s.id,
        "name": s.name,
        **balance(s.balance),
        "relay": "on" if s.relay_on else "off",
        "power_w": r.power_w if r else None,
        "voltage_v": r.voltage_v if r else None,
        "current_a": r.current_a if r else None,
        "energy_wh": number(r.energy_wh) if r else None,
        "meter": s.meter,
        "meter_error": s.meter_error,
        "relay_error": s.relay_error,
        "override": s.override,
        "credit_exhausted": s.credit_exhausted,
        "vacant": s.vacant,
        "pending_wh": float(s.pending_wh),
        "credit_warning_h": s.credit_warning_h,
        "reading_at": s.reading_at,
        "updated_at": s.updated_at,
    }


def socket_view(v: SocketView) -> dict[str, Any]:
    """A page's view of a socket (the landlord table, the tenant page, their live pushes)."""
    s, r = v.state, v.state.reading
    return {
        "id": s.id,
        "name": s.name,
        **balance(s.balance),
        "relay": "on" if s.relay_on else "off",
        "status": v.status,
        "power_w": r.power_w if r else None,
        "voltage_v": r.voltage_v if r else None,
        "current_a": r.current_a if r else None,
        "meter": s.meter,
        "meter_error": s.meter_error,
        "relay_error": s.relay_error,
        "override": s.override,
        "credit_exhausted": v.credit_exhausted,
        "vacant": s.vacant,
        "energy_today_wh": v.energy_today_wh,
        "energy_month_wh": v.energy_month_wh,
        "revenue_month_tokens": v.revenue_month_tokens,
        "last_topup_at": v.last_topup_at,
        "last_topup_tokens": v.last_topup_tokens,
        "alarms": v.alarms,
        "alarm_detail": v.alarm_detail,
        "energy_left_wh": v.energy_left_wh,
        "time_left_s": v.time_left_s,
        "low_credit": v.low_credit,
        "credit_warning_h": s.credit_warning_h,
        "off_for_credit_h_7d": v.off_for_credit_h_7d,
        "needs_help": v.needs_help,
        # the latest payment: a tenant page confirms one newer than it had ("payment received")
        "last_credit": None if v.last_credit is None else {
            "id": v.last_credit.id, "at": v.last_credit.at, "tokens": v.last_credit_tokens,
            "method": v.last_credit.method},
        "updated_at": s.updated_at,
    }


def chart(socket_id: str, c: Chart, now: float) -> dict[str, Any]:
    """A socket's chart from the journal (GET /api/sockets/<id>/history): per bucket, its end, the average power and
    the balance at its end (None before the socket's first entry); `now` is the controller's clock."""
    return {"socket": socket_id, "span": c.span, "start": c.start, "end": c.end, "step_s": c.step_s, "now": now,
            "t": c.series.t, "power_w": c.series.power_w, "balance_tokens": c.series.balance_tokens}
