"""The hub's fleet history: every event it receives, and per socket per UTC day the energy used, the top-ups, the
closing balance, kept in SQLite or PostgreSQL (fleet_archive_sql.py).

`event` and `state` are called from the MQTT thread and only touch memory: states arrive about once a second
per socket, so they are folded into one aggregate per (controller, socket, day), and a writer thread writes the
events and those aggregates every `flush_s`, in one transaction. While the database is away everything stays
pending (events bounded by `max_pending_events`, the oldest dropped and counted) and the writer retries every
`retry_s`; a batch that failed is retried as it was, under the same id, so what it adds is applied once.

A state's `energy_wh` is the meter's cumulative counter (payg/domain/billing.py Reading), so a day's energy
is the sum of the counter's rises between consecutive states, each counted on the day of the later state. A
counter that goes down (a meter reset or replaced) adds nothing: the lower value is the new baseline. The
first state a process sees of a socket rises from the counter the database last stored for it, which is how
a restarted hub continues the day. The reads show what is written (at most `flush_s` behind).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field

from payg.adapters import fleet_archive_sql as sql
from payg.adapters.fleet_archive_sql import ArchiveError
from payg.domain.fleet_history import FleetDay, SocketDay
from payg.ports import Clock

__all__ = ["ArchiveError", "FleetArchive", "FleetDay", "SocketDay"]

log = logging.getLogger("payg.hub.archive")

BATCH_EVENTS = 20_000  # events per transaction; more pending are written by the next one, at once
INT64 = 2**63 - 1
POISON_TRIES = 3  # a batch the database refuses while it answers is dropped after this many tries


@dataclass
class _Day:
    """One socket-day as seen since the last take: the counter's rises in Wh and the latest state's figures."""

    energy_wh: float = 0.0
    first_counter_wh: float | None = None  # set when no earlier counter was in memory: the writer bridges it
    last_counter_wh: float | None = None
    balance: int | None = None
    currency: str | None = None
    balance_at: float | None = None
    last_at: float | None = None


@dataclass
class _Batch:
    id: str
    take: int
    complete: bool  # every event pending at the take is in it
    events: list[sql.EventRow]
    days: dict[tuple[str, str, str], _Day] = field(default_factory=dict)
    failures: int = 0


def _day(at: float) -> str:
    return dt.datetime.fromtimestamp(at, dt.UTC).date().isoformat()


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _int(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or abs(value) > INT64:
        return None
    return value


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and "\x00" not in value else None


class FleetArchive:
    def __init__(self, url: str, clock: Clock, *, flush_s: float = 30.0, retry_s: float = 5.0,
                 max_pending_events: int = 1_000_000):
        if flush_s <= 0 or retry_s <= 0 or max_pending_events < 1:
            raise ArchiveError("flush_s and retry_s must be above 0, max_pending_events at least 1")
        self._target = sql.parse_url(url)
        self._clock = clock
        self._flush_s, self._retry_s, self._max_events = flush_s, retry_s, max_pending_events
        self._cond = threading.Condition()
        self._events: deque[sql.EventRow] = deque()
        self._days: dict[tuple[str, str, str], _Day] = {}
        self._counters: dict[tuple[str, str], float] = {}  # each socket's last counter in memory
        self._inflight: _Batch | None = None
        self._takes = 0
        self._complete_done = 0  # the last complete take written
        self._written = 0
        self._dropped = 0
        self._dropping = False
        self._last_error: str | None = None
        self._down_logged = False
        self._flush_wanted = False
        self._flush_target = 0  # the take a flush or the stop waits for
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._db: sql.Db | None = None  # the writer thread's only
        self._migrated = False
        self._migrating = threading.Lock()  # the writer's first connect, or a page read before it
        self._stored_counters: dict[tuple[str, str], float] | None = None  # as committed; the writer's only

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the archive is started already")
        self._thread = threading.Thread(target=self._run, name="payg-hub-archive", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        with self._cond:
            self._stopping = True
            self._flush_target = max(self._flush_target, self._takes + 1)
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout_s)
        status = self.status()
        if status["pending_events"] or status["pending_days"]:
            log.error("fleet history stopped with %d events and %d socket-days not written (%s)",
                      status["pending_events"], status["pending_days"], status["last_error"])

    def event(self, controller: str, body: dict) -> None:
        try:
            row = self._event_row(controller, body)
            if row is None:
                log.warning("fleet history: an event from %r without a usable id, kind or numbers, not kept: %.200r",
                            controller, body)
                return
            with self._cond:
                self._events.append(row)
                if len(self._events) > self._max_events:
                    self._events.popleft()
                    self._dropped += 1
                    if not self._dropping:
                        self._dropping = True
                        log.error("fleet history: more than %d events waiting for the database; the oldest are "
                                  "dropped (status: dropped_events)", self._max_events)
        except Exception:
            log.exception("fleet history: an event from %r not kept", controller)

    def state(self, controller: str, socket: str, body: dict) -> None:
        try:
            at = _number(body.get("at"))
            if at is None or not 0 <= at < 253402300800:  # up to year 9999
                at = self._clock.now()
            counter = _number(body.get("energy_wh"))
            balance = _int(body.get("balance"))
            currency = _text(body.get("currency"))
            key = (controller, socket, _day(at))
            with self._cond:
                agg = self._days.get(key)
                if agg is None:
                    agg = self._days[key] = _Day()
                if counter is not None:
                    before = self._counters.get((controller, socket))
                    if before is None:
                        agg.first_counter_wh = counter
                    elif counter > before:
                        agg.energy_wh += counter - before
                    self._counters[(controller, socket)] = counter
                    agg.last_counter_wh = counter
                if balance is not None and (agg.balance_at is None or at >= agg.balance_at):
                    agg.balance, agg.currency, agg.balance_at = balance, currency, at
                agg.last_at = at if agg.last_at is None else max(agg.last_at, at)
        except Exception:
            log.exception("fleet history: a state of %r/%r not kept", controller, socket)

    def flush(self, timeout_s: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            target = self._takes + 1
            self._flush_target = max(self._flush_target, target)
            self._flush_wanted = True
            self._cond.notify_all()
            while self._complete_done < target:
                left = deadline - time.monotonic()
                if left <= 0 or self._thread is None or not self._thread.is_alive():
                    return False
                self._cond.wait(left)
            return True

    def status(self) -> dict:
        with self._cond:
            inflight = self._inflight
            return {"backend": self._target.backend, "connected": self._db is not None,
                    "pending_events": len(self._events) + (len(inflight.events) if inflight else 0),
                    "pending_days": len(self._days) + (len(inflight.days) if inflight else 0),
                    "written_events": self._written, "dropped_events": self._dropped,
                    "last_error": self._last_error}

    def socket_days(self, controller: str, socket: str, days: int = 90) -> list[SocketDay]:
        first, last = self._window(days)
        self._schema()
        with sql.connected(self._target) as db:
            return [SocketDay(*row) for row in sql.socket_days(db, controller, socket, first, last)]

    def fleet_days(self, days: int = 90) -> list[FleetDay]:
        first, last = self._window(days)
        self._schema()
        with sql.connected(self._target) as db:
            return [FleetDay(*row) for row in sql.fleet_days(db, first, last)]

    def _window(self, days: int) -> tuple[str, str]:
        if days < 1:
            raise ArchiveError("days must be at least 1")
        today = dt.datetime.fromtimestamp(self._clock.now(), dt.UTC).date()
        return (today - dt.timedelta(days=days - 1)).isoformat(), today.isoformat()

    def _event_row(self, controller: str, body: dict) -> sql.EventRow | None:
        event_id, kind = _text(body.get("id")), _text(body.get("kind"))
        socket, amount = _text(body.get("socket")), _int(body.get("amount"))
        if (not event_id or kind is None or (socket is None and body.get("socket") is not None)
                or (amount is None and body.get("amount") is not None)):
            return None
        at = _number(body.get("at"))
        if at is None or not 0 <= at < 253402300800:
            at = self._clock.now()
        seq = _int(body.get("seq"))
        return (event_id, controller, seq, socket, kind, at, _day(at), amount,
                json.dumps(body, sort_keys=True, default=str))

    def _run(self) -> None:
        due = time.monotonic()
        while True:
            with self._cond:
                while not (self._stopping or self._flush_wanted) and time.monotonic() < due:
                    self._cond.wait(due - time.monotonic())
                stopping, self._flush_wanted = self._stopping, False
            ok, more = self._cycle()
            with self._cond:
                more = more or self._complete_done < self._flush_target
            if stopping and (not ok or not more):
                break
            due = time.monotonic() + (0 if ok and more else self._flush_s if ok else self._retry_s)
        if self._db is not None:
            self._db.close()

    def _cycle(self) -> tuple[bool, bool]:
        """One write: (it worked, more is pending than it took)."""
        with self._cond:
            if self._inflight is None:
                self._inflight = self._take()
            batch = self._inflight
            more = bool(self._events)
        if not batch.events and not batch.days:
            self._done(batch, None)
            return self._connect(), more
        if not self._connect():
            return False, more
        assert self._db is not None
        try:
            self._bridge_counters()
            stored = sql.write_batch(self._db, batch.id, self._clock.now(), batch.events, self._rows(batch))
        except Exception as exc:
            self._failed(batch, exc)
            return False, more
        self._done(batch, stored)
        return True, more

    def _take(self) -> _Batch:
        self._takes += 1
        events = [self._events.popleft() for _ in range(min(len(self._events), BATCH_EVENTS))]
        batch = _Batch(uuid.uuid4().hex, self._takes, not self._events, events, self._days)
        self._days = {}
        if not self._events:
            self._dropping = False
        return batch

    def _rows(self, batch: _Batch) -> list[sql.DayRow]:
        assert self._stored_counters is not None
        rows = []
        for (controller, socket, day), agg in sorted(batch.days.items()):
            energy = agg.energy_wh
            stored = self._stored_counters.get((controller, socket))
            if agg.first_counter_wh is not None and stored is not None and agg.first_counter_wh > stored:
                energy += agg.first_counter_wh - stored
            rows.append(sql.DayRow(controller, socket, day, round(energy * 1000), agg.balance, agg.currency,
                                   agg.balance_at, agg.last_at, agg.last_counter_wh))
        return rows

    def _bridge_counters(self) -> None:
        if self._stored_counters is None:
            assert self._db is not None
            self._stored_counters = sql.last_counters(self._db)

    def _done(self, batch: _Batch, stored: int | None) -> None:
        if self._stored_counters is not None:
            for (controller, socket, _), agg in sorted(batch.days.items()):
                if agg.last_counter_wh is not None:
                    self._stored_counters[(controller, socket)] = agg.last_counter_wh
        with self._cond:
            self._inflight = None
            self._written += stored or 0
            if batch.complete:
                self._complete_done = max(self._complete_done, batch.take)
            self._cond.notify_all()

    def _connect(self) -> bool:
        if self._db is not None:
            return True
        try:
            db = sql.Db(self._target)
            try:
                self._schema()
                db.ping()
            except BaseException:
                db.close()
                raise
        except Exception as exc:
            self._went_down(exc)
            return False
        with self._cond:
            self._db, self._last_error = db, None
        if self._down_logged:
            self._down_logged = False
            log.info("fleet history: the %s database is back", self._target.backend)
        return True

    def _schema(self) -> None:
        """Apply the migrations once, before the first write or read (a page may be asked for before the writer's
        first connect); an error when the database cannot be reached."""
        with self._migrating:
            if not self._migrated:
                try:
                    applied = sql.migrate(self._target)
                except ArchiveError:
                    raise
                except Exception as exc:
                    raise ArchiveError(f"the fleet history database ({self._target.backend}) cannot be migrated: "
                                       f"{type(exc).__name__}: {exc}") from exc
                if applied:
                    log.info("fleet history: migrations applied: %s", ", ".join(applied))
                self._migrated = True

    def _failed(self, batch: _Batch, exc: Exception) -> None:
        assert self._db is not None
        try:
            self._db.ping()
        except Exception:
            self._db.close()
            with self._cond:
                self._db = None
            self._went_down(exc)
            return
        batch.failures += 1
        with self._cond:
            self._last_error = f"{type(exc).__name__}: {exc}"
        if batch.failures < POISON_TRIES:
            log.warning("fleet history: a write failed though the database answers (try %d): %s",
                        batch.failures, exc)
            return
        log.error("fleet history: %d events and %d socket-days dropped: the database refused them %d times: %s",
                  len(batch.events), len(batch.days), batch.failures, exc)
        with self._cond:
            self._dropped += len(batch.events)
            self._inflight = None
            if batch.complete:
                self._complete_done = max(self._complete_done, batch.take)
            self._cond.notify_all()

    def _went_down(self, exc: Exception) -> None:
        with self._cond:
            self._last_error = f"{type(exc).__name__}: {exc}"
        if not self._down_logged:
            self._down_logged = True
            log.warning("fleet history: the %s database is unavailable, keeping the history in memory and "
                        "retrying every %g s: %s", self._target.backend, self._retry_s, exc)
