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
