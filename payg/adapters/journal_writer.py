"""The journal's writer: the operations allowed inside one transaction (the schema: journal_schema.py).

Entries are append-only (triggers refuse updates and deletes); credits carry an
idempotency key under a UNIQUE constraint. See payg/adapters/journal.py.

A write is `durable` (synced to the disk at commit, not at the next checkpoint) when it is money or a
person's decision: every write but the metering loop's routine ones (billing state, usage and standing
debits, events, cursors), which a crash or a power cut cannot lose (the meter's counter is cumulative, and
a deposit whose credit is lost is read again from the ledger after the cursor, lost with it).
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from decimal import Decimal
from fractions import Fraction

from payg.adapters.journal_schema import SEQ_CURSOR
from payg.adapters.sqlite import LazyTransaction
from payg.domain.accounts import ALARM_KINDS, CREDIT_KINDS, DEBIT_KINDS, Entry
from payg.domain.billing import MeterState
from payg.domain.codes import CodeCounts
from payg.domain.market import ChannelRow
from payg.domain.messages import NOTIFY_EVENTS, PAID, PAYMENT_KINDS
from payg.domain.tariff import Rate

__all__ = ["ALARM_KINDS", "CHANNEL_COLUMNS", "ENTRY_COLUMNS", "JournalWriter", "entry_of"]

CHANNEL_COLUMNS = ("domain, channel_id, socket_id, direction, price_per_wh, escrow, amount, signature, base_wh,"
                   " lead_wh, peer, state, opened_at, updated_at")


NOTIFY_PREFIX = "notify:"  # the uid of an outbox row for notifications, not for MQTT

# The last seq given, plus one: never below the highest kept (a cursor lost or set by hand cannot give a seq twice).
# Written straight to the file, not through `set_cursor`: the journal's cache of cursors never holds this one.
NEXT_SEQ = ("INSERT INTO cursors (name, value) VALUES (?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM outbox))"
            " ON CONFLICT (name) DO UPDATE SET value = MAX(COALESCE(CAST(value AS INTEGER), 0),"
            " (SELECT COALESCE(MAX(seq), 0) FROM outbox)) + 1")

ROUTINE_DEBITS = ("usage", "standing")  # the metering loop's own debits (not durable writes)

ENTRY_COLUMNS = "id, socket_id, at, kind, amount, energy_wh, idem_key, memo, band, rate, vat"


def rate_columns(rate: Rate | None) -> tuple[str | None, str | None, str | None]:
    """A rate as the journal keeps it: its band, journal units per kWh (VAT in) and VAT percent, exact."""
    if rate is None:
        return None, None, None
    return rate.band, decimal_text(rate.units_per_kwh), decimal_text(rate.vat_percent)


def rate_of(band: str | None, rate: str | None, vat: str | None) -> Rate | None:
    if band is None or rate is None or vat is None:
        return None
    return Rate.of(band, Decimal(rate), Decimal(vat))


def decimal_text(d: Decimal) -> str:
    """An exact decimal without an exponent or trailing zeros: `25.725`, `1000`."""
    text = format(d, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def entry_of(row: tuple) -> Entry:
    entry_id, socket_id, at, kind, amount, energy_wh, idem_key, memo, band, rate, vat = row
    return Entry(entry_id, socket_id, at, kind, amount, None if energy_wh is None else Fraction(energy_wh),
                 idem_key, memo, rate_of(band, rate, vat))


class JournalWriter:
    """The operations allowed inside one journal transaction."""

    def __init__(self, conn: LazyTransaction, outbox: bool = False, notify: bool = False):
        self._conn = conn
        self._outbox = outbox  # MQTT on: every event and credit also queued for the broker, in this transaction
        self._notify = notify  # [notify] on: the events and payments people are told about, likewise
        self.balance_changes: dict[str, int] = {}
        self.deferred: dict[str, int] = {}  # debt plans written, for the journal's in-memory copy
        self.cursors: dict[str, str | None] = {}  # cursors written, likewise
        self.kept: dict[str, MeterState] = {}  # billing states kept in memory (keep_state), for the journal
        self.saved: set[str] = set()  # sockets whose billing state this transaction wrote
        self.durable = False  # the commit must reach the disk at once (see the module's docstring)

    def _changed(self, socket_id: str, amount: int) -> None:
        self.balance_changes[socket_id] = self.balance_changes.get(socket_id, 0) + amount

    def credit(self, socket_id: str, amount: int, kind: str, idem_key: str, at: float, memo: str = "") -> bool:
        """Append a credit; False (and nothing written) if its key was booked before."""
        if kind not in CREDIT_KINDS:
            raise ValueError(f"not a credit kind: {kind}")
        self.durable = True
        if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
            raise ValueError(f"a credit is a positive integer, got {amount!r}")
        cur = self._conn.execute(
            "INSERT INTO entries (socket_id, at, kind, amount, idem_key, memo) VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (idem_key) DO NOTHING",
            (socket_id, at, kind, amount, idem_key, memo),
        )
        if cur.rowcount == 1:
            self._changed(socket_id, amount)
            self._queue(socket_id, "credited", at, entry=kind, amount=amount, memo=memo, key=idem_key)
            if self._notify and kind in PAYMENT_KINDS:
                self._queue_notice(socket_id, PAID, at, amount=amount, entry=kind, entry_id=cur.lastrowid)
            return True
        return False

    def debit(self, socket_id: str, amount: int, kind: str, at: float, *, energy_wh: Fraction | None = None,
              idem_key: str | None = None, memo: str = "", rate: Rate | None = None) -> bool:
        if kind not in DEBIT_KINDS:
            raise ValueError(f"not a debit kind: {kind}")
        if kind not in ROUTINE_DEBITS:
            self.durable = True
        if not isinstance(amount, int) or isinstance(amount, bool) or amount < 0:
            raise ValueError(f"a debit amount is a non-negative integer, got {amount!r}")
        cur = self._conn.execute(
            "INSERT INTO entries (socket_id, at, kind, amount, energy_wh, idem_key, memo, band, rate, vat)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (idem_key) DO NOTHING",
            (socket_id, at, kind, -amount, None if energy_wh is None else str(energy_wh), idem_key, memo,
             *rate_columns(rate)),
        )
        if cur.rowcount == 1:
            self._changed(socket_id, -amount)
            return True
        return False

    def save_state(self, socket_id: str, state: MeterState, previous_pending: int) -> None:
        self._write_state(socket_id, state)
        self.kept.pop(socket_id, None)
        self.saved.add(socket_id)
        self._changed(socket_id, previous_pending - state.pending_units)

    def keep_state(self, socket_id: str, state: MeterState, previous_pending: int) -> None:
        """The state as of now, not written by itself: the journal holds it until a transaction writes."""
        self.kept[socket_id] = state
        self.saved.discard(socket_id)
        self._changed(socket_id, previous_pending - state.pending_units)

    def write_held(self, held: dict[str, MeterState]) -> None:
        """Write the states the journal holds and those kept in this transaction, but not those it saved: the
        transaction commits anyway, and the rows share the table's page or two."""
        for socket_id, state in {**held, **self.kept}.items():
            if socket_id in self.kept or socket_id not in self.saved:
                self._write_state(socket_id, state)

    def _write_state(self, socket_id: str, state: MeterState) -> None:
        b = state.baseline
        self._conn.execute(
            "INSERT INTO meter_state (socket_id, counter_wh, read_at, carry, pending_units, pending_wh, pending_since,"
            " pending_band, pending_rate, pending_vat) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (socket_id) DO UPDATE SET counter_wh = excluded.counter_wh,"
            " read_at = excluded.read_at, carry = excluded.carry, pending_units = excluded.pending_units,"
            " pending_wh = excluded.pending_wh, pending_since = excluded.pending_since,"
            " pending_band = excluded.pending_band, pending_rate = excluded.pending_rate,"
            " pending_vat = excluded.pending_vat",
            (socket_id, str(b.counter_wh), b.at, str(b.carry), state.pending_units, str(state.pending_wh),
             state.pending_since, *rate_columns(state.pending_rate)),
        )

    def deposit_carry(self, source: str, socket_id: str) -> int:
        row = self._conn.execute("SELECT units FROM deposit_carry WHERE source = ? AND socket_id = ?",
                                 (source, socket_id)).fetchone()
        return int(row[0]) if row else 0

    def record_deposit(self, source: str, socket_id: str, idem_key: str, units: int, tokens: int, carry: int,
                       at: float) -> bool:
        """The raw amount is kept in received_deposits: ledger units can exceed SQLite's 64-bit integers
        (wei), tokens cannot."""
        self.durable = True
        cur = self._conn.execute(
            "INSERT INTO received_deposits (idem_key, socket_id, at, units, tokens) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (idem_key) DO NOTHING", (idem_key, socket_id, at, str(units), tokens))
        if cur.rowcount != 1:
            return False
        self._conn.execute("INSERT INTO deposit_carry (source, socket_id, units) VALUES (?, ?, ?)"
                           " ON CONFLICT (source, socket_id) DO UPDATE SET units = excluded.units",
                           (source, socket_id, str(carry)))
        return True

    def add_channel(self, row: ChannelRow) -> None:
        """Remember a payment channel this controller sends on ('out') or is paid on ('in')."""
        self.durable = True
        cur = self._conn.execute(
            "INSERT INTO channels (domain, channel_id, socket_id, direction, price_per_wh, escrow, base_wh, lead_wh,"
            " peer, opened_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (row.domain, row.channel_id, row.socket_id, row.direction, str(row.price_per_wh), str(row.escrow),
             str(row.base_wh), row.lead_wh, row.peer, row.opened_at, row.opened_at))
        if cur.rowcount != 1:
            raise ValueError(f"channel {row.channel_id} on {row.domain} is already known")

    def advance_channel(self, domain: str, channel_id: str, previous: int, amount: int, signature: str,
                        at: float) -> None:
        """Move a channel's latest voucher from `previous` to `amount`; refuses if another writer moved it."""
        self.durable = True
        cur = self._conn.execute(
            "UPDATE channels SET amount = ?, signature = ?, updated_at = ? WHERE domain = ? AND channel_id = ?"
            " AND amount = ? AND state = 'open'", (str(amount), signature, at, domain, channel_id, str(previous)))
        if cur.rowcount != 1:
            raise sqlite3.IntegrityError(f"channel {channel_id}: its latest voucher changed underneath")

    def set_channel_state(self, domain: str, channel_id: str, state: str, escrow: int, at: float) -> None:
        self.durable = True
        self._conn.execute("UPDATE channels SET state = ?, escrow = ?, updated_at = ? WHERE domain = ?"
                           " AND channel_id = ?", (state, str(escrow), at, domain, channel_id))

    def event(self, socket_id: str, kind: str, detail: str, at: float) -> None:
        self._conn.execute("INSERT INTO events (socket_id, at, kind, detail) VALUES (?, ?, ?, ?)",
                           (socket_id, at, kind, detail))
        self._queue(socket_id, kind, at, detail=detail)
        if self._notify and kind in NOTIFY_EVENTS:
            self._queue_notice(socket_id, kind, at, detail=detail)

    def _queue(self, socket_id: str, kind: str, at: float, **fields: object) -> None:
        """One row of the outbox with the next seq, given in this transaction: a rollback gives it back, so the seqs
        have no gaps (payg/adapters/mqtt/outbox.py sends the row, marks it delivered once the broker has it and
        prunes it after the retention)."""
        if self._outbox:
            self._conn.execute(NEXT_SEQ, (SEQ_CURSOR,))
            self._conn.execute("INSERT INTO outbox (uid, socket_id, at, kind, body, seq) VALUES (?, ?, ?, ?, ?,"
                               " (SELECT CAST(value AS INTEGER) FROM cursors WHERE name = ?))",
                               (uuid.uuid4().hex, socket_id, at, kind, json.dumps(fields, sort_keys=True), SEQ_CURSOR))

    def _queue_notice(self, socket_id: str, kind: str, at: float, **fields: object) -> None:
        """A notification's row in the same outbox table, its uid marked `notify:` (the MQTT bridge leaves those to
        payg/adapters/apprise_notify.py, which turns it into one message per contact URL)."""
        self._conn.execute("INSERT INTO outbox (uid, socket_id, at, kind, body) VALUES (?, ?, ?, ?, ?)",
                           (f"{NOTIFY_PREFIX}{uuid.uuid4().hex}", socket_id, at, kind,
                            json.dumps(fields, sort_keys=True)))

    def set_cursor(self, name: str, value: str | None) -> None:
        self.cursors[name] = value
        self._conn.execute("INSERT INTO cursors (name, value) VALUES (?, ?)"
                           " ON CONFLICT (name) DO UPDATE SET value = excluded.value", (name, value))

    def acknowledge_alarms(self, socket_id: str, upto_event_id: int, at: float) -> None:
        """Alarms of a socket up to this event id are seen; the acknowledgement is itself an event."""
        self.set_cursor(f"alarms-seen:{socket_id}", str(upto_event_id))
        self.event(socket_id, "alarm_ack", f"alarms up to event {upto_event_id} acknowledged", at)

    def set_override(self, socket_id: str, mode: str | None, at: float) -> None:
        self.durable = True
        if mode is None:
            self._conn.execute("DELETE FROM overrides WHERE socket_id = ?", (socket_id,))
        else:
            self._conn.execute("INSERT INTO overrides (socket_id, mode, at) VALUES (?, ?, ?)"
                               " ON CONFLICT (socket_id) DO UPDATE SET mode = excluded.mode, at = excluded.at",
                               (socket_id, mode, at))

    def set_code_counts(self, socket_id: str, counts: CodeCounts) -> None:
        self.durable = True
        self._conn.execute("INSERT INTO code_counters (socket_id, last_count, used_counts) VALUES (?, ?, ?)"
                           " ON CONFLICT (socket_id) DO UPDATE SET last_count = excluded.last_count,"
                           " used_counts = excluded.used_counts",
                           (socket_id, counts.last, ",".join(str(c) for c in counts.used)))

    def set_codes_issued(self, socket_id: str, count: int) -> None:
        self.durable = True
        self._conn.execute("INSERT INTO code_counters (socket_id, issued_count) VALUES (?, ?)"
                           " ON CONFLICT (socket_id) DO UPDATE SET issued_count = excluded.issued_count",
                           (socket_id, count))

    def record_code_request(self, socket_id: str, request_id: str, after_count: int, units: int, count: int,
                            at: float) -> bool:
        """Remember which code a landlord's request made (made after `after_count`: the code can be made again from
        it, so the code itself is not stored); False if the request id was used for this socket before."""
        self.durable = True
        cur = self._conn.execute("INSERT INTO code_requests (socket_id, request_id, after_count, units, count, at)"
                                 " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                                 (socket_id, request_id, after_count, units, count, at))
        return cur.rowcount == 1

    def set_deferred_debt(self, socket_id: str, units: int) -> None:
        self.durable = True
        self.deferred[socket_id] = units
        self._conn.execute("INSERT INTO debt_plans (socket_id, deferred_units) VALUES (?, ?)"
                           " ON CONFLICT (socket_id) DO UPDATE SET deferred_units = excluded.deferred_units",
                           (socket_id, units))
