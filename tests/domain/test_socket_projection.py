"""What the API and the pages are shown of a socket (payg/domain/socket.py projection)."""

from __future__ import annotations

import pytest

from payg.domain.socket import SocketState, projection


@pytest.mark.parametrize("mark, balance, shown", [
    (None, 5, False),   # not cut
    (0, 0, False),      # never paid: off for lack of credit, and the balance says so already
    (-3, -3, False),    # in debt
    (1, 1, True),       # cut with part of a token kept: off although the balance is positive
    (2, 1, True),       # usage billed after the cut lowered the balance, still above zero
])
def test_credit_exhausted_is_a_cut_with_part_of_a_token_kept(mark, balance, shown):
    s = SocketState("kitchen", "Kitchen")
    s.exhausted_at_balance = mark

    state = projection(s, balance, 1, now=100.0, grace_s=10.0)

    assert state["credit_exhausted"] is shown
    assert state["balance"] == balance
