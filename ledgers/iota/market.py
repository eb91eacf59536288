"""MarketClient: the market as this controller's sockets use it (PeerTrade), wherever it is hosted.

Buys are two-phase, so that a refusal moves nothing. The consumer's controller
(1) checks role, expiry, energy, price limit and its balance against a quote,
(2) asks the host for a reservation ("iota/reserve": the host checks the same
again and holds the energy at the quoted price; payments checkpointed before
`expires_at` = min(now + RESERVATION_S, the advert's expiry) are honoured, and the
energy stays held SUBMIT_GRACE_S longer for the digest to arrive), (3) checks its
balance again and pays the producer's share and the tax to the regulator in ONE
transaction (never when less than MIN_PAY_WINDOW_S of the reservation is left),
(4) submits the digest ("iota/buy"). The host reads the transaction from the
ledger: successful, checkpointed, sent by the consumer's party, paying at least
the quoted amounts to the producer and the regulator, its checkpoint time within
the reservation, the digest not used by another purchase; only then is the
Purchase recorded, with purchase_id = the digest. A refusal at (1)-(3) happens
before any transfer, and the reservation is released. A paid buy whose answer
was lost is kept (pending_buys) and submitted again by the next buy or by
`resubmit_pending`. The tax goes to the regulator who admitted the producer if
it is still a regulator, else to the owner. `withdraw` returns 0: buys pay the
parties directly, the market never holds money.
"""

from __future__ import annotations

import logging

from ledgers.iota.envelope import integer, party_path
from ledgers.iota.part import TradePart
from ledgers.iota.sdk import parse_address
from payg.domain.market import CONSUMER, Advert, MarketInfo, Purchase, positive
from payg.errors import AdvertExpired, LedgerUnavailable, NotAuthorised, PaygError, TradeRefused

log = logging.getLogger("payg.ledgers.iota.market")

MIN_PAY_WINDOW_S = 10      # the consumer does not pay into a reservation about to lapse


def _advert_from(d: dict) -> Advert:
    return Advert(str(d["advert_id"]), d["producer"], d["energy_wh"], d["remaining_wh"], d["min_price_per_wh"],
                  d["posted_at"])


class MarketClient(TradePart):
    """market_url: the hosting controller's base URL, or None if this controller hosts the market."""

    def __init__(self, *, market_url: str | None, **part):
        super().__init__(**part)
        self.market_url = market_url
        self._market_domain_cache: str | None = None

    def _ask(self, kind: str, payload: dict) -> dict:
        return self.peers.call(self.market_url, kind, payload)

    def _domain_of_market(self) -> str:
        if self._market_domain_cache is None:
            self._market_domain_cache = self._ask("iota/market", {})["domain"]
        return self._market_domain_cache

    def market(self) -> MarketInfo:
        return MarketInfo(**self._ask("iota/market", {}))

    def role_of(self, party: str) -> str:
        return self._ask("iota/role", {"party": parse_address(party, "party")})["role"]

    def grant(self, as_socket: str, party: str, role: str) -> None:
        self._ask("iota/grant", self.envelopes.sign(as_socket, "iota/grant", self._domain_of_market(),
                                                    {"target": parse_address(party, "party"), "role": role}))

    def revoke(self, as_socket: str, party: str) -> None:
        self._ask("iota/revoke", self.envelopes.sign(as_socket, "iota/revoke", self._domain_of_market(),
                                                     {"target": parse_address(party, "party")}))

    def post_advert(self, as_socket: str, energy_wh: int, min_price_per_wh: int) -> Advert:
        positive(energy_wh, "energy_wh")
        positive(min_price_per_wh, "min_price_per_wh")
        envelope = self.envelopes.sign(as_socket, "iota/advert", self._domain_of_market(),
                                       {"energy_wh": energy_wh, "min_price_per_wh": min_price_per_wh})
        reply = self._ask("iota/advert", envelope)
        return _advert_from(reply)

    def advert(self, advert_id: str) -> Advert:
        return _advert_from(self._ask("iota/advert-info", {"advert_id": str(advert_id)}))

    def adverts(self) -> list[Advert]:
        return [_advert_from(a) for a in self._ask("iota/adverts", {})["adverts"]]

    def purchases(self) -> list[Purchase]:
        """Every purchase recorded by the market, oldest first."""
        return [Purchase(**p) for p in self._ask("iota/purchases", {})["purchases"]]

    def expire(self, advert_id: str) -> int:
        return self._ask("iota/expire", {"advert_id": str(advert_id)})["returned_wh"]

    def withdraw(self, as_socket: str) -> int:
        self.parties.party_for(as_socket)
        return 0  # every buy paid the producer and the regulator directly: the market owes nothing

    def buy(self, as_socket: str, advert_id: str, energy_wh: int, max_price_per_wh: int | None = None) -> Purchase:
        consumer = self.parties.party_for(as_socket)
        positive(energy_wh, "energy_wh")
        if max_price_per_wh is not None:
            positive(max_price_per_wh, "max_price_per_wh")
        self.resubmit_pending()
        info = self.market()
        domain = info.domain
        # A quote first, so that a consumer who cannot pay is refused before anything is held.
        advert = self.advert(advert_id)
        if self.role_of(consumer) != CONSUMER:
            raise NotAuthorised(f"{consumer} is {self.role_of(consumer)}: only a consumer buys")
        _, share, tax = advert.quote(energy_wh, self.now(), info.tax_bps, max_price_per_wh)
        self.parties.check_balance(consumer, share + tax)
        reservation = self._ask("iota/reserve", self.envelopes.sign(as_socket, "iota/reserve", domain, {
            "advert_id": str(advert_id), "energy_wh": energy_wh, "max_price_per_wh": max_price_per_wh}))
        rid = reservation["reservation_id"]
        outputs = [(parse_address(reservation["producer"], "producer"),
                    integer(reservation["producer_amount"], "share", 1))]
        if reservation["tax_amount"]:
            outputs.append((parse_address(reservation["regulator"], "regulator"),
                            integer(reservation["tax_amount"], "tax")))
        try:
            if reservation["consumer"] != consumer or reservation["energy_wh"] != energy_wh \
                    or (max_price_per_wh is not None and reservation["price_per_wh"] > max_price_per_wh):
                raise LedgerUnavailable(f"the market answered a reservation that is not the one asked: {reservation}")
            if reservation["expires_at"] - self.now() < MIN_PAY_WINDOW_S:
                raise AdvertExpired(f"advert {advert_id} expires at {reservation['expires_at']}: too soon to pay "
                                    "and have the payment checkpointed before it")
            self.parties.check_balance(consumer, sum(amount for _, amount in outputs))
            digest = self.wallet.send(party_path(self.parties.index(as_socket)), outputs)
        except BaseException as exc:
            sent = getattr(exc, "digest", None)
            if isinstance(sent, str) and sent:
                # The transaction was built and may be on the ledger: keep it for the market to judge.
                self._remember_pending(rid, as_socket, sent)
                raise
            try:
                self._ask("iota/release", self.envelopes.sign(as_socket, "iota/release", domain,
                                                              {"reservation_id": rid}))
            except PaygError as release_error:
                log.warning("could not release reservation %s: %s (it lapses by itself)", rid, release_error)
            raise
        self._remember_pending(rid, as_socket, digest)
        return self._submit(as_socket, rid, digest, domain)

    def _remember_pending(self, reservation_id: str, socket_id: str, digest: str) -> None:
        with self.store.lock, self.store.transaction():
            self.store.execute("INSERT OR REPLACE INTO pending_buys (reservation_id, socket, digest, at) "
                               "VALUES (?, ?, ?, ?)", (reservation_id, socket_id, digest, self.now()))

    def _submit(self, as_socket: str, reservation_id: str, digest: str, domain: str | None = None) -> Purchase:
        domain = domain or self._domain_of_market()
        reply = self._ask("iota/buy", self.envelopes.sign(as_socket, "iota/buy", domain,
                                                          {"reservation_id": reservation_id, "digest": digest}))
        with self.store.lock, self.store.transaction():
            self.store.execute("DELETE FROM pending_buys WHERE reservation_id = ?", (reservation_id,))
        reply.pop("reservation_id", None)
        return Purchase(**reply)

    def resubmit_pending(self) -> list[Purchase]:
        """Submit again the buys paid but not acknowledged by the market (a crash or an outage in between)."""
        with self.store.lock:
            pending = self.store.execute("SELECT * FROM pending_buys ORDER BY at").fetchall()
        done = []
        for row in pending:
            try:
                done.append(self._submit(row["socket"], row["reservation_id"], row["digest"]))
            except TradeRefused as exc:
                log.error("the market refused paid buy %s (transaction %s): %s", row["reservation_id"],
                          row["digest"], exc)
                with self.store.lock, self.store.transaction():
                    self.store.execute("DELETE FROM pending_buys WHERE reservation_id = ?", (row["reservation_id"],))
        return done
