"""The landlord's desk on the FakeJournal: overrides, manual credits and debits, alarms."""

from __future__ import annotations

import pytest

from payg.errors import InvalidAmount, UnknownSocket
from tests.fakes import FakeJournal
from tests.support.rigs import Rig


@pytest.fixture
def rig(tmp_path):
    r = Rig(tmp_path, journal=FakeJournal())
    r.loop.run_ticks(1)
    return r


def test_a_manual_credit_is_booked_once_per_request_and_switches_the_relay_on_at_once(rig):
    assert not rig.relays["a"].closed
    assert rig.landlord.adjust("a", 5, "  goodwill   after an outage ", "req-00001") is True
    assert rig.relays["a"].closed and rig.balance() == 5
    assert rig.landlord.adjust("a", 5, "goodwill after an outage", "req-00001") is False  # a double submit
    assert rig.balance() == 5
    entry = rig.journal.entry_by_key("manual:req-00001")
    assert (entry.kind, entry.memo) == ("credit", "goodwill after an outage")
    assert [e["detail"] for e in rig.journal.events("a") if e["kind"] == "manual"] == [
        "+5 tokens: goodwill after an outage"]
    with pytest.raises(InvalidAmount, match="already used for another adjustment"):
        rig.landlord.adjust("a", 6, "other", "req-00001")


def test_a_debit_may_not_take_the_balance_below_zero(rig):
    rig.landlord.adjust("a", 5, "credit", "req-00001")
    with pytest.raises(InvalidAmount, match="more than the balance"):
        rig.landlord.adjust("a", -6, "too much", "req-00002")
    assert rig.landlord.adjust("a", -5, "refund", "req-00003") and rig.balance() == 0
    assert not rig.relays["a"].closed


@pytest.mark.parametrize("amount, reason", [(0, "x"), (True, "x"), (10**12 + 1, "x"), (5, "   ")])
def test_a_bad_adjustment_is_refused_and_books_nothing(rig, amount, reason):
    with pytest.raises(InvalidAmount):
        rig.landlord.adjust("a", amount, reason, "req-00001")
    assert rig.journal.entries_ == []


def test_an_override_holds_the_relay_off_whatever_the_balance_until_automatic(rig):
    rig.landlord.adjust("a", 100, "credit", "req-00001")
    rig.landlord.set_override("a", "off")
    assert not rig.relays["a"].closed and rig.metering.state("a").override == "off"
    assert rig.journal.overrides() == {"a": "off"}
    rig.loop.run_ticks(3)
    assert not rig.relays["a"].closed
    rig.landlord.set_override("a", None)
    assert rig.relays["a"].closed and rig.journal.overrides() == {}
    with pytest.raises(ValueError):
        rig.landlord.set_override("a", "on")
    with pytest.raises(UnknownSocket):
        rig.landlord.set_override("nope", "off")


def test_acknowledging_alarms_counts_them_and_closes_them(rig):
    with rig.journal.transaction() as tx:
        tx.event("a", "relay_bypass", "300.0 W measured", rig.clock.now())
        tx.event("a", "implausible_jump", "counter 5 Wh -> 900 Wh", rig.clock.now())
    assert rig.landlord.acknowledge_alarms("a") == 2
    assert rig.journal.open_alarms() == {} and rig.landlord.acknowledge_alarms("a") == 0
