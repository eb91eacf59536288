"""EthereumLedger against a real EVM (eth-tester + py-evm) over JSON-RPC on 127.0.0.1.

The behaviour every ledger shares is in the conformance suite; these tests cover
what is particular to Ethereum: EIP-681 URIs, HD addresses, confirmations and
reorganisations, failed transactions, log queries and their positions, the
chain id and the node's outages.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import requests
from eth_account import Account
from web3 import HTTPProvider, Web3

from ledgers.ethereum import EthereumLedger
from payg.errors import InvalidAmount, LedgerReorganised, LedgerUnavailable, UnknownSocket
from payg.ports import Deposit
from tests.support import free_port
from tests.support.ledger_beds_ethereum import TEST_MNEMONIC, EthereumBed

SOCKETS = {"a": 0, "b": 1}

# The accounts Hardhat and Foundry publish for the "test ... junk" phrase at m/44'/60'/0'/0/<i>.
PUBLISHED_ADDRESSES = {
    0: "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
    1: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
    5: "0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc",
}


@pytest.fixture(params=["native", "erc20"])
def bed(request: pytest.FixtureRequest) -> Iterator[EthereumBed]:
    bed = EthereumBed(erc20=request.param == "erc20")
    yield bed
    bed.close()


@pytest.fixture
def native() -> Iterator[EthereumBed]:
    bed = EthereumBed(erc20=False)
    yield bed
    bed.close()


@pytest.fixture
def erc20() -> Iterator[EthereumBed]:
    bed = EthereumBed(erc20=True)
    yield bed
    bed.close()


def drain(ledger: EthereumLedger, cursor: str | None = None) -> tuple[list[Deposit], str | None]:
    """Poll until the cursor stops moving; every deposit found on the way, in order."""
    found: list[Deposit] = []
    for _ in range(200):
        deposits, new_cursor = ledger.deposits_since(cursor)
        found += deposits
        if new_cursor == cursor:
            return found, cursor
        cursor = new_cursor
    raise AssertionError("the cursor never stopped moving")


def paid(deposits: list[Deposit]) -> list[tuple[str, int]]:
    return [(d.socket_id, d.amount) for d in deposits]


def test_construction_does_not_touch_the_network():
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens here
    ledger = EthereumLedger.connect(url, chain_id=1, mnemonic=TEST_MNEMONIC, accounts=SOCKETS, confirmations=12,
                                    timeout_s=2.0)
    assert ledger.address_for("a") == PUBLISHED_ADDRESSES[0]
    assert ledger.payment_uri("a", 2).startswith("ethereum:")
    with pytest.raises(LedgerUnavailable) as raised:
        ledger.deposits_since(None)
    assert url in str(raised.value)
    ledger.close()


def test_a_live_node_is_not_asked_anything_until_deposits_are_read(native: EthereumBed):
    ledger = native.open(SOCKETS)
    ledger.address_for("b")
    ledger.payment_uri("b", 1)
    assert native.node.requests == []
    ledger.deposits_since(None)
    assert native.node.requests[0] == "eth_chainId"


def test_addresses_follow_bip44_from_the_mnemonic():
    ledger = EthereumLedger(Web3(), chain_id=1, mnemonic=TEST_MNEMONIC, accounts={"x": 0, "y": 1, "z": 5},
                            confirmations=1)
    assert ledger.address_for("x") == PUBLISHED_ADDRESSES[0]
    assert ledger.address_for("y") == PUBLISHED_ADDRESSES[1]
    assert ledger.address_for("z") == PUBLISHED_ADDRESSES[5]
    Account.enable_unaudited_hdwallet_features()
    other = EthereumLedger(Web3(), chain_id=1, mnemonic=TEST_MNEMONIC, accounts={"w": 7}, confirmations=1)
    assert other.address_for("w") == Account.from_mnemonic(TEST_MNEMONIC, account_path="m/44'/60'/0'/0/7").address
    with pytest.raises(UnknownSocket):
        ledger.address_for("nope")


def test_the_ledger_keeps_no_mnemonic():
    ledger = EthereumLedger(Web3(), chain_id=1, mnemonic=TEST_MNEMONIC, accounts=SOCKETS, confirmations=1)
    assert TEST_MNEMONIC not in repr(vars(ledger))
    assert not any("junk" in repr(value) for value in vars(ledger).values())


def test_payment_uris_for_ether_follow_eip681():
    ledger = EthereumLedger(Web3(), chain_id=11155111, mnemonic=TEST_MNEMONIC, accounts=SOCKETS, confirmations=1,
                            token_value=10**12)
    address = PUBLISHED_ADDRESSES[0]
    assert ledger.payment_uri("a", None) == f"ethereum:{address}@11155111"
    assert ledger.payment_uri("a", 250) == f"ethereum:{address}@11155111?value=250000000000000"


def test_payment_uris_for_a_token_follow_eip681():
    token = "0x1c7D4B196Cb0C7B01d743Fbc6116a902379C7238"
    ledger = EthereumLedger(Web3(), chain_id=11155111, mnemonic=TEST_MNEMONIC, accounts=SOCKETS, confirmations=1,
                            token=token.lower(), token_value=1000)
    address = PUBLISHED_ADDRESSES[1]
    assert ledger.token == token
    assert ledger.payment_uri("b", None) == f"ethereum:{token}@11155111/transfer?address={address}"
    assert ledger.payment_uri("b", 42) == f"ethereum:{token}@11155111/transfer?address={address}&uint256=42000"


@pytest.mark.parametrize("amount", [0, -1, 1.5, True, "3"])
def test_a_payment_uri_refuses_amounts_that_are_not_positive_integers(amount: object):
    ledger = EthereumLedger(Web3(), chain_id=1, mnemonic=TEST_MNEMONIC, accounts=SOCKETS, confirmations=1)
    with pytest.raises(InvalidAmount):
        ledger.payment_uri("a", amount)  # type: ignore[arg-type]
    with pytest.raises(UnknownSocket):
        ledger.payment_uri("nope", 1)


@pytest.mark.parametrize("change, words", [
    ({"confirmations": 0}, "confirmations"),
    ({"token_value": 0}, "token_value"),
    ({"chain_id": 0}, "chain_id"),
    ({"start_block": -1}, "start_block"),
    ({"max_blocks_per_poll": 0}, "max_blocks_per_poll"),
    ({"token": "0x1C7D4B196Cb0C7B01d743Fbc6116a902379C7238"}, "checksum"),
    ({"token": "0x1234"}, "token"),
    ({"accounts": {"a": 0, "b": 0}}, "share derivation index 0"),
    ({"accounts": {"a": -1}}, "derivation index"),
    ({"mnemonic": "test " * 11 + "test"}, "not a valid BIP-39 phrase"),
    ({"mnemonic": ""}, "mnemonic is empty"),
])
def test_invalid_settings_are_refused_with_a_readable_reason(change: dict, words: str):
    settings = {"chain_id": 1, "mnemonic": TEST_MNEMONIC, "accounts": SOCKETS, "confirmations": 3} | change
    with pytest.raises(ValueError) as raised:
        EthereumLedger(Web3(), **settings)  # type: ignore[arg-type]
    assert words in str(raised.value)
    assert "test test" not in str(raised.value)


@pytest.mark.parametrize("confirmations", [1, 3, 5])
def test_a_payment_is_final_at_exactly_the_configured_confirmations(bed: EthereumBed, confirmations: int):
    ledger = bed.open(SOCKETS, confirmations=confirmations)
    _, cursor = drain(ledger)
    bed.pay(ledger.address_for("a"), 1234)
    for seen in range(1, confirmations):  # the payment's own block is its first confirmation
        deposits, cursor = ledger.deposits_since(cursor)
        assert deposits == [], f"final after {seen} of {confirmations} confirmations"
        bed.node.mine(1)
    deposits, cursor = ledger.deposits_since(cursor)
    assert paid(deposits) == [("a", 1234)]


def test_a_reorganisation_deeper_than_the_confirmations_stops_crediting(bed: EthereumBed):
    ledger = bed.open(SOCKETS)
    fork = bed.node.snapshot()
    bed.pay(ledger.address_for("a"), 500)
    bed.finalize()
    deposits, cursor = drain(ledger)
    assert paid(deposits) == [("a", 500)]
    assert cursor is not None
    number, stored_hash = cursor.split(":")

    bed.node.revert(fork)  # the chain that held the payment is abandoned for another history
    bed.pay(bed.foreign_address(), 1)
    bed.pay(ledger.address_for("b"), 700)
    bed.node.mine(bed.CONFIRMATIONS + 2)
    current_hash = bed.node.block_hash(int(number))
    assert current_hash != stored_hash

    for source in (ledger, bed.open(SOCKETS)):  # also after a restart
        with pytest.raises(LedgerReorganised) as raised:
            source.deposits_since(cursor)
        message = str(raised.value)
        assert f"block {number}" in message and stored_hash in message and current_hash in message
        assert "operator" in message


def test_a_reorganisation_inside_the_confirmation_window_credits_only_the_surviving_payment(bed: EthereumBed):
    ledger = bed.open(SOCKETS)
    bed.node.mine(bed.CONFIRMATIONS)
    found, cursor = drain(ledger)
    fork = bed.node.snapshot()
    bed.pay(ledger.address_for("a"), 111)  # dropped by the reorganisation
    bed.node.mine(1)
    deposits, cursor = drain(ledger, cursor)
    found += deposits

    bed.node.revert(fork)
    bed.pay(ledger.address_for("a"), 222)  # the replacement
    bed.finalize()
    deposits, cursor = drain(ledger, cursor)
    found += deposits
    bed.node.mine(5)
    deposits, cursor = drain(ledger, cursor)
    found += deposits
    assert paid(found) == [("a", 222)]


def test_a_failed_token_transfer_is_not_a_deposit(erc20: EthereumBed):
    ledger = erc20.open(SOCKETS)
    assert erc20.token is not None
    too_much = erc20.token.contract.functions.balanceOf(erc20.token.owner).call() + 1
    failed = erc20.node.token_transfer(erc20.token, ledger.address_for("a"), too_much, gas=200_000)
    assert erc20.node.receipt(failed)["status"] == 0
    erc20.pay(ledger.address_for("b"), 9)
    erc20.finalize()
    assert paid(drain(ledger)[0]) == [("b", 9)]


def test_ether_sent_to_a_socket_that_reverts_is_not_a_deposit(native: EthereumBed):
    ledger = native.open(SOCKETS)
    Account.enable_unaudited_hdwallet_features()
    socket_key = Account.from_mnemonic(TEST_MNEMONIC, account_path="m/44'/60'/0'/0/1").key
    refuser = native.node.deploy("refuse_value")
    native.node.delegate_code(socket_key, refuser.address)  # EIP-7702: socket b's address now runs code
    failed = native.node.send_value(ledger.address_for("b"), 10**15)
    receipt = native.node.receipt(failed)
    assert receipt["status"] == 0 and receipt["to"] == ledger.address_for("b")
    native.pay(ledger.address_for("a"), 10**13)
    native.finalize()
    assert paid(drain(ledger)[0]) == [("a", 10**13)]


def test_ether_is_not_credited_when_a_token_is_configured(erc20: EthereumBed):
    ledger = erc20.open(SOCKETS)
    erc20.node.send_value(ledger.address_for("a"), 10**18)
    erc20.pay(ledger.address_for("a"), 3)
    erc20.finalize()
    assert paid(drain(ledger)[0]) == [("a", 3)]


def test_several_token_transfers_in_one_transaction_get_distinct_positions(erc20: EthereumBed):
    ledger = erc20.open(SOCKETS)
    node, token = erc20.node, erc20.token
    assert token is not None
    multisend = node.deploy("multisend")
    payer = node.accounts[3]
    with node.lock:
        token.contract.functions.approve(multisend.address, 10**9).transact({"from": payer})
        tx = multisend.functions.send(
            token.address, [ledger.address_for("a"), erc20.foreign_address(), ledger.address_for("b"),
                            ledger.address_for("a")], [10, 20, 30, 40]).transact({"from": payer})
    erc20.finalize()
    deposits, _ = drain(ledger)
    tx_id = f"{node.chain_id}:{tx.to_0x_hex()}"
    assert [(d.deposit_id, d.socket_id, d.amount) for d in deposits] == [
        (f"{tx_id}:log0", "a", 10), (f"{tx_id}:log2", "b", 30), (f"{tx_id}:log3", "a", 40)]


def test_a_log_position_counts_within_its_transaction_not_its_block(erc20: EthereumBed):
    ledger = erc20.open(SOCKETS)
    erc20.pay_many([(ledger.address_for("a"), 5), (ledger.address_for("b"), 7)])
    erc20.finalize()
    deposits, _ = drain(ledger)
    assert paid(deposits) == [("a", 5), ("b", 7)]
    assert all(d.deposit_id.endswith(":log0") for d in deposits)
    # The node numbers logs per block, as real nodes do: the second transfer is log 1 on the wire.
    client = Web3(HTTPProvider(erc20.node.rpc_url))
    second = client.eth.get_transaction_receipt(deposits[1].deposit_id.split(":")[1])
    assert second["logs"][0]["logIndex"] == 1


def test_log_queries_halve_their_range_until_the_node_accepts_them(erc20: EthereumBed):
    sockets = {"a": 0, "b": 1, "c": 2}
    ledger = erc20.open(sockets, log_chunk_blocks=64, max_blocks_per_poll=64)
    for i in range(8):
        erc20.pay(ledger.address_for("abc"[i % 3]), 100 + i)
        erc20.node.mine(i % 3)
    erc20.pay_many([(ledger.address_for("c"), 1), (erc20.foreign_address(), 2), (ledger.address_for("a"), 3)])
    erc20.finalize()
    expected, _ = drain(ledger)
    assert len(expected) == 10

    erc20.node.limit_log_range(3)
    limited, _ = drain(erc20.open(sockets, log_chunk_blocks=64, max_blocks_per_poll=64))
    assert limited == expected
    assert erc20.node.refused_log_ranges, "the node never refused a range: the test did not test halving"

    erc20.node.limit_log_range(0)  # even one block is refused
    with pytest.raises(LedgerUnavailable) as raised:
        erc20.open(sockets).deposits_since(None)
    assert "eth_getLogs" in str(raised.value) and "single block" in str(raised.value)


def test_polls_read_at_most_max_blocks_and_keep_the_order(native: EthereumBed):
    ledger = native.open(SOCKETS, max_blocks_per_poll=2)
    for i in range(6):
        native.pay(ledger.address_for("ab"[i % 2]), 10 + i)
    native.finalize()
    cursor = None
    batches = []
    for _ in range(6):
        deposits, cursor = ledger.deposits_since(cursor)
        batches.append(paid(deposits))
    assert [len(b) for b in batches] == [2, 2, 2, 0, 0, 0]
    assert [p for batch in batches for p in batch] == [("a", 10), ("b", 11), ("a", 12), ("b", 13), ("a", 14), ("b", 15)]


def test_without_start_block_reading_begins_at_the_final_head(native: EthereumBed):
    ledger = native.open(SOCKETS, start_block=None)
    native.pay(ledger.address_for("a"), 1)  # before the first poll, and final by then
    native.node.mine(native.CONFIRMATIONS + 1)
    deposits, cursor = ledger.deposits_since(None)
    assert deposits == [] and cursor is not None
    native.pay(ledger.address_for("b"), 2)
    native.finalize()
    assert paid(drain(ledger, cursor)[0]) == [("b", 2)]


def test_on_a_young_chain_the_starting_block_does_not_float_past_payments(native: EthereumBed):
    """With fewer blocks than confirmations there is no final block and so no cursor yet; a payment
    made before one exists must still be found."""
    assert native.node.block_number + 1 < native.CONFIRMATIONS
    ledger = native.open(SOCKETS, start_block=None)
    assert ledger.deposits_since(None) == ([], None)
    native.pay(ledger.address_for("a"), 5)
    native.node.mine(native.CONFIRMATIONS + 3)
    assert paid(drain(ledger, None)[0]) == [("a", 5)]


def test_a_node_on_another_chain_is_refused(native: EthereumBed):
    ledger = native.open(SOCKETS, chain_id=11155111)
    with pytest.raises(LedgerUnavailable) as raised:
        ledger.deposits_since(None)
    assert "11155111" in str(raised.value) and str(native.node.chain_id) in str(raised.value)


def test_a_node_outage_loses_nothing(bed: EthereumBed):
    ledger = bed.open(SOCKETS)
    bed.pay(ledger.address_for("a"), 31)
    bed.finalize()
    bed.break_node()
    with pytest.raises(LedgerUnavailable) as raised:
        ledger.deposits_since(None)
    assert bed.node.rpc_url in str(raised.value)
    assert not isinstance(raised.value, requests.RequestException)
    bed.pay(ledger.address_for("b"), 32)  # the chain goes on while the controller cannot see it
    bed.finalize()
    bed.heal_node()
    assert paid(drain(ledger)[0]) == [("a", 31), ("b", 32)]


def test_an_unreadable_cursor_is_reported_not_guessed(native: EthereumBed):
    ledger = native.open(SOCKETS)
    with pytest.raises(LedgerUnavailable) as raised:
        ledger.deposits_since("17")
    assert "'17'" in str(raised.value)


def test_a_node_that_does_not_answer_in_time_is_unavailable(native: EthereumBed):
    ledger = native.open(SOCKETS, timeout_s=0.3)
    native.node.stall(5.0)
    started = time.monotonic()
    with pytest.raises(LedgerUnavailable) as raised:
        ledger.deposits_since(None)
    assert time.monotonic() - started < 2.0, "web3's retries came back"
    assert "timeout" in str(raised.value) and native.node.rpc_url in str(raised.value)


def test_an_http_error_from_the_node_is_unavailable(native: EthereumBed):
    ledger = native.open(SOCKETS)
    native.node.answer_http_status(503)
    with pytest.raises(LedgerUnavailable) as raised:
        ledger.deposits_since(None)
    assert "HTTP 503" in str(raised.value)
    native.node.answer_http_status(None)
    native.pay(ledger.address_for("a"), 5)
    native.finalize()
    assert paid(drain(ledger)[0]) == [("a", 5)]


def test_error_messages_do_not_show_the_path_of_the_endpoint(native: EthereumBed):
    # Providers put the API key in the path: https://mainnet.example/v3/<key>.
    keyed = EthereumLedger.connect(f"{native.node.rpc_url}/v3/s3cr3tkey", chain_id=native.node.chain_id,
                                   mnemonic=TEST_MNEMONIC, accounts=SOCKETS, confirmations=3, start_block=0)
    native.pay(keyed.address_for("a"), 5)
    native.finalize()
    assert paid(drain(keyed)[0]) == [("a", 5)]
    native.break_node()
    with pytest.raises(LedgerUnavailable) as raised:
        keyed.deposits_since(None)
    assert native.node.rpc_url in str(raised.value) and "s3cr3tkey" not in str(raised.value)
    keyed.close()
