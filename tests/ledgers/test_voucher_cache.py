"""The per-block cache of what an Ethereum voucher check reads, on the real in-process EVM.

What matters: the channel is read once per block, not per voucher, and yet no voucher is ever judged against an
escrow the chain no longer holds: above the escrow is refused from the cache, and the first check after a close
(the escrow paid out) or a top-up sees the new state.
"""

from __future__ import annotations

import pytest

from payg.domain import market as rules
from payg.errors import AboveEscrow, ChannelClosed

pytest.importorskip("eth_tester")
from tests.support.trade_beds_ethereum import make_bed  # noqa: E402


@pytest.fixture
def bed(tmp_path):
    bed = make_bed(tmp_path, capacity_wh=10_000, tax_bps=500)
    yield bed
    bed.close()


def _counting(trade):
    calls = []
    real = trade.channel

    def channel(channel_id):
        calls.append(channel_id)
        return real(channel_id)
    trade.channel = channel
    return calls


def test_one_channel_read_per_block_and_above_escrow_still_refused(bed):
    c, price = bed.channels, bed.price
    bed.fund("cons", 100 * price)
    ch = c.open_channel("cons", c.party_for("prod"), 10 * price, c.now() + rules.HOUR_S)
    calls = _counting(c)
    for i in range(1, 6):
        c.check_voucher(c.sign_voucher("cons", ch.channel_id, i * price), ch.channel_id)
    assert len(calls) == 1, "five checks in one block read the channel once"
    with pytest.raises(AboveEscrow):
        c.check_voucher(c.sign_voucher("cons", ch.channel_id, 10 * price + 1), ch.channel_id)
    c.check_voucher(c.sign_voucher("cons", ch.channel_id, 10 * price), ch.channel_id)
    c.top_up("cons", ch.channel_id, 5 * price, ch.expires_at)
    calls.clear()
    c.check_voucher(c.sign_voucher("cons", ch.channel_id, 15 * price), ch.channel_id)  # the top-up's block
    assert len(calls) == 1


def test_right_after_the_escrow_is_paid_out_no_cached_voucher_passes(bed):
    c, price = bed.channels, bed.price
    bed.fund("cons", 100 * price)
    ch = c.open_channel("cons", c.party_for("prod"), 10 * price, c.now() + rules.HOUR_S)
    last = c.sign_voucher("cons", ch.channel_id, 4 * price)
    c.check_voucher(last, ch.channel_id)  # cached for this block
    c.close("prod", ch.channel_id, last)
    for amount in (4 * price, 5 * price, 10 * price):
        with pytest.raises(ChannelClosed):
            c.check_voucher(c.sign_voucher("cons", ch.channel_id, amount), ch.channel_id)


class Clock:
    """The monotonic clock an EthereumTrade measures voucher_cache_s by, moved by hand."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _opened(bed, trade, escrow_wh=10, hours=1):
    bed.fund("cons", 100 * bed.price)
    return trade.open_channel("cons", trade.party_for("prod"), escrow_wh * bed.price,
                              trade.now() + int(hours * rules.HOUR_S))


def test_the_latest_block_is_read_once_per_voucher_cache_s_not_per_voucher(bed):
    clock = Clock()
    trade = bed.same_contracts(monotonic=clock)
    ch = _opened(bed, trade)
    vouchers = [trade.sign_voucher("cons", ch.channel_id, i * bed.price) for i in range(1, 11)]
    bed.node.requests.clear()
    for v in vouchers:
        trade.check_voucher(v, ch.channel_id)
    assert bed.node.requests.count("eth_getBlockByNumber") == 1, bed.node.requests
    assert bed.node.requests.count("eth_call") == 1, "the channel is read once for its block"
    clock.t += 0.99
    trade.check_voucher(vouchers[-1], ch.channel_id)
    assert bed.node.requests.count("eth_getBlockByNumber") == 1
    clock.t += 0.01
    trade.check_voucher(vouchers[-1], ch.channel_id)
    assert bed.node.requests.count("eth_getBlockByNumber") == 2, "one second later the latest block is read again"


def test_with_no_cache_every_voucher_reads_the_latest_block(bed):
    trade = bed.same_contracts(voucher_cache_s=0)
    ch = _opened(bed, trade)
    voucher = trade.sign_voucher("cons", ch.channel_id, bed.price)
    bed.node.requests.clear()
    for _ in range(3):
        trade.check_voucher(voucher, ch.channel_id)
    assert bed.node.requests.count("eth_getBlockByNumber") == 3


def test_near_the_expiry_the_cache_refuses_what_a_reclaim_could_take(bed):
    """A reclaim needs a block at the expiry: vouchers stop voucher_cache_s + HEAD_GAP_S before it, so a reclaim
    in a block the cache has not seen yet can never be behind an accepted voucher."""
    from ledgers.ethereum.channels import HEAD_GAP_S
    from payg.errors import ChannelExpired

    cached, uncached = bed.trade, bed.same_contracts(voucher_cache_s=0)
    ch = _opened(bed, cached)
    voucher = cached.sign_voucher("cons", ch.channel_id, bed.price)
    bed.travel_to(ch.expires_at - 3 - HEAD_GAP_S)  # the next block at expiry - 2 - HEAD_GAP_S
    cached.check_voucher(voucher, ch.channel_id)
    bed.travel_to(ch.expires_at - 2 - HEAD_GAP_S)
    with pytest.raises(ChannelExpired, match="within 31 s"):
        cached.check_voucher(voucher, ch.channel_id)
    uncached.check_voucher(voucher, ch.channel_id)  # the chain itself still takes a close
    bed.travel_to(ch.expires_at)
    with pytest.raises(ChannelExpired):
        uncached.check_voucher(voucher, ch.channel_id)
    assert cached.reclaim("cons", ch.channel_id).state == "reclaimed"
    with pytest.raises((ChannelExpired, ChannelClosed)):
        cached.check_voucher(voucher, ch.channel_id)


def test_a_close_by_another_process_is_refused_by_the_book_while_this_one_has_the_block_cached(bed, tmp_path):
    """`payg trade close` runs in its own process with its own EthereumTrade: the controller's cached block does not
    know of the close, but the journal does, and ChannelBook reads the journal first."""
    from fractions import Fraction

    from payg.adapters.clocks import ManualClock
    from payg.adapters.journal import SqliteJournal
    from payg.services.channels import ChannelBook

    # The controller's clock stands still: its block stays cached however long the close takes on a loaded machine.
    controller, cli = bed.same_contracts(monotonic=Clock()), bed.same_contracts()
    ch = _opened(bed, controller)
    journal, cli_journal = SqliteJournal(tmp_path / "j.sqlite"), None
    try:
        book = ChannelBook(controller, journal, ManualClock(), Fraction(1))
        book.accept_channel("prod", ch.channel_id, bed.price)
        assert book.accept(controller.sign_voucher("cons", ch.channel_id, 3 * bed.price), ch.channel_id) == 3
        cli_journal = SqliteJournal(tmp_path / "j.sqlite")
        assert ChannelBook(cli, cli_journal, ManualClock(), Fraction(1)).close(ch.channel_id).state == "closed"
        controller.check_voucher(controller.sign_voucher("cons", ch.channel_id, 4 * bed.price), ch.channel_id)
        with pytest.raises(ChannelClosed):  # the cached block still shows it open; the journal does not
            book.accept(controller.sign_voucher("cons", ch.channel_id, 4 * bed.price), ch.channel_id)
        assert journal.balance("prod") == 3
    finally:
        journal.close()
        if cli_journal is not None:
            cli_journal.close()


@pytest.mark.parametrize("bad", [-1, 61, True, "1", float("nan")])
def test_voucher_cache_s_is_checked(bed, bad):
    with pytest.raises(ValueError, match="voucher_cache_s"):
        bed.same_contracts(voucher_cache_s=bad)


def test_vouchers_checked_from_many_threads_while_blocks_arrive(bed):
    """The web server's workers check vouchers at once; new blocks keep replacing the cached channels."""
    import threading
    import time

    trade = bed.same_contracts(voucher_cache_s=0)
    bed.fund("cons", 100 * bed.price)
    channels = [trade.open_channel("cons", trade.party_for("prod"), 10 * bed.price, trade.now() + rules.HOUR_S)
                for _ in range(4)]
    vouchers = [trade.sign_voucher("cons", ch.channel_id, bed.price) for ch in channels]
    errors: list[BaseException] = []
    done = threading.Event()

    def check(voucher):
        try:
            for _ in range(25):
                assert trade.check_voucher(voucher, voucher.channel_id).escrow == 10 * bed.price
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    mined = []

    def mine():  # each block moves the chain's clock on a second: a bounded number, spread over the checks
        while not done.is_set() and len(mined) < 400:
            bed.node.mine(1)
            mined.append(1)
            time.sleep(0.002)
    miner = threading.Thread(target=mine)
    miner.start()
    workers = [threading.Thread(target=check, args=(v,)) for v in vouchers]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    done.set()
    miner.join(10)
    assert errors == []
    assert len(mined) > 1  # the cached channels were replaced while the workers checked
