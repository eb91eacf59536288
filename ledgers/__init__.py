"""Ledger backends: mock (in-process), Ethereum (ledgers/ethereum/) and IOTA (ledgers/iota/).

`open_deposit_source` and `open_trade` make the configured backend's objects from their settings;
the composition root (app.py) calls them. Neither contacts a node: a controller starts with its
node down. A backend's packages are imported only when it is configured.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from payg.adapters.secrets import read_secret
from payg.domain.settings import Config, EthereumLedgerConfig, MockLedgerConfig
from payg.errors import ConfigError
from payg.ports import Clock, DepositSource, PeerLink

if TYPE_CHECKING:
    from ledgers.ethereum import EthereumTrade
    from ledgers.iota import IotaTrade
    from ledgers.mock import MockTrade

Accounts = Callable[[], dict[str, int]]  # each socket's derivation index, assigned once (the journal keeps them)


def mock_ledger_path(config: Config) -> Path:
    """The mock ledger's file: [ledger] path, else one in the data directory (the mock's trade shares it)."""
    lc = config.ledger
    own = lc.path if isinstance(lc, MockLedgerConfig) else None
    return own or config.controller.data_dir / "mock-ledger.sqlite"


def fund_mock_trade_party(config: Config, clock: Clock, socket_id: str, amount: int) -> tuple[str, int]:
    """Mint `amount` on the mock ledger into a socket's trade party: (the party, its balance)."""
    from ledgers.mock import MockTrade

    config.controller.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    tc = config.trade
    trade = MockTrade(mock_ledger_path(config), clock, [s.id for s in config.sockets], capacity_wh=tc.capacity_wh,
                      tax_bps=tc.tax_bps, owner_socket=tc.owner)
    try:
        party = trade.party_for(socket_id)
        trade.fund(party, amount)
        return party, trade.balance(party)
    finally:
        trade.shutdown()


def open_deposit_source(config: Config, accounts: Accounts, clock: Clock) -> DepositSource:
    lc = config.ledger
    file = str(config.path)
    if isinstance(lc, MockLedgerConfig):
        from ledgers.mock import MockLedger

        return MockLedger(mock_ledger_path(config), clock, [s.id for s in config.sockets], finality_s=lc.finality_s)
    try:
        if isinstance(lc, EthereumLedgerConfig):
            from ledgers.ethereum import EthereumLedger
        else:
            from ledgers.iota import IotaLedger
    except ImportError as exc:
        raise ConfigError(file, "ledger.backend", f"the Python packages of the {lc.backend} backend (pip install "
                          f"'payg[{lc.backend}]'; {exc})") from None
    mnemonic = read_secret(lc.mnemonic, file) if lc.mnemonic is not None else None  # None: Ethereum watch-only
    try:
        if isinstance(lc, EthereumLedgerConfig):
            return EthereumLedger.connect(lc.rpc_url, timeout_s=lc.request_timeout_s, chain_id=lc.chain_id,
                                          mnemonic=mnemonic, xpub=lc.xpub, accounts=accounts(),
                                          confirmations=lc.confirmations,
                                          token=lc.token, token_value=lc.token_value, start_block=lc.start_block,
                                          max_blocks_per_poll=lc.max_blocks_per_poll,
                                          log_chunk_blocks=lc.log_chunk_blocks, check_balances=lc.check_balances)
        assert mnemonic is not None  # an IOTA config always names one
        return IotaLedger(lc.graphql_url, mnemonic=mnemonic, accounts=accounts(), token_value=lc.token_value,
                          start_checkpoint=lc.start_checkpoint, request_timeout_s=lc.request_timeout_s,
                          page_size=lc.transactions_per_page)
    except ValueError as exc:  # the ledger's own checks (a mnemonic that is not BIP-39, ...); never echo secrets
        raise ConfigError(file, f"ledger ({lc.backend})", f"settings the backend accepts: {exc}") from None


def open_trade(config: Config, accounts: Accounts, clock: Clock, peer_link: PeerLink,
               made: Callable[[str, Callable[[], None]], None]) -> MockTrade | EthereumTrade | IotaTrade | None:
    """The configured market and channel backend (PeerTrade and PaymentChannel in one object), or None when this
    ledger has no market configured; `made(name, close)` is told of everything that must be closed."""
    lc, tc = config.ledger, config.trade
    trade: MockTrade | EthereumTrade | IotaTrade
    if isinstance(lc, MockLedgerConfig):
        from ledgers.mock import MockTrade

        trade = MockTrade(mock_ledger_path(config), clock, [s.id for s in config.sockets],
                          capacity_wh=tc.capacity_wh, tax_bps=tc.tax_bps, owner_socket=tc.owner)
    elif isinstance(lc, EthereumLedgerConfig):
        if not (tc.market_contract and tc.channels_contract):
            return None
        from ledgers.ethereum import EthereumTrade

        if lc.mnemonic is None:
            raise ConfigError(str(config.path), "ledger.xpub", "a mnemonic (mnemonic_env or mnemonic_file) when"
                              " [trade] names contracts: trade signs with the trade keys, which an xpub cannot"
                              " give; remove [trade]'s market_contract and channels_contract to run watch-only")
        trade = EthereumTrade.connect(lc.rpc_url, timeout_s=lc.request_timeout_s, chain_id=lc.chain_id,
                                      mnemonic=read_secret(lc.mnemonic, str(config.path)), accounts=accounts(),
                                      market=tc.market_contract, channels=tc.channels_contract,
                                      voucher_cache_s=tc.voucher_cache_s)
    else:
        from ledgers.iota import IotaTrade, IotaWallet

        wallet = IotaWallet(lc.graphql_url, mnemonic=read_secret(lc.mnemonic, str(config.path)),
                            request_timeout_s=lc.request_timeout_s)
        made("IOTA wallet", wallet.close)
        iota = IotaTrade(wallet, accounts=accounts(), store_path=config.controller.data_dir / "iota-trade.sqlite",
                         clock=clock, market_url=tc.market_url, peer_link=peer_link)
        if tc.market_url is None and tc.owner is not None:
            iota.create_market(tc.owner, tc.capacity_wh, tc.tax_bps)
        trade = iota
    made("trade", trade.shutdown)
    return trade
