"""BusPool: reads every meter once per tick (the MeterReader of payg/ports/).

Meters that share a bus (one RS485 port) are read one after the other by that bus's
worker, every bus at once; meters on no bus (simulated ones) are read in the calling
thread. The tick waits at most `deadline_s` for the buses: a reading that came back by
then is used, a meter still being read has none this tick ("bus ... slow"), and a bus
whose previous round is still on the wire is not asked again ("bus ... busy") until it is
done, so one dead meter never holds up the sockets of another bus.

A meter that timed out is backed off: it is asked again only every 2, 4, 8, ... polls (at
most every `max_probe_every`), with its `probe()` (a read with a short timeout; a meter
without one is read) instead of `read()`, and after the meters of its bus that answer. So
a dead meter costs its bus-mates one full timeout, once, and then a fraction of a poll now
and then: the healthy meters on its bus are read every tick. Its first answer ends the
backing off.

The deadline is waited out through a `Waiter` (wait for an event with a timeout); tests
pass one that follows a virtual clock instead of real time.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from payg.domain.billing import MeterReading
from payg.errors import MeterTimeout, MeterUnavailable
from payg.ports import EnergyMeter


@runtime_checkable
class BusMeter(EnergyMeter, Protocol):
    """A meter on a bus (hardware/modbus/meter.py ModbusMeter)."""

    def probe(self) -> MeterReading:
        """A read with a short timeout, for a meter that has been silent."""


@dataclass
class _Silence:
    error: str   # why the last attempt failed
    every: int   # polls between two attempts
    skip: int    # polls left before the next attempt


class Waiter(Protocol):
    def wait(self, event: threading.Event, timeout_s: float) -> bool:
        """Until `event` is set (True) or `timeout_s` has passed (False)."""


class RealTime:
    def wait(self, event: threading.Event, timeout_s: float) -> bool:
        return event.wait(timeout_s)


class _Round:
    """One bus's reads of one tick: the results as they arrive."""

    def __init__(self, socket_ids: list[str], tick: _Tick):
        self.socket_ids = socket_ids
        self.tick = tick
        self.results: dict[str, MeterReading | MeterUnavailable] = {}


class _Tick:
    """The rounds one tick started; `done` once every one of them has finished."""

    def __init__(self, rounds: int):
        self.remaining = rounds
        self.done = threading.Event()
        if rounds == 0:
            self.done.set()


_NO_ROUNDS = _Tick(0)


class BusPool:
    def __init__(self, meters: Mapping[str, EnergyMeter], buses: dict[str, list[str]], deadline_s: float,
                 waiter: Waiter | None = None, max_probe_every: int = 32):
        on_bus = [sid for ids in buses.values() for sid in ids]
        if len(set(on_bus)) != len(on_bus) or not set(on_bus) <= set(meters):
            raise ValueError("every socket on a bus must be a known socket, on one bus only")
        self.meters = dict(meters)
        self.buses = {bus_id: list(ids) for bus_id, ids in buses.items() if ids}
        self.local = [sid for sid in meters if sid not in set(on_bus)]
        self.deadline_s = deadline_s
        self.waiter = waiter or RealTime()
        # a worker per bus, each started at its bus's first round (none without buses)
        self._pool = ThreadPoolExecutor(max_workers=max(1, len(self.buses)), thread_name_prefix="bus")
        self._rounds: dict[str, _Round] = {}
        self._futures: dict[str, Future[None]] = {}  # each bus's latest round being read
        self.max_probe_every = max(2, max_probe_every)
        self._silent: dict[str, _Silence] = {}
        self._lock = threading.Lock()

    def read_all(self) -> dict[str, MeterReading | MeterUnavailable]:
        results: dict[str, MeterReading | MeterUnavailable] = {}
        idle = []
        for bus_id, ids in self.buses.items():
            previous = self._futures.get(bus_id)
            if previous is not None and not previous.done():
                for sid in ids:
                    results[sid] = MeterUnavailable(f"bus {bus_id} busy: the previous poll has not finished")
            else:
                idle.append(bus_id)
        tick = _Tick(len(idle)) if idle else _NO_ROUNDS  # sockets with a meter of their own only: no Event a tick
        for bus_id in idle:
            with self._lock:
                ids = self.buses[bus_id]
                order = [sid for sid in ids if sid not in self._silent] + [sid for sid in ids if sid in self._silent]
            current = self._rounds[bus_id] = _Round(order, tick)
            self._futures[bus_id] = self._pool.submit(self._read_round, current)
        for sid in self.local:
            results[sid] = self._read(sid)
        if idle:
            self.waiter.wait(tick.done, self.deadline_s)
        for bus_id in idle:
            current, future = self._rounds[bus_id], self._futures[bus_id]
            error = future.exception() if future.done() else None
            if error is not None:
                raise error  # not a meter failing but a bug: the tick fails and trips
            with self._lock:
                arrived = dict(current.results)
            for sid in self.buses[bus_id]:
                results[sid] = arrived[sid] if sid in arrived else MeterUnavailable(
                    f"bus {bus_id} slow: no reply within {self.deadline_s:.2f} s")
        return results

    def _read_round(self, current: _Round) -> None:
        try:
            for sid in current.socket_ids:
                result = self._attempt(sid)
                with self._lock:
                    current.results[sid] = result
        finally:
            with self._lock:
                current.tick.remaining -= 1
                if current.tick.remaining == 0:
                    current.tick.done.set()

    def _read(self, sid: str) -> MeterReading | MeterUnavailable:
        try:
            return self.meters[sid].read()
        except MeterUnavailable as exc:
            return exc

    def _attempt(self, sid: str) -> MeterReading | MeterUnavailable:
        """A bus meter's read this poll: read, probed when it has been silent, or skipped while backed off."""
        with self._lock:
            silence = self._silent.get(sid)
            if silence is not None and silence.skip > 0:
                silence.skip -= 1
                return MeterTimeout(f"{silence.error} (silent: asked every {silence.every} polls)")
        meter = self.meters[sid]
        result: MeterReading | MeterUnavailable
        try:
            result = meter.probe() if silence is not None and isinstance(meter, BusMeter) else meter.read()
        except MeterUnavailable as exc:
            result = exc
        with self._lock:
            if not isinstance(result, MeterTimeout):
                self._silent.pop(sid, None)
            elif silence is None:
                self._silent[sid] = _Silence(str(result), 2, 1)
            else:
                every = min(2 * silence.every, self.max_probe_every)
                self._silent[sid] = _Silence(str(result), every, every - 1)
        return result

    def busy(self) -> set[str]:
        """The buses whose last round is still being read."""
        return {bus_id for bus_id, future in self._futures.items() if not future.done()}

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
