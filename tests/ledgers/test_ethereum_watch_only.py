"""A watch-only Ethereum controller ([ledger] xpub, no mnemonic on the device) credits exactly what the
mnemonic's controller credits: the same addresses, the same deposits and cursor, on the real in-process EVM.
And what it cannot do: trade (which signs) is refused with a message that says why."""

from __future__ import annotations

import pytest

pytest.importorskip("coincurve")
pytest.importorskip("eth_tester")

from eth_account.hdaccount import seed_from_mnemonic  # noqa: E402

from ledgers import open_deposit_source, open_trade  # noqa: E402
from ledgers.ethereum.bip32 import account_xpub  # noqa: E402
from payg.adapters.clocks import SystemClock  # noqa: E402
from payg.domain.settings import EthereumLedgerConfig  # noqa: E402
from payg.errors import ConfigError  # noqa: E402
from tests.support.configs import load_text  # noqa: E402
from tests.support.ledger_beds_ethereum import TEST_MNEMONIC, EthereumBed  # noqa: E402

XPUB = account_xpub(seed_from_mnemonic(TEST_MNEMONIC, "")).serialize()
ACCOUNTS = {f"flat{i}": i for i in range(12)} | {"far": 70_000}


@pytest.fixture(params=[False, True], ids=["ether", "erc20"])
def bed(request):
    bed = EthereumBed(erc20=request.param)
    yield bed
    bed.close()


def test_watch_only_credits_exactly_what_the_mnemonic_credits(bed):
    with_mnemonic = bed.open(ACCOUNTS)
    watch_only = bed.open(ACCOUNTS, mnemonic=None, xpub=XPUB)
    assert watch_only.addresses() == with_mnemonic.addresses()
    assert [watch_only.payment_uri(s, 5) for s in ACCOUNTS] == [with_mnemonic.payment_uri(s, 5) for s in ACCOUNTS]
    for i, socket_id in enumerate(ACCOUNTS):
        bed.pay(with_mnemonic.address_for(socket_id), (i + 1) * bed.units_per_token)
    bed.pay_many([(with_mnemonic.address_for("far"), 7 * bed.units_per_token),
                  (with_mnemonic.address_for("flat0"), 3 * bed.units_per_token)])
    bed.finalize()
    credited, cursor = with_mnemonic.deposits_since(None)
    assert sorted(d.socket_id for d in credited) == sorted([*ACCOUNTS, "far", "flat0"])  # the bed really paid
    assert watch_only.deposits_since(None) == (credited, cursor)
    bed.pay(with_mnemonic.address_for("flat3"), bed.units_per_token)
    bed.finalize()
    assert watch_only.deposits_since(cursor) == with_mnemonic.deposits_since(cursor)


def test_exactly_one_of_mnemonic_or_xpub(bed):
    with pytest.raises(ValueError, match="exactly one"):
        bed.open(ACCOUNTS, xpub=XPUB)
    with pytest.raises(ValueError, match="exactly one"):
        bed.open(ACCOUNTS, mnemonic=None)


WATCH_ONLY = """
[controller]
data_dir = "var"
[ledger]
backend = "ethereum"
rpc_url = "http://127.0.0.1:8545"
chain_id = 1
xpub = "{xpub}"
[[sockets]]
id = "kitchen"
meter = {{ kind = "simulated", load_w = 800 }}
relay = {{ kind = "simulated" }}
"""


def test_a_configured_watch_only_controller_opens_without_any_secret(tmp_path, monkeypatch):
    monkeypatch.delenv("M", raising=False)
    config = load_text(tmp_path, WATCH_ONLY.format(xpub=XPUB))
    lc = config.ledger
    assert isinstance(lc, EthereumLedgerConfig) and lc.mnemonic is None and lc.xpub == XPUB
    ledger = open_deposit_source(config, lambda: {"kitchen": 0}, SystemClock())
    try:
        assert ledger.address_for("kitchen") == "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
    finally:
        ledger.close()


def test_a_malformed_xpub_is_a_config_error_that_says_what_is_wrong(tmp_path):
    typo = XPUB[:30] + ("a" if XPUB[30] != "a" else "b") + XPUB[31:]
    config = load_text(tmp_path, WATCH_ONLY.format(xpub=typo))
    with pytest.raises(ConfigError, match="checksum"):
        open_deposit_source(config, lambda: {"kitchen": 0}, SystemClock())


@pytest.mark.parametrize("extra, expected", [
    ('mnemonic_env = "M"\n', "not both"),
    ("", "PRIVATE"),
])
def test_the_config_refuses_both_secrets_and_a_private_key(tmp_path, extra, expected):
    xpub = XPUB if extra else "xprv9s21ZrQH143K3QTDL4LXw2F7HEK3wJUD2nW2nRk4stbPy6cq3jPPqjiChkVvvNKmPGJxWUtg6Ln"
    with pytest.raises(ConfigError, match=expected) as err:
        load_text(tmp_path, WATCH_ONLY.format(xpub=xpub).replace("chain_id = 1\n", "chain_id = 1\n" + extra))
    assert err.value.key == "ledger.xpub"
    assert "xprv9s21ZrQH143K3QTDL4LXw2F7HEK3wJUD2nW2nRk4stbPy6cq3jPPqjiChkVvvNKmPGJxWUtg6Ln" not in str(err.value)


def test_watch_only_with_trade_contracts_is_refused_clearly(tmp_path):
    text = WATCH_ONLY.format(xpub=XPUB) + ('[trade]\nmarket_contract = "0x' + "11" * 20 + '"\nchannels_contract = "0x'
                                           + "22" * 20 + '"\n')
    config = load_text(tmp_path, text)
    with pytest.raises(ConfigError, match="trade keys") as err:
        open_trade(config, lambda: {"kitchen": 0}, SystemClock(), None, lambda name, close: None)
    assert err.value.key == "ledger.xpub"


class _XpubWiring:
    """What `payg xpub` asks of its Wiring: app.py's CliWiring hands it to payg/wiring/xpub.py the same way."""

    @staticmethod
    def account_xpub(ref):
        from payg.wiring.xpub import account_xpub as from_mnemonic

        return from_mnemonic(ref)


def test_payg_xpub_prints_the_xpub_a_watch_only_controller_needs(tmp_path, monkeypatch, capsys):
    from payg.cli import main

    monkeypatch.setenv("PAYG_TEST_PHRASE", TEST_MNEMONIC)
    assert main(["xpub", "--mnemonic-env", "PAYG_TEST_PHRASE"], _XpubWiring()) == 0
    assert capsys.readouterr().out.strip() == XPUB
    phrase = tmp_path / "phrase"
    phrase.write_text(TEST_MNEMONIC + "\n")
    phrase.chmod(0o644)
    assert main(["xpub", "--mnemonic-file", str(phrase)], _XpubWiring()) == 2  # readable by others: refused
    assert "chmod 600" in capsys.readouterr().err
    phrase.chmod(0o600)
    assert main(["xpub", "--mnemonic-file", str(phrase)], _XpubWiring()) == 0
    assert capsys.readouterr().out.strip() == XPUB


def test_payg_xpub_never_echoes_a_bad_phrase(monkeypatch, capsys):
    from payg.cli import main

    monkeypatch.setenv("PAYG_TEST_PHRASE", "zebra " * 11 + "secretword")
    assert main(["xpub", "--mnemonic-env", "PAYG_TEST_PHRASE"], _XpubWiring()) == 2
    captured = capsys.readouterr()
    assert "BIP-39" in captured.err and "secretword" not in captured.err + captured.out
