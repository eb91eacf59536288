"""MarketHost: the energy market, hosted by one controller for every controller that trades on it.

The market. One controller hosts the market (`market_url=None`, then
`create_market`); the others reach it at `market_url`. The host keeps the roles
(and which regulator admitted each producer or consumer), the adverts, the
reservations and the purchases in its store, and judges every price and expiry
by its own clock (`now()`). Its domain is `iota:{network}:{market_id}`, network
being the node's chain identifier and market_id 32 random hex digits chosen when
the market is created.

The host judges the reservations and purchases of the two-phase buys (ledgers/iota/market.py): it holds the
energy of a reservation at the quoted price, and records a purchase only against the consumer's transfer,
read from the ledger. It never holds anyone's money.
"""

from __future__ import annotations

import secrets
import sqlite3
from datetime import datetime
from typing import Any

from ledgers.iota.envelope import CLOCK_TOLERANCE_S, text
from ledgers.iota.part import TradePart
from ledgers.iota.sdk import normalise_address, parse_address
from payg.domain.market import (
    CONSUMER,
    MAX_CAPACITY_WH,
    MAX_TAX_BPS,
    MIN_CAPACITY_WH,
    NO_ROLE,
    OWNER,
    PRODUCER,
    REGULATOR,
    Advert,
    MarketInfo,
    Purchase,
    check_capacity,
    is_expired,
    positive,
)
from payg.errors import (
    AdvertNotExpired,
    InsufficientFunds,
    InvalidAmount,
    LedgerUnavailable,
    NotAuthorised,
    NotEnoughEnergy,
    PaygError,
    RoleConflict,
    TradeRefused,
    UnknownAdvert,
)

RESERVATION_S = 120        # a buy's quote holds for payments checkpointed within this long
SUBMIT_GRACE_S = 60        # ... and its energy stays held this much longer, for the digest to arrive

RESERVED = "reserved"
BOUGHT = "bought"
RELEASED = "released"


def _seconds(timestamp: Any) -> float:
    """A transaction's checkpoint time in unix seconds (ISO-8601 text, or a number of ms or s)."""
    if isinstance(timestamp, str):
        try:
            return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()
        except ValueError:
            raise LedgerUnavailable(f"transaction timestamp {timestamp!r} is not a date") from None
    if isinstance(timestamp, (int, float)) and not isinstance(timestamp, bool):
        return timestamp / 1000 if timestamp > 10**11 else float(timestamp)
    raise LedgerUnavailable(f"transaction timestamp {timestamp!r} is not a date")


class MarketHost(TradePart):
    """The host's side of the market's messages; its roles, adverts, reservations and purchases in the store."""

    def __init__(self, *, reservation_s: int = RESERVATION_S, **part):
        super().__init__(**part)
        self.reservation_s = reservation_s

    def create(self, owner: str, capacity_wh: int, tax_bps: int) -> None:
        """Host a market here, owned by the party `owner` (once per store)."""
        capacity_wh = positive(capacity_wh, "capacity_wh")
        if not MIN_CAPACITY_WH <= capacity_wh <= MAX_CAPACITY_WH:
            raise InvalidAmount(f"capacity_wh must be from {MIN_CAPACITY_WH} to {MAX_CAPACITY_WH}, got {capacity_wh}")
        if isinstance(tax_bps, bool) or not isinstance(tax_bps, int) or not 0 <= tax_bps <= MAX_TAX_BPS:
            raise InvalidAmount(f"tax_bps must be an integer from 0 to {MAX_TAX_BPS}, got {tax_bps!r}")
        with self.store.lock, self.store.transaction():
            if self.store.meta("market_id") is not None:
                raise ValueError(f"{self.store.path} already hosts market {self.store.meta('market_id')}")
            for key, value in (("market_id", secrets.token_hex(16)), ("owner", owner),
                               ("capacity_wh", capacity_wh), ("tax_bps", tax_bps), ("created_at", self.now())):
                self.store.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (key, str(value)))
            self.store.execute("INSERT INTO roles (party, role, granted_by, at) VALUES (?, ?, ?, ?)",
                               (owner, OWNER, owner, self.now()))

    def _hosted(self) -> tuple[str, str, int, int]:
        market_id = self.store.meta("market_id")
        if market_id is None:
            raise UnknownAdvert("this controller hosts no market (create_market first)")
        owner, capacity_wh, tax_bps = (self.store.meta(key) for key in ("owner", "capacity_wh", "tax_bps"))
        if owner is None or capacity_wh is None or tax_bps is None:  # written with market_id, in one transaction
            raise ValueError(f"{self.store.path}: market {market_id} lacks its owner, capacity or tax")
        return market_id, owner, int(capacity_wh), int(tax_bps)

    def _market_domain(self) -> str:
        return f"iota:{self.envelopes.network}:{self._hosted()[0]}"

    def _role(self, party: str) -> str:
        row = self.store.execute("SELECT role FROM roles WHERE party = ?", (party,)).fetchone()
        return row[0] if row else NO_ROLE

    def _held_wh(self, advert_id: str, now: int) -> int:
        row = self.store.execute("SELECT COALESCE(SUM(energy_wh), 0) FROM reservations "
                                 "WHERE advert_id = ? AND state = ? AND expires_at > ?",
                                 (advert_id, RESERVED, now - SUBMIT_GRACE_S)).fetchone()
        return row[0]

    def _advert_row(self, advert_id: Any) -> sqlite3.Row:
        row = self.store.execute("SELECT * FROM adverts WHERE advert_id = ?", (str(advert_id),)).fetchone()
        if row is None:
            raise UnknownAdvert(f"no advert {advert_id!r} on this market")
        return row

    def _advert_of(self, row: sqlite3.Row, now: int) -> Advert:
        if row["returned"]:
            remaining = 0
        else:
            remaining = row["energy_wh"] - row["sold_wh"] - self._held_wh(row["advert_id"], now)
        return Advert(row["advert_id"], row["producer"], row["energy_wh"], max(0, remaining),
                      row["min_price_per_wh"], row["posted_at"])

    def _advertised_wh(self, now: int) -> int:
        """Energy in adverts that are neither expired nor sold (held energy is still advertised)."""
        total = 0
        for row in self.store.execute("SELECT * FROM adverts WHERE returned = 0"):
            if not is_expired(row["posted_at"], now):
                total += row["energy_wh"] - row["sold_wh"]
        return total

    def _market_info(self) -> dict:
        market_id, owner, capacity_wh, tax_bps = self._hosted()
        return MarketInfo(owner, capacity_wh, self._advertised_wh(self.now()), tax_bps,
                          f"iota:{self.envelopes.network}:{market_id}").__dict__

    def grant(self, envelope: dict) -> dict:
        message = self.envelopes.verify(envelope, "iota/grant", self._market_domain())
        actor, target = message["party"], parse_address(message.get("target"), "target party")
        role = message.get("role")
        if role not in (REGULATOR, PRODUCER, CONSUMER):
            raise ValueError(f"role must be regulator, producer or consumer, got {role!r}")
        with self.store.lock, self.store.transaction():
            needed = OWNER if role == REGULATOR else REGULATOR
            if self._role(actor) != needed:
                raise NotAuthorised(f"{actor} is {self._role(actor)}: only the {needed} grants {role}")
            held = self._role(target)
            if held != NO_ROLE:
                raise RoleConflict(f"{target} already holds the role {held}; a party holds one role")
            self.store.execute("INSERT INTO roles (party, role, granted_by, at) VALUES (?, ?, ?, ?)",
                               (target, role, actor, self.now()))
        return {"party": target, "role": role}

    def revoke(self, envelope: dict) -> dict:
        message = self.envelopes.verify(envelope, "iota/revoke", self._market_domain())
        actor, target = message["party"], parse_address(message.get("target"), "target party")
        with self.store.lock, self.store.transaction():
            held = self._role(target)
            if held == NO_ROLE:
                raise RoleConflict(f"{target} holds no role")
            if held == OWNER:
                raise NotAuthorised("the owner's role cannot be revoked")
            needed = OWNER if held == REGULATOR else REGULATOR
            if self._role(actor) != needed:
                raise NotAuthorised(f"{actor} is {self._role(actor)}: only the {needed} revokes a {held}")
            self.store.execute("DELETE FROM roles WHERE party = ?", (target,))
        return {"party": target, "role": NO_ROLE}

    def advert(self, envelope: dict) -> dict:
        message = self.envelopes.verify(envelope, "iota/advert", self._market_domain())
        producer = message["party"]
        energy_wh = positive(message.get("energy_wh"), "energy_wh")
        min_price = positive(message.get("min_price_per_wh"), "min_price_per_wh")
        with self.store.lock, self.store.transaction():
            if self._role(producer) != PRODUCER:
                raise NotAuthorised(f"{producer} is {self._role(producer)}: only a producer posts adverts")
            now = self.now()
            check_capacity(self._advertised_wh(now), energy_wh, self._hosted()[2])
            advert_id = str(self.store.next("advert") + 1)
            self.store.execute("INSERT INTO adverts (advert_id, producer, energy_wh, min_price_per_wh, posted_at) "
                               "VALUES (?, ?, ?, ?, ?)", (advert_id, producer, energy_wh, min_price, now))
            return self._advert_of(self._advert_row(advert_id), now).as_dict(now)

    def _tax_regulator(self, producer: str) -> str:
        owner = self._hosted()[1]
        row = self.store.execute("SELECT granted_by FROM roles WHERE party = ?", (producer,)).fetchone()
        if row is not None and self._role(row[0]) == REGULATOR:
            return row[0]
        return owner

    def reserve(self, envelope: dict) -> dict:
        message = self.envelopes.verify(envelope, "iota/reserve", self._market_domain())
        consumer = message["party"]
        energy_wh = positive(message.get("energy_wh"), "energy_wh")
        limit = message.get("max_price_per_wh")
        if limit is not None:
            limit = positive(limit, "max_price_per_wh")
        with self.store.lock, self.store.transaction():
            if self._role(consumer) != CONSUMER:
                raise NotAuthorised(f"{consumer} is {self._role(consumer)}: only a consumer buys")
            now = self.now()
            advert = self._advert_of(self._advert_row(message.get("advert_id")), now)
            price, share, tax = advert.quote(energy_wh, now, self._hosted()[3], limit)
            regulator = self._tax_regulator(advert.producer)
            reservation_id = secrets.token_hex(16)
            expires_at = min(now + self.reservation_s, advert.expires_at)
            self.store.execute(
                "INSERT INTO reservations (reservation_id, advert_id, consumer, producer, regulator, energy_wh, "
                "price_per_wh, producer_amount, tax_amount, created_at, expires_at, state) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (reservation_id, advert.advert_id, consumer, advert.producer, regulator, energy_wh, price, share,
                 tax, now, expires_at, RESERVED))
        return {"reservation_id": reservation_id, "advert_id": advert.advert_id, "consumer": consumer,
                "producer": advert.producer, "regulator": regulator, "energy_wh": energy_wh,
                "price_per_wh": price, "producer_amount": share, "tax_amount": tax, "created_at": now,
                "expires_at": expires_at}

    def release(self, envelope: dict) -> dict:
        message = self.envelopes.verify(envelope, "iota/release", self._market_domain())
        with self.store.lock, self.store.transaction():
            self.store.execute("UPDATE reservations SET state = ? WHERE reservation_id = ? AND consumer = ? "
                               "AND state = ?", (RELEASED, message.get("reservation_id"), message["party"], RESERVED))
        return {"released": True}

    def buy(self, envelope: dict) -> dict:
        message = self.envelopes.verify(envelope, "iota/buy", self._market_domain())
        digest = text(message.get("digest"), "digest")
        with self.store.lock:
            existing = self.store.execute("SELECT * FROM purchases WHERE purchase_id = ?", (digest,)).fetchone()
            if existing is not None:
                if existing["reservation_id"] == message.get("reservation_id") \
                        and existing["consumer"] == message["party"]:
                    return dict(existing)  # the same buy submitted again (a retry after a lost reply)
                raise NotAuthorised(f"transaction {digest} already paid for purchase {existing['purchase_id']}")
            r = self.store.execute("SELECT * FROM reservations WHERE reservation_id = ?",
                                   (message.get("reservation_id"),)).fetchone()
            if r is None or r["consumer"] != message["party"]:
                raise UnknownAdvert(f"no reservation {message.get('reservation_id')!r} for {message['party']}")
            if r["state"] != RESERVED:
                raise NotAuthorised(f"reservation {r['reservation_id']} is {r['state']}")
            self._check_payment(digest, r)
            now = self.now()
            if now >= r["expires_at"] + SUBMIT_GRACE_S:
                # Paid in time but submitted late: its energy was no longer held; sell it only if still there.
                advert = self._advert_row(r["advert_id"])
                held = self._held_wh(r["advert_id"], now)
                if advert["energy_wh"] - advert["sold_wh"] - held < r["energy_wh"]:
                    raise NotEnoughEnergy(f"reservation {r['reservation_id']} was submitted {now - r['expires_at']} s"
                                          f" after it lapsed and its energy was sold meanwhile")
            with self.store.transaction():
                self.store.execute("UPDATE reservations SET state = ?, purchase_id = ? WHERE reservation_id = ?",
                                   (BOUGHT, digest, r["reservation_id"]))
                advert = self._advert_row(r["advert_id"])
                if advert["returned"]:
                    # Paid within the reservation but submitted after the unsold energy was returned.
                    self.store.execute("UPDATE adverts SET returned_wh = returned_wh - ? WHERE advert_id = ?",
                                       (r["energy_wh"], r["advert_id"]))
                self.store.execute("UPDATE adverts SET sold_wh = sold_wh + ? WHERE advert_id = ?",
                                   (r["energy_wh"], r["advert_id"]))
                purchase = Purchase(digest, r["advert_id"], r["consumer"], r["producer"], r["energy_wh"],
                                    r["price_per_wh"], r["producer_amount"], r["tax_amount"], r["regulator"], now)
                self.store.execute(
                    "INSERT INTO purchases (purchase_id, reservation_id, advert_id, consumer, producer, energy_wh, "
                    "price_per_wh, producer_amount, tax_amount, regulator, at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (digest, r["reservation_id"], r["advert_id"], r["consumer"], r["producer"], r["energy_wh"],
                     r["price_per_wh"], r["producer_amount"], r["tax_amount"], r["regulator"], now))
        return {**purchase.as_dict(), "reservation_id": r["reservation_id"]}

    def _check_payment(self, digest: str, r: sqlite3.Row) -> None:
        """The buy's transaction, read from the ledger, pays what the reservation quoted, in time."""
        try:
            tx = self.wallet.transaction(digest)
        except (TradeRefused, LedgerUnavailable):
            raise
        except PaygError as exc:  # no such transaction
            raise InsufficientFunds(f"transaction {digest}: {exc}: nothing was paid") from None
        if not tx.get("success"):
            raise InsufficientFunds(f"transaction {digest} failed on the ledger: nothing was paid")
        if tx.get("checkpoint") is None:
            raise LedgerUnavailable(f"transaction {digest} is not in a checkpoint yet")
        sender = parse_address(tx.get("sender"), "transaction sender")
        if sender != r["consumer"]:
            raise NotAuthorised(f"transaction {digest} was sent by {sender}, not by the consumer {r['consumer']}")
        changes = {normalise_address(a): int(v) for a, v in (tx.get("changes") or {}).items()}
        if changes.get(r["producer"], 0) < r["producer_amount"]:
            raise InsufficientFunds(f"transaction {digest} pays the producer {changes.get(r['producer'], 0)}, "
                                    f"not {r['producer_amount']}")
        if r["tax_amount"] and changes.get(r["regulator"], 0) < r["tax_amount"]:
            raise InsufficientFunds(f"transaction {digest} pays the regulator {changes.get(r['regulator'], 0)}, "
                                    f"not the tax {r['tax_amount']}")
        at = _seconds(tx.get("timestamp"))
        if not r["created_at"] - CLOCK_TOLERANCE_S <= at < r["expires_at"]:
            raise NotAuthorised(f"transaction {digest} at {at:.0f} is outside the reservation "
                                f"[{r['created_at']}, {r['expires_at']})")

    def expire(self, payload: dict) -> dict:
        with self.store.lock, self.store.transaction():
            row = self._advert_row(payload.get("advert_id"))
            now = self.now()
            if not is_expired(row["posted_at"], now):
                raise AdvertNotExpired(f"advert {row['advert_id']} expires at {row['posted_at'] + 3 * 3600}")
            if row["returned"]:
                return {"returned_wh": 0}
            returned = row["energy_wh"] - row["sold_wh"]
            self.store.execute("UPDATE adverts SET returned = 1, returned_wh = ? WHERE advert_id = ?",
                               (returned, row["advert_id"]))
        return {"returned_wh": returned}

    def query(self, kind: str, payload: dict) -> dict:
        with self.store.lock:
            now = self.now()
            if kind == "iota/market":
                return self._market_info()
            self._hosted()
            if kind == "iota/role":
                return {"role": self._role(parse_address(payload.get("party"), "party"))}
            if kind == "iota/advert-info":
                return self._advert_of(self._advert_row(payload.get("advert_id")), now).as_dict(now)
            if kind == "iota/purchases":
                rows = self.store.execute("SELECT * FROM purchases ORDER BY at, purchase_id").fetchall()
                return {"purchases": [{k: row[k] for k in row.keys() if k != "reservation_id"} for row in rows]}
            if kind == "iota/adverts":
                rows = self.store.execute("SELECT * FROM adverts WHERE returned = 0 ORDER BY posted_at, "
                                          "CAST(advert_id AS INTEGER)").fetchall()
                adverts = [self._advert_of(row, now) for row in rows]
                return {"adverts": [a.as_dict(now) for a in adverts if a.is_open(now)]}
        raise ValueError(f"unknown query {kind!r}")
