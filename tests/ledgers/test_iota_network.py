"""An IOTA deposit cursor is bound to its network: another network's service is refused, never credited from.

The cursor is `<checkpoint>@<chainIdentifier>`; a controller whose [ledger] graphql_url now points at another
network (a testnet cursor on mainnet) gets a NetworkMismatch, a ConfigError, which `app.serve` maps to exit 2.
"""

from __future__ import annotations

import logging

import pytest

from ledgers.iota.deposits import IotaLedger, NetworkMismatch, parse_cursor
from payg.adapters.clocks import SystemClock
from payg.adapters.journal import SqliteJournal
from payg.errors import ConfigError, LedgerUnavailable
from payg.services.deposits import DepositWatcher
from tests.support.ledger_beds_iota import GAS_NANOS, INITIAL_CHECKPOINT, PAYER, TEST_MNEMONIC

TESTNET, MAINNET = "2304aa97", "6364aad5"


@pytest.fixture
def ledger(node):
    opened = IotaLedger(node.url, mnemonic=TEST_MNEMONIC, accounts={"a": 0}, token_value=10**6,
                        start_checkpoint=INITIAL_CHECKPOINT, request_timeout_s=2.0)
    yield opened
    opened.close()


def pay_a(node, ledger, nanos=5 * 10**6):
    address = ledger.address_for("a")
    node.add_transaction(PAYER, [{"owner": PAYER, "amount": -(nanos + GAS_NANOS)}, {"owner": address, "amount": nanos}])
    node.checkpoint()


def test_a_fresh_cursor_names_the_services_network(node, ledger):
    node.control("chain_id", {"chain_id": TESTNET})
    assert ledger.deposits_since(None) == ([], f"{INITIAL_CHECKPOINT}@{TESTNET}")


def test_the_same_network_credits(node, ledger):
    node.control("chain_id", {"chain_id": TESTNET})
    pay_a(node, ledger)
    deposits, cursor = ledger.deposits_since(f"{INITIAL_CHECKPOINT}@{TESTNET}")
    assert [(d.socket_id, d.amount) for d in deposits] == [("a", 5 * 10**6)]
    assert cursor == f"{INITIAL_CHECKPOINT + 1}@{TESTNET}"


def test_another_network_is_refused_with_what_to_do(node, ledger):
    node.control("chain_id", {"chain_id": MAINNET})
    pay_a(node, ledger)  # a payment on the other network, at a checkpoint the cursor would cover
    with pytest.raises(NetworkMismatch) as caught:
        ledger.deposits_since(f"{INITIAL_CHECKPOINT}@{TESTNET}")
    message = str(caught.value)
    assert isinstance(caught.value, ConfigError)  # what app.serve turns into exit status 2
    assert TESTNET in message and MAINNET in message and node.url in message
    assert f"payg cursor --set <checkpoint>@{MAINNET}" in message


def test_the_watcher_books_nothing_and_lets_the_refusal_through(node, ledger, tmp_path):
    # DepositWatcher.poll (run by Site.poll_deposits) passes the ConfigError on instead of hiding it as
    # "unavailable"; the cursor and the balances stay as they were.
    journal = SqliteJournal(tmp_path / "journal.sqlite")
    try:
        watcher = DepositWatcher(ledger, journal, SystemClock())
        node.control("chain_id", {"chain_id": TESTNET})
        watcher.poll()
        bound = journal.cursor(watcher.cursor_name)
        assert bound == f"{INITIAL_CHECKPOINT}@{TESTNET}"
        node.control("chain_id", {"chain_id": MAINNET})
        pay_a(node, ledger)
        with pytest.raises(NetworkMismatch):
            watcher.poll()
        assert journal.cursor(watcher.cursor_name) == bound
        node.control("chain_id", {"chain_id": TESTNET})  # back on its own network: the poll goes on
        watcher.poll()
        assert journal.cursor(watcher.cursor_name) == f"{INITIAL_CHECKPOINT + 1}@{TESTNET}"
    finally:
        journal.close()


def test_an_old_cursor_without_a_network_is_adopted_once_with_a_log_line(node, ledger, caplog):
    node.control("chain_id", {"chain_id": TESTNET})
    pay_a(node, ledger)
    with caplog.at_level(logging.WARNING, logger="payg.ledgers.iota"):
        deposits, cursor = ledger.deposits_since(str(INITIAL_CHECKPOINT))
    assert [(d.socket_id, d.amount) for d in deposits] == [("a", 5 * 10**6)]
    assert cursor == f"{INITIAL_CHECKPOINT + 1}@{TESTNET}"
    adopted = [r for r in caplog.records if "holds no network yet" in r.getMessage()]
    assert len(adopted) == 1 and TESTNET in adopted[0].getMessage()
    caplog.clear()
    node.control("chain_id", {"chain_id": MAINNET})  # once bound, bound: the next poll checks it
    with pytest.raises(NetworkMismatch):
        ledger.deposits_since(cursor)
    assert not [r for r in caplog.records if "holds no network yet" in r.getMessage()]


@pytest.mark.parametrize("cursor, parsed", [
    ("1000", (1000, None)), ("1000@fa4e1dea", (1000, "fa4e1dea")), (None, (None, None)),
])
def test_cursors_parse(cursor, parsed):
    assert parse_cursor(cursor) == parsed


@pytest.mark.parametrize("bad", ["-1", "1000@", "1000@bad chain", "x@fa4e1dea", "١٢"])
def test_malformed_cursors_are_refused(bad):
    with pytest.raises(LedgerUnavailable, match="not a checkpoint"):
        parse_cursor(bad)


def test_payg_cursor_explains_the_network_and_sets_one_on_purpose(tmp_path, capsys):
    import argparse
    import io

    from payg.cli.accounts import cmd_cursor
    from tests.support.configs import IOTA_CONFIG, load_text
    config = load_text(tmp_path, IOTA_CONFIG.format(extra=""))
    journal = SqliteJournal(tmp_path / "journal.sqlite")
    try:
        with journal.transaction() as tx:
            tx.set_cursor("deposits:iota", f"1000@{TESTNET}")
        out = io.StringIO()
        assert cmd_cursor(argparse.Namespace(set_to=None), config, journal, out) == 0
        assert f"deposits:iota: 1000@{TESTNET}" in out.getvalue()
        assert "payg cursor --set '<checkpoint>@<chain identifier>'" in out.getvalue()
        assert cmd_cursor(argparse.Namespace(set_to="77@bad chain"), config, journal, io.StringIO()) == 2
        assert "chain identifier" in capsys.readouterr().err
        assert journal.cursor("deposits:iota") == f"1000@{TESTNET}"
        assert cmd_cursor(argparse.Namespace(set_to=f"5000@{MAINNET}"), config, journal, io.StringIO()) == 0
        assert journal.cursor("deposits:iota") == f"5000@{MAINNET}"
    finally:
        journal.close()
