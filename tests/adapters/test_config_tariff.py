"""[tariff]: a currency from ISO 4217 sets the minor unit; prices are exact; every mistake names its key."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from payg.errors import ConfigError
from tests.support.configs import MINIMAL, load_text

ECONOMY7 = '''
[tariff]
currency = "GBP"
unit_rate = "0.2450"
standing_charge = "0.5324"
vat_percent = "5"
vat_included = false
bands = [{ name = "night", hours = "00:30-07:30", unit_rate = "0.1200" }]

[[tariff.changes]]
since = "2027-04-01"
unit_rate = "0.2600"
'''


def test_a_currency_sets_the_minor_unit_and_changes_carry_the_keys_they_do_not_set(tmp_path):
    c = load_text(tmp_path, MINIMAL + ECONOMY7)
    t = c.tariff
    assert (t.currency, t.minor) == ("GBP", 2)
    first, later = t.periods
    assert later.since == date(2027, 4, 1) and later.unit_rate == Decimal("0.2600")
    assert later.bands == first.bands and later.standing_charge == Decimal("0.5324") and not later.vat_included
    assert t.units_per_wh == Decimal("25.725") / 1000                      # pence per Wh, VAT in
    assert load_text(tmp_path, MINIMAL + '[tariff]\ncurrency = "JPY"\nunit_rate = 31\n').tariff.minor == 0


def test_no_currency_keeps_tokens_at_tokens_per_wh(tmp_path):
    t = load_text(tmp_path, MINIMAL).tariff
    assert t.currency is None and t.minor == 0 and t.units_per_wh == 1
    assert t.periods[0].unit_rate == 1000                                   # tokens per kWh


@pytest.mark.parametrize("tariff, key, expected", [
    ('currency = "XYZ"\nunit_rate = "1"', "tariff.currency", "ISO 4217"),
    ('currency = "GBP"\nunit_rate = 0.245', "tariff.unit_rate", "decimal string"),
    ('currency = "GBP"\nunit_rate = "0"', "tariff.unit_rate", "> 0"),
    ('currency = "GBP"', "tariff.unit_rate", "a price per kWh in GBP"),
    ('currency = "GBP"\nunit_rate = "1"\ntokens_per_wh = 1', "tariff.tokens_per_wh", "no tokens_per_wh"),
    ('locale = "xx_QQ"', "tariff.locale", "a locale"),
    ('unit_rate = "1"\nvat_percent = "120"', "tariff.vat_percent", "at most 100"),
    ('unit_rate = "1"\nbands = [{ name = "standard", hours = "00:30-07:30", unit_rate = "1" }]',
     "tariff.bands[0].name", "a name of its own"),
    ('unit_rate = "1"\nbands = [{ name = "n", hours = "25:00-07:30", unit_rate = "1" }]',
     "tariff.bands[0].hours", "HH:MM-HH:MM"),
    ('unit_rate = "1"\nbands = [{ name = "n", hours = "00:30-07:30", unit_rate = "1", days = ["funday"] }]',
     "tariff.bands[0].days", "weekdays"),
    ('unit_rate = "1"\n[[tariff.changes]]\nsince = "2027-13-01"\nunit_rate = "2"', "tariff.changes[0].since",
     "YYYY-MM-DD"),
    ('unit_rate = "1"\n[[tariff.changes]]\nsince = "2027-04-01"', "tariff.changes[0].unit_rate", "at least one"),
])
def test_mistakes_name_their_key(tmp_path, tariff, key, expected):
    with pytest.raises(ConfigError) as err:
        load_text(tmp_path, MINIMAL + "\n[tariff]\n" + tariff + "\n")
    assert key in str(err.value) and expected in str(err.value), str(err.value)


PER_SOCKET = '''
[tariff]
currency = "GBP"
unit_rate = "0.2450"

[tariff.supply]
unit_rate = "0.2400"

[tariffs.ev]
unit_rate = "0.2000"
bands = [{ name = "night", hours = "00:30-04:30", unit_rate = "0.0800" }]
'''


def test_a_socket_names_a_tariff_of_its_own_in_the_controllers_currency(tmp_path):
    text = MINIMAL.replace('id = "kitchen"', 'id = "kitchen"\ntariff = "ev"') + PER_SOCKET
    c = load_text(tmp_path, text)
    ev = c.tariff_of(c.sockets[0])
    assert (ev.currency, ev.minor, ev.periods[0].unit_rate, ev.periods[0].bands[0].name) == ("GBP", 2,
                                                                                              Decimal("0.2"), "night")
    assert c.tariff.supply.unit_rate == Decimal("0.2400") and dict(c.tariffs) == {"ev": ev}


@pytest.mark.parametrize("edit, key, expected", [
    (lambda t: t.replace('id = "kitchen"', 'id = "kitchen"\ntariff = "evv"') + PER_SOCKET, "sockets[0].tariff",
     "(ev)"),
    (lambda t: t + PER_SOCKET + 'currency = "EUR"\n', "tariffs.ev.currency", "the controller's"),
    (lambda t: t + PER_SOCKET.replace('[tariff.supply]\nunit_rate = "0.2400"', "[tariff.supply]\nvat = 5"),
     "tariff.supply", "unit_rate"),
])
def test_per_socket_and_supply_mistakes_name_their_key(tmp_path, edit, key, expected):
    with pytest.raises(ConfigError) as err:
        load_text(tmp_path, edit(MINIMAL))
    assert key in str(err.value) and expected in str(err.value), str(err.value)
