"""A journal counts one unit for ever: tokens may become a currency's minor unit one for one (an old journal,
upgraded to schema 10 on the way), but a currency is never read as another one, or as tokens."""

from __future__ import annotations

import logging
import shutil

import pytest

from payg.adapters.journal import SqliteJournal
from payg.errors import ConfigError
from payg.wiring.tariffs import MONEY_CURSOR, keep_money_unit
from tests.support import ROOT
from tests.support.configs import MINIMAL, load_text

FIXTURES = ROOT / "tests" / "fixtures" / "journal"


def config(tmp_path, currency: str | None):
    tariff = f'\n[tariff]\ncurrency = "{currency}"\nunit_rate = "0.2450"\n' if currency else ""
    return load_text(tmp_path, MINIMAL + tariff)


def test_a_journal_of_tokens_from_before_tariffs_becomes_pence_one_for_one(tmp_path, caplog):
    path = tmp_path / "journal.sqlite"
    shutil.copyfile(FIXTURES / "v9.sqlite", path)
    journal = SqliteJournal(path)
    try:
        before = {s: journal.balance(s) for s in ("kitchen", "garden")}
        with caplog.at_level(logging.WARNING, logger="payg"):
            keep_money_unit(journal, config(tmp_path, "GBP"))
        assert journal.cursor(MONEY_CURSOR) == "GBP"
        assert {s: journal.balance(s) for s in ("kitchen", "garden")} == before
        assert any("each token booked is one minor unit of GBP" in r.getMessage() for r in caplog.records)
        caplog.clear()
        keep_money_unit(journal, config(tmp_path, "GBP"))       # the next start: nothing to say
        assert not caplog.records
        for other in ("EUR", None):
            with pytest.raises(ConfigError, match="this journal counts GBP"):
                keep_money_unit(journal, config(tmp_path, other))
        assert journal.cursor(MONEY_CURSOR) == "GBP"
    finally:
        journal.close()


def test_a_new_journal_keeps_the_unit_it_started_with(tmp_path):
    journal = SqliteJournal(tmp_path / "journal.sqlite")
    try:
        keep_money_unit(journal, config(tmp_path, None))
        assert journal.cursor(MONEY_CURSOR) == "tokens"
        keep_money_unit(journal, config(tmp_path, "KES"))       # tokens to shillings' cents, as documented
        assert journal.cursor(MONEY_CURSOR) == "KES"
        with pytest.raises(ConfigError, match="tariff.currency"):
            keep_money_unit(journal, config(tmp_path, "GBP"))
    finally:
        journal.close()
