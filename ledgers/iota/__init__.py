"""The IOTA backend: deposits (IotaLedger), keys and transfers (IotaWallet), the market and payment channels
(IotaTrade), over iota-sdk 3.x GraphQL."""

from ledgers.iota.deposits import IotaLedger, derivation_path
from ledgers.iota.sdk import normalise_address, normalise_coin_type
from ledgers.iota.trade import IotaTrade
from ledgers.iota.transfers import TransactionNotFound, TransferFailed, gas_budget
from ledgers.iota.wallet import IotaWallet

__all__ = ["IotaLedger", "IotaTrade", "IotaWallet", "TransactionNotFound", "TransferFailed", "derivation_path",
           "gas_budget", "normalise_address", "normalise_coin_type"]
