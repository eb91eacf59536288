"""IotaWallet against the fake IOTA node in another process: real signed transactions built by iota-sdk."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
import urllib.request

import iota_sdk
import pytest

from ledgers.iota import IotaLedger, IotaWallet, TransactionNotFound, derivation_path, gas_budget
from ledgers.iota.transfers import BUDGET_GAS_UNITS, BUDGET_PER_OBJECT
from payg.errors import InsufficientFunds, InvalidAmount, LedgerUnavailable
from tests.support import free_port, wait_until
from tests.support.ed25519_points import L, small_order_points
from tests.support.ledger_beds_iota import TEST_MNEMONIC

IOTA = 10**9
PRICE = 1000                 # the fake node's reference gas price
STORAGE = 988_000            # the fake node's storage fee per coin object written (rebated on consumption)
COMPUTATION = PRICE * 1000   # the fake node's computation charge for a simple transfer
PATH = "m/44'/4218'/0'/1'/0'"
OTHER_PATH = "m/44'/4218'/0'/1'/1'"
ALICE = "0x" + hashlib.sha256(b"alice").hexdigest()
BOB = "0x" + hashlib.sha256(b"bob").hexdigest()
CAROL = "0x" + hashlib.sha256(b"carol").hexdigest()


@pytest.fixture
def open_wallet(node):
    opened = []

    def make(url=None, **overrides):
        kwargs = {"mnemonic": TEST_MNEMONIC, "request_timeout_s": 2.0, "finality_timeout_s": 5.0, **overrides}
        wallet = IotaWallet(url or node.url, **kwargs)
        opened.append(wallet)
        return wallet

    yield make
    for wallet in opened:
        wallet.close()


@pytest.fixture
def wallet(open_wallet):
    return open_wallet()


def executes(node) -> list[dict]:
    return [r for r in node.requests() if "executeTransactionBlock" in r["body"]]


def fee(outputs: int, gas_coins: int = 1) -> int:
    """What the fake node charges a transfer with `outputs` new coins paid from `gas_coins` coins."""
    return COMPUTATION + STORAGE * (outputs + 1) - STORAGE * gas_coins


def test_addresses_are_derived_from_the_mnemonic_and_path_and_stay_the_same(open_wallet):
    first, second = open_wallet(), open_wallet(mnemonic="  ABANDON " + TEST_MNEMONIC.split(" ", 1)[1].upper() + " ")
    expected = iota_sdk.Ed25519PrivateKey.from_mnemonic_with_path(TEST_MNEMONIC, PATH).public_key()
    assert first.address(PATH) == second.address(PATH) == expected.derive_address().to_hex()
    assert first.public_key(PATH) == expected.to_bytes().hex() and len(first.public_key(PATH)) == 64
    assert first.address(PATH) != first.address(OTHER_PATH)
    assert IotaWallet.address_of(first.public_key(PATH)) == first.address(PATH)
    # the deposit backend's socket i is the wallet's path m/44'/4218'/i'/0'/0'
    ledger = IotaLedger("http://127.0.0.1:1", mnemonic=TEST_MNEMONIC, accounts={"a": 3}, token_value=1)
    assert ledger.address_for("a") == first.address(derivation_path(3))


@pytest.mark.parametrize("path", ["", "44'/4218'", "m/44'/4218'/x'", None])
def test_a_bad_path_is_refused(wallet, path):
    with pytest.raises(ValueError):
        wallet.address(path)


def test_a_bad_mnemonic_or_url_is_refused():
    with pytest.raises(ValueError, match="mnemonic"):
        IotaWallet("http://127.0.0.1:1", mnemonic="abandon abandon abandon")
    with pytest.raises(ValueError, match="mnemonic"):
        IotaWallet("http://127.0.0.1:1", mnemonic=" ")
    with pytest.raises(ValueError, match="graphql_url"):
        IotaWallet("127.0.0.1:1", mnemonic=TEST_MNEMONIC)
    with pytest.raises(ValueError, match="finality_timeout_s"):
        IotaWallet("http://127.0.0.1:1", mnemonic=TEST_MNEMONIC, finality_timeout_s=0)


def test_address_of_refuses_what_is_not_a_public_key():
    for bad in ("", "zz" * 32, "00" * 31, None, 5):
        with pytest.raises(ValueError):
            IotaWallet.address_of(bad)


def test_a_signature_verifies_and_nothing_else_does(wallet):
    message = b"payg voucher v1|channel 7|amount 1200"
    public, signature = wallet.public_key(PATH), wallet.sign(PATH, message)
    assert len(signature) == 128
    assert IotaWallet.verify(public, message, signature)
    assert wallet.sign(PATH, message) == signature  # Ed25519 is deterministic
    assert not IotaWallet.verify(public, message + b"0", signature)
    assert not IotaWallet.verify(public, b"payg voucher v1|channel 7|amount 1201", signature)
    tampered = bytearray(bytes.fromhex(signature))
    tampered[10] ^= 1
    assert not IotaWallet.verify(public, message, tampered.hex())
    tampered = bytearray(bytes.fromhex(signature))
    tampered[40] ^= 1
    assert not IotaWallet.verify(public, message, tampered.hex())
    assert not IotaWallet.verify(wallet.public_key(OTHER_PATH), message, signature)
    assert IotaWallet.verify(wallet.public_key(OTHER_PATH), message, wallet.sign(OTHER_PATH, message))


@pytest.mark.parametrize("public, message, signature", [
    ("", b"m", "00" * 64), ("zz", b"m", "00" * 64), (None, b"m", None), ("00" * 32, "m", "00" * 64),
    ("00" * 33, b"m", "00" * 64), ("00" * 32, b"m", "00" * 63), (b"\0" * 32, b"m", b"\0" * 64),
])
def test_verify_says_false_to_any_bad_input_and_never_raises(public, message, signature):
    assert IotaWallet.verify(public, message, signature) is False




def test_verify_refuses_small_order_keys_and_malleable_signatures(wallet):
    weak = small_order_points()
    assert len(weak) == 8 and bytes(32) in weak
    for point in weak:
        # with a small-order key and R, the cofactorless equation holds for many (R, s = 0)
        assert not IotaWallet.verify(point.hex(), b"any message", (point + bytes(32)).hex())
        assert not IotaWallet.verify(wallet.public_key(PATH), b"m", (point + bytes(32)).hex())
    message = b"m"
    signature = bytes.fromhex(wallet.sign(PATH, message))
    s = int.from_bytes(signature[32:], "little")
    assert IotaWallet.verify(wallet.public_key(PATH), message, signature.hex())
    if s + L < 2**256:  # the same signature with s + L: refused (non-canonical s)
        malleated = signature[:32] + (s + L).to_bytes(32, "little")
        assert not IotaWallet.verify(wallet.public_key(PATH), message, malleated.hex())


def test_send_pays_every_output_in_one_transaction_and_the_sender_pays_the_gas(node, wallet):
    sender = wallet.address(PATH)
    node.faucet(sender, 5 * IOTA)
    node.set_time(timestamp_ms=1_800_000_000_000)
    node.clear_requests()
    digest = wallet.send(PATH, [(ALICE, 1 * IOTA), (BOB, 250_000_000), (CAROL, 7)])
    assert len(executes(node)) == 1
    gas = fee(outputs=3)
    assert wallet.balance(ALICE) == IOTA and wallet.balance(BOB) == 250_000_000 and wallet.balance(CAROL) == 7
    assert wallet.balance(sender) == 5 * IOTA - IOTA - 250_000_000 - 7 - gas
    facts = wallet.transaction(digest)
    assert facts == {"digest": digest, "sender": sender, "checkpoint": node.head(), "timestamp": 1_800_000_000,
                     "timestamp_ms": 1_800_000_000_000,
                     "success": True, "error": None, "gas_fee": gas,
                     "changes": {sender: -(IOTA + 250_000_000 + 7 + gas), ALICE: IOTA, BOB: 250_000_000, CAROL: 7}}
    assert wallet.gas_fee(digest) == gas == 3_964_000  # 1,000,000 computation + 3 new coins stored net


def test_the_transaction_is_the_one_the_sdk_built_and_signed(node, wallet):
    sender = wallet.address(PATH)
    node.faucet(sender, IOTA)
    node.clear_requests()
    digest = wallet.send(PATH, [(ALICE, 1000)])
    (request,) = executes(node)
    variables = request["json"]["variables"]
    tx = iota_sdk.Transaction.from_bcs(base64.b64decode(variables["txBytes"]))
    assert tx.digest().to_base58() == digest
    data = json.loads(tx.to_json())["V1"]
    assert data["sender"] == sender and data["gas_payment"]["owner"] == sender
    assert int(data["gas_payment"]["price"]) == PRICE
    budget = int(data["gas_payment"]["budget"])
    assert budget == gas_budget(2, PRICE) == PRICE * BUDGET_GAS_UNITS + 2 * BUDGET_PER_OBJECT
    assert [list(c) for c in data["kind"]["Programmable"]["commands"]] == [["SplitCoins"], ["TransferObjects"]]
    (signature,) = variables["signatures"]
    iota_sdk.UserSignatureVerifier().verify(tx.signing_digest(), iota_sdk.UserSignature.from_base64(signature))


def test_many_coins_are_merged_as_gas_and_the_rebates_come_back(node, wallet):
    sender = wallet.address(PATH)
    node.faucet(sender, 3 * IOTA, coins=3)
    digest = wallet.send(PATH, [(ALICE, 2 * IOTA)])  # more than any single coin holds
    gas = fee(outputs=1, gas_coins=3)
    assert wallet.gas_fee(digest) == gas == 12_000
    assert wallet.balance(sender) == IOTA - gas and wallet.balance(ALICE) == 2 * IOTA
    assert len(node.coins(sender)) == 1


def test_the_gas_price_is_read_from_the_node(node, wallet):
    sender = wallet.address(PATH)
    node.faucet(sender, IOTA)
    node.set_gas_price(2500)
    assert wallet.gas_price() == 2500
    digest = wallet.send(PATH, [(ALICE, 1)])
    assert wallet.gas_fee(digest) == 2500 * 1000 + STORAGE


def test_insufficient_funds_are_refused_before_anything_is_sent(node, wallet):
    sender = wallet.address(PATH)
    node.faucet(sender, IOTA)
    node.clear_requests()
    budget = gas_budget(2, PRICE)
    with pytest.raises(InsufficientFunds, match="gas budget"):
        wallet.send(PATH, [(ALICE, IOTA - budget + 1)])
    with pytest.raises(InsufficientFunds):
        wallet.send(OTHER_PATH, [(ALICE, 1)])  # an address with nothing
    assert executes(node) == []
    assert wallet.balance(sender) == IOTA and wallet.balance(ALICE) == 0
    # exactly the amount + the budget is enough; the unused budget stays with the sender
    wallet.send(PATH, [(ALICE, IOTA - budget)])
    assert wallet.balance(ALICE) == IOTA - budget and wallet.balance(sender) == budget - fee(1)


@pytest.mark.parametrize("outputs", [[], [(ALICE, 0)], [(ALICE, -5)], [(ALICE, 1.5)], [(ALICE, True)],
                                     [(ALICE, "10")], [(ALICE, 5), (BOB, 0)], "x", None, [(ALICE,)],
                                     [(ALICE, 2**64)], [(ALICE, 2**63), (BOB, 2**63)]])
def test_bad_amounts_are_refused(node, wallet, outputs):
    node.faucet(wallet.address(PATH), IOTA)
    node.clear_requests()
    with pytest.raises(InvalidAmount):
        wallet.send(PATH, outputs)
    assert node.requests() == []


@pytest.mark.parametrize("to", ["alice", "0x", "0x" + "g" * 64, "0x" + "1" * 65, None])
def test_a_bad_recipient_is_refused(node, wallet, to):
    node.clear_requests()
    with pytest.raises(ValueError):
        wallet.send(PATH, [(to, 5)])
    with pytest.raises(ValueError):
        wallet.sweep(PATH, to)
    assert node.requests() == []


def test_the_deposit_backend_sees_a_wallet_transfer_as_a_deposit(node, wallet):
    ledger = IotaLedger(node.url, mnemonic=TEST_MNEMONIC, accounts={"socket-a": 0, "socket-b": 1},
                        token_value=10**6, start_checkpoint=node.head(), request_timeout_s=2.0)
    try:
        sender = wallet.address(PATH)
        node.faucet(sender, 2 * IOTA)
        cursor = str(node.head())
        digest = wallet.send(PATH, [(ledger.address_for("socket-a"), 300_000_000), (ALICE, 5)])
        deposits, cursor = ledger.deposits_since(cursor)
        assert [(d.deposit_id, d.socket_id, d.amount) for d in deposits] == \
            [(f"{digest}:{ledger.address_for('socket-a')}", "socket-a", 300_000_000)]
        facts = wallet.transaction(digest)
        assert deposits[0].at == facts["timestamp_ms"] / 1000 and facts["timestamp"] == int(deposits[0].at)
        # a transfer from a socket's own address is not a deposit to it
        node.faucet(ledger.address_for("socket-b"), IOTA)
        deposits, cursor = ledger.deposits_since(cursor)
        assert [d.socket_id for d in deposits] == ["socket-b"]
        wallet.send(derivation_path(1), [(ALICE, 1000)])
        assert ledger.deposits_since(cursor)[0] == []
    finally:
        ledger.close()


def test_sweep_sends_everything_but_the_gas(node, wallet):
    sender = wallet.address(PATH)
    node.faucet(sender, 3 * IOTA + 17, coins=2)
    digest, amount = wallet.sweep(PATH, BOB)
    gas = COMPUTATION + STORAGE - 2 * STORAGE  # one coin written, two consumed
    assert amount == 3 * IOTA + 17 - gas == wallet.balance(BOB)
    assert wallet.balance(sender) == 0 and node.coins(sender) == []
    assert wallet.transaction(digest)["changes"] == {sender: -(3 * IOTA + 17), BOB: amount}
    with pytest.raises(InsufficientFunds):
        wallet.sweep(PATH, BOB)


def test_concurrent_sends_from_one_address_are_serialised(node, wallet):
    sender = wallet.address(PATH)
    node.faucet(sender, 10 * IOTA)
    results, errors = [], []

    def pay(n):
        try:
            results.append(wallet.send(PATH, [(ALICE, n)]))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=pay, args=(n,)) for n in range(1, 6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(set(results)) == 5
    assert wallet.balance(ALICE) == 15
    assert wallet.balance(sender) == 10 * IOTA - 15 - sum(wallet.gas_fee(d) for d in results)


def test_send_waits_for_the_checkpoint(node, open_wallet):
    wallet = open_wallet(finality_timeout_s=30.0)  # the test's own pace on a loaded machine never reaches it
    sender = wallet.address(PATH)
    node.faucet(sender, IOTA)
    node.auto_checkpoint(False)
    done = []
    thread = threading.Thread(target=lambda: done.append(wallet.send(PATH, [(ALICE, 5)])))
    thread.start()
    wait_until(lambda: executes(node), 20, "the transfer to be executed")
    time.sleep(0.4)
    assert done == [] and thread.is_alive()  # executed, not final: not reported done
    # the request has arrived; on a loaded machine the node may take a while to execute it: a checkpoint made
    # before that would be empty and leave the transfer out of every later one (auto checkpoints are off)
    checkpoint = wait_until(lambda: (c := node.checkpoint())["transactions"] and c, 20,
                            "a checkpoint with the transfer")
    thread.join(30)
    assert done and wallet.transaction(done[0])["checkpoint"] == checkpoint["sequenceNumber"]


def test_a_transaction_not_checkpointed_in_time_is_reported_with_its_digest(node, open_wallet):
    wallet = open_wallet(finality_timeout_s=0.5)
    sender = wallet.address(PATH)
    node.faucet(sender, IOTA)
    node.auto_checkpoint(False)
    with pytest.raises(LedgerUnavailable, match="not in a checkpoint") as caught:
        wallet.send(PATH, [(ALICE, 5)])
    digest = caught.value.digest
    assert wallet.transaction(digest)["checkpoint"] is None
    node.checkpoint()
    facts = wallet.transaction(digest)
    assert facts["checkpoint"] is not None and facts["changes"][ALICE] == 5


def test_closing_the_wallet_ends_a_send_that_waits(node, open_wallet):
    wallet = open_wallet(finality_timeout_s=30)
    node.faucet(wallet.address(PATH), IOTA)
    node.auto_checkpoint(False)
    errors = []

    def send():
        try:
            wallet.send(PATH, [(ALICE, 5)])
        except LedgerUnavailable as exc:
            errors.append(exc)

    thread = threading.Thread(target=send)
    thread.start()
    deadline = time.monotonic() + 5
    while not executes(node) and time.monotonic() < deadline:
        time.sleep(0.02)
    wallet.close()
    thread.join(3)
    assert not thread.is_alive() and "closed" in str(errors[0])


def test_a_restarted_node_keeps_the_coins(node, wallet):
    sender = wallet.address(PATH)
    node.faucet(sender, IOTA)
    first = wallet.send(PATH, [(ALICE, 5)])
    node.restart()
    assert wallet.balance(sender) == IOTA - 5 - wallet.gas_fee(first)
    wallet.send(PATH, [(ALICE, 6)])
    assert wallet.balance(ALICE) == 11


def test_a_node_that_is_down_is_unavailable(open_wallet):
    wallet = open_wallet(url=f"http://127.0.0.1:{free_port()}")
    for call in (lambda: wallet.balance(ALICE), lambda: wallet.send(PATH, [(ALICE, 5)]), wallet.network,
                 lambda: wallet.transaction("11111111111111111111111111111111")):
        with pytest.raises(LedgerUnavailable):
            call()


def test_a_node_that_does_not_answer_in_time_is_unavailable(node, open_wallet):
    wallet = open_wallet(request_timeout_s=0.3)
    node.faucet(wallet.address(PATH), IOTA)
    node.fail("hang")
    try:
        started = time.monotonic()
        with pytest.raises(LedgerUnavailable, match="no answer within"):
            wallet.send(PATH, [(ALICE, 5)])
        assert time.monotonic() - started < 3
    finally:
        node.fail("none")
    assert wallet.balance(ALICE) == 0


@pytest.mark.parametrize("mode", ["503", "graphql-error", "malformed"])
def test_a_refused_execution_is_unavailable_and_moves_nothing(node, wallet, mode):
    sender = wallet.address(PATH)
    node.faucet(sender, IOTA)
    node.fail(mode, match="executeTransactionBlock")
    with pytest.raises(LedgerUnavailable) as caught:
        wallet.send(PATH, [(ALICE, 5)])
    assert caught.value.digest
    node.fail("none")
    assert wallet.balance(ALICE) == 0 and wallet.balance(sender) == IOTA
    with pytest.raises(TransactionNotFound):
        wallet.transaction(caught.value.digest)


def test_a_lost_answer_to_an_executed_transaction_is_not_a_failure(node, wallet):
    sender = wallet.address(PATH)
    node.faucet(sender, IOTA)
    node.fail("drop-answer", match="executeTransactionBlock")
    try:
        digest = wallet.send(PATH, [(ALICE, 5)])
    finally:
        node.fail("none")
    assert wallet.balance(ALICE) == 5 and wallet.transaction(digest)["success"]
    assert len(executes(node)) == 1


def test_transaction_of_an_unknown_or_malformed_digest(node, wallet):
    for digest in ("11111111111111111111111111111111", "not a digest", "", None, "0x12"):
        with pytest.raises(TransactionNotFound):
            wallet.transaction(digest)


def test_network_balance_and_close(node, wallet):
    assert wallet.network() == "fa4e1dea"
    assert wallet.balance(ALICE) == 0
    wallet.close()
    with pytest.raises(LedgerUnavailable, match="closed"):
        wallet.balance(ALICE)


def _graphql(node, query: str, variables: dict) -> dict:
    request = urllib.request.Request(node.url, data=json.dumps({"query": query, "variables": variables}).encode(),
                                     headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


EXECUTE = """mutation($txBytes: String!, $signatures: [String!]!) {
  executeTransactionBlock(txBytes: $txBytes, signatures: $signatures) { errors effects { status bcs } }
}"""


def _transfer(node, sender_key, recipient: str, amount: int, *, budget: int = 10_000_000, price: int = PRICE,
              coins=None):
    sender = sender_key.public_key().derive_address()
    coins = coins if coins is not None else node.coins(sender.to_hex())
    refs = [iota_sdk.ObjectReference(object_id=iota_sdk.ObjectId.from_hex(c["id"]),
                                     version=iota_sdk.Version.from_u64(c["version"]),
                                     digest=iota_sdk.ObjectDigest.from_base58(c["digest"])) for c in coins]
    return (iota_sdk.TransactionBuilder(sender)
            .pay_iota([iota_sdk.Payment(recipient=iota_sdk.Address.from_hex(recipient),
                                        amount=iota_sdk.PtbArgument.u64(amount))])
            .gas(refs).gas_price(price).gas_budget(budget).finish())


def _submit(node, tx, signature) -> dict:
    return _graphql(node, EXECUTE, {"txBytes": base64.b64encode(tx.to_bcs()).decode(),
                                    "signatures": [signature.to_base64()]})


def test_the_fake_node_refuses_a_transaction_not_signed_by_its_sender(node):
    key = iota_sdk.Ed25519PrivateKey.from_mnemonic_with_path(TEST_MNEMONIC, PATH)
    thief = iota_sdk.Ed25519PrivateKey.from_mnemonic_with_path(TEST_MNEMONIC, OTHER_PATH)
    node.faucet(key.public_key().derive_address().to_hex(), IOTA)
    tx = _transfer(node, key, ALICE, 5)
    answer = _submit(node, tx, thief.sign_transaction(tx))
    assert "does not match the sender" in answer["errors"][0]["message"]
    other = _transfer(node, key, BOB, 5)  # the sender's signature over another transaction
    answer = _submit(node, tx, key.sign_transaction(other))
    assert "Invalid user signature" in answer["errors"][0]["message"]
    assert node.coins(ALICE) == [] and node.coins(BOB) == []
    answer = _submit(node, tx, key.sign_transaction(tx))
    assert answer["data"]["executeTransactionBlock"]["effects"]["status"] == "SUCCESS"
    effects = iota_sdk.TransactionEffects.from_bcs(
        base64.b64decode(answer["data"]["executeTransactionBlock"]["effects"]["bcs"]))
    assert effects.as_v1().transaction_digest().to_base58() == tx.digest().to_base58()


def test_the_fake_node_refuses_spent_coins_low_prices_and_small_budgets(node):
    key = iota_sdk.Ed25519PrivateKey.from_mnemonic_with_path(TEST_MNEMONIC, PATH)
    node.faucet(key.public_key().derive_address().to_hex(), IOTA)
    stale = node.coins(key.public_key().derive_address().to_hex())
    tx = _transfer(node, key, ALICE, 5)
    assert _submit(node, tx, key.sign_transaction(tx))["data"]["executeTransactionBlock"]["errors"] is None
    again = _submit(node, tx, key.sign_transaction(tx))  # the same transaction: the same effects, nothing more
    assert again["data"]["executeTransactionBlock"]["errors"] is None and len(node.coins(ALICE)) == 1
    double = _transfer(node, key, BOB, 5, coins=stale, budget=10_000_001)
    assert "unavailable for consumption" in _submit(node, double, key.sign_transaction(double))["errors"][0]["message"]
    cheap = _transfer(node, key, BOB, 5, price=PRICE - 1)
    assert "under reference gas price" in _submit(node, cheap, key.sign_transaction(cheap))["errors"][0]["message"]
    small = _transfer(node, key, BOB, 5, budget=PRICE * 1000 - 1)
    assert "lower than min" in _submit(node, small, key.sign_transaction(small))["errors"][0]["message"]
    assert node.coins(BOB) == []


def test_a_failed_execution_is_committed_and_charges_gas(node, wallet):
    key = iota_sdk.Ed25519PrivateKey.from_mnemonic_with_path(TEST_MNEMONIC, PATH)
    sender = key.public_key().derive_address().to_hex()
    node.faucet(sender, IOTA)
    tx = _transfer(node, key, ALICE, IOTA - 5_000_000, budget=10_000_000)  # split more than balance - budget
    answer = _submit(node, tx, key.sign_transaction(tx))["data"]["executeTransactionBlock"]
    assert answer["effects"]["status"] == "FAILURE" and "INSUFFICIENT_COIN_BALANCE" in answer["errors"][0]
    facts = wallet.transaction(tx.digest().to_base58())
    assert facts["success"] is False and facts["gas_fee"] == COMPUTATION
    assert facts["changes"] == {sender: -COMPUTATION} and wallet.balance(ALICE) == 0
