"""TradePart: what each part of an IotaTrade (the market host, the market client, the channels) works with."""

from __future__ import annotations

from ledgers.iota.envelope import Envelopes, Parties, Wallet
from ledgers.iota.peers import Peers
from ledgers.iota.store import TradeStore
from payg.ports import Clock


class TradePart:
    def __init__(self, *, wallet: Wallet, parties: Parties, envelopes: Envelopes, peers: Peers, store: TradeStore,
                 clock: Clock):
        self.wallet = wallet
        self.parties = parties
        self.envelopes = envelopes
        self.peers = peers
        self.store = store
        self.clock = clock

    def now(self) -> int:
        """This controller's clock, in whole unix seconds: what prices, expiries and messages are judged by."""
        return int(self.clock.now())
