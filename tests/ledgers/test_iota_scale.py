"""IOTA deposits at landlord scale: a poll costs the same requests for 3 sockets or 500, within the service's limits.

The fake node enforces the IOTA GraphQL service's query limits (tests/support/fake_iota_node.py check_limits,
values and sources in ledgers/iota/deposits.py), so a query the real service would refuse fails here too.
"""

from __future__ import annotations

import json
import urllib.request

import pytest

from ledgers.iota.deposits import DEPOSITS_QUERY, HEAD_QUERY, MAX_PAGE_SIZE, QUERY_LIMITS, IotaLedger
from tests.support.fake_iota_node import LIMITS, check_limits
from tests.support.ledger_beds_iota import GAS_NANOS, INITIAL_CHECKPOINT, PAYER, TEST_MNEMONIC


def ask(node, query: str, variables: dict | None = None) -> dict:
    body = json.dumps({"query": query, "variables": variables}).encode()
    request = urllib.request.Request(node.url + "/", body, {"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def pay(node, address: str, nanos: int) -> None:
    node.add_transaction(PAYER, [{"owner": PAYER, "amount": -(nanos + GAS_NANOS)}, {"owner": address, "amount": nanos}])


def requests_for_one_poll(node, sockets: int) -> tuple[int, list]:
    ledger = IotaLedger(node.url, mnemonic=TEST_MNEMONIC, accounts={f"s{i}": i for i in range(sockets)},
                        token_value=1, start_checkpoint=INITIAL_CHECKPOINT, request_timeout_s=5.0)
    try:
        cursor = ledger.deposits_since(None)[1]
        last = ledger.address_for(f"s{sockets - 1}")
        pay(node, last, 7)
        pay(node, "0x" + "ab" * 32, 9)  # somebody else's payment in the same checkpoint
        node.checkpoint()
        node.clear_requests()
        deposits, _ = ledger.deposits_since(cursor)
        return len(node.requests()), [(d.socket_id, d.amount) for d in deposits]
    finally:
        ledger.close()


def test_a_poll_after_a_new_checkpoint_costs_the_same_for_3_and_500_sockets(node):
    small = requests_for_one_poll(node, 3)
    node.control("reset", {})
    large = requests_for_one_poll(node, 500)
    assert small == (2, [("s2", 7)])  # the head, then one page of the new checkpoints' transactions
    assert large == (2, [("s499", 7)])


def test_a_poll_with_no_new_checkpoint_is_one_request(node):
    ledger = IotaLedger(node.url, mnemonic=TEST_MNEMONIC, accounts={"a": 0}, token_value=1,
                        start_checkpoint=INITIAL_CHECKPOINT)
    try:
        node.clear_requests()
        cursor = f"{INITIAL_CHECKPOINT}@fa4e1dea"
        assert ledger.deposits_since(cursor) == ([], cursor)
        assert [r["json"]["query"] for r in node.requests()] == [HEAD_QUERY]
    finally:
        ledger.close()


def test_the_limits_are_the_ledgers_own_and_its_largest_queries_fit():
    assert {k: LIMITS[k] for k in LIMITS} == {k: QUERY_LIMITS[k] for k in LIMITS}
    widest = {"first": MAX_PAGE_SIZE, "after": None, "changes": MAX_PAGE_SIZE,
              "filter": {"afterCheckpoint": 1, "beforeCheckpoint": 2}}
    assert check_limits(DEPOSITS_QUERY, widest) is None
    assert check_limits(HEAD_QUERY, None) is None


@pytest.mark.parametrize("query, variables, message", [
    # 15 addresses as aliases (21 input nodes each), each with its balance changes: over maxQueryNodes
    # (why the ledger scans instead)
    ("{" + " ".join(f"a{i}: transactionBlocks(first: 5, filter: $f) "
                    "{ pageInfo { hasNextPage endCursor } nodes { digest effects { status timestamp "
                    "checkpoint { sequenceNumber } balanceChanges(first: 5) { pageInfo { hasNextPage endCursor } "
                    "nodes { owner { address } coinType { repr } amount } } } } }" for i in range(15)) + "}",
     {"f": {"recvAddress": "0x2"}}, "Query has over 300 nodes"),
    ("{ checkpoint { sequenceNumber } }" + " " * 5_000, None, "Query payload is too large"),
    ("{ transactionBlocks(first: 50) { nodes { effects { balanceChanges(first: 50) { nodes { owner { address } } } }"
     " } } " + " ".join(f"t{i}: transactionBlocks(first: 50) {{ nodes {{ effects {{ balanceChanges(first: $n) "
                        f"{{ nodes {{ owner {{ address }} amount coinType {{ repr }} }} }} }} }} }}" for i in range(8))
     + " }", {"n": 50}, "Estimated output nodes exceeds 100000"),
])
def test_the_fake_node_refuses_what_the_service_refuses(node, query, variables, message):
    if "$n" in query:
        query = "query Q($n: Int) " + query
    if "$f" in query:
        query = "query Q($f: TransactionBlockFilter) " + query
    answer = ask(node, query, variables)
    assert answer["data"] is None and message in answer["errors"][0]["message"]


def test_depth_is_limited_as_the_service_counts_it():
    # Each level of selections is one step of depth; 15 levels pass, 16 do not.
    assert check_limits("{ a " + "{ b " * 14 + "}" * 15, None) is None
    assert check_limits("{ a " + "{ b " * 15 + "}" * 16, None) == "Query nesting is over 15"


def test_the_ledgers_own_query_over_the_limit_would_fail_at_the_node(node):
    # Held to the limits before execution: the scan at a page size the service allows passes, one beyond it not.
    ok = ask(node, DEPOSITS_QUERY, {"first": 50, "after": None, "changes": 50,
                                    "filter": {"afterCheckpoint": 1, "beforeCheckpoint": 2}})
    assert ok["data"] is not None
    too_big = ask(node, DEPOSITS_QUERY, {"first": 50, "after": None, "changes": 50_000,
                                         "filter": {"afterCheckpoint": 1, "beforeCheckpoint": 2}})
    assert too_big["data"] is None and "Estimated output nodes exceeds" in too_big["errors"][0]["message"]


def test_a_page_over_the_services_maximum_is_refused(node):
    with pytest.raises(ValueError, match="at most 50"):
        IotaLedger(node.url, mnemonic=TEST_MNEMONIC, accounts={"a": 0}, token_value=1, page_size=51)




def test_transactions_per_page_is_configured_within_the_services_max_page_size(tmp_path):
    from payg.domain.settings import IotaLedgerConfig
    from payg.errors import ConfigError
    from tests.support.configs import IOTA_CONFIG, load_text

    def page_size(extra: str) -> int:
        lc = load_text(tmp_path, IOTA_CONFIG.format(extra=extra)).ledger
        assert isinstance(lc, IotaLedgerConfig)
        return lc.transactions_per_page

    assert page_size("") == MAX_PAGE_SIZE
    assert page_size("transactions_per_page = 10") == 10
    for bad in (0, 51):
        with pytest.raises(ConfigError, match="transactions_per_page"):
            load_text(tmp_path, IOTA_CONFIG.format(extra=f"transactions_per_page = {bad}"))
