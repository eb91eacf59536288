"""The resale check: a resale price above the supply's, band by band with VAT in on both sides, and the
sockets' standing charges together against the supply's."""

from __future__ import annotations

from datetime import date
from decimal import Decimal as D

from payg.domain.resale import check, standing_excesses, unit_rate_excesses
from payg.domain.tariff import Band, TariffPeriod

NIGHT = "00:30-07:30"


def e7(day: str, night: str, **more) -> TariffPeriod:
    return TariffPeriod(D(day), (Band("night", 30, 450, D(night)),), **more)


def test_prices_within_the_supplys_raise_nothing_even_with_vat_added_on_one_side_only():
    supply = e7("0.2573", "0.1260", standing_charge=D("0.56"))            # VAT in: 25.73p, 12.60p
    resale = e7("0.2450", "0.1200", vat_percent=D(5), vat_included=False)  # + 5 %: 25.725p, 12.6p
    assert unit_rate_excesses((resale,), supply) == []


def test_a_night_rate_above_the_supplys_is_named_each_day_with_its_hours():
    supply = e7("0.30", "0.12")
    resale = e7("0.25", "0.13")
    found = unit_rate_excesses((resale,), supply)
    assert [(x.weekdays, x.start, x.end, x.band) for x in found] == [(tuple(range(7)), 30, 450, "night")]
    assert found[0].text("GBP") == ("Every day 00:30-07:30: band 'night' sells at 0.13 GBP/kWh with VAT, above "
                                    "the supply's 'night' at 0.12")


def test_a_flat_supply_against_a_banded_resale_splits_at_the_resale_bands_edges():
    supply = TariffPeriod(D("0.20"))
    resale = e7("0.245", "0.12")
    found = unit_rate_excesses((resale,), supply)
    assert {(x.start, x.end, x.band) for x in found} == {(0, 30, "standard"), (450, 1440, "standard")}
    weekend = TariffPeriod(D("0.19"), (Band("weekend", 0, 0, D("0.21"), frozenset({5, 6})),))
    found = unit_rate_excesses((weekend,), supply)
    assert [(x.weekdays, x.start, x.end) for x in found] == [((5, 6), 0, 1440)]
    assert found[0].text("EUR").startswith("Saturday, Sunday 00:00-24:00: band 'weekend' sells at 0.21")


def test_a_later_period_is_checked_too():
    supply = TariffPeriod(D("0.30"))
    resale = (TariffPeriod(D("0.25")), TariffPeriod(D("0.31"), since=date(2027, 4, 1)))
    found = unit_rate_excesses(resale, supply)
    assert [(x.since, x.weekdays) for x in found] == [(date(2027, 4, 1), tuple(range(7)))]


def test_the_sockets_standing_charges_together_against_the_supplys():
    supply = TariffPeriod(D("0.30"), standing_charge=D("0.60"))
    three = [(TariffPeriod(D("0.2"), standing_charge=D("0.20")),)] * 3
    assert standing_excesses(three, supply) == []
    dearer = [*three[:2], (TariffPeriod(D("0.2"), standing_charge=D("0.20")),
                           TariffPeriod(D("0.2"), standing_charge=D("0.25"), since=date(2027, 4, 1)))]
    found = standing_excesses(dearer, supply)
    assert [(x.since, x.resale_total) for x in found] == [(date(2027, 4, 1), D("0.65"))]
    assert check(dearer, supply, "GBP") == [
        "the 3 sockets' standing charges add up to 0.65 GBP a day with VAT from 2027-04-01, above the supply's 0.6"]
