"""The Ethereum backend (any EVM chain over JSON-RPC, web3.py 8): deposits (EthereumLedger), the market and
payment channels through two Vyper contracts (EthereumTrade), and their deployment."""

from ledgers.ethereum.abi import CHANNELS_ABI, MARKET_ABI, REVERTS, SECP256K1_N, voucher_typed_data
from ledgers.ethereum.deploy import Deployment, deploy_as_owner, deploy_contracts
from ledgers.ethereum.deposits import EthereumLedger
from ledgers.ethereum.keys import derive_accounts, derive_addresses, derive_trade_keys
from ledgers.ethereum.node import WrongChain
from ledgers.ethereum.trade import EthereumTrade

__all__ = ["CHANNELS_ABI", "MARKET_ABI", "REVERTS", "SECP256K1_N", "Deployment", "EthereumLedger", "EthereumTrade",
           "WrongChain", "deploy_as_owner", "deploy_contracts", "derive_accounts", "derive_addresses",
           "derive_trade_keys", "voucher_typed_data"]
