"""Test beds for the peer-trade and payment-channel conformance suite (tests/test_trade_conformance.py).

A bed is one ledger with a market on it and the keys of a set of sockets, each of
which is a trading party. Every bed has this shape:

    name: str                       "mock", "ethereum", "iota"
    trade: PeerTrade                acting for any of SOCKETS
    channels: PaymentChannel        acting for any of SOCKETS
    price: int                      a sensible minimum price per Wh in ledger units, a multiple of 100
    fund(socket_id, amount)         give the socket's trade party `amount` spendable ledger units (final on return)
    funds(party) -> int             what the party could spend or withdraw: its balance plus what the market
                                    or a channel owes it, with every fee it paid added back, so that
                                    "nothing moved" is an equality even on ledgers with gas
    travel_to(t)                    the next operation happens at ledger time t (or t + 1 on chains whose
                                    blocks must tick); now() reads t (or t + 1) afterwards
    other_domain() -> PaymentChannel  the same keys on another chain/contract/network (for WrongDomain)
    close()

make_bed(tmp_path, *, capacity_wh, tax_bps) builds one with a fresh market whose owner is socket "owner".
No roles are granted except the owner's; tests grant them through `trade.grant`.
"""

from __future__ import annotations

SOCKETS = ("owner", "reg", "reg2", "prod", "prod2", "cons", "cons2", "out")
