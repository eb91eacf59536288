"""The resale check: where a resale price exceeds what the landlord pays for the same energy (`[tariff.supply]`).

In Great Britain, Ofgem's Maximum Resale Price rule lets a landlord charge a tenant no more than the landlord
pays per unit, plus a share of the standing charge, with VAT. The check compares prices with VAT in on both
sides: for every period of the resale tariff, each stretch of the week where the two tariffs' bands are
constant (their edges merged, day by day) is compared once; and the standing charges of all the sockets
together against the supply's one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from payg.domain.friendly import WEEKDAYS
from payg.domain.tariff import TariffPeriod

DAY_MIN = 24 * 60


@dataclass(frozen=True)
class Excess:
    """A resale price above the supply's: where (the period's first day, a weekday, minutes after midnight),
    the resale band and price and the supply's, per kWh with VAT in, in the major unit."""

    since: date | None
    weekdays: tuple[int, ...]
    start: int
    end: int
    band: str
    resale: Decimal
    supply_band: str
    supply: Decimal

    def text(self, currency: str) -> str:
        days = ("Every day" if len(self.weekdays) == 7
                else ", ".join(WEEKDAYS[d].capitalize() for d in self.weekdays))
        when = f"{days} {_hhmm(self.start)}-{_hhmm(self.end)}"
        since = f" from {self.since.isoformat()}" if self.since else ""
        return (f"{when}{since}: band {self.band!r} sells at {self.resale.normalize():f} {currency}/kWh with VAT, "
                f"above the supply's {self.supply_band!r} at {self.supply.normalize():f}")


@dataclass(frozen=True)
class StandingExcess:
    since: date | None
    resale_total: Decimal   # every socket's standing charge per day, VAT in, added up
    supply: Decimal         # the supply's per day, VAT in
    sockets: int

    def text(self, currency: str) -> str:
        since = f" from {self.since.isoformat()}" if self.since else ""
        whose = "the socket's standing charge is" if self.sockets == 1 else \
            f"the {self.sockets} sockets' standing charges add up to"
        return (f"{whose} {self.resale_total.normalize():f} {currency} a day with VAT{since}, above the "
                f"supply's {self.supply.normalize():f}")


def _hhmm(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def _gross(price: Decimal, period: TariffPeriod) -> Decimal:
    return price if period.vat_included else price * (100 + period.vat_percent) / 100


def _edges(period: TariffPeriod) -> set[int]:
    return {m for b in period.bands for m in (b.start, b.end)}


def unit_rate_excesses(resale: tuple[TariffPeriod, ...], supply: TariffPeriod) -> list[Excess]:
    """Every stretch of the week, in every resale period, where the resale price (VAT in) exceeds the supply's;
    the same stretch on several weekdays is one excess naming them."""
    days: dict[tuple[date | None, int, int, str, Decimal, str, Decimal], list[int]] = {}
    for period in resale:
        edges = sorted(_edges(period) | _edges(supply) | {0, DAY_MIN})
        for weekday in range(7):
            run: tuple[date | None, int, int, str, Decimal, str, Decimal] | None = None
            for start, end in zip(edges, edges[1:], strict=False):
                band, price = period.band_at(weekday, start)
                supply_band, supply_price = supply.band_at(weekday, start)
                sell, buy = _gross(price, period), _gross(supply_price, supply)
                if start == end or sell <= buy:
                    continue
                if run is not None and run[2] == start and run[3:] == (band, sell, supply_band, buy):
                    run = (run[0], run[1], end, *run[3:])
                    continue
                if run is not None:
                    days.setdefault(run, []).append(weekday)
                run = (period.since, start, end, band, sell, supply_band, buy)
            if run is not None:
                days.setdefault(run, []).append(weekday)
    return [Excess(since, tuple(wd), start, end, band, sell, supply_band, buy)
            for (since, start, end, band, sell, supply_band, buy), wd in days.items()]


def standing_excesses(per_socket: list[tuple[TariffPeriod, ...]], supply: TariffPeriod) -> list[StandingExcess]:
    """The sockets' standing charges added up (VAT in) against the supply's one, on the first day and on each day
    a socket's tariff changes."""
    days = sorted({p.since for periods in per_socket for p in periods if p.since is not None})
    limit = _gross(supply.standing_charge, supply)
    found: list[StandingExcess] = []
    for day in (None, *days):
        in_force = [_on(periods, day) for periods in per_socket]
        total = sum((_gross(p.standing_charge, p) for p in in_force), Decimal(0))
        if total > limit:
            found.append(StandingExcess(day, total, limit, len(per_socket)))
    return found


def _on(periods: tuple[TariffPeriod, ...], day: date | None) -> TariffPeriod:
    current = periods[0]
    for p in periods:
        if p.since is None or (day is not None and p.since <= day):
            current = p
    return current


def check(per_socket: list[tuple[TariffPeriod, ...]], supply: TariffPeriod,
          currency: str) -> list[str]:
    """Every excess as a sentence for the log and the landlord view; empty when every price is within the
    supply's. Each distinct tariff is compared once."""
    texts: list[str] = []
    for periods in dict.fromkeys(per_socket):
        texts += [e.text(currency) for e in unit_rate_excesses(periods, supply)]
    texts += [e.text(currency) for e in standing_excesses(per_socket, supply)]
    return list(dict.fromkeys(texts))
