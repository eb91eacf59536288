"""Ledger backends: mock (in-process), Ethereum (ledgers/ethereum/) and IOTA (ledgers/iota/).

`open_deposit_source` and `open_trade` make the configured backend's objects from their settings;
the composition root (app.py) calls them. Neither contacts a node: a controller starts with its
node down. A backend's packages are imported only when it is configured.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from payg.adapters.secrets import read_secret
from payg.domain.settings import Config
from payg.errors import ConfigError
from payg.ports import Clock, DepositSource, PeerLink

Accounts = Callable[[], dict[str, int]]  # each socket's derivation index, assigned once (the journal keeps them)


def mock_ledger_path(config: Config) -> Path:
    return config.ledger.mock.path or config.controller.data_dir / "mock-ledger.sqlite"


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
    if lc.backend == "mock":
        from ledgers.mock import MockLedger

        return MockLedger(mock_ledger_path(config), clock, [s.id for s in config.sockets],
                          finality_s=lc.mock.finality_s)
    try:
        if lc.backend == "ethereum":
            from ledgers.ethereum import EthereumLedger
        else:
            from ledgers.iota import IotaLedger
    except ImportError as exc:
        raise ConfigError(file, "ledger.backend", f"the Python packages of the {lc.backend} backend (pip install "
                          f"'payg[{lc.backend}]'; {exc})") from None
    c = lc.ethereum if lc.backend == "ethereum" else lc.iota
    mnemonic = read_secret(c.mnemonic, file) if c.mnemonic is not None else None  # None: Ethereum watch-only
    try:
        if lc.backend == "ethereum":
            return EthereumLedger.connect(c.rpc_url, timeout_s=c.request_timeout_s, chain_id=c.chain_id,
                                          mnemonic=mnemonic, xpub=c.xpub, accounts=accounts(),
                                          confirmations=c.confirmations,
                                          token=c.token, token_value=c.token_value, start_block=c.start_block,
                                          max_blocks_per_poll=c.max_blocks_per_poll,
                                          log_chunk_blocks=c.log_chunk_blocks, check_balances=c.check_balances)
        return IotaLedger(c.graphql_url, mnemonic=mnemonic, accounts=accounts(), token_value=c.token_value,
                          start_checkpoint=c.start_checkpoint, request_timeout_s=c.request_timeout_s,
                          page_size=c.transactions_per_page)
    except ValueError as exc:  # the ledger's own checks (a mnemonic that is not BIP-39, ...); never echo secrets
        raise ConfigError(file, f"ledger ({lc.backend})", f"settings the backend accepts: {exc}") from None


def open_trade(config: Config, accounts: Accounts, clock: Clock, peer_link: PeerLink,
               made: Callable[[str, Callable[[], None]], None]):
    """The configured market and channel backend (PeerTrade and PaymentChannel in one object), or None when this
    ledger has no market configured; `made(name, close)` is told of everything that must be closed."""
    lc, tc = config.ledger, config.trade
    if lc.backend == "mock":
        from ledgers.mock import MockTrade

        trade = MockTrade(mock_ledger_path(config), clock, [s.id for s in config.sockets],
                          capacity_wh=tc.capacity_wh, tax_bps=tc.tax_bps, owner_socket=tc.owner)
    elif lc.backend == "ethereum":
        if not (tc.market_contract and tc.channels_contract):
            return None
        from ledgers.ethereum import EthereumTrade

        c = lc.ethereum
        if c.mnemonic is None:
            raise ConfigError(str(config.path), "ledger.xpub", "a mnemonic (mnemonic_env or mnemonic_file) when"
                              " [trade] names contracts: trade signs with the trade keys, which an xpub cannot"
                              " give; remove [trade]'s market_contract and channels_contract to run watch-only")
        trade = EthereumTrade.connect(c.rpc_url, timeout_s=c.request_timeout_s, chain_id=c.chain_id,
                                      mnemonic=read_secret(c.mnemonic, str(config.path)), accounts=accounts(),
                                      market=tc.market_contract, channels=tc.channels_contract,
                                      voucher_cache_s=tc.voucher_cache_s)
    else:
        from ledgers.iota import IotaTrade, IotaWallet

        c = lc.iota
        wallet = IotaWallet(c.graphql_url, mnemonic=read_secret(c.mnemonic, str(config.path)),
                            request_timeout_s=c.request_timeout_s)
        made("IOTA wallet", wallet.close)
        trade = IotaTrade(wallet, accounts=accounts(), store_path=config.controller.data_dir / "iota-trade.sqlite",
                          clock=clock, market_url=tc.market_url, peer_link=peer_link)
        if tc.market_url is None and tc.owner is not None:
            trade.create_market(tc.owner, tc.capacity_wh, tc.tax_bps)
    made("trade", trade.shutdown)
    return trade
