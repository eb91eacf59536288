"""The `[ledger]` table, one class per backend (a tagged union), each key defined once on its field."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeAlias

from payg.domain.config_keys import SecretRef, setting

MNEMONIC = ("where the wallet mnemonic is read from: an environment variable's name, or a file readable by its "
            "owner only (`chmod 600`); never the TOML file")
URL = "`http://` or `https://` URL"


@dataclass(frozen=True)
class MockLedgerConfig:
    finality_s: float = setting(0.0, "seconds after a payment until it is final and credited, to rehearse real "
                                "ledgers' delays", ge=0)
    path: Path | None = setting(None, "the mock ledger's file; controllers on one machine trade by sharing one (see "
                                "[Mock](ledgers/mock.md))", kind="string", shown="`mock-ledger.sqlite` in `data_dir`")
    backend: Literal["mock"] = field(default="mock", init=False)


@dataclass(frozen=True)
class EthereumLedgerConfig:
    rpc_url: str = setting(doc="a JSON-RPC node of the chain; a node answering another chain id is refused",
                           kind=URL, by_hand=True)
    chain_id: int = setting(doc="the chain (1 Ethereum, 11155111 Sepolia, 100 Gnosis, ...); also goes into the "
                            "payment URI", ge=1)
    mnemonic: SecretRef | None = setting(doc=MNEMONIC, kind="string", shown="one of these or `xpub`", by_hand=True)
    confirmations: int = setting(12, "a payment is credited once this many blocks, counting its own, are on the "
                                 "chain", ge=1, le=10_000)
    token: str | None = setting(None, "credit transfers of this token instead of the chain's native coin",
                                kind="ERC-20 address", by_hand=True)
    token_value: int = setting(1, "wei (or the token's base units) per payg token",
                               kind="positive integer (or a string of digits)", by_hand=True)
    start_block: int | None = setting(None, "on the very first start, scan from this block", ge=0,
                                      shown="the latest final block")
    request_timeout_s: float = setting(10.0, "per request to the node", gt=0)
    max_blocks_per_poll: int = setting(500, "blocks scanned per deposit poll when catching up", ge=1, le=100_000)
    log_chunk_blocks: int = setting(2000, "blocks per `eth_getLogs` request (halved automatically when the node "
                                    "refuses a range)", ge=1, le=1_000_000)
    xpub: str | None = setting(None, "watch-only: the account's extended public key (m/44'/60'/0'), instead of the "
                               "mnemonic; the same top-up addresses (m/44'/60'/0'/0/&lt;index&gt;), no key that can "
                               "spend (see [Watch-only](ledgers/ethereum.md#watch-only))",
                               kind="`xpub...` / `tpub...`", by_hand=True)
    check_balances: bool = setting(True, "ether mode: each poll that reads new blocks checks every socket address's "
                                   "balance against the deposits and what the address sent; ether that no "
                                   "transaction explains (moved by a contract) raises an `unexplained funds` alarm "
                                   "in the landlord view, never a credit. One batched JSON-RPC request per poll (see "
                                   "[Ether moved by a contract](ledgers/ethereum.md#ether-moved-by-a-contract))")
    backend: Literal["ethereum"] = field(default="ethereum", init=False)


@dataclass(frozen=True)
class IotaLedgerConfig:
    graphql_url: str = setting(doc="an IOTA GraphQL service (`https://graphql.mainnet.iota.cafe`, "
                               "`https://graphql.testnet.iota.cafe`, or your own node's)", kind=URL, by_hand=True)
    mnemonic: SecretRef = setting(doc="as for Ethereum", kind="string", shown="one is required", by_hand=True)
    token_value: int = setting(1_000_000, "nanos per payg token (1 IOTA = 10⁹ nanos)", kind="positive integer",
                               by_hand=True)
    start_checkpoint: int | None = setting(None, "on the very first start, scan from after this checkpoint", ge=0,
                                           shown="the latest checkpoint")
    request_timeout_s: float = setting(10.0, "per request to the GraphQL service", gt=0)
    transactions_per_page: int = setting(50, "transactions (and balance changes) per GraphQL page of a deposit "
                                         "scan; at most the service's maxPageSize (50 by default, 10 on a service "
                                         "run with the project's Helm chart)", ge=1, le=50)
    backend: Literal["iota"] = field(default="iota", init=False)


LedgerConfig: TypeAlias = MockLedgerConfig | EthereumLedgerConfig | IotaLedgerConfig  # [ledger], by its backend
