"""IotaLedger against a fake IOTA GraphQL node in another process: what is specific to IOTA.

The behaviour every ledger shares is in the conformance suite (with tests/support/ledger_beds_iota.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time

import iota_sdk
import pytest

import ledgers.iota.deposits as iota_module
from ledgers.iota.deposits import BALANCE_CHANGES_QUERY, DEPOSITS_QUERY, HEAD_QUERY, IotaLedger
from payg.errors import InvalidAmount, LedgerUnavailable, UnknownSocket
from tests.support import free_port
from tests.support.ledger_beds_iota import GAS_NANOS, INITIAL_CHECKPOINT, PAYER, TEST_MNEMONIC, IotaBed

LONG_IOTA = "0x0000000000000000000000000000000000000000000000000000000000000002::iota::IOTA"
OTHER = "0x" + hashlib.sha256(b"somebody else").hexdigest()
ACCOUNTS = {"a": 0, "b": 1, "c": 7}
CHAIN = "fa4e1dea"  # the fake node's default chainIdentifier


@pytest.fixture
def open_ledger(node):
    opened = []

    def make(**overrides):
        kwargs = {"mnemonic": TEST_MNEMONIC, "accounts": ACCOUNTS, "token_value": 10**6,
                  "start_checkpoint": INITIAL_CHECKPOINT, "request_timeout_s": 2.0}
        kwargs.update(overrides)
        ledger = IotaLedger(kwargs.pop("url", node.url), **kwargs)
        opened.append(ledger)
        return ledger

    yield make
    for ledger in opened:
        ledger.close()


def pay(node, address, nanos, coin_type=LONG_IOTA, status="SUCCESS"):
    return node.add_transaction(PAYER, [{"owner": PAYER, "amount": -(nanos + GAS_NANOS)},
                                        {"owner": address, "amount": nanos, "coin_type": coin_type}], status=status)


def cp(checkpoint: int) -> str:
    """A cursor as the ledger returns it: the checkpoint @ the fake node's chain identifier."""
    return f"{checkpoint}@{CHAIN}"


def listed(deposits):
    return [(d.socket_id, d.amount) for d in deposits]


# Addresses and URIs

def test_addresses_follow_the_wallet_account_path_in_the_docstring():
    ledger = IotaLedger("http://127.0.0.1:9", mnemonic=TEST_MNEMONIC, accounts=ACCOUNTS, token_value=1)
    assert "m/44'/4218'/{i}'/0'/0'" in iota_module.__doc__
    for socket_id, index in ACCOUNTS.items():
        key = iota_sdk.Ed25519PrivateKey.from_mnemonic_with_path(TEST_MNEMONIC, f"m/44'/4218'/{index}'/0'/0'")
        assert ledger.address_for(socket_id) == key.public_key().derive_address().to_hex()
    # The SDK's from_mnemonic(phrase, i) is address i of account 0, as the docstring says: same only for i = 0.
    sdk = [iota_sdk.Ed25519PrivateKey.from_mnemonic(TEST_MNEMONIC, i).public_key().derive_address().to_hex()
           for i in (0, 1)]
    assert ledger.address_for("a") == sdk[0]
    assert ledger.address_for("b") != sdk[1]
    assert sdk[1] == iota_sdk.Ed25519PrivateKey.from_mnemonic_with_path(
        TEST_MNEMONIC, "m/44'/4218'/0'/0'/1'").public_key().derive_address().to_hex()
    # A known vector, so that a change in the SDK's derivation cannot move the sockets' money unnoticed.
    assert ledger.address_for("a") == "0x365b74f27ca7c6d7ce019d73042f85cc4627e1aeec2b7822994e16010234e576"


def test_addresses_are_distinct_lowercase_0x_and_64_hex_and_stable():
    ledger = IotaLedger("http://127.0.0.1:9", mnemonic=TEST_MNEMONIC, accounts=ACCOUNTS, token_value=1)
    addresses = [ledger.address_for(s) for s in ACCOUNTS]
    assert len(set(addresses)) == 3
    for address in addresses:
        assert address.startswith("0x") and len(address) == 66 and address[2:] == address[2:].lower()
        int(address, 16)
    # Spacing and case of the phrase do not matter, as in wallets.
    again = IotaLedger("http://127.0.0.1:9", mnemonic="  " + TEST_MNEMONIC.upper().replace(" ", "\n  ") + " ",
                       accounts={"x": 7}, token_value=1)
    assert again.address_for("x") == ledger.address_for("c")
    with pytest.raises(UnknownSocket):
        ledger.address_for("zz")


def test_payment_uri_is_the_bare_address_and_amounts_are_checked():
    ledger = IotaLedger("http://127.0.0.1:9", mnemonic=TEST_MNEMONIC, accounts=ACCOUNTS, token_value=10**6)
    assert ledger.units_per_token == 10**6 and ledger.name == "iota"
    assert ledger.payment_uri("a", None) == ledger.address_for("a")
    assert ledger.payment_uri("a", 25) == ledger.address_for("a")
    assert ledger.payment_amount_units(25) == 25 * 10**6
    for bad in (0, -1, 1.5, True, "5"):
        with pytest.raises(InvalidAmount):
            ledger.payment_uri("a", bad)
        with pytest.raises(InvalidAmount):
            ledger.payment_amount_units(bad)
    with pytest.raises(UnknownSocket):
        ledger.payment_uri("zz", 5)
    # a coin's value is a u64: 2**64 - 1 nanos at most, so with 10**6 nanos a token 18446744073709 tokens
    assert ledger.payment_amount_units(18_446_744_073_709) == 18_446_744_073_709 * 10**6
    with pytest.raises(InvalidAmount, match="at most 18446744073709 tokens"):
        ledger.payment_amount_units(18_446_744_073_710)


# Construction

@pytest.mark.parametrize("change, message", [
    ({"mnemonic": ""}, "mnemonic is empty"),
    ({"mnemonic": "abandon " * 11 + "secretword"}, "not a valid BIP-39"),
    ({"mnemonic": "abandon " * 12}, "not a valid BIP-39"),
    ({"mnemonic": "abandon abandon"}, "not a valid BIP-39"),
    ({"token_value": 0}, "token_value"),
    ({"token_value": 1.5}, "token_value"),
    ({"page_size": 0}, "page_size"),
    ({"page_size": 51}, "at most 50"),
    ({"request_timeout_s": 0}, "request_timeout_s"),
    ({"request_timeout_s": float("nan")}, "request_timeout_s"),
    ({"start_checkpoint": -1}, "start_checkpoint"),
    ({"max_checkpoints_per_poll": 0}, "max_checkpoints_per_poll"),
    ({"coin_type": "IOTA"}, "coin_type"),
    ({"accounts": {"a": 0, "b": 0}}, "same derivation index 0"),
    ({"accounts": {"a": -1}}, "derivation index"),
    ({"accounts": {"a": 2**31}}, "derivation index"),
    ({"accounts": {"": 1}}, "socket id"),
    ({"url": "127.0.0.1:9000"}, "graphql_url"),
    ({"url": "ftp://node"}, "graphql_url"),
])
def test_bad_arguments_are_refused_in_words(change, message):
    kwargs = {"url": "http://127.0.0.1:9", "mnemonic": TEST_MNEMONIC, "accounts": ACCOUNTS, "token_value": 1}
    kwargs.update(change)
    with pytest.raises(ValueError, match=message) as caught:
        IotaLedger(kwargs.pop("url"), **kwargs)
    assert "secretword" not in str(caught.value) and "abandon" not in str(caught.value)


def test_construction_does_not_touch_the_network(node, open_ledger):
    dead_url = f"http://127.0.0.1:{free_port()}"
    ledger = open_ledger(url=dead_url)  # nothing listens there, and that is fine until a poll
    assert ledger.address_for("a")
    open_ledger()
    assert node.requests() == []
    with pytest.raises(LedgerUnavailable, match=dead_url):
        ledger.deposits_since(None)


def test_credentials_in_the_url_stay_out_of_messages():
    ledger = IotaLedger(f"http://user:s3cret@127.0.0.1:{free_port()}/graphql", mnemonic=TEST_MNEMONIC,
                        accounts=ACCOUNTS, token_value=1)
    try:
        with pytest.raises(LedgerUnavailable, match="127.0.0.1") as caught:
            ledger.deposits_since(None)
        assert "s3cret" not in str(caught.value) and "s3cret" not in repr(ledger)
    finally:
        ledger.close()


def test_the_ledger_keeps_no_mnemonic():
    ledger = IotaLedger("http://127.0.0.1:9", mnemonic=TEST_MNEMONIC, accounts=ACCOUNTS, token_value=1)
    state = repr(ledger) + repr(vars(ledger))
    assert "abandon" not in state and "about" not in state


# On the wire

def test_what_the_sdk_sends_on_the_wire(node, open_ledger):
    ledger = open_ledger(start_checkpoint=None, accounts={"a": 0})
    assert ledger.deposits_since(None) == ([], cp(INITIAL_CHECKPOINT))
    pay(node, ledger.address_for("a"), 5 * 10**6)
    node.checkpoint()
    deposits, cursor = ledger.deposits_since(str(INITIAL_CHECKPOINT))
    assert listed(deposits) == [("a", 5 * 10**6)] and cursor == cp(INITIAL_CHECKPOINT + 1)

    requests = node.requests()
    assert len(requests) == 3
    for request in requests:
        assert request["method"] == "POST" and request["path"] == "/"
        headers = {k.lower(): v for k, v in request["headers"].items()}
        assert headers["content-type"] == "application/json"
        assert headers["user-agent"].startswith("iota-sdk-graphql-client/")
        assert set(request["json"]) == {"query", "variables"}  # run_query sends no operationName
    assert [r["json"]["query"] for r in requests] == [HEAD_QUERY, HEAD_QUERY, DEPOSITS_QUERY]
    assert requests[0]["json"]["variables"] is None
    assert requests[2]["json"]["variables"] == {
        "first": 50, "after": None, "changes": 50,
        "filter": {"afterCheckpoint": INITIAL_CHECKPOINT, "beforeCheckpoint": INITIAL_CHECKPOINT + 2},
    }


def test_queries_name_only_fields_the_node_schema_has(node):
    # The fake's schema is a subset of the real one, named as there; a misspelt field fails like on a real node.
    import json
    import urllib.request
    body = json.dumps({"query": "{ checkpoint { sequenceNumber bogus } }"}).encode()
    request = urllib.request.Request(node.url + "/", body, {"content-type": "application/json"})
    with urllib.request.urlopen(request) as r:
        answer = json.loads(r.read())
    assert answer["data"] is None and "bogus" in answer["errors"][0]["message"]


# Deposits

def test_transaction_blocks_are_followed_across_pages(node, open_ledger):
    ledger = open_ledger(page_size=3)
    a = ledger.address_for("a")
    for i in range(1, 6):
        pay(node, a, i)
    node.checkpoint()
    for i in range(6, 9):
        pay(node, a, i)
    node.checkpoint()
    deposits, cursor = ledger.deposits_since(None)
    assert listed(deposits) == [("a", i) for i in range(1, 9)]
    assert cursor == cp(INITIAL_CHECKPOINT + 2)
    assert len({d.deposit_id for d in deposits}) == 8
    pages = [r["json"]["variables"] for r in node.requests() if r["json"]["query"] == DEPOSITS_QUERY]
    assert len(pages) == 3 and pages[0]["after"] is None and pages[1]["after"] and pages[2]["after"]
    assert all(p["first"] == 3 for p in pages)


def test_balance_changes_are_followed_across_pages(node, open_ledger):
    ledger = open_ledger(page_size=2)
    others = ["0x" + hashlib.sha256(bytes([i])).hexdigest() for i in range(4)]
    digest = node.add_transaction(PAYER, [{"owner": PAYER, "amount": -(100 + GAS_NANOS)}]
                                  + [{"owner": o, "amount": 10} for o in others]
                                  + [{"owner": ledger.address_for("b"), "amount": 60}])
    node.checkpoint()
    deposits, _ = ledger.deposits_since(None)
    assert listed(deposits) == [("b", 60)]
    assert deposits[0].deposit_id == f"{digest}:{ledger.address_for('b')}"
    follow_ups = [r["json"]["variables"] for r in node.requests() if r["json"]["query"] == BALANCE_CHANGES_QUERY]
    assert [v["digest"] for v in follow_ups] == [digest, digest]


def test_failed_transactions_are_not_deposits(node, open_ledger):
    ledger = open_ledger()
    pay(node, ledger.address_for("a"), 500, status="FAILURE")
    node.checkpoint()
    assert ledger.deposits_since(None) == ([], cp(INITIAL_CHECKPOINT + 1))


def test_only_the_configured_coin_type_counts_in_either_spelling(node, open_ledger):
    ledger = open_ledger()
    a = ledger.address_for("a")
    pay(node, a, 1, coin_type="0x2::iota::IOTA")
    pay(node, a, 2, coin_type=LONG_IOTA)
    pay(node, a, 3, coin_type="0xbeef::usdt::USDT")
    pay(node, a, 4, coin_type="0x2::coin::Coin<0x2::iota::IOTA>")
    node.checkpoint()
    assert listed(ledger.deposits_since(None)[0]) == [("a", 1), ("a", 2)]
    usdt = open_ledger(coin_type="0x000000000000000000000000000000000000000000000000000000000000BEEF::usdt::USDT")
    assert listed(usdt.deposits_since(None)[0]) == [("a", 3)]


def test_a_socket_address_that_sends_gets_no_deposit(node, open_ledger):
    ledger = open_ledger()
    a, b = ledger.address_for("a"), ledger.address_for("b")
    # a pays b; a is listed as a recipient too (its gas coin comes back to it), with a negative change.
    node.add_transaction(a, [{"owner": a, "amount": -(70 + GAS_NANOS)}, {"owner": b, "amount": 70}],
                         recipients=[a, b])
    # a sends to itself: no net gain, no deposit.
    node.add_transaction(a, [{"owner": a, "amount": -GAS_NANOS}], recipients=[a])
    node.checkpoint()
    assert listed(ledger.deposits_since(None)[0]) == [("b", 70)]


def test_one_transaction_paying_two_sockets_gives_two_deposits(node, open_ledger):
    ledger = open_ledger()
    a, c = ledger.address_for("a"), ledger.address_for("c")
    digest = node.add_transaction(PAYER, [{"owner": PAYER, "amount": -(30 + GAS_NANOS)},
                                          {"owner": a, "amount": 10}, {"owner": c, "amount": 20}])
    node.checkpoint(timestamp_ms=1_760_000_000_123)
    deposits, _ = ledger.deposits_since(None)
    assert sorted((d.deposit_id, d.socket_id, d.amount) for d in deposits) == sorted(
        [(f"{digest}:{a}", "a", 10), (f"{digest}:{c}", "c", 20)])
    assert all(d.at == 1_760_000_000.123 for d in deposits)


def test_deposits_come_oldest_checkpoint_first(node, open_ledger):
    ledger = open_ledger()
    pay(node, ledger.address_for("c"), 1)
    node.checkpoint()
    pay(node, ledger.address_for("a"), 2)
    pay(node, ledger.address_for("b"), 3)
    node.checkpoint()
    pay(node, ledger.address_for("a"), 4)
    node.checkpoint()
    assert listed(ledger.deposits_since(None)[0]) == [("c", 1), ("a", 2), ("b", 3), ("a", 4)]


def test_pending_transactions_wait_for_their_checkpoint(node, open_ledger):
    ledger = open_ledger()
    pay(node, ledger.address_for("a"), 9)
    assert ledger.deposits_since(None) == ([], cp(INITIAL_CHECKPOINT))
    node.checkpoint()
    assert listed(ledger.deposits_since(str(INITIAL_CHECKPOINT))[0]) == [("a", 9)]


def test_a_fresh_cursor_starts_at_the_head_without_start_checkpoint(node, open_ledger):
    early = open_ledger(start_checkpoint=None)
    pay(node, early.address_for("a"), 1)
    node.checkpoint()
    node.checkpoint()
    deposits, cursor = early.deposits_since(None)
    assert deposits == [] and cursor == cp(INITIAL_CHECKPOINT + 2)
    pay(node, early.address_for("a"), 2)
    node.checkpoint()
    assert listed(early.deposits_since(cursor)[0]) == [("a", 2)]
    # With start_checkpoint, the same chain is scanned from there.
    assert listed(open_ledger(start_checkpoint=INITIAL_CHECKPOINT).deposits_since(None)[0]) == [("a", 1), ("a", 2)]


def test_work_per_poll_is_bounded_by_max_checkpoints_per_poll(node, open_ledger):
    ledger = open_ledger(max_checkpoints_per_poll=2)
    for amount in (1, 2, 3):
        pay(node, ledger.address_for("a"), amount)
        node.checkpoint()
    first, cursor = ledger.deposits_since(None)
    assert listed(first) == [("a", 1), ("a", 2)] and cursor == cp(INITIAL_CHECKPOINT + 2)
    second, cursor = ledger.deposits_since(cursor)
    assert listed(second) == [("a", 3)] and cursor == cp(INITIAL_CHECKPOINT + 3)
    assert ledger.deposits_since(cursor) == ([], cursor)


def test_a_node_behind_the_cursor_lists_nothing_and_keeps_the_cursor(node, open_ledger):
    ledger = open_ledger()
    ahead = cp(INITIAL_CHECKPOINT + 50)
    assert ledger.deposits_since(ahead) == ([], ahead)


def test_a_node_that_pruned_the_cursors_checkpoints_is_reported(node, open_ledger):
    ledger = open_ledger()
    node.checkpoint()
    node.control("prune", {"below": INITIAL_CHECKPOINT + 1})
    assert ledger.deposits_since(str(INITIAL_CHECKPOINT)) == ([], cp(INITIAL_CHECKPOINT + 1))
    with pytest.raises(LedgerUnavailable, match="keeps checkpoints from 1001"):
        ledger.deposits_since(str(INITIAL_CHECKPOINT - 1))


def test_a_cursor_that_is_not_a_checkpoint_is_refused(open_ledger):
    with pytest.raises(LedgerUnavailable, match="not a checkpoint"):
        open_ledger().deposits_since("0xabc")


# A node that misbehaves

def test_a_hanging_node_gives_ledger_unavailable_within_the_timeout(node, open_ledger):
    ledger = open_ledger(request_timeout_s=0.5)
    node.fail("hang")
    started = time.monotonic()
    with pytest.raises(LedgerUnavailable, match=f"{node.url}.*no answer within 0.5 s"):
        ledger.deposits_since(None)
    assert 0.45 < time.monotonic() - started < 1.5
    node.fail("none")
    pay(node, ledger.address_for("a"), 3)
    node.checkpoint()
    assert listed(ledger.deposits_since(None)[0]) == [("a", 3)]


def test_a_hang_while_listing_transactions_also_times_out(node, open_ledger):
    ledger = open_ledger(request_timeout_s=0.5)
    pay(node, ledger.address_for("a"), 3)
    node.checkpoint()
    node.fail("hang", match="PaygDeposits")  # the head answers, the listing hangs
    started = time.monotonic()
    with pytest.raises(LedgerUnavailable, match="no answer within"):
        ledger.deposits_since(None)
    assert time.monotonic() - started < 1.5
    assert node.requests()[0]["json"]["query"] == HEAD_QUERY
    node.fail("none")
    assert listed(ledger.deposits_since(None)[0]) == [("a", 3)]


@pytest.mark.parametrize("mode, cause", [
    ("503", "503"),
    ("graphql-error", "no data"),
    ("malformed", "JSON"),
])
def test_node_errors_give_ledger_unavailable_naming_the_url(node, open_ledger, mode, cause):
    ledger = open_ledger()
    node.fail(mode)
    with pytest.raises(LedgerUnavailable, match=cause) as caught:
        ledger.deposits_since(None)
    assert node.url in str(caught.value)
    node.fail("none")
    assert ledger.deposits_since(None) == ([], cp(INITIAL_CHECKPOINT))


def test_a_stopped_node_is_unavailable_and_a_restarted_one_serves_its_chain(node, open_ledger):
    ledger = open_ledger()
    pay(node, ledger.address_for("b"), 11)
    node.checkpoint()
    node.stop()
    with pytest.raises(LedgerUnavailable, match=node.url):
        ledger.deposits_since(None)
    node.restart()
    assert listed(ledger.deposits_since(None)[0]) == [("b", 11)]


# Threads and life cycle

def test_callable_from_several_threads_and_from_inside_an_event_loop(node, open_ledger):
    ledger = open_ledger()
    pay(node, ledger.address_for("a"), 5)
    node.checkpoint()
    results, errors = [], []

    def poll():
        try:
            results.append(listed(ledger.deposits_since(None)[0]))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=poll) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and results == [[("a", 5)]] * 4

    async def inside_a_loop():
        return ledger.deposits_since(None)

    assert listed(asyncio.run(inside_a_loop())[0]) == [("a", 5)]


def test_close_ends_the_worker_and_later_polls_are_refused(node, open_ledger):
    ledger = open_ledger()
    ledger.deposits_since(None)
    worker = ledger._node._thread
    assert worker is not None and worker.is_alive()
    ledger.close()
    assert not worker.is_alive()
    with pytest.raises(LedgerUnavailable, match="closed"):
        ledger.deposits_since(None)
    ledger.close()


# The bed the conformance suite uses

def test_the_bed_pays_finalizes_and_breaks_like_a_node(tmp_path):
    bed = IotaBed(tmp_path)
    try:
        ledger = bed.open({"a": 0, "b": 1})
        bed.pay(ledger.address_for("a"), 3 * bed.units_per_token)
        bed.pay_many([(ledger.address_for("b"), 1), (bed.foreign_address(), 5), (ledger.address_for("a"), 2)])
        assert ledger.deposits_since(None) == ([], cp(INITIAL_CHECKPOINT))
        bed.finalize()
        deposits, cursor = ledger.deposits_since(None)
        # The chain's order within the checkpoint (one scan), not grouped by socket.
        assert listed(deposits) == [("a", 3 * bed.units_per_token), ("b", 1), ("a", 2)]
        bed.break_node()
        with pytest.raises(LedgerUnavailable):
            ledger.deposits_since(cursor)
        bed.heal_node()
        assert ledger.deposits_since(cursor) == ([], cursor)
    finally:
        bed.close()
    assert bed.node.proc is None
