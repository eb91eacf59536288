"""The mock ledger: deposits (MockLedger) and the market with its payment channels (MockTrade) in one
SQLite file, for running and testing without keys or a network."""

from ledgers.mock.ledger import MockLedger, mock_address
from ledgers.mock.trade import MockTrade, mock_party

__all__ = ["MockLedger", "MockTrade", "mock_address", "mock_party"]
