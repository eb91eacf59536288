"""What the API and the pages are shown of a socket (payg/domain/socket.py snapshot), and its JSON
(payg/serialize.py)."""

from __future__ import annotations

from fractions import Fraction

import pytest

from payg import serialize
from payg.domain.billing import MeterReading
from payg.domain.socket import Balance, SocketState, snapshot


@pytest.mark.parametrize("mark, balance, shown", [
    (None, 5, False),   # not cut
    (0, 0, False),      # never paid: off for lack of credit, and the balance says so already
    (-3, -3, False),    # in debt
    (1, 1, True),       # cut with part of a token kept: off although the balance is positive
    (2, 1, True),       # usage billed after the cut lowered the balance, still above zero
])
def test_credit_exhausted_is_a_cut_with_part_of_a_token_kept(mark, balance, shown):
    s = SocketState("kitchen", "Kitchen")
    s.exhausted_at_balance = mark

    state = snapshot(s, balance, 1, now=100.0, grace_s=10.0)

    assert state.credit_exhausted is shown
    assert state.balance.units == balance


@pytest.mark.parametrize("balance, deferred, upt, expected", [
    (50, 0, 1, Balance(50, 50, 0, 0)),
    (-30, 0, 10, Balance(-30, -3, 30, 3)),
    (-10, 30, 4, Balance(20, 5, 30, 7.5)),   # a plan's debt set aside: usable, and owed
    (-40, 30, 1, Balance(-10, -10, 40, 40)),
])
def test_the_balance_a_socket_may_use_and_what_it_owes(balance, deferred, upt, expected):
    assert Balance.of(balance, upt, deferred) == expected


@pytest.mark.parametrize("journal", range(-60, 61, 7))
@pytest.mark.parametrize("deferred", [0, 1, 25, 80])
def test_the_rule_docs_tenants_protections_states_holds(journal, deferred):
    # "while the usable balance is zero or more, usable credit less debt is the journal's balance; below zero,
    # the debt is the journal's balance with its sign turned"
    b = Balance.of(journal, 1, deferred)
    assert b.units == journal + deferred
    if b.units >= 0:
        assert b.units - b.debt == journal
    else:
        assert b.debt == -journal


def test_the_json_of_a_reading_is_exact_numbers_and_none_without_one():
    s = SocketState("kitchen", "Kitchen")
    s.reading = MeterReading(Fraction(5, 2), 800.0, 230.0, 3.5, at=99.0)
    s.healthy_at = 99.0
    body = serialize.socket_state(snapshot(s, 7, 1, now=100.0, grace_s=10.0))
    assert (body["energy_wh"], body["power_w"], body["meter"], body["reading_at"]) == (2.5, 800.0, "ok", 99.0)
    s.error = "timeout"
    body = serialize.socket_state(snapshot(s, 7, 1, now=100.0, grace_s=10.0))
    # no value from an old reading, but when it was taken
    gone = (body["energy_wh"], body["power_w"], body["meter_error"], body["reading_at"])
    assert gone == (None, None, "timeout", 99.0)
