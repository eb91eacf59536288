"""`payg statement` as its users run it: a process of its own reading a journal file, in pounds on Economy 7."""

from __future__ import annotations

import csv
import io
import zoneinfo
from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest

from payg.adapters.journal import SqliteJournal
from payg.domain.tariff import STANDING, Rate
from tests.support.cli import config_text, payg

LONDON = zoneinfo.ZoneInfo("Europe/London")
DAY = Rate.of("standard", Decimal("25.725"), Decimal(5))
NIGHT = Rate.of("night", Decimal("12.6"), Decimal(5))
STAND = Rate.of(STANDING, Decimal("55.902"), Decimal(5))


def local(mo, d, h, mi=0, year=2027) -> float:
    return datetime(year, mo, d, h, mi, tzinfo=LONDON).timestamp()


def economy7_controller(tmp_path: Path) -> Path:
    """A config in pounds and London time, and a journal written as the loop writes one: the last day of December,
    January with top-ups, usage at both rates, standing charges and a manual debit, the first day of February."""
    data_dir = tmp_path / "var"
    text = config_text(data_dir, web=False).replace("[web]\n", '[web]\ntimezone = "Europe/London"\n')
    text += ('\n[tariff]\ncurrency = "GBP"\nunit_rate = "0.2450"\nstanding_charge = "0.5324"\nvat_percent = "5"\n'
             'vat_included = false\nbands = [{ name = "night", hours = "00:30-07:30", unit_rate = "0.1200" }]\n')
    config = tmp_path / "payg.toml"
    config.write_text(text)
    data_dir.mkdir()
    journal = SqliteJournal(data_dir / "journal.sqlite")
    with journal.transaction() as tx:
        tx.debit("kitchen", 56, "standing", local(12, 31, 0, 1, year=2026), idem_key="standing:kitchen:2026-12-31",
                 memo="2026-12-31", rate=STAND)
        tx.credit("kitchen", 1000, "deposit", "mock:d0", local(12, 31, 8, year=2026))
        tx.debit("kitchen", 56, "standing", local(1, 1, 0, 0), idem_key="standing:kitchen:2027-01-01",
                 memo="2027-01-01", rate=STAND)
        tx.credit("kitchen", 2000, "deposit", "mock:d1", local(1, 1, 9))
        tx.debit("kitchen", 258, "usage", local(1, 1, 20), energy_wh=Fraction(1000), rate=DAY)
        tx.debit("kitchen", 126, "usage", local(1, 2, 3), energy_wh=Fraction(1000), rate=NIGHT)
        tx.debit("kitchen", 56, "standing", local(1, 2, 0, 0), idem_key="standing:kitchen:2027-01-02",
                 memo="2027-01-02", rate=STAND)
        tx.debit("kitchen", 25, "debit", local(1, 15, 12), idem_key="manual:r1", memo="broken plug")
        tx.credit("kitchen", 500, "credit", "code:kitchen:4", local(1, 31, 23, 59))
        tx.debit("kitchen", 56, "standing", local(2, 1, 0, 0), idem_key="standing:kitchen:2027-02-01",
                 memo="2027-02-01", rate=STAND)
    journal.close()
    return config


def test_a_months_statement_in_pounds_reconciles_as_text_and_as_csv(tmp_path: Path):
    config = economy7_controller(tmp_path)
    result = payg("statement", "--socket", "kitchen", "--month", "2027-01", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Statement: Kitchen (kitchen)" in out and "2027-01-01 to 2027-01-31, local days of Europe/London" in out
    opening, closing = 1000 - 56, 1000 - 56 + 2000 + 500 - 258 - 126 - 2 * 56 - 25
    lines = {line.split("  ")[0].strip(): line.split()[-1] for line in out.splitlines() if "  " in line}
    assert lines["opening balance"] == "£9.44" and lines["closing balance"] == f"£{Decimal(closing) / 100}"
    assert lines["top-ups"] == "£25.00" and lines["adjustments"] == "-£0.25"
    assert "standing charges (2 days)" in out and "0.25725 GBP" in out and "0.12600 GBP" not in out
    assert "0.126 GBP" in out and "0.55902 GBP" in out and "broken plug" in out

    result = payg("statement", "--socket", "kitchen", "--month", "2027-01", "--csv", "--config", str(config),
                  cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    by = {r["section"]: r for r in rows}
    assert by["opening"]["amount"] == f"{Decimal(opening) / 100}"
    assert by["closing"]["amount"] == "29.23" == f"{Decimal(closing) / 100}"
    summed = sum(Decimal(r["amount"]) for r in rows if r["section"] in ("opening", "top-up", "energy", "standing",
                                                                            "adjustment"))
    assert summed * 100 == closing
    energy = {r["band"]: r for r in rows if r["section"] == "energy"}
    assert energy["standard"]["rate"] == "0.25725" and energy["standard"]["amount"] == "-2.58"
    assert energy["night"]["vat"] == "0.06" and energy["night"]["quantity"] == "1000"
    assert by["standing"]["quantity"] == "2" and by["standing"]["item"] == "2027-01-01 to 2027-01-02"
    assert by["tax"]["vat"] == str(Decimal(12 + 6 + 5) / 100)     # 258 -> 12p, 126 -> 6p, 112 -> 5p
    assert {r["currency"] for r in rows} == {"GBP"}

    result = payg("statement", "--socket", "kitchen", "--from", "2027-01-02", "--to", "2027-02-01", "--csv",
                  "--config", str(config), cwd=tmp_path)
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["amount"] for r in rows if r["section"] == "closing"] == [str(Decimal(closing - 56) / 100)]


@pytest.mark.parametrize(("args", "message"), [
    (["--month", "2027-13"], "a month is YYYY-MM"),
    (["--month", "2027-01", "--from", "2027-01-01"], "not both"),
    ([], "give a month"),
    (["--from", "2027-02-01", "--to", "2027-01-01"], "before the first"),
    (["--from", "yesterday"], "the first day is YYYY-MM-DD"),
])
def test_a_bad_period_exits_2_and_says_what_is_wrong(tmp_path: Path, args: list[str], message: str):
    config = economy7_controller(tmp_path)
    result = payg("statement", "--socket", "kitchen", *args, "--config", str(config), cwd=tmp_path)
    assert result.returncode == 2 and message in result.stderr and result.stdout == "", result.stderr


def test_an_unknown_socket_exits_2_and_names_the_configured_ones(tmp_path: Path):
    config = economy7_controller(tmp_path)
    result = payg("statement", "--socket", "garage", "--month", "2027-01", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 2 and "unknown socket 'garage'" in result.stderr and "kitchen" in result.stderr
