"""FreshRead: reads shared by concurrent callers, each getting a read that started after it asked.

What matters for the vouchers that rely on it (ledgers/iota/channels.py): a caller never gets a value read before
it asked (a drained escrow is seen by the next voucher, as with a read of its own), and callers that ask while a
read is running share the one read that follows it. The reads here are gated by events, so every interleaving
below is forced, not hoped for.
"""

from __future__ import annotations

import threading

import pytest

from ledgers.common import FreshRead


class GatedReads:
    """read() numbers its calls and waits until the test lets that call finish."""

    def __init__(self) -> None:
        self.asked: list[frozenset] = []
        self.started = threading.Semaphore(0)
        self.release: list[threading.Event] = [threading.Event() for _ in range(10)]
        self.fail_on: int | None = None

    def __call__(self, keys: frozenset):
        number = len(self.asked)
        self.asked.append(keys)
        self.started.release()
        assert self.release[number].wait(5)
        if number == self.fail_on:
            raise OSError(f"read {number} failed")
        return number, keys


def _in_thread(fn, *args):
    out: dict = {}

    def run():
        try:
            out["value"] = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - the test looks at it
            out["error"] = exc
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


def _wait_for_waiters(fresh: FreshRead, n: int) -> None:
    """Until n callers are waiting on the condition (they have taken their ticket)."""
    for _ in range(500):
        with fresh._cond:
            if len(getattr(fresh._cond, "_waiters", ())) >= n:
                return
        threading.Event().wait(0.01)
    raise AssertionError(f"{n} callers never waited")


def test_one_caller_at_a_time_reads_once_per_call():
    reads = GatedReads()
    for e in reads.release:
        e.set()
    fresh = FreshRead(reads)
    assert fresh.get("a") == (0, frozenset({"a"}))
    assert fresh.get("b") == (1, frozenset({"b"}))
    assert len(reads.asked) == 2


def test_a_caller_arriving_during_a_read_gets_the_next_one_shared_with_the_others():
    reads = GatedReads()
    fresh = FreshRead(reads)
    first, first_out = _in_thread(fresh.get, "a")
    assert reads.started.acquire(timeout=5)  # read 0 is running
    late = [_in_thread(fresh.get, key) for key in ("b", "c", "d")]
    _wait_for_waiters(fresh, 3)
    reads.release[0].set()
    first.join(5)
    assert first_out["value"][0] == 0
    assert reads.started.acquire(timeout=5)  # read 1, started by one of the late callers
    reads.release[1].set()
    for t, out in late:
        t.join(5)
        assert out["value"] == (1, frozenset({"b", "c", "d"})), "never read 0, which began before they asked"
    assert len(reads.asked) == 2, "three callers, one read"


def test_a_failed_read_raises_in_every_caller_that_waited_for_it():
    reads = GatedReads()
    reads.fail_on = 1
    fresh = FreshRead(reads)
    first, _ = _in_thread(fresh.get, "a")
    assert reads.started.acquire(timeout=5)
    late = [_in_thread(fresh.get, key) for key in ("b", "c")]
    _wait_for_waiters(fresh, 2)
    reads.release[0].set()
    assert reads.started.acquire(timeout=5)
    reads.release[1].set()
    for t, out in late:
        t.join(5)
        assert isinstance(out.get("error"), OSError)
    reads.release[2].set()
    assert fresh.get("e")[0] == 2, "the next caller reads again"
    first.join(5)


def test_an_error_in_a_lone_read_is_raised():
    reads = GatedReads()
    reads.fail_on = 0
    reads.release[0].set()
    with pytest.raises(OSError, match="read 0 failed"):
        FreshRead(reads).get("a")
