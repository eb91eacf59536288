"""A 6-decimal ERC-20 stablecoin in the tariff's currency, credited 1:1 in cents, on the in-process EVM.

The configuration is the one docs/tenants/tariffs.md works through ("A stablecoin in the tariff's currency"), read
by the real loader: `[tariff] currency = "USD"` (the journal counts cents) and `[ledger] token_value = 10_000`
base units per cent. A payment of 12.345678 coins credits 1,234 cents and carries 0.005678 of a coin to the
socket's next deposit, which completes the cent.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from fractions import Fraction

import pytest

pytest.importorskip("eth_tester")

from payg.adapters.clocks import ManualClock  # noqa: E402
from payg.adapters.config import load  # noqa: E402
from payg.adapters.journal import SqliteJournal  # noqa: E402
from payg.domain.ledger_settings import EthereumLedgerConfig  # noqa: E402
from payg.services.deposits import DepositWatcher  # noqa: E402
from tests.support import ROOT  # noqa: E402
from tests.support.ledger_beds_ethereum import EthereumBed  # noqa: E402

HEADING = "## A stablecoin in the tariff's currency"
REST = ('[controller]\ndata_dir = "var"\n\n[[sockets]]\nid = "a"\nmeter = { kind = "simulated", load_w = 800 }\n'
        'relay = { kind = "simulated" }\n')


def documented(tmp_path):
    """The configuration of the docs' section, completed with a controller and a socket."""
    text = (ROOT / "docs" / "tenants" / "tariffs.md").read_text()
    assert HEADING in text, "the tariffs page lost its stablecoin section"
    section = text.split(HEADING, 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```toml\n(.*?)```", section, re.S)
    assert block is not None
    file = tmp_path / "payg.toml"
    file.write_text(block.group(1) + "\n" + REST)
    return load(file)


@pytest.fixture
def coin() -> Iterator[EthereumBed]:
    bed = EthereumBed(erc20=True)  # a test ERC-20 with 6 decimals, as USDC
    yield bed
    bed.close()


def settle(watcher: DepositWatcher, journal: SqliteJournal) -> None:
    """Poll until the ledger's cursor stops moving: every final payment booked."""
    for _ in range(20):
        before = journal.cursor(watcher.cursor_name)
        watcher.poll()
        if journal.cursor(watcher.cursor_name) == before:
            return
    raise AssertionError("the deposit cursor never stopped moving")


def test_a_six_decimal_stablecoin_credits_cents_one_to_one_and_carries_the_rest_to_the_next_deposit(tmp_path, coin):
    config = documented(tmp_path)
    assert isinstance(config.ledger, EthereumLedgerConfig) and config.ledger.token is not None
    assert config.tariff.currency == "USD" and config.tariff.minor == 2
    assert coin.token is not None
    decimals = coin.token.contract.functions.decimals().call()
    assert decimals == 6
    # one coin is one dollar: the coin's base units per cent, from the decimals on both sides
    assert config.ledger.token_value == 10**decimals // 10**config.tariff.minor

    ledger = coin.open({"a": 0}, token_value=config.ledger.token_value)
    journal = SqliteJournal(tmp_path / "journal.sqlite")
    watcher = DepositWatcher(ledger, journal, ManualClock())
    address = ledger.address_for("a")

    def cents_and_rest(base_units: int) -> tuple[int, int]:
        """Whole cents in a payment of coins at face value, and the base units below a cent."""
        dollars = Fraction(base_units, 10**decimals)
        cents = math.floor(dollars * 10**config.tariff.minor)
        return cents, base_units - cents * 10**decimals // 10**config.tariff.minor

    first = 12_345_678                                  # 12.345678 coins
    coin.pay(address, first)
    coin.finalize()
    settle(watcher, journal)
    cents, rest = cents_and_rest(first)
    assert (cents, rest) == (1234, 5678)
    assert journal.balance("a") == cents
    assert journal.deposit_carry(ledger.name, "a") == rest          # 0.005678 of a coin, kept for the next deposit

    second = 10**decimals // 10**config.tariff.minor - rest         # 0.004322: what completes the cent
    coin.pay(address, second)
    coin.finalize()
    settle(watcher, journal)
    assert journal.balance("a") == cents_and_rest(first + second)[0] == cents + 1
    assert journal.deposit_carry(ledger.name, "a") == 0
    deposits = [e for e in journal.all_entries("a") if e.kind == "deposit"]
    assert [e.amount for e in deposits] == [cents, 1]
    assert f"({first} units)" in deposits[0].memo and f"({second} units)" in deposits[1].memo

    # a $5.00 top-up button asks the wallet for 5 coins
    assert f"uint256={5 * 10**decimals}" in ledger.payment_uri("a", 500)
    journal.close()
