"""The hub's view of each controller's event sequence: what it holds, the gaps, the replays it asks for and
when, and the events it gives up as lost. Pure: the time is passed in."""

from __future__ import annotations

from payg.hub.sequence import RETRY_MAX_S, Sequence, Sequences

TIMEOUT = 10.0


def feed(s: Sequence, *seqs: int, now: float = 0.0) -> list[bool]:
    return [s.seen(n, now) for n in seqs]


def test_events_in_order_are_complete_and_ask_nothing():
    s = Sequence()
    assert feed(s, 1, 2, 3) == [True, True, True]
    assert (s.complete_through, s.missing, s.lost, s.baseline) == (3, 0, 0, 1)
    assert s.due(0.0, TIMEOUT) is None


def test_a_gap_asks_once_from_its_first_seq_and_its_fill_closes_it():
    s = Sequence()
    feed(s, 1, 2, 5, 6)
    assert (s.complete_through, s.missing, s.first_missing) == (2, 2, 3)
    assert s.due(1.0, TIMEOUT) == 3
    s.asked("r1", 1.0)
    assert s.due(2.0, TIMEOUT) is None and s.due(10.9, TIMEOUT) is None  # one request at a time
    feed(s, 3, now=3.0)
    assert (s.complete_through, s.missing) == (3, 1) and s.request_id == "r1"
    feed(s, 4, now=3.5)
    assert (s.complete_through, s.missing, s.request_id, s.replays) == (6, 0, None, 1)
    assert s.due(100.0, TIMEOUT) is None


def test_fills_out_of_order_and_a_second_gap_above_the_first():
    s = Sequence()
    feed(s, 10, 14, 12, 17)
    assert (s.complete_through, s.missing, s.first_missing) == (10, 4, 11)  # 11, 13, 15, 16
    feed(s, 13, 16)
    assert (s.complete_through, s.missing) == (10, 2)
    feed(s, 11)
    assert (s.complete_through, s.missing, s.first_missing) == (14, 1, 15)
    feed(s, 15)
    assert (s.complete_through, s.missing, s.held) == (17, 0, set())


def test_a_seq_held_or_already_passed_is_not_new():
    s = Sequence()
    feed(s, 1, 2, 4)
    assert feed(s, 4, 2, 1) == [False, False, False]
    assert (s.complete_through, s.missing) == (2, 1)
    assert feed(s, None, "3", True, 0, -1) == [False] * 5  # no usable seq: not tracked
    assert s.missing == 1


def test_a_replay_that_cannot_reach_past_the_oldest_kept_event_makes_the_rest_lost():
    s = Sequence()
    feed(s, 1, 2, 9)
    s.asked("r1", 0.0)
    assert s.answered("r1", {"request_id": "r1", "ok": True, "command": "replay", "from_seq": 3,
                             "oldest_seq": 6, "last_seq": 9, "replayed": 4})
    assert (s.complete_through, s.missing, s.lost, s.first_missing) == (5, 3, 3, 6)  # 3, 4, 5 lost for good
    feed(s, 6, 7, 8)
    assert (s.complete_through, s.missing, s.lost, s.request_id) == (9, 0, 3, None)
    assert s.due(1000.0, TIMEOUT) is None  # never asked for again


def test_lost_counts_only_what_was_not_held_and_may_pass_the_top():
    s = Sequence()
    feed(s, 1, 3, 5)
    s.asked("r1", 0.0)
    s.answered("r1", {"request_id": "r1", "ok": True, "oldest_seq": 8, "last_seq": 9})
    assert (s.complete_through, s.lost, s.missing) == (7, 4, 0)  # 2, 4, 6, 7: 6 and 7 were never seen at all


def test_a_controller_that_keeps_no_events_loses_everything_missing_up_to_its_last():
    s = Sequence()
    feed(s, 1, 4)
    s.asked("r1", 0.0)
    s.answered("r1", {"request_id": "r1", "ok": True, "oldest_seq": None, "last_seq": 4, "replayed": 0})
    assert (s.complete_through, s.lost, s.missing) == (4, 2, 0)


def test_responses_to_other_requests_or_refusals_change_nothing():
    s = Sequence()
    feed(s, 1, 4)
    s.asked("r1", 0.0)
    assert not s.answered("someone-else", {"ok": True, "oldest_seq": 4})
    assert not s.answered(None, {"ok": True, "oldest_seq": 4})
    assert s.answered("r1", {"request_id": "r1", "ok": False, "error": "unknown command", "oldest_seq": 4})
    assert (s.complete_through, s.lost, s.missing) == (1, 0, 2)


def test_no_event_of_the_replay_within_the_timeout_asks_again_from_the_first_still_missing():
    s = Sequence()
    feed(s, 1, 2, 6)
    assert s.due(0.0, TIMEOUT) == 3
    s.asked("r1", 0.0)
    assert s.due(9.9, TIMEOUT) is None
    feed(s, 3, now=8.0)  # progress: the wait starts again from here
    assert s.due(17.9, TIMEOUT) is None
    assert s.due(18.0, TIMEOUT) == 4
    s.asked("r2", 18.0)
    assert s.due(18.0 + TIMEOUT, TIMEOUT) is None  # a fruitless request: the next waits twice as long
    assert s.due(18.0 + 2 * TIMEOUT, TIMEOUT) == 4
    s.asked("r3", 38.0)
    assert s.due(38.0 + 4 * TIMEOUT, TIMEOUT) == 4
    s.asked("r4", 78.0)
    feed(s, 4, now=80.0)  # progress again: back to the plain timeout
    assert s.due(89.9, TIMEOUT) is None and s.due(90.0, TIMEOUT) == 5
    assert s.replays == 4 and list(s.requests) == ["r1", "r2", "r3", "r4"]


def test_the_wait_between_fruitless_requests_has_a_ceiling():
    s = Sequence()
    feed(s, 1, 3)
    now = 0.0
    for _ in range(12):
        assert s.due(now, TIMEOUT) == 2
        s.asked("r", now)
        now += RETRY_MAX_S
    assert s.due(now - 1, TIMEOUT) is None


def test_an_answer_to_an_earlier_request_still_counts():
    s = Sequence()
    feed(s, 1, 5)
    s.asked("r1", 0.0)
    s.asked("r2", 20.0)
    assert s.answered("r1", {"request_id": "r1", "ok": True, "oldest_seq": 3, "last_seq": 5})
    assert (s.complete_through, s.lost, s.missing) == (2, 1, 2)


def test_a_hub_restart_takes_the_first_seq_it_sees_as_its_baseline():
    before = Sequence()
    feed(before, 1, 2, 3)
    after = Sequence()  # the hub restarted: nothing is remembered, and the history before is not asked for
    assert feed(after, 250, 251) == [True, True]
    assert (after.baseline, after.complete_through, after.missing) == (250, 251, 0)
    assert after.due(0.0, TIMEOUT) is None
    feed(after, 253)
    assert after.due(0.0, TIMEOUT) == 252


def test_the_fleet_figure_over_every_controller():
    seqs = Sequences(TIMEOUT)
    for n in (1, 2, 3):
        seqs.seen("home", n, 0.0)
    for n in (7, 9, 12):
        seqs.seen("shop", n, 0.0)
    assert seqs.due(0.0) == [("shop", 8)]
    seqs.asked("shop", "r1", 0.0)
    assert seqs.due(1.0) == []
    assert seqs.answered("shop", {"request_id": "r1", "ok": True, "oldest_seq": 9, "last_seq": 12})
    assert not seqs.answered("home", {"request_id": "r1", "ok": True})  # another controller's request
    assert seqs.of("shop") == {"complete_through": 9, "missing": 2, "lost": 1, "baseline_seq": 7, "replays": 1,
                               "replaying": True}
    assert seqs.of("nobody")["complete_through"] is None
    assert seqs.summary() == {"complete": False, "controllers": 2, "controllers_complete": 1, "missing": 2,
                              "lost": 1}
    seqs.unsent("shop", "r1")
    assert seqs.due(1.0) == [("shop", 10)]
    for n in (10, 11):
        seqs.seen("shop", n, 2.0)
    assert seqs.summary()["complete"] is True


def test_with_a_settle_time_a_gap_is_asked_for_only_once_it_is_that_old_and_one_that_closes_before_never():
    # (hub workers: seq 7 may come through one worker a moment before seq 6 through another)
    s = Sequence()
    feed(s, 1, 2, now=0.0)
    feed(s, 4, now=10.0)
    assert s.due(10.5, TIMEOUT, settle_s=1.0) is None
    feed(s, 3, now=10.6)  # the late one: the gap closed by itself, nothing was asked
    assert (s.missing, s.replays, s.gap_at) == (0, 0, None)
    feed(s, 6, now=20.0)
    assert s.due(20.9, TIMEOUT, settle_s=1.0) is None and s.due(21.0, TIMEOUT, settle_s=1.0) == 5
    feed(s, 8, now=21.5)  # a second gap above the first: the first's age counts
    s.asked("r1", 21.0)
    assert s.due(21.6, TIMEOUT, settle_s=1.0) is None  # the request outstanding waits for its timeout as before
    many = Sequences(TIMEOUT, settle_s=1.0)
    for n, t in ((1, 0.0), (3, 5.0)):
        many.seen("home", n, t)
    assert many.due(5.5) == [] and many.due(6.0) == [("home", 2)]


def test_a_states_events_through_opens_a_gap_for_last_events_lost_and_it_is_asked_for_two_seconds_on():
    s = Sequence()
    feed(s, 1, 2, 3, now=0.0)
    assert s.hint(3, 1.0) is False and s.hint(2, 1.0) is False  # nothing new: the hub holds those
    assert s.hint(6, 10.0) is True  # 4, 5 and 6 sent, none came (the broker dropped them, say)
    assert (s.top, s.missing, s.first_missing) == (6, 3, 4)
    assert s.due(11.9, TIMEOUT) is None  # they may still be on their way, behind the state
    assert s.due(12.0, TIMEOUT) == 4
    s.asked("r1", 12.0)
    feed(s, 4, 5, 6, now=12.5)  # the replay
    assert (s.complete_through, s.missing, s.hinted, s.request_id) == (6, 0, False, None)
    late = Sequence()
    feed(late, 1, now=0.0)
    late.hint(2, 1.0)
    feed(late, 2, now=1.5)  # the event came after its state: nothing was ever asked
    assert (late.missing, late.replays) == (0, 0)


def test_events_through_before_the_first_event_sets_nothing():
    s = Sequence()
    assert s.hint(40, 0.0) is False and (s.baseline, s.top, s.missing) == (None, None, 0)
    many = Sequences(TIMEOUT)
    assert many.hint("home", 9, 0.0) is False  # a controller never seen
