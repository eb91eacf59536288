"""[tariff]: what energy costs, in a currency or in tokens (payg/domain/tariff.py bills with it).

Read by payg/adapters/config/tariff.py; every key is defined once here, on its field.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, tzinfo
from decimal import Decimal
from fractions import Fraction

from payg.domain.config_keys import not_a_key, setting
from payg.domain.tariff import Band, TariffPeriod, TariffSchedule

CHANGE_KEYS = ("unit_rate", "bands", "standing_charge", "vat_percent", "vat_included")


@dataclass(frozen=True)
class TariffChange:
    """A `[[tariff.changes]]` entry: from local midnight of `since`, the keys it sets; the others carry on."""

    since: date
    values: tuple[tuple[str, object], ...]


@dataclass(frozen=True)
class TariffConfig:
    currency: str | None = setting(None, "ISO 4217 code (`\"GBP\"`, `\"EUR\"`, `\"KES\"`): balances, prices and "
                                   "statements are money in this currency, the journal counting its minor unit "
                                   "(pence, cents). Unset: tokens, as before", kind="ISO 4217 code",
                                   shown="none (tokens)", by_hand=True)
    locale: str = setting("en_GB", "how money is written on the pages, the CLI and statements (`\"fr_FR\"`: "
                          "1 234,56 €)", kind="locale name", by_hand=True)
    tokens_per_wh: Fraction = setting(Fraction(1), "price of one Wh in tokens, when there is no `currency` and no "
                                      "`unit_rate`; exact (floats are refused, money is exact)",
                                      kind='positive integer, or a decimal string such as `"0.25"`', by_hand=True)
    unit_rate: Decimal | None = setting(None, "price of one kWh outside every band: in the currency's major unit "
                                        "(`\"0.2450\"` for 24.50p), or in tokens with no currency",
                                        kind='decimal string such as `"0.2450"`, or integer',
                                        shown="1,000 tokens (`tokens_per_wh` × 1000)", by_hand=True)
    bands: tuple[Band, ...] = setting((), "time-of-use bands, the first that covers a time wins: "
                                      '`{ name = "night", hours = "00:30-07:30", unit_rate = "0.1200" }`, and '
                                      '`days = ["saturday", "sunday"]` for some weekdays only (a band past midnight '
                                      "belongs to the day it starts)", kind="list of tables", shown="`[]`",
                                      by_hand=True)
    standing_charge: Decimal = setting(Decimal(0), "charged for each local day, once, at the first tick of the day "
                                       "(a day the controller was down is charged when it starts again); it "
                                       "makes debt when there is no credit, as usage does",
                                       kind="decimal string", shown="`\"0\"`", by_hand=True)
    vat_percent: Decimal = setting(Decimal(0), "VAT (or sales tax), shown apart on statements",
                                   kind="decimal string or integer, 0–100", shown="`0`", by_hand=True)
    vat_included: bool = setting(True, "`true`: the rates and the standing charge include VAT; `false`: VAT is "
                                 "added to them")
    changes: tuple[TariffChange, ...] = setting((), "`[[tariff.changes]]`: `since = \"2027-04-01\"` and any of "
                                                "`unit_rate`, `bands`, `standing_charge`, `vat_percent`, "
                                                "`vat_included`, in force from local midnight of that date; the "
                                                "keys not set carry on", kind="list of tables", shown="`[]`",
                                                by_hand=True)
    supply: TariffPeriod | None = setting(None, "`[tariff.supply]`: what the landlord pays for the energy "
                                          "(`unit_rate`, `bands`, `standing_charge`, `vat_percent`, `vat_included`, "
                                          "as above). payg warns at start, and the landlord view says, wherever a "
                                          "resale price is above it, band by band (see [Tariffs](tenants/tariffs.md"
                                          "#the-resale-check))", kind="table", shown="none (no check)", by_hand=True)
    minor: int = not_a_key(0)   # the currency's decimal places (0: tokens), looked up by the loader

    @property
    def periods(self) -> tuple[TariffPeriod, ...]:
        unit_rate = self.unit_rate if self.unit_rate is not None else _per_kwh(self.tokens_per_wh)
        first = TariffPeriod(unit_rate, self.bands, self.standing_charge, self.vat_percent, self.vat_included)
        periods = [first]
        for change in sorted(self.changes, key=lambda c: c.since):
            before = periods[-1]
            values = {k: getattr(before, k) for k in CHANGE_KEYS}
            values.update(change.values)
            periods.append(TariffPeriod(since=change.since, **values))
        return tuple(periods)

    def schedule(self, tz: tzinfo | None) -> TariffSchedule:
        return TariffSchedule(self.periods, self.minor, self.currency, tz)

    @property
    def units_per_wh(self) -> Fraction:
        """What one Wh costs in journal units at the first period's base rate (the trade price, the pages)."""
        return self.periods[0].rate_units_per_wh(self.minor)


def _per_kwh(units_per_wh: Fraction) -> Decimal:
    return TariffSchedule.flat(units_per_wh).periods[0].unit_rate
