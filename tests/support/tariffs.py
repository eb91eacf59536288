"""The tariff the services' tests bill with: UK Economy 7 in pence, London time."""

from __future__ import annotations

import zoneinfo
from datetime import datetime
from decimal import Decimal

from payg.domain.tariff import Band, TariffPeriod, TariffSchedule

LONDON = zoneinfo.ZoneInfo("Europe/London")


def economy7() -> TariffSchedule:
    """12.00p from 00:30 to 07:30, 24.50p otherwise, 53.24p a day, 5 % VAT added."""
    night = Band("night", 30, 450, Decimal("0.1200"))
    return TariffSchedule((TariffPeriod(Decimal("0.2450"), (night,), Decimal("0.5324"), Decimal(5), False),),
                          minor=2, currency="GBP", tz=LONDON)


def local(y: int, mo: int, d: int, h: int, mi: int = 0) -> float:
    """An instant given in London's local time."""
    return datetime(y, mo, d, h, mi, tzinfo=LONDON).timestamp()
