"""When the metering loop writes the billing states: when something happens, else once per `persist_interval_s`.

A state is written at once with a usage entry, a counter anomaly or a shutdown (the tick's own
transaction), after a relay switch (`write_if_moved`, right after the tick's decisions), and with a
credit or an event (the journal writes every state it holds with any transaction that writes). Else
the loop keeps it (`keep_state`): the journal holds it in memory and shows it to every reader, and
the next write takes it along. All states are written together: their rows share a page or two, so
one more costs nothing, and the sockets' intervals stay in step.

A crash loses only the states kept: the meter's counter is cumulative, so the next start bills
everything from the last written counter. What a meter reset costs is in docs/operations/data.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from payg.domain.billing import BillStep, MeterState
from payg.ports.journal import BillingTx, MeteringJournal


class StateWrites:
    def __init__(self, journal: MeteringJournal, interval_s: float, state_of: Callable[[str], MeterState | None]):
        self.journal = journal
        self.interval_s = interval_s
        self._state_of = state_of  # a socket's state as the loop holds it
        self._unsaved: set[str] = set()  # sockets whose state was kept, not written, since the last write
        self._written_at = float("-inf")  # when the loop last wrote every state
        self.relay_moved = False  # a relay switched since: the states are written after the decisions

    def loaded(self, now: float) -> None:
        """The states were just read from the journal: as written."""
        self._unsaved.clear()
        self._written_at = now
        self.relay_moved = False

    def due(self, now: float, steps: Iterable[BillStep], flush_all: bool) -> bool:
        return flush_all or now - self._written_at >= self.interval_s or any(
            step.usages or step.anomaly is not None for step in steps)

    def persist(self, new: Iterable[tuple[str, MeterState, int]], written: set[str], write: bool,
                tx: BillingTx) -> set[str]:
        """Write (`write`) or keep each (socket, new state, pending as before); when writing, also the states kept
        since the last write, but for those in `written` (this transaction wrote them). Returns the sockets kept."""
        kept = set()
        for socket_id, state, previous in new:
            if write:
                tx.save_state(socket_id, state, previous)
                written = written | {socket_id}
            else:
                tx.keep_state(socket_id, state, previous)
                kept.add(socket_id)
        if write:
            self._save_kept(tx, written)
        return kept

    def committed(self, now: float, write: bool, kept: set[str]) -> None:
        if write:
            self._unsaved.clear()
            self._written_at = now
        self._unsaved |= kept

    def write_if_moved(self, now: float) -> None:
        """A relay switched (a cut, a credit that switched it on, a meter gone): write the states kept."""
        if not self.relay_moved:
            return
        self.relay_moved = False
        if self._unsaved:
            with self.journal.transaction() as tx:
                self._save_kept(tx, set())
            self.committed(now, True, set())

    def _save_kept(self, tx: BillingTx, written: set[str]) -> None:
        for socket_id in sorted(self._unsaved - written):
            state = self._state_of(socket_id)
            if state is not None:
                tx.save_state(socket_id, state, state.pending_units)
