"""What the tenants and the landlord are told, in words (the notifications of payg/adapters/apprise_notify.py).

Pure: which journal events and credits become a message, for whom, and its text: short and plain, the socket's name
first, in the recipient's language (the `_` the composition root hands in: gettext's, payg/webkit/i18n.py). Money and
times are written by the callables it hands in too (money as the pages write it, payg/webkit/money.py; times in
`[web] timezone`).

Tenants hear about low credit (`low_credit`), being out of credit (`credit_off`), a payment received (a credit
of kind deposit or credit booked: `paid`, with the receipt's link), a friendly-credit period that will end while
they are out of credit (`friendly_ends`) and emergency credit taken (`emergency`). The landlord hears about the
alarms: a relay bypass, a meter offline (`meter_offline`), a code lockout, unexplained funds and an uncreditable
deposit. `meter_offline` and `friendly_ends` are no journal events: the notifier derives them from the states.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, Literal

Audience = Literal["tenant", "landlord"]
LANDLORD: Final = "landlord"  # the contacts file's key for the landlord

# journal events queued for notification, in the same transaction (payg/adapters/journal_writer.py)
TENANT_EVENTS: Final = ("low_credit", "credit_off", "emergency")
LANDLORD_EVENTS: Final = ("relay_bypass", "code_lockout", "unexplained_funds", "uncreditable_deposit")
NOTIFY_EVENTS: Final = frozenset(TENANT_EVENTS + LANDLORD_EVENTS)
PAYMENT_KINDS: Final = frozenset({"deposit", "credit"})  # credits a tenant paid for (a deposit, a code, the landlord)
PAID: Final = "paid"
METER_OFFLINE: Final = "meter_offline"
FRIENDLY_ENDS: Final = "friendly_ends"


@dataclass(frozen=True)
class Message:
    audience: Audience
    title: str
    body: str


def _text(value: object) -> str:
    return str(value).strip().rstrip(".") if value is not None else ""


def _same(message: str) -> str:
    return message


def compose(kind: str, name: str, fields: Mapping[str, object], *, money: Callable[[int], str],
            when: Callable[[float], str], receipt_url: str | None = None,
            _: Callable[[str], str] = _same) -> Message | None:
    """The message for one notification of socket `name` (None: a kind nobody is told about). `fields`: the
    event's `detail`, a payment's `amount`, a derived notice's `ends_at` or `since`. `_` translates a text into
    the recipient's language (gettext's, handed in by the composition root; the same English without it), and
    `money` and `when` write in it."""
    detail = _text(fields.get("detail"))
    say = {"name": name, "detail": detail}
    if kind == "low_credit":
        return Message("tenant", _("Low credit: %(name)s") % say,
                       (_("%(name)s: %(detail)s. Top up soon to keep the power on.") if detail else
                        _("%(name)s: credit is running low. Top up soon to keep the power on.")) % say)
    if kind == "credit_off":
        return Message("tenant", _("Out of credit: %(name)s") % say,
                       _("%(name)s is off: it is out of credit. Top up to switch it back on.") % say)
    if kind == "emergency":
        return Message("tenant", _("Emergency credit: %(name)s") % say,
                       (_("%(name)s: %(detail)s. It is repaid from your next top-up.") if detail else
                        _("%(name)s: emergency credit taken. It is repaid from your next top-up.")) % say)
    if kind == PAID:
        amount = fields.get("amount")
        paid = money(amount) if isinstance(amount, int) else _("a payment")
        body = _("%(name)s: payment received, %(amount)s. Thank you.") % dict(say, amount=paid)
        if receipt_url:
            body += " " + _("Receipt: %(url)s") % {"url": receipt_url}
        return Message("tenant", _("Payment received: %(name)s") % say, body)
    if kind == FRIENDLY_ENDS:
        ends = fields.get("ends_at")
        until = when(float(ends)) if isinstance(ends, int | float) else _("the end of the friendly period")
        return Message("tenant", _("Friendly credit ends: %(name)s") % say,
                       _("%(name)s is out of credit and stays on until %(until)s (friendly credit). Top up before "
                         "then to keep the power on.") % dict(say, until=until))
    alarm = {"relay_bypass": _("power flows through the open relay (%(detail)s)"),
             "code_lockout": _("code entry is locked (%(detail)s)"),
             "unexplained_funds": _("funds no payment explains (%(detail)s)"),
             "uncreditable_deposit": _("a deposit could not be credited (%(detail)s)"),
             METER_OFFLINE: _("the meter does not answer; the socket is off until it does")}.get(kind)
    if alarm is None:
        return None
    return Message("landlord", _("Alarm: %(name)s") % say,
                   _("Alarm on %(name)s: %(alarm)s. See the landlord view.") % dict(say, alarm=alarm % say))


def audience_of(kind: str) -> Audience | None:
    """Who is told about a kind of notification (None: nobody): whose language its words are composed in."""
    if kind in TENANT_EVENTS or kind in (PAID, FRIENDLY_ENDS):
        return "tenant"
    if kind in LANDLORD_EVENTS or kind == METER_OFFLINE:
        return "landlord"
    return None


def receipt_path(socket_id: str, entry_id: int, public_url: str | None) -> str:
    """The tenant's receipt page of a credit: `/s/<socket>/receipts/<entry id>`, absolute with `public_url` (a
    socket id is lower-case letters, digits, `-` and `_`: nothing to escape in a path)."""
    path = f"/s/{socket_id}/receipts/{entry_id}"
    return public_url.rstrip("/") + path if public_url else path
