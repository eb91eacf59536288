"""Issue 27's exactness run: 100,000 ticks of a time-of-use tariff over weeks, across both clock changes of
Europe/London and dated tariff changes, with a daily standing charge through meter outages, a controller down for
months and days without credit, and deposits, codes, emergency credit, friendly credit and a debt plan on top.

Afterwards the journal must hold, to the fraction of a penny, what a sum made here says, without
payg/domain/tariff.py: the reference knows only the readings the meter gave the controller (the fake meter records
them) and the price list as a landlord writes it. It prices the counter's delta between two readings minute by
minute, at an even power over their interval (what docs/tenants/tariffs.md promises): London's offsets are whole
hours, so every band edge, local midnight and clock change falls on a whole UTC minute, and each minute is priced
at the band its local wall-clock time (zoneinfo) falls in. Each local day's standing charge is the price list's,
VAT added, rounded half up to a penny.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections import defaultdict
from datetime import date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from functools import cache, cached_property
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest

from payg.adapters.clocks import ManualClock
from payg.adapters.openpaygo import OpenPaygoCodec, new_key
from payg.domain.accounts import Entry
from payg.domain.billing import MeterReading, MeterState
from payg.domain.friendly import FriendlyCredit
from payg.domain.money import MoneyUnit
from payg.domain.tariff import Band, TariffPeriod, TariffSchedule
from payg.services.codes import CodeDesk
from payg.services.deposits import DepositWatcher
from payg.services.emergency import EmergencyDesk
from payg.services.statements import StatementDesk
from tests.fakes import FakeMeter
from tests.support.rigs import Rig

LONDON = ZoneInfo("Europe/London")
WEEKDAYS, WEEKEND = frozenset(range(5)), frozenset({5, 6})
MINOR = 2  # pence


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=LONDON).timestamp()


def hm(text: str) -> int:
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


# The price list, as strings: (from, unit rate, bands (name, from, to, rate, weekdays), standing charge, VAT %,
# VAT included). The bands' edges at 01:30 fall in the hour the clocks skip in March and repeat in October. The
# 1 July change comes while the controller is down (its standing charge, 52.5p, rounds half up to 53p) and is in
# force when it starts again, over the October clock change; the 1 November one brings a night band past
# midnight and a weekend band.
PRICES = (
    (None, "0.2450", (("night", "01:30", "08:30", "0.1200", ()), ("peak", "16:00", "19:00", "0.3300", WEEKDAYS)),
     "0.5324", "5", False),
    (date(2027, 4, 1), "0.2600", (("night", "01:30", "08:30", "0.1300", ()),
                                  ("peak", "16:00", "19:00", "0.3500", WEEKDAYS)), "0.5500", "5", False),
    (date(2027, 7, 1), "0.2750", (("night", "01:30", "08:30", "0.1400", ()),), "0.5250", "5", True),
    (date(2027, 11, 1), "0.2900", (("night", "23:30", "06:30", "0.1500", ()),
                                   ("weekend", "09:00", "17:00", "0.2000", WEEKEND)), "0.6123", "20", False),
)


def schedule() -> TariffSchedule:
    periods = tuple(
        TariffPeriod(Decimal(unit), tuple(Band(name, hm(start), hm(end), Decimal(rate), frozenset(days))
                                          for name, start, end, rate, days in bands),
                     Decimal(standing), Decimal(vat), included, since)
        for since, unit, bands, standing, vat, included in PRICES)
    return TariffSchedule(periods, minor=MINOR, currency="GBP", tz=LONDON)


# --- the reference ----------------------------------------------------------------------------------------------

def price_list_on(day: date) -> tuple:
    return [p for p in PRICES if p[0] is None or p[0] <= day][-1]


@cache
def gross(price: str, vat: str, included: bool) -> Fraction:
    """Pence for a price in pounds, VAT in."""
    return Fraction(price) * (1 if included else 1 + Fraction(vat) / 100) * 10**MINOR


def band_of(bands: tuple, weekday: int, minute: int) -> tuple[str, str] | None:
    for name, start, end, rate, days in bands:
        s, e = hm(start), hm(end)
        if s < e:
            hit = s <= minute < e and (not days or weekday in days)
        else:  # past midnight: the morning part belongs to the evening's weekday
            hit = (minute >= s and (not days or weekday in days)) or (
                minute < e and (not days or (weekday - 1) % 7 in days))
        if hit:
            return name, rate
    return None


class Reference:
    """Energy per UTC minute (the counter's delta between two readings spread evenly over their interval), and
    each minute's band and price in pence per kWh, VAT in."""

    def __init__(self) -> None:
        # (minute, the interval's length in s) -> Wh x s of the intervals of that length in that minute: integers
        # while the run adds, one division per key at the end
        self._parts: dict[tuple[int, int], int] = defaultdict(int)
        self._priced: dict[int, tuple[str, Fraction]] = {}

    def add(self, t0: int, t1: int, delta_wh: int) -> None:
        if t1 == t0:  # a reading at the same instant as the one before: the whole delta at that time
            self._parts[t1 // 60, 1] += delta_wh
            return
        a = t0
        while a < t1:
            b = min((a // 60 + 1) * 60, t1)
            self._parts[a // 60, t1 - t0] += delta_wh * (b - a)
            a = b

    @cached_property
    def energy(self) -> dict[int, Fraction]:
        out: dict[int, Fraction] = defaultdict(Fraction)
        for (minute, span), wh_s in self._parts.items():
            out[minute] += Fraction(wh_s, span)
        return out

    def price(self, minute: int) -> tuple[str, Fraction]:
        found = self._priced.get(minute)
        if found is None:
            local = datetime.fromtimestamp(minute * 60, LONDON)
            _, unit, bands, _, vat, included = price_list_on(local.date())
            name, rate = band_of(bands, local.weekday(), local.hour * 60 + local.minute) or ("standard", unit)
            found = self._priced[minute] = (name, gross(rate, vat, included))
        return found

    def by_rate(self) -> dict[tuple[str, Fraction], Fraction]:
        """Wh per (band, pence per kWh)."""
        out: dict[tuple[str, Fraction], Fraction] = defaultdict(Fraction)
        for minute, wh in self.energy.items():
            if wh:
                out[self.price(minute)] += wh
        return dict(out)

    @staticmethod
    def pence(by_rate: dict[tuple[str, Fraction], Fraction]) -> Fraction:
        return sum((wh * per_kwh / 1000 for (_, per_kwh), wh in by_rate.items()), Fraction(0))

    def wh_between(self, start: float, end: float, band: str) -> Fraction:
        return sum((wh for m, wh in self.energy.items()
                    if start <= m * 60 < end and self.price(m)[0] == band), Fraction(0))


def standing_expected(first: date, last: date) -> dict[str, int]:
    """Pence per local day, from the price list: VAT added, then rounded half up."""
    out, day = {}, first
    while day <= last:
        _, _, _, standing, vat, included = price_list_on(day)
        out[day.isoformat()] = math.floor(gross(standing, vat, included) + Fraction(1, 2))
        day += timedelta(days=1)
    return out


def reference_of(readings: list[tuple[float, Fraction]]) -> Reference:
    reference = Reference()
    for (t0, c0), (t1, c1) in pairwise(readings):
        assert t0 == int(t0) and c1 >= c0 and c1.denominator == 1
        if c1 != c0:
            reference.add(int(t0), int(t1), int(c1 - c0))
    return reference


def billed_by_rate(usage: list[Entry], state: MeterState) -> dict[tuple[str, Fraction], Fraction]:
    """Wh per (band, pence per kWh) as the journal has them: its usage entries and the usage still pending."""
    out: dict[tuple[str, Fraction], Fraction] = defaultdict(Fraction)
    for e in usage:
        assert e.rate is not None and e.energy_wh is not None
        out[e.rate.band, Fraction(e.rate.units_per_kwh)] += e.energy_wh
    if state.pending_wh:
        assert state.pending_rate is not None
        out[state.pending_rate.band, Fraction(state.pending_rate.units_per_kwh)] += state.pending_wh
    return dict(out)


# --- the runs ---------------------------------------------------------------------------------------------------

class RecordingMeter(FakeMeter):
    """A fake meter that keeps every reading it gave: (when, counter)."""

    def __init__(self, clock: ManualClock):
        super().__init__(clock)
        self.readings: list[tuple[float, Fraction]] = []

    def read(self) -> MeterReading:
        reading = super().read()
        self.readings.append((reading.at, Fraction(reading.energy_wh)))
        return reading


class RecordingRig(Rig):
    """The rig with recording meters (the same across restarts)."""

    def open(self):
        self.meters = {i: m if isinstance(m, RecordingMeter) else RecordingMeter(self.clock)
                       for i, m in self.meters.items()}
        super().open()


TICK_S = 17                                   # a reading's interval rarely starts on an edge
START = at("2027-03-24T09:00:05")             # a Wednesday; the clocks go forward on Sunday 28 March
SPRING_TICKS = 62_000                         # to 5 April, past the 1 April change
BACK_AT = at("2027-10-30T11:00:11")           # down over the summer; the clocks go back on Sunday 31 October
AUTUMN_TICKS = 38_000                         # to Saturday 6 November, past the 1 November change
DRY = ((at("2027-03-29T18:00"), at("2027-04-01T20:00")),   # no top-ups: out of credit, standing charges as debt
       (at("2027-11-01T20:00"), at("2027-11-03T12:00")))
OUTAGES = ((at("2027-03-30T22:50"), at("2027-03-31T01:10")),  # the meter silent over a midnight
           (at("2027-11-02T23:40"), at("2027-11-03T00:20")))
SPRING_FORWARD = datetime(2027, 3, 28, 1, tzinfo=ZoneInfo("UTC")).timestamp()   # 01:00 GMT is 02:00 BST
AUTUMN_BACK = datetime(2027, 10, 31, 1, tzinfo=ZoneInfo("UTC")).timestamp()     # 02:00 BST is 01:00 GMT


@pytest.mark.slow
def test_billed_money_equals_an_independent_sum_over_100k_ticks_of_bands_clock_changes_and_tariff_changes(tmp_path):
    rnd = random.Random(2027)
    rig = RecordingRig(tmp_path, ids=("a",), clock=ManualClock(START), schedule=schedule(), tick_s=TICK_S,
                       deposit_poll_s=4 * TICK_S, grace_s=2.5 * TICK_S, usage_entry_s=600)
    key = new_key()
    paid = taken = 0

    def desks():
        rig.metering.settings = dataclasses.replace(
            rig.metering.settings, friendly=FriendlyCredit(hours=((hm("20:00"), hm("06:00")),), tz=LONDON))
        rig.watcher = DepositWatcher(rig.source, rig.journal, rig.clock, on_credit=rig.metering.credits_arrived,
                                     recovery_percent=30)
        rig.site.watcher = rig.watcher
        return (CodeDesk(rig.metering, rig.journal, OpenPaygoCodec(), {"a": key}, 10, recovery_percent=30),
                EmergencyDesk(rig.metering, rig.journal, tokens=150, below_tokens=50))

    codes, emergency = desks()
    meter = rig.meters["a"]
    exact = Fraction(0)
    offline_until = 0
    for n in range(SPRING_TICKS + AUTUMN_TICKS):
        if n == SPRING_TICKS:  # the controller stops for the summer and starts again in October
            rig.site.shutdown()
            rig.journal.close()
            rig.clock.set(BACK_AT)
            rig.open()
            codes, emergency = desks()
        now = rig.clock.now()
        dry = any(a <= now < b for a, b in DRY)
        if n % 1_500 == 0 and not dry:
            amount = rnd.choice([20, 60, 150, 400])
            rig.deposit("a", amount)
            paid += amount
        if n % 4_001 == 2_000 and not dry:
            paid += codes.redeem("a", codes.issue("a", 200).code).tokens
        if n % 997 == 300 and emergency.offer("a"):
            taken += emergency.take("a")
        if n % 7_919 == 500:
            offline_until = n + rnd.randint(1, 8)
        meter.offline = n < offline_until or any(a <= now < b for a, b in OUTAGES)
        meter.power_w = rnd.choice([0.0, 0.0, 0.0, 60.0, 800.0, 2000.0]) if rig.relays["a"].closed else 0.0
        exact += Fraction(meter.power_w) * TICK_S / 3600
        meter.energy_wh = int(exact)
        rig.loop.run_ticks(1)
    meter.offline = False
    rig.loop.run_ticks(2)
    rig.site.shutdown()
    end = rig.clock.now()

    reference = reference_of(meter.readings)
    entries = list(rig.journal.all_entries("a"))
    state = rig.journal.meter_state("a")
    assert state is not None
    usage = [e for e in entries if e.kind == "usage"]

    # energy: every Wh the meter counted, each at the band and price of its minute
    journal_by_rate = billed_by_rate(usage, state)
    assert sum(journal_by_rate.values()) == meter.readings[-1][1] - meter.readings[0][1]
    by_rate = reference.by_rate()
    assert journal_by_rate == by_rate
    # money: billed pence, plus pending, plus the carry, is the exact sum
    billed = -sum(e.amount for e in usage)
    assert billed + state.pending_units + state.baseline.carry == reference.pence(by_rate)

    # standing charges: one a local day, from the first tick's day to the last's, down days too, at the list's price
    standing = [e for e in entries if e.kind == "standing"]
    expected = standing_expected(datetime.fromtimestamp(START, LONDON).date(),
                                 datetime.fromtimestamp(end, LONDON).date())
    assert {e.memo: -e.amount for e in standing} == expected and len(standing) == len(expected)
    assert all(e.idem_key == f"standing:a:{e.memo}" for e in standing)

    # every top-up booked once, in full; the balance is the journal's sum
    assert sum(e.amount for e in entries if e.amount > 0) == paid + taken
    assert rig.journal.balance("a") == sum(e.amount for e in entries) - state.pending_units

    # a statement for each month of the run: each reconciles, each opens where the last closed, and together they
    # hold every entry: the energy, the standing days and the top-ups the journal has
    desk = StatementDesk(rig.journal, rig.clock, LONDON, MoneyUnit("GBP", 2))
    first_day, last_day = (datetime.fromtimestamp(t, LONDON).date() for t in (START, end))
    months, month = [], first_day.replace(day=1)
    while month <= last_day:
        following = (month + timedelta(days=32)).replace(day=1)
        months.append(desk.statement("a", month, following - timedelta(days=1)))
        month = following
    assert months[0].opening == 0 and months[-1].closing == sum(e.amount for e in entries)
    assert all(a.closing == b.opening for a, b in pairwise(months))
    assert sum(m.energy_units for m in months) == billed and sum(m.energy_wh for m in months) == sum(
        e.energy_wh for e in usage)
    assert sum(m.standing_days for m in months) == len(standing)
    assert sum(m.credits for m in months) == paid + taken

    # what the run went through, so that the equalities above were tested on it
    priced = {gross(p[1], p[4], p[5]): (i, "standard") for i, p in enumerate(PRICES)}
    priced |= {gross(b[3], p[4], p[5]): (i, b[0]) for i, p in enumerate(PRICES) for b in p[2]}
    assert len(priced) == sum(1 + len(p[2]) for p in PRICES)                    # each price tells its period
    billed_at = {priced[per_kwh] for _, per_kwh in by_rate}
    assert billed_at == {(0, "standard"), (0, "night"), (0, "peak"), (1, "standard"), (1, "night"), (1, "peak"),
                         (2, "standard"), (2, "night"), (3, "standard"), (3, "night"), (3, "weekend")}
    hour = 3600
    assert reference.wh_between(SPRING_FORWARD - hour, SPRING_FORWARD, "standard") > 0   # 00:00-01:00 GMT
    assert reference.wh_between(SPRING_FORWARD, SPRING_FORWARD + hour, "night") > 0      # from 02:00 BST
    assert reference.wh_between(AUTUMN_BACK - hour / 2, AUTUMN_BACK, "night") > 0        # 01:30-02:00 BST
    assert reference.wh_between(AUTUMN_BACK, AUTUMN_BACK + hour / 2, "standard") > 0     # 01:00-01:30 GMT
    assert reference.wh_between(AUTUMN_BACK + hour / 2, AUTUMN_BACK + hour, "night") > 0  # 01:30 GMT again
    balance, in_debt = 0, []
    for e in entries:
        if e.kind == "standing" and balance < 0 and datetime.fromtimestamp(e.at, LONDON).date().isoformat() == e.memo:
            in_debt.append(e.memo)                                              # charged on its day, out of credit
        balance += e.amount
    assert len(in_debt) >= 2
    down = {d for d in expected if date(2027, 4, 6) <= date.fromisoformat(d) < date(2027, 10, 30)}
    assert len(down) > 200 and down <= {e.memo for e in standing if e.at == BACK_AT}  # booked at the next start
    assert expected["2027-07-01"] == 53                                         # 52.5p, half up
    kinds = [e["kind"] for e in rig.journal.events("a", 100_000)]
    assert kinds.count("credit_off") >= 2 and "debt_recovered" in kinds                  # off for credit; a plan
    assert taken > 0 and any(e.kind == "emergency_repaid" for e in entries)              # emergency credit, repaid
    assert kinds.count("code") >= 5 and any(e.kind == "deposit" for e in entries)         # codes and deposits
    assert not {"counter_reset", "implausible_jump"} & set(kinds)
    gaps = [b - a for a, b in pairwise(t for t, _ in meter.readings) if b - a < 86400]
    assert max(gaps) >= 2 * 3600                                                # an outage over a midnight

