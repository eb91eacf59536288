"""Which of a controller's events the hub holds, by their "seq", and when to ask for the missing ones again.

A controller numbers its events 1, 2, 3, ... with no gaps, for ever (the MQTT contract, topics.py). So the
hub knows it holds all of them up to some seq, "complete through", and which seqs above that it has not
seen: a seq above the next one expected opens a gap. For a gap the hub asks the controller to replay its
journal's events from the first missing seq (one request at a time per controller); events that fill the gap
close it. A request that brings none of the missing events within the timeout is asked again, from the first
seq still missing, and each fruitless request doubles the wait before the next (up to `RETRY_MAX_S`), so a
controller that cannot replay (an older version refuses the command) is not asked every few seconds for ever.
A controller keeps its events for a retention period: a replay's answer whose "oldest_seq" is above a missing
seq makes that seq lost, counted and never asked for again; "complete through" then passes over it.

A hub whose events come through several workers (shared subscriptions, payg/wiring/hub_workers.py) sees one
controller's events out of order for a moment: seq 7 through one worker before seq 6 through another. So a gap may
be given `settle_s` to close by itself before it is asked for.

The first event the hub sees from a controller sets the baseline: history before it is not asked for (a hub
that starts next to a controller a year old does not fetch a year of events). Pure: no I/O, time passed in.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

RETRY_MAX_S = 600.0
HINT_SETTLE_S = 2.0  # a gap a state's "events_through" opened: the event may still be on its way behind the state
HELD_MAX = 50_000  # held seqs above a gap that does not close: past this, the oldest gap is given up as lost
REQUESTS_KEPT = 8  # the recent request ids of a controller whose answers still count (a late one tells "oldest_seq")


def _seq(x: object) -> int | None:
    return x if isinstance(x, int) and not isinstance(x, bool) and x > 0 else None


@dataclass
class Sequence:
    """One controller's events as the hub holds them."""

    baseline: int | None = None          # the first seq seen since the hub started
    complete_through: int | None = None  # every event up to this seq is held (or counted lost)
    top: int | None = None               # the highest seq seen
    lost: int = 0                        # seqs given up: the controller no longer keeps them
    replays: int = 0                     # replay requests sent
    held: set[int] = field(default_factory=set)  # seqs held above complete_through (the gaps are between)
    request_id: str | None = None        # the replay outstanding
    asked_at: float = 0.0
    progress_at: float = 0.0             # when a missing event last arrived
    gap_at: float | None = None          # when events went missing (None: none missing)
    hinted: bool = False                 # the top was raised by a state's "events_through", not by an event
    fruitless: int = 0                   # requests in a row that brought nothing
    requests: deque[str] = field(default_factory=lambda: deque(maxlen=REQUESTS_KEPT))

    @property
    def missing(self) -> int:
        if self.top is None or self.complete_through is None:
            return 0
        return self.top - self.complete_through - len(self.held)

    @property
    def first_missing(self) -> int | None:
        return self.complete_through + 1 if self.missing and self.complete_through is not None else None

    def seen(self, seq: object, now: float) -> bool:
        """An event's seq (one of a new id); True when it is one the hub did not hold."""
        n = _seq(seq)
        if n is None:
            return False
        if self.complete_through is None:
            self.baseline = self.complete_through = self.top = n
            return True
        if n <= self.complete_through or n in self.held:
            return False
        if self.top is not None and n < self.top:
            self.progress_at, self.fruitless = now, 0  # a gap's event: the replay is doing its work
        self.top = max(self.top or n, n)
        self.held.add(n)
        self._advance()
        if self.missing and self.gap_at is None:
            self.gap_at = now
        if len(self.held) > HELD_MAX:
            self._give_up(min(self.held))
        return True

    def _advance(self) -> None:
        assert self.complete_through is not None
        while self.complete_through + 1 in self.held:
            self.complete_through += 1
            self.held.discard(self.complete_through)
        if not self.missing:
            self.request_id, self.fruitless, self.gap_at, self.hinted = None, 0, None, False

    def hint(self, through: object, now: float) -> bool:
        """A state's "events_through": its controller had sent every event up to that seq. One above what the hub
        holds opens a gap even when no later event comes (the last events lost, say by a broker that dropped them
        from a full queue). Before the baseline it says nothing: history before it is not asked for. True when
        it opened or widened a gap."""
        n = _seq(through)
        if n is None or self.complete_through is None or self.top is None or n <= self.top:
            return False
        self.top, self.hinted = n, True
        if self.gap_at is None:
            self.gap_at = now
        return True

    def _give_up(self, oldest: int) -> None:
        """Every missing seq below `oldest` is lost."""
        if self.complete_through is None or oldest <= self.complete_through + 1:
            return
        below = {s for s in self.held if s < oldest}
        self.lost += oldest - 1 - self.complete_through - len(below)
        self.held -= below
        self.complete_through, self.top = oldest - 1, max(self.top or 0, oldest - 1)
        self._advance()

    def due(self, now: float, timeout_s: float, settle_s: float = 0.0) -> int | None:
        """The seq to replay from if a request should go out now, else None."""
        first = self.first_missing
        if first is None:
            return None
        wait = max(settle_s, HINT_SETTLE_S) if self.hinted else settle_s
        if self.request_id is None and self.gap_at is not None and now - self.gap_at < wait:
            return None  # a gap this young may be an event still on its way (through another worker, behind a state)
        if self.request_id is not None:
            wait = min(timeout_s * 2 ** min(self.fruitless, 30), max(timeout_s, RETRY_MAX_S))
            if now - max(self.asked_at, self.progress_at) < wait:
                return None
            self.fruitless += 1
        return first

    def asked(self, request_id: str, now: float) -> None:
        self.request_id, self.asked_at = request_id, now
        self.requests.append(request_id)
        self.replays += 1

    def unsent(self, request_id: str) -> None:
        """A request that could not go out (no broker): the next check asks again."""
        if self.request_id == request_id:
            self.request_id = None

    def answered(self, request_id: object, body: dict) -> bool:
        """A response on the controller's topic; True when it answers one of this hub's replays."""
        if not isinstance(request_id, str) or request_id not in self.requests:
            return False
        if body.get("ok") is True:
            oldest, last = _seq(body.get("oldest_seq")), _seq(body.get("last_seq"))
            if oldest is None and body.get("oldest_seq") is None and last is not None:
                oldest = last + 1  # it keeps no events at all: whatever is missing up to its last is gone
            if oldest is not None:
                self._give_up(oldest)
        return True

    def out(self) -> dict:
        return {"complete_through": self.complete_through, "missing": self.missing, "lost": self.lost,
                "baseline_seq": self.baseline, "replays": self.replays, "replaying": self.request_id is not None}


class Sequences:
    """Every controller's sequence; the fleet calls it under its own lock."""

    def __init__(self, timeout_s: float, settle_s: float = 0.0):
        self.timeout_s, self.settle_s = timeout_s, settle_s
        self._of: dict[str, Sequence] = {}

    def seen(self, controller: str, seq: object, now: float) -> bool:
        return self._of.setdefault(controller, Sequence()).seen(seq, now)

    def hint(self, controller: str, through: object, now: float) -> bool:
        s = self._of.get(controller)
        return s is not None and s.hint(through, now)

    def due(self, now: float) -> list[tuple[str, int]]:
        """(controller, from_seq) for every replay that should go out now; the caller then calls `asked`."""
        found = []
        for name, s in sorted(self._of.items()):
            first = s.due(now, self.timeout_s, self.settle_s)
            if first is not None:
                found.append((name, first))
        return found

    def asked(self, controller: str, request_id: str, now: float) -> None:
        self._of[controller].asked(request_id, now)

    def unsent(self, controller: str, request_id: str) -> None:
        if controller in self._of:
            self._of[controller].unsent(request_id)

    def answered(self, controller: str, body: dict) -> bool:
        s = self._of.get(controller)
        return s is not None and s.answered(body.get("request_id"), body)

    def of(self, controller: str) -> dict:
        return (self._of.get(controller) or Sequence()).out()

    def summary(self) -> dict:
        """The fleet's figure: complete when no controller misses an event."""
        rows = [s.out() for s in self._of.values()]
        missing = sum(r["missing"] for r in rows)
        return {"complete": missing == 0, "controllers": len(rows),
                "controllers_complete": sum(r["missing"] == 0 for r in rows), "missing": missing,
                "lost": sum(r["lost"] for r in rows)}
