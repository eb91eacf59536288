"""Payment channels as a controller books them: streaming vouchers out, accepting vouchers in.

The ledger backend (a PaymentChannel) checks a voucher's signature, domain, escrow and
expiry; this module adds what only the receiving controller can know: the last voucher
it accepted, so a voucher not above it is a replay. Both sides keep the channel in the
journal (table `channels`) and book the energy the channel paid for as `trade_in`
credits, in one transaction with the voucher, so a crash never books a voucher twice.

Streaming (the sender's side): the voucher's cumulative amount is (Wh billed on the
socket since the channel opened + lead_wh) x price, capped at the escrow. The lead
lets the supplier switch on before the first Wh flows; the supplier stops when the
vouchers stop and the lead is used up. Each side credits its socket with the Wh the
vouchers paid for, so at the close the two journals and the ledger agree.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from fractions import Fraction

from payg.domain import market as rules
from payg.domain.market import Channel, ChannelRow, Voucher, paid_tokens
from payg.errors import (
    AboveEscrow,
    ChannelClosed,
    LedgerUnavailable,
    NotAuthorised,
    TradeRefused,
    UnknownChannel,
    VoucherRejected,
    VoucherReplayed,
)
from payg.ports import Clock, EscrowWatch, PaymentChannel, PeerLink
from payg.ports.journal import ChannelJournal

log = logging.getLogger("payg.channels")


class ChannelBook:
    def __init__(self, channels: PaymentChannel, journal: ChannelJournal, clock: Clock,
                 tokens_per_wh: Fraction = Fraction(1), peers: PeerLink | None = None, *,
                 escrow_watch: EscrowWatch | None = None, on_credit: Callable[[set[str]], None] | None = None):
        self.channels = channels
        self.journal = journal
        self.clock = clock
        self.tokens_per_wh = Fraction(tokens_per_wh)
        self.peers = peers
        # Given only for ledgers that do not hold the escrow for the recipient (IOTA).
        self.escrow_watch = escrow_watch
        self.on_credit = on_credit  # metering re-decides the relay at once

    def _row(self, channel_id: str) -> ChannelRow:
        row = self.journal.channel(self.channels.domain(), str(channel_id))
        if row is None:
            raise UnknownChannel(f"channel {channel_id} is not booked on this controller")
        return row

    def rows(self, direction: str | None = None, state: str | None = None) -> list[ChannelRow]:
        return [r for r in self.journal.channels(direction, state) if r.domain == self.channels.domain()]

    def _book(self, row: ChannelRow, voucher: Voucher, at: float) -> int:
        """Advance the channel to `voucher` and credit the Wh it newly paid for; the tokens credited."""
        tokens = (paid_tokens(voucher.amount, row.price_per_wh, self.tokens_per_wh)
                  - paid_tokens(row.amount, row.price_per_wh, self.tokens_per_wh))
        with self.journal.transaction() as w:
            w.advance_channel(row.domain, row.channel_id, row.amount, voucher.amount, voucher.signature, at)
            if tokens > 0:
                w.credit(row.socket_id, tokens, "trade_in", f"channel:{row.domain}:{row.channel_id}:{voucher.amount}",
                         at, memo=f"channel {row.channel_id}: {voucher.amount // row.price_per_wh} Wh paid in total")
        if tokens > 0 and self.on_credit is not None:
            self.on_credit({row.socket_id})
        return tokens


    def accept_channel(self, socket_id: str, channel_id: str, price_per_wh: int, peer: str = "") -> ChannelRow:
        """Book an incoming channel for `socket_id` at the agreed price (checked on the ledger first)."""
        rules.positive(price_per_wh, "price_per_wh")
        ch = self.channels.channel(str(channel_id))
        if ch.recipient != self.channels.party_for(socket_id):
            raise NotAuthorised(f"channel {channel_id} pays {ch.recipient}, not socket {socket_id}")
        if ch.state != rules.OPEN:
            raise ChannelClosed(f"channel {channel_id} is {ch.state}")
        now = self.clock.now()
        row = ChannelRow(self.channels.domain(), ch.channel_id, socket_id, "in", price_per_wh, ch.escrow,
                         peer=peer, opened_at=now, updated_at=now)
        existing = self.journal.channel(row.domain, row.channel_id)
        if existing is not None:
            if (existing.socket_id, existing.direction, existing.price_per_wh) != (socket_id, "in", price_per_wh):
                raise NotAuthorised(f"channel {channel_id} is already booked on other terms")
            return existing
        with self.journal.transaction() as w:
            w.add_channel(row)
            w.event(socket_id, "channel", f"channel {ch.channel_id} from {ch.sender} accepted at {price_per_wh}"
                    f" per Wh, escrow {ch.escrow}", now)
        return row

    def accept(self, voucher: Voucher, channel_id: str) -> int:
        """Check and book a voucher on an accepted incoming channel; the tokens it credited."""
        row = self._row(channel_id)
        if row.direction != "in":
            raise NotAuthorised(f"channel {channel_id} is one this controller pays on")
        if row.state != rules.OPEN:
            raise ChannelClosed(f"channel {channel_id} is {row.state}")
        if voucher.channel_id == row.channel_id and voucher.amount <= row.amount:
            raise VoucherReplayed(f"channel {channel_id}: voucher for {voucher.amount}, already accepted"
                                  f" {row.amount}")
        self.channels.check_voucher(voucher, row.channel_id)
        if self.escrow_watch is not None:
            # the ledger does not hold the escrow for us (IOTA): look at the channel's address before
            # every voucher, so a sender moving the escrow away costs us one voucher's step at most
            held = self.escrow_watch.watch(row.channel_id)["balance"]
            if held < voucher.amount:
                raise AboveEscrow(f"channel {channel_id}: its escrow address holds {held}, less than the"
                                  f" voucher's {voucher.amount}: the sender moved the escrow away")
        return self._book(row, voucher, self.clock.now())

    def latest(self, channel_id: str) -> Voucher | None:
        row = self._row(channel_id)
        if row.amount == 0:
            return None
        return Voucher(row.channel_id, row.amount, row.domain, row.signature)

    def close(self, channel_id: str) -> Channel:
        """Close an incoming channel with the latest voucher accepted on it."""
        row = self._row(channel_id)
        if row.direction != "in":
            raise NotAuthorised(f"only the recipient closes channel {channel_id}")
        voucher = self.latest(channel_id)
        if voucher is None:
            raise VoucherRejected(f"channel {channel_id} has no voucher to close with")
        ch = self.channels.close(row.socket_id, row.channel_id, voucher)
        self._settled(row, ch)
        return ch

    def _settled(self, row: ChannelRow, ch: Channel) -> None:
        now = self.clock.now()
        with self.journal.transaction() as w:
            w.set_channel_state(row.domain, row.channel_id, ch.state, ch.escrow, now)
            w.event(row.socket_id, "channel", f"channel {ch.channel_id} {ch.state}: {ch.paid} paid to"
                    f" {ch.recipient}, {ch.escrow - ch.paid} back to {ch.sender}", now)


    def open(self, socket_id: str, recipient: str, escrow: int, expires_at: int, price_per_wh: int,
             peer: str = "", lead_wh: int = 1) -> ChannelRow:
        """Open a channel paying `recipient` from the socket's trade party and book it for streaming."""
        rules.positive(price_per_wh, "price_per_wh")
        if not isinstance(lead_wh, int) or lead_wh < 0:
            raise ValueError(f"lead_wh must be a non-negative integer, got {lead_wh!r}")
        state = self.journal.meter_state(socket_id)
        base = state.baseline.counter_wh if state is not None else Fraction(0)
        ch = self.channels.open_channel(socket_id, recipient, escrow, expires_at)
        now = self.clock.now()
        row = ChannelRow(self.channels.domain(), ch.channel_id, socket_id, "out", price_per_wh, ch.escrow,
                         base_wh=base, lead_wh=lead_wh, peer=peer, opened_at=now, updated_at=now)
        with self.journal.transaction() as w:
            w.add_channel(row)
            w.event(socket_id, "channel", f"channel {ch.channel_id} to {recipient} opened: escrow {escrow},"
                    f" {price_per_wh} per Wh", now)
        return row

    def due(self, row: ChannelRow) -> int:
        """The cumulative amount the sender owes now on an outgoing channel."""
        state = self.journal.meter_state(row.socket_id)
        counter = state.baseline.counter_wh if state is not None else row.base_wh
        wh = max(0, math.floor(counter - row.base_wh)) + row.lead_wh
        return min(wh * row.price_per_wh, row.escrow)

    def stream(self) -> int:
        """Send each open outgoing channel's peer a voucher for what is due; the vouchers sent.

        A peer that cannot be reached gets the next, larger voucher on a later call; a refused
        voucher stops the channel's stream (an event says why)."""
        sent = 0
        for row in self.rows("out", rules.OPEN):
            amount = self.due(row)
            if amount <= row.amount:
                continue
            voucher = self.channels.sign_voucher(row.socket_id, row.channel_id, amount)
            now = self.clock.now()
            if row.peer and self.peers is not None:
                try:
                    self.peers.post(row.peer, "voucher", {"channel_id": row.channel_id, "voucher": voucher.as_dict()})
                except LedgerUnavailable as exc:
                    log.warning("channel %s: peer %s unreachable: %s", row.channel_id, row.peer, exc)
                    continue
                except TradeRefused as exc:
                    with self.journal.transaction() as w:
                        w.set_channel_state(row.domain, row.channel_id, "refused", row.escrow, now)
                        w.event(row.socket_id, "channel", f"channel {row.channel_id}: the peer refused a voucher"
                                f" for {amount}: {type(exc).__name__}: {exc}", now)
                    continue
            self._book(row, voucher, now)
            sent += 1
        return sent

    def refresh(self, channel_id: str) -> Channel:
        """Read a channel's state from the ledger and book a close or reclaim seen there."""
        row = self._row(channel_id)
        ch = self.channels.channel(row.channel_id)
        if ch.state != row.state and ch.state != rules.OPEN:
            self._settled(row, ch)
        return ch

    def reclaim(self, channel_id: str) -> Channel:
        row = self._row(channel_id)
        if row.direction != "out":
            raise NotAuthorised(f"only the sender reclaims channel {channel_id}")
        ch = self.channels.reclaim(row.socket_id, row.channel_id)
        self._settled(row, ch)
        return ch
