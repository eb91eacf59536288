"""Channels: one-way payment channels on IOTA (PaymentChannel), with the messages the two controllers exchange.

Channels. channel_id = the channel's own escrow address. open: the sender's controller sends escrow + gas_reserve
from the sender's party address to that address, then announces the channel to the recipient's controller
("iota/channel-open", signed by the sender), which checks on the ledger that the address holds at least the escrow
(the announcement is retried with the next voucher if the recipient was unreachable). top_up adds to the same
address, keeps or extends the expiry and is announced the same way. A voucher is the sender's party signature over
VOUCHER_TAG + canonical {"channel_id", "amount", "domain"} with domain = `domain()` = `iota:{network}`: the channel
id names the channel (an address is never reused), the domain the network. check_voucher refuses, in this order:
WrongChannel, WrongDomain, UnknownChannel, ChannelClosed, ChannelExpired, AboveEscrow, BadSignature; accept_voucher
adds VoucherReplayed (not above the last accepted). close (recipient only, before expiry): the sender's controller,
the only one holding the channel key, marks the channel closed, pays the voucher's amount from the channel address
to the recipient, then sweeps the rest (escrow - amount + gas reserve - gas) back to the sender: two transactions,
both paid from the gas reserve, never from the escrow. When the sender is another controller, the recipient's
controller posts the voucher to it ("iota/close", signed by the recipient) and checks the payment on the ledger
(sent from the channel address, at least the voucher's amount to the recipient). reclaim (sender only, after
expiry): the channel address is swept back to the sender and the recipient's controller is told
("iota/channel-reclaimed"). `watch` (recipient): the channel address holding less than the latest voucher accepted
means the sender's controller moved the escrow away; it is flagged (`broken`, kept). Concurrent watches share their
reads (`_escrow_held`).
"""

from __future__ import annotations

import json
import logging
import sqlite3
from typing import Any

import ledgers.iota.ed25519 as ed25519
from ledgers.common import FreshRead
from ledgers.iota.envelope import CLOCK_TOLERANCE_S, channel_path, integer, party_path, text, voucher_bytes
from ledgers.iota.part import TradePart
from ledgers.iota.sdk import normalise_address, parse_address
from payg import errors
from payg.domain.market import CLOSED, OPEN, RECLAIMED, Channel, Voucher, positive

log = logging.getLogger("payg.ledgers.iota.channels")

# Nanos sent to a channel address beside the escrow, so that the settlement's gas never comes out of what the
# vouchers promise; what is left of it returns to the sender.
DEFAULT_GAS_RESERVE = 30_000_000


def _channel_of(row: sqlite3.Row) -> Channel:
    return Channel(row["channel_id"], row["sender"], row["recipient"], row["escrow"], row["expires_at"],
                   row["state"], row["paid"], row["channel_id"])


class Channels(TradePart):
    """The channels this controller's sockets send or receive, kept in the store."""

    def __init__(self, *, gas_reserve: int = DEFAULT_GAS_RESERVE, **part):
        super().__init__(**part)
        self.gas_reserve = gas_reserve
        self._escrows = FreshRead(self._read_escrows)  # (checkpoint, {channel id: nanos}), shared by watchers

    def _tell(self, base_url: str | None, as_socket: str, kind: str, channel_id: str, fields: dict) -> dict:
        """A message about the channel, signed by `as_socket`, to the controller at base_url."""
        envelope = self.envelopes.sign(as_socket, kind, self.envelopes.channel_domain(channel_id),
                                       {**fields, "channel_id": channel_id})
        return self.peers.call(base_url, kind, envelope)

    def _heard(self, envelope: dict, kind: str) -> tuple[str, dict]:
        """The channel a message from the other controller is about, and the message, verified for that channel."""
        channel_id = parse_address(self.envelopes.open(envelope, kind).get("channel_id"), "channel_id")
        return channel_id, self.envelopes.verify(envelope, kind, self.envelopes.channel_domain(channel_id))

    def _channel_row(self, channel_id: Any) -> sqlite3.Row:
        with self.store.lock:
            row = self.store.execute("SELECT * FROM channels WHERE channel_id = ?", (str(channel_id),)).fetchone()
        if row is None:
            raise errors.UnknownChannel(f"no payment channel {channel_id!r}")
        return row

    def _check_usable(self, row: sqlite3.Row) -> None:
        if row["state"] != OPEN:
            raise errors.ChannelClosed(f"channel {row['channel_id']} is {row['state']}")
        if self.now() >= row["expires_at"]:
            raise errors.ChannelExpired(f"channel {row['channel_id']} expired at {row['expires_at']}")

    def channel(self, channel_id: str) -> Channel:
        return _channel_of(self._channel_row(channel_id))

    def channels(self) -> list[Channel]:
        with self.store.lock:
            return [_channel_of(row) for row in
                    self.store.execute("SELECT * FROM channels ORDER BY opened_at, channel_id")]

    def _add_digest(self, channel_id: str, digest: str) -> None:
        row = self._channel_row(channel_id)
        digests = json.loads(row["digests"]) + [digest]
        self.store.execute("UPDATE channels SET digests = ? WHERE channel_id = ?", (json.dumps(digests), channel_id))

    def channel_transactions(self, channel_id: str) -> list[str]:
        """Digests of the transactions this controller made or saw for the channel (open, top-ups, settlement)."""
        return json.loads(self._channel_row(channel_id)["digests"])

    def open_channel(self, as_socket: str, recipient: str, escrow: int, expires_at: int) -> Channel:
        sender = self.parties.party_for(as_socket)
        recipient = parse_address(recipient, "recipient")
        positive(escrow, "escrow")
        expires_at = integer(expires_at, "expires_at")
        if recipient == sender:
            raise errors.NotAuthorised("a channel's recipient is another party than its sender")
        now = self.now()
        if expires_at <= now:
            raise errors.ChannelExpired(f"expiry {expires_at} is not after now ({now})")
        peer = self.peers.url_for(recipient)
        self.parties.check_balance(sender, escrow + self.gas_reserve)
        index = self.parties.index(as_socket)
        # The counter and the channel are committed before any transfer: an id is never reused, and a crash
        # after the escrow left still finds the channel (its sender can reclaim it after expiry).
        with self.store.lock, self.store.transaction():
            n = self.store.next(f"channel:{index}")
            address = parse_address(self.wallet.address(channel_path(index, n)), "channel address")
            self.store.execute(
                "INSERT INTO channels (channel_id, sender, recipient, sender_public_key, escrow, expires_at, state, "
                "socket, n, opened_at, announced) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (address, sender, recipient, self.parties.public_key(as_socket), escrow, expires_at, OPEN, as_socket, n,
                 now, 0 if peer else 1))
        try:
            digest = self.wallet.send(party_path(index), [(address, escrow + self.gas_reserve)])
        except BaseException as exc:
            sent = getattr(exc, "digest", None)
            with self.store.lock, self.store.transaction():
                if isinstance(sent, str) and sent:  # built and maybe executed: keep the channel to reclaim
                    self._add_digest(address, sent)
                else:  # refused or failed before sending: nothing moved
                    self.store.execute("DELETE FROM channels WHERE channel_id = ?", (address,))
            raise
        with self.store.lock, self.store.transaction():
            self._add_digest(address, digest)
        if peer is not None:
            self._announce(address)
        return self.channel(address)

    def _announce(self, channel_id: str) -> bool:
        """Tell the recipient's controller about the channel (open or top-up); False if it could not be told."""
        row = self._channel_row(channel_id)
        try:
            self._tell(self.peers.url_for(row["recipient"]), row["socket"], "iota/channel-open", channel_id,
                       {"recipient": row["recipient"], "escrow": row["escrow"], "expires_at": row["expires_at"],
                        "digests": json.loads(row["digests"])})
        except errors.LedgerUnavailable as exc:
            log.warning("channel %s: the recipient's controller was not told (%s); retried with the next voucher",
                        channel_id, exc)
            return False
        with self.store.lock, self.store.transaction():
            self.store.execute("UPDATE channels SET announced = 1 WHERE channel_id = ?", (channel_id,))
        return True

    def on_open(self, envelope: dict) -> dict:
        channel_id, message = self._heard(envelope, "iota/channel-open")
        sender, recipient = message["party"], parse_address(message.get("recipient"), "recipient")
        escrow = positive(message.get("escrow"), "escrow")
        expires_at = integer(message.get("expires_at"), "expires_at")
        if not self.parties.holds(recipient):
            raise errors.NotAuthorised(f"{recipient} is not a party of this controller")
        with self.store.lock:
            row = self.store.execute("SELECT * FROM channels WHERE channel_id = ?", (channel_id,)).fetchone()
            if row is not None:
                if row["sender"] != sender or row["recipient"] != recipient:
                    raise errors.NotAuthorised(f"channel {channel_id} is already known with other parties")
                if row["state"] != OPEN:
                    raise errors.ChannelClosed(f"channel {channel_id} is {row['state']}")
                if expires_at < row["expires_at"]:
                    raise errors.ExpiryNotExtended(f"channel {channel_id} expires at {row['expires_at']}, not earlier")
                if escrow < row["escrow"]:
                    raise errors.InvalidAmount(f"channel {channel_id} holds {row['escrow']}; an escrow never shrinks")
            elif expires_at <= self.now():
                raise errors.ChannelExpired(f"channel {channel_id} expired at {expires_at}")
        on_ledger = self.wallet.balance(channel_id)
        if on_ledger < escrow:
            raise errors.InsufficientFunds(f"channel address {channel_id} holds {on_ledger} nanos, "
                                           f"not the escrow {escrow}")
        digests = [d for d in message.get("digests") or [] if isinstance(d, str)]
        with self.store.lock, self.store.transaction():
            if row is None:
                self.store.execute(
                    "INSERT INTO channels (channel_id, sender, recipient, sender_public_key, escrow, expires_at, "
                    "state, opened_at, digests) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (channel_id, sender, recipient, envelope["public_key"], escrow, expires_at, OPEN, self.now(),
                     json.dumps(digests)))
            elif row["socket"] is None:  # we are only the recipient: take the sender's word on the expiry
                self.store.execute("UPDATE channels SET escrow = ?, expires_at = ?, digests = ? WHERE channel_id = ?",
                                   (escrow, expires_at, json.dumps(digests), channel_id))
        return self.channel(channel_id).as_dict()

    def top_up(self, as_socket: str, channel_id: str, amount: int, expires_at: int) -> Channel:
        sender = self.parties.party_for(as_socket)
        amount = integer(amount, "amount")
        expires_at = integer(expires_at, "expires_at")
        with self.store.lock:
            row = self._channel_row(channel_id)
            if row["sender"] != sender or row["socket"] != as_socket:
                raise errors.NotAuthorised(f"only the sender {row['sender']} tops up channel {channel_id}")
            self._check_usable(row)
            if expires_at < row["expires_at"]:
                raise errors.ExpiryNotExtended(f"channel {channel_id} expires at {row['expires_at']}; "
                                        f"{expires_at} would shorten it")
            peer = self.peers.url_for(row["recipient"])
            if amount:
                self.parties.check_balance(sender, amount)
                digest = self.wallet.send(party_path(self.parties.index(as_socket)), [(row["channel_id"], amount)])
            with self.store.transaction():
                self.store.execute("UPDATE channels SET escrow = escrow + ?, expires_at = ?, announced = ? "
                                   "WHERE channel_id = ?", (amount, expires_at, 0 if peer else 1, channel_id))
                if amount:
                    self._add_digest(channel_id, digest)
        if peer is not None:
            self._announce(channel_id)
        return self.channel(channel_id)

    def sign_voucher(self, as_socket: str, channel_id: str, amount: int) -> Voucher:
        positive(amount, "amount")
        channel_id = parse_address(channel_id, "channel_id")
        domain = self.envelopes.voucher_domain()
        signature = self.parties.sign(as_socket, voucher_bytes(channel_id, amount, domain))
        with self.store.lock:
            row = self.store.execute("SELECT announced, socket FROM channels WHERE channel_id = ?",
                                     (channel_id,)).fetchone()
        if row is not None and not row["announced"] and row["socket"] == as_socket:
            self._announce(channel_id)
        return Voucher(channel_id, amount, domain, signature)

    def check_voucher(self, voucher: Voucher, channel_id: str) -> Channel:
        if voucher.channel_id != channel_id:
            raise errors.WrongChannel(f"the voucher is for channel {voucher.channel_id}, not {channel_id}")
        if voucher.domain != self.envelopes.voucher_domain():
            raise errors.WrongDomain(f"the voucher was signed for {voucher.domain!r}, "
                                     f"not {self.envelopes.voucher_domain()!r}")
        row = self._channel_row(channel_id)
        self._check_usable(row)
        if isinstance(voucher.amount, bool) or not isinstance(voucher.amount, int) or voucher.amount <= 0:
            raise errors.InvalidAmount(f"a voucher's amount is a positive integer, got {voucher.amount!r}")
        if voucher.amount > row["escrow"]:
            raise errors.AboveEscrow(f"the voucher promises {voucher.amount}, "
                                     f"channel {channel_id} holds {row['escrow']}")
        # ed25519.verify: the wallet's strict rules, checked by libsodium (compiled) rather than per-call SDK objects
        if not ed25519.verify(row["sender_public_key"], voucher_bytes(voucher.channel_id, voucher.amount,
                                                                    voucher.domain), str(voucher.signature)):
            raise errors.BadSignature(f"the voucher on channel {channel_id} is not signed by its sender "
                                      f"{row['sender']}")
        return _channel_of(row)

    def accept_voucher(self, voucher: Voucher, channel_id: str) -> Channel:
        """check_voucher, then refuse a voucher not above the last one accepted, and keep it (recipient side)."""
        channel = self.check_voucher(voucher, channel_id)
        with self.store.lock, self.store.transaction():
            row = self._channel_row(channel_id)
            if voucher.amount <= row["last_amount"]:
                raise errors.VoucherReplayed(f"channel {channel_id}: {voucher.amount} is not above the last voucher "
                                      f"accepted ({row['last_amount']})")
            self.store.execute("UPDATE channels SET last_amount = ?, last_signature = ? WHERE channel_id = ?",
                               (voucher.amount, voucher.signature, channel_id))
        return channel

    def last_voucher(self, channel_id: str) -> Voucher | None:
        row = self._channel_row(channel_id)
        if not row["last_amount"]:
            return None
        return Voucher(channel_id, row["last_amount"], self.envelopes.voucher_domain(), row["last_signature"])

    def close(self, as_socket: str, channel_id: str, voucher: Voucher) -> Channel:
        recipient = self.parties.party_for(as_socket)
        with self.store.lock:
            row = self._channel_row(channel_id)
            if row["recipient"] != recipient:
                raise errors.NotAuthorised(f"only the recipient {row['recipient']} closes channel {channel_id}")
            self.check_voucher(voucher, channel_id)
            if row["socket"] is not None:  # this controller holds the channel key
                return self._settle(row, voucher)[0]
        reply = self._tell(self.peers.url_for(row["sender"]), as_socket, "iota/close", channel_id,
                           {"voucher": voucher.as_dict()})
        payment = text(reply.get("payment"), "payment digest")
        tx = self.wallet.transaction(payment)
        changes = {normalise_address(a): int(v) for a, v in (tx.get("changes") or {}).items()}
        if not tx.get("success") or parse_address(tx.get("sender"), "sender") != channel_id \
                or changes.get(recipient, 0) < voucher.amount:
            raise errors.LedgerUnavailable(f"channel {channel_id}: the sender's controller answered transaction "
                                           f"{payment}, which does not pay {voucher.amount} to {recipient} "
                                           "from the channel")
        with self.store.lock, self.store.transaction():
            self.store.execute("UPDATE channels SET state = ?, paid = ? WHERE channel_id = ?",
                               (CLOSED, voucher.amount, channel_id))
            for digest in reply.get("digests", [payment]):
                self._add_digest(channel_id, digest)
        return self.channel(channel_id)

    def on_close(self, envelope: dict) -> dict:
        channel_id, message = self._heard(envelope, "iota/close")
        voucher_data = message.get("voucher")
        if not isinstance(voucher_data, dict):
            raise ValueError("iota/close needs a voucher")
        voucher = Voucher.from_dict(voucher_data)
        with self.store.lock:
            row = self._channel_row(channel_id)
            if row["socket"] is None:
                raise errors.NotAuthorised(f"this controller does not hold channel {channel_id}'s key")
            if message["party"] != row["recipient"]:
                raise errors.NotAuthorised(f"only the recipient {row['recipient']} closes channel {channel_id}")
            self.check_voucher(voucher, channel_id)
            _, payment, swept = self._settle(row, voucher)
        return {"payment": payment, "digests": [payment, swept]}

    def _settle(self, row: sqlite3.Row, voucher: Voucher) -> tuple[Channel, str, str]:
        """Pay the voucher to the recipient from the channel address, then sweep the rest to the sender.

        Two transactions (IotaWallet.send cannot say "the rest, less gas, to X" beside a fixed output); both
        are paid from the gas reserve, never from the escrow. The channel is marked closed before anything
        moves, so a crash or a retry can never pay it twice; a send refused before sending reopens it."""
        channel_id, path = row["channel_id"], channel_path(self.parties.index(row["socket"]), row["n"])
        with self.store.transaction():
            self.store.execute("UPDATE channels SET state = ?, paid = ?, last_amount = MAX(last_amount, ?), "
                               "last_signature = ? WHERE channel_id = ?",
                               (CLOSED, voucher.amount, voucher.amount, voucher.signature, channel_id))
        try:
            pay = self.wallet.send(path, [(row["recipient"], voucher.amount)])
        except errors.TradeRefused:
            with self.store.transaction():
                self.store.execute("UPDATE channels SET state = ?, paid = 0, last_amount = ?, last_signature = ? "
                                   "WHERE channel_id = ?", (OPEN, row["last_amount"], row["last_signature"],
                                                            channel_id))
            raise
        with self.store.transaction():
            self._add_digest(channel_id, pay)
        swept, _ = self.wallet.sweep(path, row["sender"])
        with self.store.transaction():
            self._add_digest(channel_id, swept)
        return self.channel(channel_id), pay, swept

    def reclaim(self, as_socket: str, channel_id: str) -> Channel:
        sender = self.parties.party_for(as_socket)
        with self.store.lock:
            row = self._channel_row(channel_id)
            if row["sender"] != sender or row["socket"] != as_socket:
                raise errors.NotAuthorised(f"only the sender {row['sender']} reclaims channel {channel_id}")
            if row["state"] != OPEN:
                raise errors.ChannelClosed(f"channel {channel_id} is {row['state']}")
            if self.now() < row["expires_at"]:
                raise errors.ChannelNotExpired(f"channel {channel_id} expires at {row['expires_at']} "
                                               f"(now {self.now()})")
            with self.store.transaction():
                self.store.execute("UPDATE channels SET state = ? WHERE channel_id = ?", (RECLAIMED, channel_id))
            digest, _ = self.wallet.sweep(channel_path(self.parties.index(as_socket), row["n"]), sender)
            with self.store.transaction():
                self._add_digest(channel_id, digest)
        peer = self.peers.known_url(row["recipient"])
        if peer is not None:
            try:
                self._tell(peer, as_socket, "iota/channel-reclaimed", channel_id, {"digest": digest})
            except errors.PaygError as exc:
                log.warning("channel %s reclaimed; the recipient's controller was not told: %s", channel_id, exc)
        return self.channel(channel_id)

    def on_reclaimed(self, envelope: dict) -> dict:
        channel_id, message = self._heard(envelope, "iota/channel-reclaimed")
        with self.store.lock, self.store.transaction():
            row = self._channel_row(channel_id)
            if message["party"] != row["sender"]:
                raise errors.NotAuthorised(f"only the sender {row['sender']} reclaims channel {channel_id}")
            if self.now() + CLOCK_TOLERANCE_S < row["expires_at"]:
                raise errors.ChannelNotExpired(f"channel {channel_id} expires at {row['expires_at']}")
            self.store.execute("UPDATE channels SET state = ? WHERE channel_id = ? AND state = ?",
                               (RECLAIMED, channel_id, OPEN))
        return self.channel(channel_id).as_dict()

    def watch(self, channel_id: str) -> dict:
        """The recipient's check of the escrow on the ledger, with the checkpoint it was read at (module doc)."""
        row = self._channel_row(channel_id)
        balance, checkpoint = self._escrow_held(row["channel_id"])
        owed = row["last_amount"]
        broken = row["state"] == OPEN and balance < owed
        if broken and not row["broken"]:
            log.error("channel %s: its address holds %d nanos, less than the %d the latest voucher promises",
                      channel_id, balance, owed)
            with self.store.lock, self.store.transaction():
                self.store.execute("UPDATE channels SET broken = 1 WHERE channel_id = ?", (channel_id,))
        return {"channel_id": channel_id, "balance": balance, "escrow": row["escrow"], "owed": owed,
                "broken": bool(broken or row["broken"]), "checkpoint": checkpoint}

    def _escrow_held(self, channel_id: str) -> tuple[int, int]:
        """What the channel's address holds, and the checkpoint that was read at: from a read that started after
        this call (FreshRead), never older than the voucher it is checked for. Watchers asking at once share one
        read of every open channel this controller is paid on (a request per 50 addresses, each at one checkpoint):
        a landlord's many channels cost a request per round trip, not one per voucher."""
        checkpoint, held = self._escrows.get(channel_id)
        return held[channel_id], checkpoint

    def _read_escrows(self, asked: frozenset) -> tuple[int, dict[str, int]]:
        with self.store.lock:
            rows = self.store.execute("SELECT channel_id, recipient FROM channels WHERE state = ?", (OPEN,)).fetchall()
        return self.wallet.balances(sorted({r["channel_id"] for r in rows if self.parties.holds(r["recipient"])}
                                           | set(asked)))
