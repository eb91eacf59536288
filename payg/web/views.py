"""What the pages share: the page settings, a socket's top-up card, and a view fresh from the dashboard."""

from __future__ import annotations

from payg import serialize
from payg.domain.codes import MAX_CODE_UNITS
from payg.domain.money import MoneyUnit
from payg.domain.settings import WebConfig
from payg.domain.socket import SocketSnapshot
from payg.ports import DepositSource
from payg.services.metering import Metering
from payg.web.live import LiveHub
from payg.webkit import money

BACKEND_NAMES = {"mock": "mock ledger", "ethereum": "Ethereum", "iota": "IOTA"}


def page_settings(metering: Metering, settings: WebConfig, code_tokens_per_unit: int | None = None,
                  unit: MoneyUnit = money.TOKENS) -> dict:
    """What every page's script is told; `code_tokens_per_unit` when top-up codes are on; `money`: how amounts
    are written (static/common.js `useMoney`)."""
    page = {"tokens_per_wh": float(metering.tariff.tokens_per_wh), "low_credit_tokens": settings.low_credit_tokens,
            "money": money.page(unit)}
    if code_tokens_per_unit is not None:  # top-up codes: the step and the most one code adds
        page["code_step_tokens"] = code_tokens_per_unit
        page["code_max_tokens"] = MAX_CODE_UNITS * code_tokens_per_unit
    return page


def topup_of(deposits: DepositSource, settings: WebConfig, socket_id: str) -> dict:
    d = deposits
    return {"address": d.address_for(socket_id), "uri": d.payment_uri(socket_id, None), "backend": d.name,
            "backend_name": BACKEND_NAMES.get(d.name, d.name), "presets": list(settings.topup_presets),
            "uris": {str(p): d.payment_uri(socket_id, p) for p in settings.topup_presets},
            "qr_url": f"/s/{socket_id}/qr.svg"}


def with_topup(state: dict, deposits: DepositSource) -> dict:
    """A socket's state as the JSON API gives it: with what its top-up QR code encodes."""
    return dict(state, topup={"address": deposits.address_for(state["id"]),
                              "uri": deposits.payment_uri(state["id"], None),
                              "backend": deposits.name,
                              "units_per_token": deposits.units_per_token})


def with_money(state: dict, snapshot: SocketSnapshot, unit: MoneyUnit) -> dict:
    """A socket's state as the JSON API gives it: with its currency and its balance written for the locale."""
    return dict(state, **serialize.money(snapshot.balance, unit, lambda x: money.text(x, unit)))


def fresh_view(hub: LiveHub, socket_id: str) -> dict:
    hub.dashboard.refresh()
    return hub.view(socket_id)
