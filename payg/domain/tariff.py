"""A tariff schedule: unit rates by time of use, a daily standing charge and VAT, changing on given dates.

Money in the journal is an integer of the tariff's smallest unit: the currency's minor unit (a penny, a cent;
`minor = 2`) or, with no currency, a token (`minor = 0`). Prices are exact decimals in the major unit (pounds
per kWh), as a landlord reads them on a supplier's price list; a `Rate` turns them into journal units per Wh,
with VAT in. Nothing here rounds energy charges: billing (payg/domain/billing.py) carries what falls below one
unit. A day's standing charge is rounded once, half up, to a whole unit.

Times are the controller's local time (a tzinfo; None: the system's). The rate changes only where the local
wall clock crosses a band's edge, where the local date changes (weekdays, a new period), or where the clock
itself jumps (daylight saving): `next_change` finds the first of these after an instant, so a delta between
two readings can be split by time exactly (`split`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from functools import cached_property

STANDARD = "standard"  # the band of every time no band names
STANDING = "standing"  # what a standing charge's entry names as its band
DAY_S = 86400
WHOLE = Fraction(1)    # the share of a reading's interval at a single rate (`split`), compared by identity


@dataclass(frozen=True)
class Band:
    """A time-of-use band: from `start` to `end` (minutes after local midnight; an end at or before the start
    runs past midnight) on `days` (0 = Monday; empty: every day), at `unit_rate` per kWh."""

    name: str
    start: int
    end: int
    unit_rate: Decimal
    days: frozenset[int] = frozenset()

    def covers(self, weekday: int, minute: float) -> bool:
        if self.start < self.end:
            return (not self.days or weekday in self.days) and self.start <= minute < self.end
        # past midnight: the part after midnight belongs to the day the band started
        if minute >= self.start:
            return not self.days or weekday in self.days
        return minute < self.end and (not self.days or (weekday - 1) % 7 in self.days)


@dataclass(frozen=True, eq=False)
class Rate:
    """What energy costs at one time: the band, its price as configured, VAT, and journal units per Wh.

    Two rates are equal when they bill the same: the same band, units per kWh (VAT in) and VAT percent (a rate
    read back from the journal, `Rate.of`, equals the configured one it was written from)."""

    band: str
    unit_rate: Decimal          # per kWh in the major unit, as configured (VAT in or not: `vat_included`)
    vat_percent: Decimal
    vat_included: bool
    minor: int                  # decimal places of the journal's unit

    @cached_property
    def units_per_kwh(self) -> Decimal:
        """Journal units per kWh, VAT in: exact (a finite decimal)."""
        gross = self.unit_rate if self.vat_included else self.unit_rate * (100 + self.vat_percent) / 100
        return gross.scaleb(self.minor)

    @cached_property
    def units_per_wh(self) -> Fraction:
        return Fraction(self.units_per_kwh) / 1000

    @cached_property
    def key(self) -> tuple[str, Decimal, Decimal]:
        return self.band, self.units_per_kwh, self.vat_percent

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Rate) and (self is other or self.key == other.key)

    def __hash__(self) -> int:
        return hash(self.key)

    @classmethod
    def of(cls, band: str, units_per_kwh: Decimal, vat_percent: Decimal) -> Rate:
        """A rate as the journal keeps it: units per kWh with VAT in."""
        return cls(band, units_per_kwh, vat_percent, True, 0)


@dataclass(frozen=True)
class Charge:
    """A day's standing charge: whole journal units, VAT in, and what it was made from."""

    day: date
    units: int
    per_day: Decimal            # as configured
    vat_percent: Decimal
    gross_units: Decimal        # exact, VAT in, before the rounding to `units`


@dataclass(frozen=True)
class TariffPeriod:
    """One tariff in force from local midnight of `since` (None: from the start) until the next period."""

    unit_rate: Decimal
    bands: tuple[Band, ...] = ()
    standing_charge: Decimal = Decimal(0)   # per local day, in the major unit
    vat_percent: Decimal = Decimal(0)
    vat_included: bool = True
    since: date | None = None

    def rate_units_per_wh(self, minor: int) -> Fraction:
        """Journal units per Wh at the base rate (no band), VAT in."""
        return Rate(STANDARD, self.unit_rate, self.vat_percent, self.vat_included, minor).units_per_wh

    def band_at(self, weekday: int, minute: float) -> tuple[str, Decimal]:
        for band in self.bands:  # the first band that covers the time
            if band.covers(weekday, minute):
                return band.name, band.unit_rate
        return STANDARD, self.unit_rate


@dataclass(frozen=True)
class Segment:
    start: float
    end: float
    rate: Rate


@dataclass
class TariffSchedule:
    """The periods of one tariff, in order of `since`; `minor` is the currency's (0: tokens)."""

    periods: tuple[TariffPeriod, ...]
    minor: int = 0
    currency: str | None = None
    tz: tzinfo | None = field(default=None, compare=False)
    _segment: Segment | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.periods:
            raise ValueError("a tariff needs at least one period")
        firsts = [p for p in self.periods if p.since is None]
        dated = sorted((p for p in self.periods if p.since is not None), key=lambda p: p.since or date.min)
        if len(firsts) > 1:
            raise ValueError("only the first period of a tariff may be without a date")
        if len({p.since for p in dated}) != len(dated):
            raise ValueError("two periods of a tariff start on the same date")
        self.periods = (*firsts, *dated)
        self._rates: dict[tuple[int, str, Decimal], Rate] = {}

    @classmethod
    def flat(cls, units_per_wh: Fraction) -> TariffSchedule:
        """The mission's rule in tokens: one rate at all times, no standing charge, no VAT."""
        per_kwh = units_per_wh * 1000
        rate = Decimal(per_kwh.numerator) / Decimal(per_kwh.denominator)
        if Fraction(rate) != per_kwh:
            raise ValueError(f"{units_per_wh} per Wh is not a finite decimal per kWh")
        return cls((TariffPeriod(rate),))

    def rates(self) -> list[Rate]:
        """Every rate the periods name: each period's base rate and its bands', in order."""
        found: list[Rate] = []
        for p in self.periods:
            for band, unit_rate in ((STANDARD, p.unit_rate), *((b.name, b.unit_rate) for b in p.bands)):
                rate = self._rate(p, band, unit_rate)
                if rate not in found:
                    found.append(rate)
        return found

    @property
    def is_flat(self) -> bool:
        return len(self.periods) == 1 and not self.periods[0].bands and not self.periods[0].standing_charge

    # --- local time -------------------------------------------------------------------------------------------

    def _local(self, t: float) -> datetime:
        return datetime.fromtimestamp(t, self.tz) if self.tz is not None else datetime.fromtimestamp(t)

    def _instant(self, d: date, minute: int = 0, fold: int = 0) -> float:
        return datetime(d.year, d.month, d.day, minute // 60, minute % 60, tzinfo=self.tz, fold=fold).timestamp()

    def _offset(self, t: float) -> float:
        local = self._local(t)
        off = (local if self.tz is not None else local.astimezone()).utcoffset()
        return off.total_seconds() if off is not None else 0.0

    def local_day(self, t: float) -> date:
        return self._local(t).date()

    def day_start(self, d: date) -> float:
        """The instant local day `d` begins."""
        return self._instant(d)

    def period_on(self, d: date) -> TariffPeriod:
        current = self.periods[0]
        for p in self.periods:
            if p.since is None or p.since <= d:
                current = p
        if current.since is not None and current.since > d:
            raise ValueError(f"no tariff period covers {d.isoformat()} (the first starts {current.since})")
        return current

    # --- rates ------------------------------------------------------------------------------------------------

    def _rate(self, period: TariffPeriod, band: str, unit_rate: Decimal) -> Rate:
        key = (id(period), band, unit_rate)
        rate = self._rates.get(key)
        if rate is None:
            rate = Rate(band, unit_rate, period.vat_percent, period.vat_included, self.minor)
            self._rates[key] = rate
        return rate

    def rate_at(self, t: float) -> Rate:
        local = self._local(t)
        period = self.period_on(local.date())
        minute = local.hour * 60 + local.minute + (local.second + local.microsecond / 1e6) / 60
        band, unit_rate = period.band_at(local.weekday(), minute)
        return self._rate(period, band, unit_rate)

    def next_change(self, t: float) -> float:
        """The first instant after `t` at which the rate may differ from the rate at `t`."""
        day = self.local_day(t)
        candidates: list[float] = []
        for d in (day - timedelta(days=1), day, day + timedelta(days=1)):
            candidates.append(self._instant(d + timedelta(days=1)))
            for band in self.period_on_or_first(d).bands:
                for minute in (band.start, band.end):
                    candidates.extend(self._instant(d, minute, fold) for fold in (0, 1))
        later = min(c for c in candidates if c > t)
        jump = self._offset_change(t, later)
        return later if jump is None else min(later, jump)

    def period_on_or_first(self, d: date) -> TariffPeriod:
        try:
            return self.period_on(d)
        except ValueError:
            return self.periods[0]

    def _offset_change(self, t: float, limit: float) -> float | None:
        """The first whole second after `t` and up to `limit` where the UTC offset changes (a clock change)."""
        before = self._offset(t)
        if self._offset(limit) == before:
            return None
        lo, hi = math.floor(t), math.ceil(limit)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self._offset(mid) == before:
                lo = mid
            else:
                hi = mid
        return float(hi) if hi > t else None

    def segment_at(self, t: float) -> Segment:
        """The stretch of time around `t` with one rate (kept: consecutive readings fall in the same one)."""
        seg = self._segment
        if seg is not None and seg.start <= t < seg.end:
            return seg
        rate = self.rate_at(t)
        if len(self.periods) == 1 and not self.periods[0].bands:
            seg = Segment(-math.inf, math.inf, rate)  # one rate for ever
        else:
            end = self.next_change(t)
            while end < t + DAY_S and self.rate_at(end) == rate:  # an edge where nothing changes
                end = self.next_change(end)
            seg = Segment(t, end, rate)
        self._segment = seg
        return seg

    def split(self, t0: float, t1: float) -> list[tuple[Fraction, Rate]]:
        """The interval [t0, t1) in pieces of one rate each: (share of the interval, rate), shares exact, summing
        to 1. A reading's delta is spread over its interval at an even power: each rate bills its share."""
        if t1 <= t0:
            return [(WHOLE, self.segment_at(t1).rate)]
        first = self.segment_at(t0)
        if t1 <= first.end:
            return [(WHOLE, first.rate)]
        total = Fraction(t1) - Fraction(t0)
        pieces: list[tuple[Fraction, Rate]] = []
        start, seg = t0, first
        while True:
            end = min(seg.end, t1)
            share = (Fraction(end) - Fraction(start)) / total
            if pieces and pieces[-1][1] == seg.rate:
                pieces[-1] = (pieces[-1][0] + share, seg.rate)
            elif share:
                pieces.append((share, seg.rate))
            if end >= t1:
                return pieces
            start, seg = end, self.segment_at(end)

    def segments(self, t0: float, horizon_s: float) -> Iterator[Segment]:
        """The stretches of one rate from `t0` on, up to `horizon_s` later (for the cut-off's forecast)."""
        t, stop = t0, t0 + horizon_s
        while t < stop:
            seg = self.segment_at(t)
            end = min(seg.end, stop)
            yield Segment(t, end, seg.rate)
            t = end

    # --- standing charge --------------------------------------------------------------------------------------

    def standing(self, d: date) -> Charge:
        period = self.period_on(d)
        per_day = period.standing_charge
        gross = per_day if period.vat_included else per_day * (100 + period.vat_percent) / 100
        exact = gross.scaleb(self.minor)
        units = int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))
        return Charge(d, units, per_day, period.vat_percent, exact)

    @property
    def has_standing_charge(self) -> bool:
        return any(p.standing_charge for p in self.periods)

    def time_to_spend(self, units: float, power_w: float | None, now: float,
                      horizon_s: float = 2 * DAY_S) -> float | None:
        """Seconds until `units` are spent drawing `power_w` from `now`: each rate ahead for its stretch, and each
        standing charge at the local midnight it is taken. None: not within `horizon_s`, or nothing drawn."""
        if not power_w or power_w <= 0:
            return None
        left = units
        if left <= 0:
            return 0.0
        day = self.local_day(now) + timedelta(days=1)
        midnight = self.day_start(day)
        for seg in self.segments(now, horizon_s):
            start = seg.start
            per_s = power_w / 3600 * float(seg.rate.units_per_wh)
            while start < seg.end:
                end = min(seg.end, midnight)
                if per_s > 0 and left <= per_s * (end - start):
                    return start + left / per_s - now
                left -= per_s * (end - start)
                start = end
                if end == midnight:
                    left -= self.standing(day).units
                    if left <= 0:
                        return end - now
                    day += timedelta(days=1)
                    midnight = self.day_start(day)
        return None


def vat_of(gross_units: int, vat_percent: Decimal) -> int:
    """The VAT inside `gross_units`, to the nearest unit (half up): what a statement shows as tax."""
    exact = Fraction(gross_units) * Fraction(vat_percent) / (100 + Fraction(vat_percent))
    return math.floor(exact + Fraction(1, 2)) if exact >= 0 else -math.floor(-exact + Fraction(1, 2))
