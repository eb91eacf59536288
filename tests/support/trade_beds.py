"""Test beds for the peer-trade and payment-channel conformance suite (tests/ledgers/test_trade_conformance.py).

A bed is one ledger with a market on it and the keys of a set of sockets, each of
which is a trading party. Every bed has this shape:

    name: str                       "mock", "ethereum", "iota"
    trade: PeerTrade                acting for any of SOCKETS
    channels: PaymentChannel        acting for any of SOCKETS
    price: int                      a minimum price per Wh in ledger units, a multiple of 100, such that
                                    100 Wh at that price cost more than fee_allowance
    fee_allowance: int              what fund() adds on top of `amount` to pay fees (0 without fees)
    fund(socket_id, amount)         give the socket's trade party `amount` spendable ledger units plus
                                    fee_allowance (final on return)
    funds(party) -> int             what the party could spend or withdraw: its balance plus what the market
                                    or a channel owes it, with every fee it paid added back, so that
                                    "nothing moved" is an equality even on ledgers with gas
    travel_to(t)                    the next operation happens at ledger time t (or t + 1 on chains whose
                                    blocks must tick); now() reads t (or t + 1) afterwards
    other_domain() -> PaymentChannel  the same keys on another chain/contract/network (for WrongDomain)
    close()                         the bed's own teardown (trade objects release resources with shutdown(),
                                    because close(as_socket, channel_id, voucher) is the channel operation)

make_bed(tmp_path, *, capacity_wh, tax_bps) builds one with a fresh market whose owner is socket "owner".
No roles are granted except the owner's; tests grant them through `trade.grant`.
"""

from __future__ import annotations

SOCKETS = ("owner", "reg", "reg2", "prod", "prod2", "cons", "cons2", "out")


class MockTradeBed:
    name = "mock"
    price = 100
    fee_allowance = 0

    def __init__(self, tmp_path, *, capacity_wh: int, tax_bps: int, market_file: str = "mock-ledger.sqlite"):
        from ledgers.mock import MockTrade
        from payg.adapters.clocks import ManualClock

        self.tmp_path = tmp_path
        self.clock = ManualClock(1_800_000_000)
        self.trade = MockTrade(tmp_path / market_file, self.clock, SOCKETS, capacity_wh=capacity_wh,
                               tax_bps=tax_bps, owner_socket="owner")
        self.channels = self.trade
        self._others = []

    def fund(self, socket_id: str, amount: int) -> None:
        self.trade.fund(self.trade.party_for(socket_id), amount)

    def funds(self, party: str) -> int:
        return self.trade.balance(party)

    def travel_to(self, t: int) -> None:
        self.clock.set(t)

    def other_domain(self):
        from ledgers.mock import MockTrade
        other = MockTrade(self.tmp_path / f"other-{len(self._others)}.sqlite", self.clock, SOCKETS,
                          owner_socket="owner")
        self._others.append(other)
        return other

    def close(self) -> None:
        self.trade.shutdown()
        for other in self._others:
            other.shutdown()


def make_mock_bed(tmp_path, *, capacity_wh: int, tax_bps: int) -> MockTradeBed:
    return MockTradeBed(tmp_path, capacity_wh=capacity_wh, tax_bps=tax_bps)
