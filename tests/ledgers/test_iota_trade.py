"""IotaTrade beyond the conformance suite: signed messages, two-phase buys checked on the ledger, two
controllers (two mnemonics) trading over HTTP on 127.0.0.1, a drained channel, restarts."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ledgers.iota import IotaTrade, IotaWallet
from ledgers.iota.envelope import MAX_SKEW_S, channel_path, party_path
from payg.adapters.clocks import ManualClock
from payg.adapters.peer_link import HttpPeerLink
from payg.domain import market as rules
from payg.errors import (
    AdvertExpired,
    ChannelClosed,
    InsufficientFunds,
    InvalidAmount,
    LedgerUnavailable,
    NotAuthorised,
    NotEnoughEnergy,
    PriceAboveLimit,
    UnknownAdvert,
    VoucherReplayed,
    error_from_reply,
    error_reply,
)
from tests.support.ledger_beds_iota import TEST_MNEMONIC, FakeIotaNode
from tests.support.trade_beds_iota import START, IotaTradeBed

# Another public BIP-39 test vector, for the second controller.
OTHER_MNEMONIC = "legal winner thank year wave sausage worth useful legal winner thank yellow"
PRICE = IotaTradeBed.price


class PeerServer:
    """What the web layer's POST /api/peer/<kind> does, on 127.0.0.1: forward to handle_peer_message."""

    def __init__(self, backend: IotaTrade):
        self.backend = backend
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                prefix = "/api/peer/"
                if not self.path.startswith(prefix):
                    return self.answer(404, {"error": "NotFound", "message": self.path})
                try:
                    payload = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                    result = outer.backend.handle_peer_message(self.path[len(prefix):], payload)
                    status, body = 200, result
                except Exception as exc:  # noqa: BLE001 - every error becomes a reply, as in the web layer
                    status, body = error_reply(exc)
                self.answer(status, body)

            def answer(self, status, body):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        # serve_forever looks for shutdown() every 20 ms, not every 0.5 s: stop() returns that much sooner.
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def bed(tmp_path, node):
    b = IotaTradeBed(tmp_path, capacity_wh=10_000, tax_bps=500, node=node)  # the module's node, emptied
    yield b
    b.close()


@pytest.fixture
def market(bed):
    t = bed.trade
    t.grant("owner", t.party_for("reg"), rules.REGULATOR)
    t.grant("reg", t.party_for("prod"), rules.PRODUCER)
    t.grant("reg", t.party_for("cons"), rules.CONSUMER)
    bed.fund("cons", 1000 * PRICE)
    return bed


def domain(t: IotaTrade) -> str:
    return t.market().domain


def test_a_signed_message_cannot_be_changed_signed_by_another_key_replayed_or_moved(bed):
    t = bed.trade
    target = t.party_for("reg")

    def grant_message(**changes):
        envelope = t.sign_message("owner", "iota/grant", domain(t), {"target": target, "role": rules.REGULATOR})
        envelope["message"].update(changes)
        return envelope

    with pytest.raises(NotAuthorised, match="signature"):
        t.handle_peer_message("iota/grant", grant_message(role=rules.CONSUMER))      # a field changed
    with pytest.raises(NotAuthorised, match="signature"):
        t.handle_peer_message("iota/grant", grant_message(at=t.now() + 1))          # its time changed
    stolen = grant_message()
    stolen["public_key"] = bed.wallet.public_key(party_path(1))                     # reg's key, owner's words
    with pytest.raises(NotAuthorised, match="belongs to"):
        t.handle_peer_message("iota/grant", stolen)
    forged = t.sign_message("reg", "iota/grant", domain(t), {"target": target, "role": rules.REGULATOR})
    forged["message"]["party"] = t.party_for("owner")                               # reg claims to be the owner
    with pytest.raises(NotAuthorised):
        t.handle_peer_message("iota/grant", forged)
    with pytest.raises(NotAuthorised, match="sent as"):
        t.handle_peer_message("iota/advert", grant_message())                       # reused for another kind
    with pytest.raises(NotAuthorised, match="signed for"):
        t.handle_peer_message("iota/grant", t.sign_message("owner", "iota/grant", "iota:elsewhere:market",
                                                          {"target": target, "role": rules.REGULATOR}))
    other = bed.other_domain()                                                      # the same key, another network
    with pytest.raises(NotAuthorised, match="network"):
        t.handle_peer_message("iota/grant", other.sign_message("owner", "iota/grant", domain(t),
                                                              {"target": target, "role": rules.REGULATOR}))
    old = grant_message()
    bed.travel_to(START + MAX_SKEW_S + 1)
    with pytest.raises(NotAuthorised, match="too old"):
        t.handle_peer_message("iota/grant", old)
    assert t.role_of(target) == rules.NO_ROLE

    good = grant_message()
    t.handle_peer_message("iota/grant", good)
    assert t.role_of(target) == rules.REGULATOR
    t.revoke("owner", target)
    with pytest.raises(NotAuthorised, match="already received"):
        t.handle_peer_message("iota/grant", good)                                   # replayed
    assert t.role_of(target) == rules.NO_ROLE


def reserve(t: IotaTrade, socket: str, advert_id: str, energy_wh: int) -> dict:
    return t.handle_peer_message("iota/reserve", t.sign_message(socket, "iota/reserve", domain(t), {
        "advert_id": advert_id, "energy_wh": energy_wh, "max_price_per_wh": None}))


def submit(t: IotaTrade, socket: str, reservation_id: str, digest: str) -> dict:
    return t.handle_peer_message("iota/buy", t.sign_message(socket, "iota/buy", domain(t), {
        "reservation_id": reservation_id, "digest": digest}))


def test_a_reservation_holds_energy_at_its_price_and_lapses(market):
    t = market.trade
    advert = t.post_advert("prod", 100, PRICE)
    r = reserve(t, "cons", advert.advert_id, 40)
    assert (r["price_per_wh"], r["producer_amount"], r["tax_amount"]) == (PRICE, 40 * PRICE, 2 * PRICE)
    assert r["expires_at"] == t.now() + 120
    assert t.advert(advert.advert_id).remaining_wh == 60
    with pytest.raises(NotEnoughEnergy):
        t.buy("cons", advert.advert_id, 61)
    assert t.market().advertised_wh == 100  # held energy is still advertised
    market.travel_to(r["expires_at"])
    assert t.advert(advert.advert_id).remaining_wh == 60  # held a little longer, for a payment on its way
    market.travel_to(r["expires_at"] + 60)
    assert t.advert(advert.advert_id).remaining_wh == 100
    # Paid after the reservation lapsed: refused, nothing recorded (the payer's controller never does this).
    digest = market.wallet.send(party_path(5), [(r["producer"], r["producer_amount"]),
                                                (r["regulator"], r["tax_amount"])])
    with pytest.raises(NotAuthorised, match="outside the reservation"):
        submit(t, "cons", r["reservation_id"], digest)
    assert t.purchases() == [] and t.advert(advert.advert_id).remaining_wh == 100


def test_a_reservation_never_outlives_its_advert(market):
    t = market.trade
    advert = t.post_advert("prod", 100, PRICE)
    market.travel_to(advert.expires_at - 30)
    assert reserve(t, "cons", advert.advert_id, 1)["expires_at"] == advert.expires_at
    market.travel_to(advert.expires_at - 5)
    with pytest.raises(AdvertExpired, match="too soon"):
        t.buy("cons", advert.advert_id, 1)  # refused before paying: the payment could land after the expiry
    market.travel_to(advert.expires_at)
    with pytest.raises(AdvertExpired):
        reserve(t, "cons", advert.advert_id, 1)


def test_a_buy_paid_short_not_at_all_or_by_someone_else_is_refused_and_nothing_is_recorded(market):
    t, wallet = market.trade, market.wallet
    advert = t.post_advert("prod", 100, PRICE)
    market.fund("out", 100 * PRICE)
    r = reserve(t, "cons", advert.advert_id, 10)
    producer, regulator, share, tax = r["producer"], r["regulator"], r["producer_amount"], r["tax_amount"]
    cons, out = party_path(5), party_path(7)
    short = wallet.send(cons, [(producer, share - 1), (regulator, tax)])
    no_tax = wallet.send(cons, [(producer, share)])
    elsewhere = wallet.send(cons, [(t.party_for("prod2"), share), (regulator, tax)])
    by_out = wallet.send(out, [(producer, share), (regulator, tax)])
    for digest, error in ((short, InsufficientFunds), (no_tax, InsufficientFunds), (elsewhere, InsufficientFunds),
                          (by_out, NotAuthorised), ("4vJ9JU1bJJE96FWSJKvHsmmFADCg4gpZQff4P3bkLKi", InsufficientFunds)):
        with pytest.raises(error):
            submit(t, "cons", r["reservation_id"], digest)
    with pytest.raises(UnknownAdvert):
        submit(t, "out", r["reservation_id"], by_out)  # someone else's reservation
    assert t.purchases() == []
    assert t.advert(advert.advert_id).remaining_wh == 90  # still held for cons
    paid = wallet.send(cons, [(producer, share), (regulator, tax)])
    purchase = submit(t, "cons", r["reservation_id"], paid)
    assert purchase["purchase_id"] == paid and purchase["energy_wh"] == 10
    assert submit(t, "cons", r["reservation_id"], paid)["purchase_id"] == paid  # a retry is answered the same
    r2 = reserve(t, "cons", advert.advert_id, 10)
    with pytest.raises(NotAuthorised, match="already paid"):
        submit(t, "cons", r2["reservation_id"], paid)  # one payment, one purchase
    assert [p.purchase_id for p in t.purchases()] == [paid]
    assert t.advert(advert.advert_id).remaining_wh == 80


def test_a_refused_buy_releases_its_reservation(market):
    t = market.trade
    advert = t.post_advert("prod", 100, PRICE)
    market.fund("cons2", 1)
    t.grant("reg", t.party_for("cons2"), rules.CONSUMER)
    with pytest.raises(InsufficientFunds):
        t.buy("cons2", advert.advert_id, 50)
    with pytest.raises(PriceAboveLimit):
        t.buy("cons", advert.advert_id, 50, max_price_per_wh=PRICE - 1)
    assert t.advert(advert.advert_id).remaining_wh == 100
    assert t.withdraw("prod") == 0


class Controllers:
    """A: hosts the market; owner, reg, prod. B: another mnemonic; cons. They talk over HTTP."""

    def __init__(self, tmp_path, node: FakeIotaNode):
        self.node = node  # the module's fake node, emptied for the test; its fixture stops it
        self.node.control("time", {"timestamp_ms": START * 1000})
        self.clock_a, self.clock_b = ManualClock(START), ManualClock(START)
        self.wallet_a = IotaWallet(self.node.url, mnemonic=TEST_MNEMONIC, request_timeout_s=5)
        self.wallet_b = IotaWallet(self.node.url, mnemonic=OTHER_MNEMONIC, request_timeout_s=5)
        self.a = IotaTrade(self.wallet_a, accounts={"owner": 0, "reg": 1, "prod": 2}, store_path=tmp_path / "a.sqlite",
                           clock=self.clock_a, peer_link=HttpPeerLink())
        self.a.create_market("owner", 10_000, 500)
        self.server_a = PeerServer(self.a)
        self.b = IotaTrade(self.wallet_b, accounts={"cons": 0}, store_path=tmp_path / "b.sqlite", clock=self.clock_b,
                           peer_link=HttpPeerLink(), market_url=self.server_a.url,
                           peers={self.a.party_for("prod"): self.server_a.url})
        self.server_b = PeerServer(self.b)
        self.a.add_peer(self.b.party_for("cons"), self.server_b.url)

    def travel_to(self, t):
        self.clock_a.set(t)
        self.clock_b.set(t)
        self.node.control("time", {"timestamp_ms": t * 1000})

    def gas(self, digest):
        return self.wallet_a.transaction(digest)["gas_fee"]

    def close(self):
        self.server_a.stop()
        self.server_b.stop()
        self.a.shutdown()
        self.b.shutdown()
        self.wallet_a.close()
        self.wallet_b.close()


@pytest.fixture
def two(tmp_path, node):
    c = Controllers(tmp_path, node)
    yield c
    c.close()


def test_two_controllers_trade_over_http_and_the_ledger_moves_exactly(two):
    a, b, w = two.a, two.b, two.wallet_a
    owner, reg, prod, cons = a.party_for("owner"), a.party_for("reg"), a.party_for("prod"), b.party_for("cons")
    assert len({owner, reg, prod, cons}) == 4
    a.grant("owner", reg, rules.REGULATOR)
    a.grant("reg", prod, rules.PRODUCER)
    with pytest.raises(NotAuthorised):
        b.grant("cons", cons, rules.CONSUMER)  # refused by the host, raised here from its HTTP 409
    a.grant("reg", cons, rules.CONSUMER)
    assert b.role_of(cons) == rules.CONSUMER and b.market() == a.market()
    two.node.control("faucet", {"address": cons, "amount": 10 * 10**9})

    advert = a.post_advert("prod", 500, PRICE)
    assert [x.advert_id for x in b.adverts()] == [advert.advert_id]
    with pytest.raises(NotEnoughEnergy):
        b.buy("cons", advert.advert_id, 501)
    two.travel_to(advert.posted_at + 3600)
    before = {p: w.balance(p) for p in (owner, reg, prod, cons)}
    purchase = b.buy("cons", advert.advert_id, 100)
    price = PRICE * 110 // 100
    share, tax = 100 * price, 100 * price * 500 // 10_000
    assert (purchase.price_per_wh, purchase.producer_amount, purchase.tax_amount, purchase.regulator) == (
        price, share, tax, reg)
    after = {p: w.balance(p) for p in (owner, reg, prod, cons)}
    assert after[prod] - before[prod] == share
    assert after[reg] - before[reg] == tax
    assert after[owner] == before[owner]
    assert before[cons] - after[cons] == share + tax + two.gas(purchase.purchase_id)
    tx = w.transaction(purchase.purchase_id)
    assert tx["sender"] == cons and tx["changes"][prod] == share and tx["changes"][reg] == tax
    assert a.purchases() == b.purchases() == [purchase]
    assert a.advert(advert.advert_id).remaining_wh == 400

    # A channel from cons (controller B) to prod (controller A): open, vouchers, close by the recipient.
    escrow = 300 * PRICE
    before = {p: w.balance(p) for p in (prod, cons)}
    ch = b.open_channel("cons", prod, escrow, b.now() + 3600)
    assert ch.channel_id == ch.address == two.wallet_b.address(channel_path(0, 0))
    assert a.channel(ch.channel_id) == b.channel(ch.channel_id) == ch  # A was told and checked the ledger
    assert w.balance(ch.address) == escrow + b.gas_reserve
    for amount in (PRICE, 2 * PRICE, 3 * PRICE):
        a.accept_voucher(b.sign_voucher("cons", ch.channel_id, amount), ch.channel_id)
    with pytest.raises(VoucherReplayed):
        a.accept_voucher(b.sign_voucher("cons", ch.channel_id, 2 * PRICE), ch.channel_id)
    assert a.watch(ch.channel_id)["broken"] is False
    latest = a.last_voucher(ch.channel_id)
    closed = a.close("prod", ch.channel_id, latest)
    assert (closed.state, closed.paid) == (rules.CLOSED, 3 * PRICE)
    assert b.channel(ch.channel_id).state == rules.CLOSED
    with pytest.raises(ChannelClosed):
        a.close("prod", ch.channel_id, latest)
    digests = b.channel_transactions(ch.channel_id)
    assert len(digests) == 3  # open, payment, sweep
    open_tx, pay_tx, sweep_tx = (w.transaction(d) for d in digests)
    assert pay_tx["sender"] == sweep_tx["sender"] == ch.address
    assert pay_tx["changes"][prod] == 3 * PRICE
    assert w.balance(ch.address) == 0
    assert w.balance(prod) - before[prod] == 3 * PRICE
    gas = sum(t["gas_fee"] for t in (open_tx, pay_tx, sweep_tx))
    assert before[cons] - w.balance(cons) == 3 * PRICE + gas


def test_top_up_and_reclaim_reach_the_recipients_controller(two):
    a, b, w = two.a, two.b, two.wallet_a
    prod, cons = a.party_for("prod"), b.party_for("cons")
    two.node.control("faucet", {"address": cons, "amount": 10**9})
    ch = b.open_channel("cons", prod, 10 * PRICE, b.now() + 600)
    grown = b.top_up("cons", ch.channel_id, 5 * PRICE, ch.expires_at + 600)
    assert a.channel(ch.channel_id) == grown and grown.escrow == 15 * PRICE
    assert w.balance(ch.address) == 15 * PRICE + b.gas_reserve
    before = w.balance(cons)
    two.travel_to(grown.expires_at)
    reclaimed = b.reclaim("cons", ch.channel_id)
    assert a.channel(ch.channel_id).state == reclaimed.state == rules.RECLAIMED
    sweep = w.transaction(b.channel_transactions(ch.channel_id)[-1])
    assert w.balance(cons) - before == 15 * PRICE + b.gas_reserve - sweep["gas_fee"]
    assert w.balance(ch.address) == 0


def test_a_malformed_peer_message_is_bad_input(two):
    for kind, payload in (("iota/grant", {"message": "no"}), ("iota/role", {"party": "not an address"}),
                          ("iota/nothing", {}), ("iota/close", {"message": {"kind": "iota/close"}})):
        with pytest.raises(InvalidAmount):
            two.a.handle_peer_message(kind, payload)
        with pytest.raises(InvalidAmount):  # the same over HTTP (400)
            two.b._peers.call(two.server_a.url, kind, payload)


def test_the_recipient_sees_a_drained_channel(two):
    a, b = two.a, two.b
    prod, cons = a.party_for("prod"), b.party_for("cons")
    two.node.control("faucet", {"address": cons, "amount": 10**9})
    ch = b.open_channel("cons", prod, 100 * PRICE, b.now() + 3600)
    a.accept_voucher(b.sign_voucher("cons", ch.channel_id, 10 * PRICE), ch.channel_id)
    assert a.watch(ch.channel_id)["broken"] is False
    # The sender's side breaks the rules: it moves the escrow away with the channel key.
    two.wallet_b.sweep(channel_path(0, 0), cons)
    seen = a.watch(ch.channel_id)
    assert seen["broken"] is True and seen["balance"] == 0 and seen["owed"] == 10 * PRICE
    assert a.watch(ch.channel_id)["broken"] is True  # kept


def test_a_peer_that_cannot_be_reached_is_a_ledger_outage(two, tmp_path):
    two.server_a.stop()
    with pytest.raises(LedgerUnavailable):
        two.b.market()
    lonely = IotaTrade(two.wallet_b, accounts={"x": 5}, store_path=tmp_path / "c.sqlite", clock=two.clock_b,
                       peer_link=HttpPeerLink())
    try:
        two.node.control("faucet", {"address": lonely.party_for("x"), "amount": 10**9})
        before = two.wallet_b.balance(lonely.party_for("x"))
        with pytest.raises(NotAuthorised, match="no controller"):
            lonely.open_channel("x", two.a.party_for("prod"), 10 * PRICE, lonely.now() + 3600)
        assert two.wallet_b.balance(lonely.party_for("x")) == before
    finally:
        lonely.shutdown()


def test_error_replies_map_back_to_the_same_errors():
    for error in (NotEnoughEnergy("x"), InsufficientFunds("x"), LedgerUnavailable("x"), ValueError("x")):
        status, body = error_reply(error)
        assert status == {NotEnoughEnergy: 409, InsufficientFunds: 409, LedgerUnavailable: 503, ValueError: 400}[
            type(error)]
        assert type(error_from_reply(status, body)) is type(error)
    assert error_reply(RuntimeError("secret detail"))[0] == 500
    assert isinstance(error_from_reply(500, {"error": "SomethingElse", "message": "x"}), LedgerUnavailable)


def test_a_restarted_controller_keeps_its_market_channels_and_counters(market, tmp_path):
    t = market.trade
    advert = t.post_advert("prod", 100, PRICE)
    first = t.open_channel("cons", t.party_for("prod"), 10 * PRICE, t.now() + 3600)
    used = t.sign_message("owner", "iota/grant", domain(t), {"target": t.party_for("reg2"), "role": "regulator"})
    t.handle_peer_message("iota/grant", used)
    t.shutdown()
    market.trade = market.channels = t = IotaTrade(market.wallet, accounts=dict(zip(
        ("owner", "reg", "reg2", "prod", "prod2", "cons", "cons2", "out"), range(8), strict=True)),
        store_path=tmp_path / "iota-trade.sqlite", clock=market.clock, peer_link=HttpPeerLink())
    assert t.advert(advert.advert_id).remaining_wh == 100
    assert t.channel(first.channel_id) == first
    with pytest.raises(NotAuthorised, match="already received"):
        t.handle_peer_message("iota/grant", used)
    second = t.open_channel("cons", t.party_for("prod"), 10 * PRICE, t.now() + 3600)
    assert second.channel_id == market.wallet.address(channel_path(5, 1)) != first.channel_id
    assert first.channel_id == market.wallet.address(channel_path(5, 0))
    assert t.post_advert("prod", 10, PRICE).advert_id != advert.advert_id


def test_the_receiving_controller_refuses_vouchers_once_the_escrow_address_is_drained(two, tmp_path):
    from fractions import Fraction

    from payg.adapters.journal import SqliteJournal
    from payg.errors import AboveEscrow
    from payg.services.channels import ChannelBook

    a, b = two.a, two.b
    prod, cons = a.party_for("prod"), b.party_for("cons")
    two.node.control("faucet", {"address": cons, "amount": 10**9})
    ch = b.open_channel("cons", prod, 100 * PRICE, b.now() + 3600)
    journal = SqliteJournal(tmp_path / "producer.sqlite")
    try:
        book = ChannelBook(a, journal, two.clock_a, Fraction(1), escrow_watch=a)
        book.accept_channel("prod", ch.channel_id, PRICE)
        assert book.accept(b.sign_voucher("cons", ch.channel_id, 10 * PRICE), ch.channel_id) == 10
        two.wallet_b.sweep(channel_path(0, 0), cons)  # the sender's controller takes the escrow back early
        with pytest.raises(AboveEscrow, match="moved the escrow"):
            book.accept(b.sign_voucher("cons", ch.channel_id, 11 * PRICE), ch.channel_id)
        assert journal.balance("prod") == 10  # nothing booked for the refused voucher
    finally:
        journal.close()
