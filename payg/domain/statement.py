"""Receipts and statements: what a socket's journal entries say about a top-up or a stretch of time.

Every figure is an integer in the journal's unit (a currency's minor unit, or a token), summed from the entries;
nothing here rounds but the tax, which is the VAT inside a total (`vat_of`), shown apart and never added again.
A statement covers the entries booked at `start` <= at < `end` and reconciles exactly:

    closing = opening + top-ups - (energy + standing charges + adjustments)

where `opening` is the sum of the socket's entries booked before `start`. Usage not yet closed into an entry (the
journal's pending usage, at most `usage_entry_s` of it) is in no statement until its entry is booked; the journal's
balance subtracts it, so a statement up to now closes at the balance plus the pending usage.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from typing import Literal

from payg.domain.accounts import Entry
from payg.domain.debt import debt as debt_of
from payg.domain.tariff import vat_of

Method = Literal["deposit", "code", "emergency credit", "manual credit", "trade-in"]
ADJUSTMENT_KINDS = ("debit", "emergency_repaid", "trade_out")


def method_of(entry: Entry) -> Method | None:
    """How a credit came in (None: the entry is not a credit). A top-up code's key is `code:<socket>:<count>`; any
    other `credit` is the landlord's, by hand."""
    if entry.kind == "deposit":
        return "deposit"
    if entry.kind == "credit":
        return "code" if (entry.idem_key or "").startswith("code:") else "manual credit"
    if entry.kind == "emergency":
        return "emergency credit"
    if entry.kind == "trade_in":
        return "trade-in"
    return None


@dataclass(frozen=True)
class Receipt:
    """A top-up: its journal entry's id, time and amount, how it came in, and the balance after it: the sum of the
    socket's entries up to and including this one (pending usage not taken off; an emergency credit repaid from
    the top-up is the entry after it)."""

    id: int
    socket_id: str
    at: float
    amount: int
    method: Method
    balance_after: int


def receipt_of(entry: Entry, balance_after: int) -> Receipt | None:
    method = method_of(entry)
    if method is None:
        return None
    return Receipt(entry.id, entry.socket_id, entry.at, entry.amount, method, balance_after)


@dataclass(frozen=True)
class EnergyLine:
    """The usage of one (band, rate, VAT): rate in journal units per kWh, VAT in (None: entries from before the
    journal kept rates). `units` is what was charged, positive; `vat` the VAT inside it."""

    band: str | None
    units_per_kwh: Decimal | None
    vat_percent: Decimal | None
    energy_wh: Fraction
    units: int
    entries: int

    @property
    def vat(self) -> int:
        return vat_of(self.units, self.vat_percent) if self.vat_percent else 0


@dataclass(frozen=True)
class StandingLine:
    """The standing charges of one rate: how many days, what they came to, and the day's exact charge (journal
    units, VAT in, before the rounding to a whole unit) with its VAT percent."""

    per_day: Decimal | None
    vat_percent: Decimal | None
    days: int
    units: int
    first_day: str
    last_day: str

    @property
    def vat(self) -> int:
        return vat_of(self.units, self.vat_percent) if self.vat_percent else 0


@dataclass(frozen=True)
class Adjustment:
    """A debit that is neither energy nor a standing charge: a manual debit, emergency credit repaid, energy sold
    to a peer (`trade_out`). `amount` is positive: what it took off."""

    id: int
    at: float
    kind: str
    amount: int
    memo: str


@dataclass(frozen=True)
class Statement:
    socket_id: str
    start: float
    end: float
    opening: int
    top_ups: tuple[Receipt, ...]
    energy: tuple[EnergyLine, ...]
    standing: tuple[StandingLine, ...]
    adjustments: tuple[Adjustment, ...]
    debt: int   # owed at the close (see `make`)

    @property
    def credits(self) -> int:
        return sum(t.amount for t in self.top_ups)

    @property
    def energy_units(self) -> int:
        return sum(g.units for g in self.energy)

    @property
    def energy_wh(self) -> Fraction:
        return sum((g.energy_wh for g in self.energy), Fraction(0))

    @property
    def standing_units(self) -> int:
        return sum(g.units for g in self.standing)

    @property
    def standing_days(self) -> int:
        return sum(g.days for g in self.standing)

    @property
    def adjustment_units(self) -> int:
        return sum(a.amount for a in self.adjustments)

    @property
    def debits(self) -> int:
        return self.energy_units + self.standing_units + self.adjustment_units

    @property
    def tax(self) -> int:
        """The VAT inside the energy and standing charges, each group's rounded on its own."""
        return sum(g.vat for g in self.energy) + sum(g.vat for g in self.standing)

    @property
    def closing(self) -> int:
        return self.opening + self.credits - self.debits


def make(socket_id: str, start: float, end: float, opening: int, entries: Iterable[Entry],
         deferred: int | None = None) -> Statement:
    """The statement of `entries` (the socket's, booked in [start, end), in the order booked) after `opening`.

    The debt at the close is what the repayment plan keeps aside (`deferred`, known as of now: pass it only for a
    statement that runs to now) plus what the usable credit is below zero (payg/domain/debt.py); without it, what
    the closing balance is below zero. Raises ValueError for an entry of another socket or outside the range."""
    top_ups: list[Receipt] = []
    energy: dict[tuple[str | None, Decimal | None, Decimal | None], list[Entry]] = {}
    standing: dict[tuple[Decimal | None, Decimal | None], list[Entry]] = {}
    adjustments: list[Adjustment] = []
    running, total = opening, 0
    for e in entries:
        if e.socket_id != socket_id or not start <= e.at < end:
            raise ValueError(f"entry {e.id} ({e.socket_id} at {e.at}) is not in this statement")
        running += e.amount
        total += e.amount
        receipt = receipt_of(e, running)
        if receipt is not None:
            top_ups.append(receipt)
        elif e.kind == "usage":
            r = e.rate
            energy.setdefault((None, None, None) if r is None else (r.band, r.units_per_kwh, r.vat_percent),
                              []).append(e)
        elif e.kind == "standing":
            r = e.rate
            standing.setdefault((None, None) if r is None else (r.units_per_kwh, r.vat_percent), []).append(e)
        elif e.kind in ADJUSTMENT_KINDS:
            adjustments.append(Adjustment(e.id, e.at, e.kind, -e.amount, e.memo))
        else:  # pragma: no cover - every kind is one of the above
            raise ValueError(f"entry {e.id} has an unknown kind {e.kind!r}")
    closing = opening + total
    statement = Statement(
        socket_id, start, end, opening, tuple(top_ups),
        tuple(EnergyLine(band, rate, vat, sum((e.energy_wh or Fraction(0) for e in group), Fraction(0)),
                         -sum(e.amount for e in group), len(group)) for (band, rate, vat), group in energy.items()),
        tuple(StandingLine(per_day, vat, len(group), -sum(e.amount for e in group), group[0].memo, group[-1].memo)
              for (per_day, vat), group in standing.items()),
        tuple(adjustments),
        debt_of(closing, deferred) if deferred is not None else max(0, -closing))
    if statement.closing != closing:  # every entry is in exactly one figure
        raise ValueError(f"statement of {socket_id} does not reconcile: {statement.closing} != {closing}")
    return statement


# --- periods ----------------------------------------------------------------------------------------------------

MAX_DAYS = 3660  # a statement covers at most ten years
MIN_YEAR, MAX_YEAR = 1970, 9998  # the day after the last still has a date and an instant


def period_of(month: str | None = None, first: str | None = None, last: str | None = None) -> tuple[date, date]:
    """The local days a statement covers, first and last included: a month (`2027-01`) or `first` to `last`
    (ISO dates; `last` alone is refused, `first` alone runs to `first`). Raises ValueError saying what is wrong."""
    if month is not None:
        if first is not None or last is not None:
            raise ValueError("give a month, or a first and last day, not both")
        try:
            year, mon = (int(p) for p in month.split("-"))
            if len(month) != 7:
                raise ValueError
            day_one = _checked(date(year, mon, 1))
        except ValueError:
            raise ValueError(f"a month is YYYY-MM from {MIN_YEAR} to {MAX_YEAR}, such as 2027-01; got {month!r}") \
                from None
        return day_one, date(year, mon, calendar.monthrange(year, mon)[1])
    if first is None:
        raise ValueError("give a month (YYYY-MM), or a first day (and a last day)")
    start, end = _day(first, "first"), _day(last, "last") if last is not None else _day(first, "first")
    if end < start:
        raise ValueError(f"the last day ({end}) is before the first ({start})")
    if end - start > timedelta(days=MAX_DAYS):
        raise ValueError(f"a statement covers at most {MAX_DAYS} days")
    return start, end


def _day(text: str, which: str) -> date:
    try:
        if len(text) != 10:
            raise ValueError
        return _checked(date.fromisoformat(text))
    except ValueError:
        raise ValueError(f"the {which} day is YYYY-MM-DD from {MIN_YEAR} to {MAX_YEAR}, such as 2027-01-31; "
                         f"got {text!r}") from None


def _checked(d: date) -> date:
    if not MIN_YEAR <= d.year <= MAX_YEAR:
        raise ValueError(f"{d.year} is out of range")
    return d


# --- as a table (the CSV of the web and the CLI) ------------------------------------------------------------------

TABLE_FIELDS = ["socket", "section", "id", "time_utc", "item", "band", "rate", "quantity", "unit", "amount", "vat",
                "currency"]


def table(s: Statement, minor: int, currency: str | None) -> list[list[str]]:
    """The statement as rows of TABLE_FIELDS: amounts and rates as exact decimals in the major unit (a rate per kWh,
    a standing charge per day; tokens when there is no currency), debits negative. The amounts of the opening,
    top-up, energy, standing and adjustment rows add up to the closing row's; tax and debt are shown, not added."""
    unit = currency or "tokens"

    def money(units: int | Decimal | None) -> str:  # an amount to the minor unit, a rate exactly
        if units is None:
            return ""
        major = Decimal(units).scaleb(-minor)
        return format(major, "f") if isinstance(units, int) else plain(major)

    def row(section: str, *, id: int | None = None, at: float | None = None, item: str = "", band: str = "",
            rate: Decimal | None = None, quantity: str = "", qunit: str = "", amount: int | None = None,
            vat: int | None = None) -> list[str]:
        return [s.socket_id, section, "" if id is None else str(id), "" if at is None else _utc(at), item, band,
                money(rate), quantity, qunit, money(amount), money(vat), unit]

    rows = [row("opening", at=s.start, amount=s.opening)]
    rows += [row("top-up", id=t.id, at=t.at, item=t.method, amount=t.amount) for t in s.top_ups]
    rows += [row("energy", item=g.band or "no rate kept", band=g.band or "", rate=g.units_per_kwh,
                 quantity=plain(Decimal(g.energy_wh.numerator) / g.energy_wh.denominator, 3), qunit="Wh",
                 amount=-g.units, vat=g.vat) for g in s.energy]
    rows += [row("standing", item=f"{g.first_day} to {g.last_day}", band="standing", rate=g.per_day,
                 quantity=str(g.days), qunit="days", amount=-g.units, vat=g.vat) for g in s.standing]
    rows += [row("adjustment", id=a.id, at=a.at, item=f"{a.kind}: {a.memo}" if a.memo else a.kind, amount=-a.amount)
             for a in s.adjustments]
    rows.append(row("tax", item="VAT inside the charges", vat=s.tax))
    rows.append(row("debt", item="owed at the close", amount=s.debt))
    rows.append(row("closing", at=s.end, amount=s.closing))
    return rows


def plain(d: Decimal, places: int | None = None) -> str:
    """A decimal without an exponent (`0.25725`, `-12.3`), to `places` decimals when given (half up)."""
    if places is not None:
        d = d.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    text = format(d, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _utc(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds")
