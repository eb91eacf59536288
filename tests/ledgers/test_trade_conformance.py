"""One conformance suite for peer trade and payment channels, run against every ledger backend.

Each refusal must raise the specific payg error and move nothing: no party's funds,
no advertised energy, no channel state. Beds are in tests/support/trade_beds*.py.
"""

from __future__ import annotations

import dataclasses
import importlib
from fractions import Fraction

import pytest

from payg.adapters.clocks import ManualClock
from payg.adapters.journal import SqliteJournal
from payg.domain import market as rules
from payg.errors import (
    AboveEscrow,
    AdvertExpired,
    AdvertNotExpired,
    BadSignature,
    CapacityExceeded,
    ChannelClosed,
    ChannelExpired,
    ChannelNotExpired,
    ExpiryNotExtended,
    InsufficientFunds,
    NotAuthorised,
    NotEnoughEnergy,
    PriceAboveLimit,
    RoleConflict,
    UnknownAdvert,
    UnknownChannel,
    VoucherReplayed,
    WrongChannel,
    WrongDomain,
)
from payg.services.channels import ChannelBook
from tests.support.trade_beds import SOCKETS

BEDS = {"mock": ("tests.support.trade_beds", "make_mock_bed"),
        "ethereum": ("tests.support.trade_beds_ethereum", "make_bed"),
        "iota": ("tests.support.trade_beds_iota", "make_bed")}

CAPACITY_WH = 10_000
TAX_BPS = 500
HOUR = rules.HOUR_S


@pytest.fixture(params=list(BEDS))
def bed(request, tmp_path):
    module, factory = BEDS[request.param]
    # IOTA: the module's fake node process, emptied for the test (tests/ledgers/conftest.py), not a new one each time.
    node = {"node": request.getfixturevalue("node")} if request.param == "iota" else {}
    b = getattr(importlib.import_module(module), factory)(tmp_path, capacity_wh=CAPACITY_WH, tax_bps=TAX_BPS, **node)
    yield b
    b.close()


def party(bed, socket_id: str) -> str:
    return bed.trade.party_for(socket_id)


@pytest.fixture
def market(bed):
    """reg regulates; prod produces; cons and cons2 consume; cons can spend 2000 Wh at the minimum price."""
    t = bed.trade
    t.grant("owner", party(bed, "reg"), rules.REGULATOR)
    t.grant("reg", party(bed, "prod"), rules.PRODUCER)
    t.grant("reg", party(bed, "cons"), rules.CONSUMER)
    t.grant("reg", party(bed, "cons2"), rules.CONSUMER)
    bed.fund("cons", 2000 * bed.price)
    return bed


def snapshot(bed) -> dict:
    return {"funds": {s: bed.funds(party(bed, s)) for s in SOCKETS},
            "advertised_wh": bed.trade.market().advertised_wh}


def assert_nothing_moved(bed, before: dict, *adverts, channels=()) -> None:
    assert snapshot(bed) == before
    for advert, remaining in adverts:
        assert bed.trade.advert(advert.advert_id).remaining_wh == remaining
    for ch in channels:
        now = bed.channels.channel(ch.channel_id)
        assert (now.state, now.escrow, now.paid, now.expires_at) == (ch.state, ch.escrow, ch.paid, ch.expires_at)


def test_roles_flow_from_owner_to_regulators_to_parties(bed):
    t = bed.trade
    assert t.market().owner == party(bed, "owner")
    assert t.role_of(party(bed, "owner")) == rules.OWNER
    with pytest.raises(NotAuthorised):
        t.grant("reg", party(bed, "reg2"), rules.REGULATOR)  # not yet a regulator, and not the owner
    t.grant("owner", party(bed, "reg"), rules.REGULATOR)
    with pytest.raises(NotAuthorised):
        t.grant("reg", party(bed, "reg2"), rules.REGULATOR)  # only the owner makes regulators
    with pytest.raises(NotAuthorised):
        t.grant("owner", party(bed, "prod"), rules.PRODUCER)  # only regulators make producers
    t.grant("reg", party(bed, "prod"), rules.PRODUCER)
    with pytest.raises(NotAuthorised):
        t.grant("prod", party(bed, "cons"), rules.CONSUMER)
    with pytest.raises(RoleConflict):
        t.grant("reg", party(bed, "prod"), rules.CONSUMER)  # at most one of producer / consumer
    t.grant("reg", party(bed, "cons"), rules.CONSUMER)
    assert [t.role_of(party(bed, s)) for s in ("reg", "prod", "cons", "out")] == [
        rules.REGULATOR, rules.PRODUCER, rules.CONSUMER, rules.NO_ROLE]
    with pytest.raises(NotAuthorised):
        t.revoke("prod", party(bed, "cons"))
    t.revoke("reg", party(bed, "cons"))
    assert t.role_of(party(bed, "cons")) == rules.NO_ROLE


def test_only_producers_post_and_only_consumers_buy(market):
    t = market.trade
    before = snapshot(market)
    for socket in ("cons", "out", "reg", "owner"):
        with pytest.raises(NotAuthorised):
            t.post_advert(socket, 100, market.price)
    assert_nothing_moved(market, before)
    advert = t.post_advert("prod", 100, market.price)
    market.fund("out", 2000 * market.price)
    before = snapshot(market)
    for socket in ("out", "prod", "reg"):
        with pytest.raises(NotAuthorised):
            t.buy(socket, advert.advert_id, 10)
    assert_nothing_moved(market, before, (advert, 100))
    t.revoke("reg", party(market, "cons"))
    with pytest.raises(NotAuthorised):
        t.buy("cons", advert.advert_id, 10)
    assert_nothing_moved(market, before, (advert, 100))


def buy_and_check(bed, advert, energy_wh: int, expected_price: int):
    before = snapshot(bed)
    purchase = bed.trade.buy("cons", advert.advert_id, energy_wh)
    share = energy_wh * expected_price
    tax = share * TAX_BPS // 10_000
    assert (purchase.price_per_wh, purchase.producer_amount, purchase.tax_amount) == (expected_price, share, tax)
    assert (purchase.consumer, purchase.producer, purchase.regulator) == (
        party(bed, "cons"), party(bed, "prod"), party(bed, "reg"))
    after = snapshot(bed)
    moved = {s: after["funds"][s] - before["funds"][s] for s in SOCKETS}
    assert moved == {**{s: 0 for s in SOCKETS}, "cons": -(share + tax), "prod": share, "reg": tax}
    return purchase


def test_price_rises_ten_percent_of_the_minimum_per_full_hour(market):
    t = market.trade
    p = market.price
    advert = t.post_advert("prod", 300, p)
    assert advert.posted_at - 2 <= t.now() <= advert.posted_at + 2
    buy_and_check(market, advert, 10, p)                       # 0 h
    market.travel_to(advert.posted_at + HOUR)
    buy_and_check(market, advert, 10, p * 110 // 100)          # 1 h
    market.travel_to(advert.posted_at + 3 * HOUR - 60)
    buy_and_check(market, advert, 10, p * 120 // 100)          # 2 h 59 min
    assert t.advert(advert.advert_id).remaining_wh == 270
    assert advert.price_at(advert.posted_at + 3 * HOUR - 1) == p * 120 // 100


def test_an_advert_expires_at_three_hours_and_its_energy_returns(market):
    t = market.trade
    advert = t.post_advert("prod", 1000, market.price)
    with pytest.raises(AdvertNotExpired):
        t.expire(advert.advert_id)
    market.travel_to(advert.posted_at + 3 * HOUR)
    before = snapshot(market)
    with pytest.raises(AdvertExpired):
        t.buy("cons", advert.advert_id, 1)
    assert_nothing_moved(market, before)
    assert advert.advert_id not in [a.advert_id for a in t.adverts()]
    assert t.market().advertised_wh == 0
    assert t.expire(advert.advert_id) == 1000
    assert t.advert(advert.advert_id).remaining_wh == 0
    assert t.post_advert("prod", CAPACITY_WH, market.price).remaining_wh == CAPACITY_WH


def test_advertised_energy_is_capped_by_the_grid_capacity(market):
    t = market.trade
    first = t.post_advert("prod", 6000, market.price)
    before = snapshot(market)
    with pytest.raises(CapacityExceeded):
        t.post_advert("prod", 4001, market.price)
    assert_nothing_moved(market, before, (first, 6000))
    assert len(t.adverts()) == 1
    t.post_advert("prod", 4000, market.price)
    assert t.market().advertised_wh == CAPACITY_WH
    t.buy("cons", first.advert_id, 1000)  # sold energy is no longer advertised
    assert t.market().advertised_wh == CAPACITY_WH - 1000
    t.post_advert("prod", 1000, market.price)


def test_a_buy_the_consumer_cannot_pay_in_full_moves_nothing(market):
    t = market.trade
    advert = t.post_advert("prod", 500, market.price)
    share = 200 * market.price
    market.fund("cons2", share // 2)  # less than half of it, even with the fee allowance
    before = snapshot(market)
    with pytest.raises(InsufficientFunds):
        t.buy("cons2", advert.advert_id, 200)
    assert_nothing_moved(market, before, (advert, 500))


def test_buys_beyond_the_energy_left_or_the_price_limit_are_refused(market):
    t = market.trade
    advert = t.post_advert("prod", 50, market.price)
    before = snapshot(market)
    with pytest.raises(NotEnoughEnergy):
        t.buy("cons", advert.advert_id, 51)
    with pytest.raises(PriceAboveLimit):
        t.buy("cons", advert.advert_id, 5, max_price_per_wh=market.price - 1)
    with pytest.raises(UnknownAdvert):
        t.buy("cons", "999999", 5)
    assert_nothing_moved(market, before, (advert, 50))
    t.buy("cons", advert.advert_id, 50, max_price_per_wh=market.price)
    assert t.advert(advert.advert_id).remaining_wh == 0


def test_tax_goes_to_the_producers_regulator_and_to_the_owner_once_it_is_gone(market):
    t = market.trade
    advert = t.post_advert("prod", 100, market.price)
    assert t.buy("cons", advert.advert_id, 10).regulator == party(market, "reg")
    t.grant("owner", party(market, "reg2"), rules.REGULATOR)
    t.revoke("owner", party(market, "reg"))
    before = snapshot(market)
    purchase = t.buy("cons", advert.advert_id, 10)
    assert purchase.regulator == party(market, "owner")
    assert snapshot(market)["funds"]["owner"] - before["funds"]["owner"] == purchase.tax_amount > 0


@pytest.fixture
def channel(market):
    """cons pays prod through a channel holding 1000 Wh at the minimum price, open for 2 hours."""
    escrow = 1000 * market.price
    ch = market.channels.open_channel("cons", party(market, "prod"), escrow, market.channels.now() + 2 * HOUR)
    return ch


def test_open_close_pays_the_voucher_to_the_recipient_and_the_rest_back(market, channel):
    c = market.channels
    assert (channel.sender, channel.recipient, channel.escrow, channel.state) == (
        party(market, "cons"), party(market, "prod"), 1000 * market.price, rules.OPEN)
    assert c.channel(channel.channel_id) == channel
    voucher = c.sign_voucher("cons", channel.channel_id, 300 * market.price)
    assert c.check_voucher(voucher, channel.channel_id).channel_id == channel.channel_id
    before = snapshot(market)
    closed = c.close("prod", channel.channel_id, voucher)
    assert (closed.state, closed.paid) == (rules.CLOSED, 300 * market.price)
    after = snapshot(market)
    assert after["funds"]["prod"] - before["funds"]["prod"] == 300 * market.price
    assert after["funds"]["cons"] - before["funds"]["cons"] == 700 * market.price


def test_top_up_adds_escrow_and_only_ever_extends(market, channel):
    c = market.channels
    grown = c.top_up("cons", channel.channel_id, 500 * market.price, channel.expires_at + HOUR)
    assert (grown.escrow, grown.expires_at) == (1500 * market.price, channel.expires_at + HOUR)
    before = snapshot(market)
    with pytest.raises(ExpiryNotExtended):
        c.top_up("cons", channel.channel_id, 10 * market.price, grown.expires_at - 1)
    with pytest.raises(NotAuthorised):
        c.top_up("prod", channel.channel_id, 10 * market.price, grown.expires_at)
    assert_nothing_moved(market, before, channels=[grown])
    big = c.sign_voucher("cons", channel.channel_id, 1400 * market.price)
    assert c.check_voucher(big, channel.channel_id).escrow == 1500 * market.price


def test_forged_and_tampered_vouchers_are_refused(market, channel):
    c = market.channels
    before = snapshot(market)
    forged = c.sign_voucher("out", channel.channel_id, 10 * market.price)  # right channel, wrong signer
    with pytest.raises(BadSignature):
        c.check_voucher(forged, channel.channel_id)
    good = c.sign_voucher("cons", channel.channel_id, 10 * market.price)
    tampered = dataclasses.replace(good, amount=20 * market.price)
    with pytest.raises(BadSignature):
        c.check_voucher(tampered, channel.channel_id)
    for bad in (forged, tampered, dataclasses.replace(good, signature="0x" + "00" * 65)):
        with pytest.raises(BadSignature):
            c.close("prod", channel.channel_id, bad)
    assert_nothing_moved(market, before, channels=[channel])


def test_a_voucher_is_bound_to_its_channel_and_its_domain(market, channel):
    c = market.channels
    other = c.open_channel("cons", party(market, "prod"), 10 * market.price, c.now() + HOUR)
    assert other.channel_id != channel.channel_id
    voucher = c.sign_voucher("cons", other.channel_id, 5 * market.price)
    before = snapshot(market)
    with pytest.raises(WrongChannel):
        c.check_voucher(voucher, channel.channel_id)
    with pytest.raises(WrongChannel):
        c.close("prod", channel.channel_id, voucher)
    moved = dataclasses.replace(voucher, channel_id=channel.channel_id)  # relabelled: the signature says no
    with pytest.raises(BadSignature):
        c.close("prod", channel.channel_id, moved)
    elsewhere = market.other_domain().sign_voucher("cons", channel.channel_id, 5 * market.price)
    assert elsewhere.domain != c.domain()
    with pytest.raises(WrongDomain):
        c.check_voucher(elsewhere, channel.channel_id)
    with pytest.raises(WrongDomain):
        c.close("prod", channel.channel_id, elsewhere)
    assert_nothing_moved(market, before, channels=[channel, other])


def test_a_voucher_above_the_escrow_is_refused(market, channel):
    c = market.channels
    voucher = c.sign_voucher("cons", channel.channel_id, channel.escrow + 1)
    before = snapshot(market)
    with pytest.raises(AboveEscrow):
        c.check_voucher(voucher, channel.channel_id)
    with pytest.raises(AboveEscrow):
        c.close("prod", channel.channel_id, voucher)
    assert_nothing_moved(market, before, channels=[channel])


def test_only_the_recipient_closes_and_only_before_expiry(market, channel):
    c = market.channels
    voucher = c.sign_voucher("cons", channel.channel_id, 100 * market.price)
    before = snapshot(market)
    for socket in ("cons", "out"):
        with pytest.raises(NotAuthorised):
            c.close(socket, channel.channel_id, voucher)
    market.travel_to(channel.expires_at)
    with pytest.raises(ChannelExpired):
        c.close("prod", channel.channel_id, voucher)
    with pytest.raises(ChannelExpired):
        c.check_voucher(voucher, channel.channel_id)
    assert_nothing_moved(market, before, channels=[channel])


def test_only_the_sender_reclaims_and_only_after_expiry(market, channel):
    c = market.channels
    market.travel_to(channel.expires_at - 60)
    before = snapshot(market)
    with pytest.raises(ChannelNotExpired):
        c.reclaim("cons", channel.channel_id)
    market.travel_to(channel.expires_at)
    with pytest.raises(NotAuthorised):
        c.reclaim("prod", channel.channel_id)
    assert_nothing_moved(market, before, channels=[channel])
    reclaimed = c.reclaim("cons", channel.channel_id)
    assert reclaimed.state == rules.RECLAIMED
    assert snapshot(market)["funds"]["cons"] - before["funds"]["cons"] == channel.escrow
    with pytest.raises(ChannelClosed):
        c.reclaim("cons", channel.channel_id)


def test_a_closed_channel_refuses_its_vouchers_again_and_ids_are_never_reused(market, channel):
    c = market.channels
    voucher = c.sign_voucher("cons", channel.channel_id, 100 * market.price)
    c.close("prod", channel.channel_id, voucher)
    before = snapshot(market)
    with pytest.raises(ChannelClosed):
        c.close("prod", channel.channel_id, voucher)  # the same voucher replayed
    with pytest.raises(ChannelClosed):
        c.close("prod", channel.channel_id, c.sign_voucher("cons", channel.channel_id, 200 * market.price))
    with pytest.raises(ChannelClosed):
        c.top_up("cons", channel.channel_id, market.price, channel.expires_at + HOUR)
    assert_nothing_moved(market, before)
    fresh = c.open_channel("cons", party(market, "prod"), 10 * market.price, c.now() + HOUR)
    assert fresh.channel_id != channel.channel_id
    assert c.channel(channel.channel_id).state == rules.CLOSED
    with pytest.raises(ChannelClosed):
        c.check_voucher(voucher, channel.channel_id)
    with pytest.raises(UnknownChannel):
        c.channel("4242424242")


def test_the_receiving_controller_refuses_a_replayed_voucher_and_books_each_wh_once(market, channel, tmp_path):
    clock = ManualClock(1_800_000_000)
    journal = SqliteJournal(tmp_path / "producer-journal.sqlite")
    try:
        book = ChannelBook(market.channels, journal, clock, Fraction(1))
        book.accept_channel("prod", channel.channel_id, market.price)
        c = market.channels
        v3 = c.sign_voucher("cons", channel.channel_id, 3 * market.price)
        v5 = c.sign_voucher("cons", channel.channel_id, 5 * market.price + market.price // 2)
        assert book.accept(v3, channel.channel_id) == 3
        assert book.accept(v5, channel.channel_id) == 2  # half a Wh more is not a token yet
        for again in (v3, v5):
            with pytest.raises(VoucherReplayed):
                book.accept(again, channel.channel_id)
        assert journal.balance("prod") == 5
        assert book.latest(channel.channel_id) == v5
        before = snapshot(market)
        closed = book.close(channel.channel_id)
        assert closed.paid == v5.amount
        assert snapshot(market)["funds"]["prod"] - before["funds"]["prod"] == v5.amount
        assert journal.channel(c.domain(), channel.channel_id).state == rules.CLOSED
    finally:
        journal.close()
