"""Complete by design, on a real Mosquitto: every event's seq is 1, 2, 3, ... for the controller, through a
restart and after pruning; delivered events are kept for [mqtt] event_retention_h, and a `replay` command sends
the kept ones again, exactly as first sent, in seq order."""

from __future__ import annotations

import json
import time

from payg.adapters.mqtt import replay as replay_module
from payg.adapters.mqtt.topics import Replay, Topics, parse_command
from tests.support import wait_until

HOME = Topics("payg", "home")
TOPICS = ("payg/home/events", "payg/home/response")


def sent(listener) -> list[bytes]:
    """Every event payload the subscriber got, in arrival order, repeats included."""
    return listener.on(HOME.events)


def book(c, n: int, tag: str) -> None:
    for i in range(n):
        c.rt.landlord.adjust("kitchen", 1, "test", f"{tag}-{i}")


def delivered(c, listener) -> list[bytes]:
    """Wait until the broker acknowledged every event and the subscriber has each: their payloads by seq."""
    wait_until(lambda: c.bridge.outbox.pending() == 0, 10, "the outbox delivered")
    last = c.bridge.outbox.last_seq()
    wait_until(lambda: len(listener.events) >= last, 10, f"{last} events at the subscriber")
    by_seq = {json.loads(p)["seq"]: p for p in sent(listener)}
    assert sorted(by_seq) == list(range(1, last + 1))  # no gaps
    return [by_seq[s] for s in range(1, last + 1)]


def replay(listener, request_id: str, **fields) -> dict:
    listener.send(HOME.command, {"command": "replay", "request_id": request_id, **fields})
    return wait_until(lambda: next((json.loads(p) for p in listener.on(HOME.response)
                                    if json.loads(p)["request_id"] == request_id), None), 10, "the reply")


def test_a_replay_sends_the_kept_events_again_exactly_as_first_sent_in_seq_order(controllers, listeners):
    hub = listeners(user="landlord", topics=TOPICS)
    c = controllers(("kitchen",), load_w=0)
    book(c, 4, "a")
    first = delivered(c, hub)
    last = len(first)
    assert last >= 4
    before = len(sent(hub))
    reply = replay(hub, "rp-1", from_seq=2)
    assert reply == {"request_id": "rp-1", "ok": True, "command": "replay", "from_seq": 2, "oldest_seq": 1,
                     "last_seq": last, "replayed": last - 1}
    wait_until(lambda: len(sent(hub)) >= before + last - 1, 10, "the replayed events")
    time.sleep(0.3)
    assert sent(hub)[before:] == first[1:]  # same bytes: same id, same seq, in seq order, nothing more
    assert replay(hub, "rp-2", from_seq=last + 5) == {"request_id": "rp-2", "ok": True, "command": "replay",
                                                      "from_seq": last + 5, "oldest_seq": 1, "last_seq": last,
                                                      "replayed": 0}


def test_a_replay_is_capped_per_command(controllers, listeners, monkeypatch):
    monkeypatch.setattr(replay_module, "REPLAY_MAX_ROWS", 3)
    hub = listeners(user="landlord", topics=TOPICS)
    c = controllers(("kitchen",), load_w=0)
    book(c, 5, "a")
    first = delivered(c, hub)
    before = len(sent(hub))
    reply = replay(hub, "cap", from_seq=1)
    assert (reply["replayed"], reply["last_seq"]) == (3, len(first))
    wait_until(lambda: len(sent(hub)) >= before + 3, 10, "three replayed events")
    time.sleep(0.3)
    assert sent(hub)[before:] == first[:3]  # and the rest is asked for from seq 4


def test_delivered_events_are_kept_for_the_retention_then_pruned_and_seq_goes_on(controllers, listeners):
    hub = listeners(user="landlord", topics=TOPICS)
    c = controllers(("kitchen",), load_w=0, mqtt_extra="event_retention_h = 24")
    assert c.bridge.retention_s == 24 * 3600
    book(c, 3, "a")
    first = delivered(c, hub)
    shift = [0.0]  # the bridge's monotonic clock, moved on by hand: pruning runs at most once an hour
    c.bridge.monotonic = lambda: time.monotonic() + shift[0]

    def prune_pass() -> None:
        done = c.bridge._pruned_at
        shift[0] += 3601
        c.bridge.publish([])  # wake the worker
        wait_until(lambda: c.bridge._pruned_at != done, 10, "a prune pass")

    c.clock.advance(23 * 3600)
    prune_pass()
    assert (c.bridge.outbox.oldest_seq(), c.bridge.outbox.last_seq()) == (1, len(first))  # kept: 23 h old
    c.clock.advance(2 * 3600)
    time.sleep(0.5)  # within the hour: not pruned yet
    assert c.bridge.outbox.oldest_seq() == 1
    prune_pass()
    assert c.bridge.outbox.oldest_seq() is None and c.bridge.outbox.last_seq() == len(first)  # all pruned
    book(c, 2, "b")
    after = delivered_after(c, hub, len(first))
    last = len(first) + len(after)
    assert [json.loads(p)["seq"] for p in after] == list(range(len(first) + 1, last + 1))  # seq goes on
    before = len(sent(hub))
    reply = replay(hub, "old", from_seq=1)  # from before the oldest kept
    assert reply == {"request_id": "old", "ok": True, "command": "replay", "from_seq": 1,
                     "oldest_seq": len(first) + 1, "last_seq": last, "replayed": len(after)}
    wait_until(lambda: len(sent(hub)) >= before + len(after), 10, "the kept events again")
    time.sleep(0.3)
    assert sent(hub)[before:] == after


def delivered_after(c, listener, seq: int) -> list[bytes]:
    wait_until(lambda: c.bridge.outbox.pending() == 0, 10, "the outbox delivered")
    last = c.bridge.outbox.last_seq()
    wait_until(lambda: {json.loads(p)["seq"] for p in sent(listener)} >= set(range(seq + 1, last + 1)), 10,
               "the new events")
    by_seq = {json.loads(p)["seq"]: p for p in sent(listener)}
    return [by_seq[s] for s in range(seq + 1, last + 1)]


def test_seq_goes_on_across_a_controller_restart(controllers, listeners):
    hub = listeners(user="landlord", topics=TOPICS)
    c = controllers(("kitchen",), load_w=0)
    book(c, 3, "a")
    first = delivered(c, hub)
    c.rt.close()
    again = controllers(("kitchen",), load_w=0)  # the same data directory: the same journal
    book(again, 2, "b")
    events = [json.loads(p) for p in delivered(again, hub)]  # from 1, no gaps
    assert events[:len(first)] == [json.loads(p) for p in first]
    assert all(e["seq"] > len(first) for e in [e for e in events if e["kind"] == "credited"][-2:])  # the new run's
    assert len({json.loads(p)["id"] for p in sent(hub)}) == len(events)  # none reused


def test_a_bad_replay_is_refused_and_the_controller_goes_on(controllers, listeners):
    hub = listeners(user="landlord", topics=TOPICS)
    c = controllers(("kitchen",), load_w=0)
    bad = [{"from_seq": 0}, {"from_seq": "3"}, {"from_seq": 2.5}, {"from_seq": True}, {},
           {"from_seq": 1, "socket": "kitchen"}]
    for i, fields in enumerate(bad):
        reply = replay(hub, f"bad-{i}", **fields)
        assert (reply["ok"], reply["command"], reply["socket"]) == (False, "replay", None), fields
        assert reply["error"]
    assert c.bridge.status()["refused"] == len(bad)
    assert replay(hub, "good", from_seq=1)["ok"] is True


def test_a_replay_command_needs_no_socket_and_echoes_its_request_id():
    assert parse_command(b'{"command": "replay", "from_seq": 7, "request_id": "hub:9"}', set()) == Replay(7, "hub:9")
    assert parse_command(b'{"command": "replay", "from_seq": 1}', {"kitchen"}) == Replay(1, None)
