"""Money: the tariff's carry, deposits in ledger units to whole tokens with their carry, and display."""

from __future__ import annotations

from fractions import Fraction

import pytest

from payg.domain.money import MAX_TOKENS, Tariff, deposit_tokens, time_left_s, tokens_shown


def test_the_tariff_debits_whole_units_and_carries_the_rest():
    t = Tariff(Fraction(37, 100))
    debit, carry = t.cost(Fraction(10), Fraction(0))
    assert (debit, carry) == (3, Fraction(7, 10))
    debit, carry = t.cost(Fraction(1), carry)
    assert (debit, carry) == (1, Fraction(7, 100))
    assert Tariff(Fraction(1), 1000).units_per_wh == 1000


def test_deposits_make_whole_tokens_and_carry_what_is_left_to_the_next_one():
    upt = 1_000_000  # nanos per token
    assert deposit_tokens(2_500_000, 0, upt) == (2, 500_000)
    assert deposit_tokens(600_000, 500_000, upt) == (1, 100_000)
    assert deposit_tokens(1, 0, upt) == (0, 1)  # less than a token: all carried, nothing lost
    total = 0
    carry = 0
    for units in (333_333, 333_333, 333_334, 999_999, 1):
        tokens, carry = deposit_tokens(units, carry, upt)
        total += tokens
    assert (total, carry) == (2, 0)


@pytest.mark.parametrize("units", [0, -5, 1.5, True, "7"])
def test_a_deposit_is_a_positive_integer_of_ledger_units(units):
    with pytest.raises(ValueError):
        deposit_tokens(units, 0, 1)


def test_a_deposit_beyond_what_the_journal_holds_is_refused():
    with pytest.raises(ValueError, match="beyond what the journal holds"):
        deposit_tokens(MAX_TOKENS * 10, 0, 10)
    assert deposit_tokens(10**40, 0, 10**30) == (10**10, 0)  # wei beyond 64 bits are fine as long as tokens fit


def test_amounts_are_shown_as_whole_tokens_when_they_are_and_time_left_needs_a_load():
    assert tokens_shown(3000, 1000) == 3 and isinstance(tokens_shown(3000, 1000), int)
    assert tokens_shown(3500, 1000) == 3.5
    assert time_left_s(1.0, 3600.0) == 1.0
    assert time_left_s(5.0, 0.0) is None and time_left_s(5.0, None) is None
    assert Tariff(Fraction(2)).energy_wh(10) == 5.0 and Tariff(Fraction(1)).energy_wh(-4) == 0.0
