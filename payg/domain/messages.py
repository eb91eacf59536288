"""What the tenants and the landlord are told, in words (the notifications of payg/adapters/apprise_notify.py).

Pure: which journal events and credits become a message, for whom, and its text: short, plain English, the
socket's name first. Money and times are written by the callables the composition root hands in (money as the
pages write it, payg/webkit/money.py; times in `[web] timezone`).

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


def compose(kind: str, name: str, fields: Mapping[str, object], *, money: Callable[[int], str],
            when: Callable[[float], str], receipt_url: str | None = None) -> Message | None:
    """The message for one notification of socket `name` (None: a kind nobody is told about). `fields`: the
    event's `detail`, a payment's `amount`, a derived notice's `ends_at` or `since`."""
    detail = _text(fields.get("detail"))
    if kind == "low_credit":
        return Message("tenant", f"Low credit: {name}",
                       f"{name}: {detail or 'credit is running low'}. Top up soon to keep the power on.")
    if kind == "credit_off":
        return Message("tenant", f"Out of credit: {name}",
                       f"{name} is off: it is out of credit. Top up to switch it back on.")
    if kind == "emergency":
        return Message("tenant", f"Emergency credit: {name}",
                       f"{name}: {detail or 'emergency credit taken'}. It is repaid from your next top-up.")
    if kind == PAID:
        amount = fields.get("amount")
        paid = money(amount) if isinstance(amount, int) else "a payment"
        receipt = f" Receipt: {receipt_url}" if receipt_url else ""
        return Message("tenant", f"Payment received: {name}", f"{name}: payment received, {paid}. Thank you.{receipt}")
    if kind == FRIENDLY_ENDS:
        ends = fields.get("ends_at")
        until = when(float(ends)) if isinstance(ends, int | float) else "the end of the friendly period"
        return Message("tenant", f"Friendly credit ends: {name}",
                       f"{name} is out of credit and stays on until {until} (friendly credit). Top up before then "
                       f"to keep the power on.")
    alarm = {"relay_bypass": f"power flows through the open relay ({detail})",
             "code_lockout": f"code entry is locked ({detail})",
             "unexplained_funds": f"funds no payment explains ({detail})",
             "uncreditable_deposit": f"a deposit could not be credited ({detail})",
             METER_OFFLINE: "the meter does not answer; the socket is off until it does"}.get(kind)
    if alarm is None:
        return None
    return Message("landlord", f"Alarm: {name}", f"Alarm on {name}: {alarm}. See the landlord view.")


def receipt_path(socket_id: str, entry_id: int, public_url: str | None) -> str:
    """The tenant's receipt page of a credit: `/s/<socket>/receipts/<entry id>`, absolute with `public_url` (a
    socket id is lower-case letters, digits, `-` and `_`: nothing to escape in a path)."""
    path = f"/s/{socket_id}/receipts/{entry_id}"
    return public_url.rstrip("/") + path if public_url else path
