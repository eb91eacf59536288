"""The escrow reads behind IOTA vouchers, on the fake node (which holds every query to the GraphQL service's limits).

What matters: the balances of many addresses come in one request per 50, each within the service's limits and
each answer at one checkpoint; a voucher's escrow check reads every open incoming channel at once, so many
channels cost one request; and it never trusts a read older than the voucher (the drain test in
test_iota_trade.py, and FreshRead's own tests).
"""

from __future__ import annotations

import json

import pytest

from ledgers.iota.transfers import BALANCES_PER_QUERY, balances_query
from payg.domain import market as rules

pytest.importorskip("iota_sdk")
from tests.support.fake_iota_node import check_limits  # noqa: E402
from tests.support.trade_beds_iota import make_bed  # noqa: E402


@pytest.fixture
def bed(tmp_path):
    bed = make_bed(tmp_path, capacity_wh=10_000, tax_bps=500)
    yield bed
    bed.close()


def _balance_requests(node) -> list[dict]:
    return [r["json"] for r in node.requests() if "PaygBalances" in (r.get("json") or {}).get("query", "")]


def test_a_full_chunk_is_within_the_service_limits():
    variables = {f"a{i}": "0x" + f"{i:064x}" for i in range(BALANCES_PER_QUERY)}
    assert check_limits(balances_query(BALANCES_PER_QUERY), variables) is None
    assert check_limits(balances_query(BALANCES_PER_QUERY * 2), variables) is not None, \
        "twice the chunk breaks a limit: the chunk is what keeps the query servable"


def test_the_balances_of_120_addresses_in_three_requests(bed):
    addresses = [bed.wallet.address(f"m/44'/4218'/9'/0'/{i}'") for i in range(120)]
    for i in (0, 49, 50, 119):
        bed.node.control("faucet", {"address": addresses[i], "amount": 1_000 + i})
    bed.node.clear_requests()
    checkpoint, held = bed.wallet.balances(addresses)
    assert len(_balance_requests(bed.node)) == 3
    assert held == {a: (1_000 + i if i in (0, 49, 50, 119) else 0) for i, a in enumerate(addresses)}
    assert checkpoint == bed.node.head()


def test_one_voucher_reads_every_open_incoming_channel_in_one_request(bed):
    c, price = bed.channels, bed.price
    bed.fund("cons", 1_000 * price)
    channels = [c.open_channel("cons", c.party_for("prod"), 10 * price, c.now() + rules.HOUR_S) for _ in range(3)]
    bed.node.clear_requests()
    seen = c.watch(channels[0].channel_id)
    asked = _balance_requests(bed.node)
    assert len(asked) == 1
    assert sorted(asked[0]["variables"].values()) == sorted(ch.channel_id for ch in channels)
    assert seen["balance"] >= 10 * price and seen["checkpoint"] == bed.node.head()
    assert json.dumps(seen)  # what the landlord's API shows is plain JSON
