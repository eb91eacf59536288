"""The charts' history made of journal buckets (payg/domain/history.py), and the pages' low-credit rule: a warning
at a crossing through use, never right after a top-up (payg/domain/notices.py `low_credit`)."""

from __future__ import annotations

import pytest

from payg.domain.history import MAX_BUCKETS, SPANS, STEPS, Bucket, per_day, series, window
from payg.domain.notices import low_credit

T0 = 1_799_971_200.0   # a UTC midnight: a multiple of every step


@pytest.mark.parametrize("span", SPANS)
def test_each_span_fits_a_phone_and_ends_at_the_last_whole_bucket(span):
    w = window(T0 + 30, span)
    length, step = STEPS[span]
    assert w.count <= MAX_BUCKETS and w.count * step == length
    assert w.end == T0 and w.start == T0 - length and w.start % step == 0
    assert w.buckets == w.count + 1                      # the running bucket, 30 s old
    assert window(T0, span).buckets == w.count           # none runs at a bucket's very end


def test_power_is_the_energy_billed_over_the_bucket_and_balance_the_sum_at_its_end():
    w = window(T0, "hour")                              # 60 buckets of a minute
    buckets = [Bucket(0, 0.0, 0, 500),                   # a deposit of 500
               Bucket(1, 10.0, 10, -10),                 # 10 Wh in a minute: 600 W on average
               Bucket(3, 7 / 3, 3, -3)]                  # an exact third of a Wh too
    s = series(w, opening_units=0, buckets=buckets, first_at=w.start + 5, units_per_token=1)
    assert len(s.t) == 60 and s.t[0] == w.start + 60 and s.t[-1] == T0
    assert s.power_w[:4] == [0.0, 600.0, 0.0, 140.0]
    assert s.balance_tokens[:4] == [500, 490, 490, 487] and s.balance_tokens[-1] == 487


def test_before_the_first_entry_there_is_nothing_to_draw_and_units_become_tokens():
    w = window(T0, "day")                                # quarter hours
    first = w.start + 10 * 900 + 1                       # the socket's first entry, in bucket 10
    s = series(w, 0, [Bucket(10, 0.0, 0, 2500)], first, units_per_token=1000)
    assert s.power_w[:10] == [None] * 10 and s.balance_tokens[:10] == [None] * 10
    assert s.balance_tokens[10] == 2.5 and s.power_w[10] == 0.0
    assert series(w, 0, [], None, 1).balance_tokens == [None] * w.count   # never an entry: no line at all


def test_the_opening_balance_carries_into_the_window_and_the_running_bucket_ends_at_now():
    w = window(T0 + 450, "day")                          # half of a quarter hour has run
    s = series(w, opening_units=1000, buckets=[Bucket(w.count, 50.0, 50, -50)], first_at=T0 - 10 * 86_400,
               units_per_token=1)
    assert s.t[-1] == T0 + 450 and len(s.t) == w.count + 1
    assert s.power_w[-1] == 400.0                        # 50 Wh over 450 s, not over the whole quarter hour
    assert s.balance_tokens[-2] == 1000 and s.balance_tokens[-1] == 950
    idle = series(w, 1000, [], T0 - 10 * 86_400, 1)
    assert idle.power_w[-1] is None and idle.power_w[-2] == 0.0   # not billed yet is not "no draw"


def test_days_sum_their_buckets_newest_first_and_a_short_day_is_its_own_length():
    start = T0
    midnights = [T0, T0 + 86_400, T0 + 86_400 + 82_800, T0 + 2 * 86_400 + 82_800]   # the second day has 23 h
    buckets = [Bucket(0, 1.5, 2, -2), Bucket(95, 1.0, 1, -1),                          # day 1: its first and last
               Bucket(96, 5.0, 5, 495),                                                # day 2 (with a deposit)
               Bucket(96 + 92, 2.0, 3, -3),                                            # day 3's first quarter hour
               Bucket(96 + 92 + 96, 9.0, 9, -9)]                                       # after the last day: left out
    days = per_day(midnights, start, 900, buckets)
    assert [d.start for d in days] == midnights[-2::-1]
    assert [(d.energy_wh, d.used_units) for d in days] == [(2.0, 3), (5.0, 5), (2.5, 3)]


def observe(states):
    """Feed (balance units, below) steps to the rule; the warning after each."""
    decided, out = None, []
    for i, (units, below) in enumerate(states):
        decided = low_credit(decided, units=units, below=below, at=float(i))
        out.append(decided.warned)
    return out


def test_low_credit_warns_when_use_crosses_the_threshold_not_after_a_top_up():
    # at 0 (below), a top-up of 150 (above 100), use down through 100, then on below it
    assert observe([(0, True), (150, False), (120, False), (100, True), (90, True)]) == [True, False, False, True, True]
    # a top-up that leaves the credit low (paying 100 with a threshold of 100) says nothing until the next crossing
    assert observe([(0, True), (100, True), (99, True), (50, True)]) == [True, False, False, False]
    # a top-up while warned silences the warning at once, even if the credit is still low
    assert observe([(200, False), (90, True), (95, True), (80, True)]) == [False, True, False, False]
    # a credit that lifts it above, and use that crosses again: warned again
    assert observe([(90, True), (300, False), (100, True)]) == [True, False, True]


def test_an_older_view_changes_nothing_and_cannot_pass_for_a_top_up():
    warned = low_credit(low_credit(None, units=200, below=False, at=10.0), units=90, below=True, at=20.0)
    assert warned.warned
    late = low_credit(warned, units=120, below=True, at=15.0)   # made from the state of t=15, after t=20's
    assert late == warned and late.warned
