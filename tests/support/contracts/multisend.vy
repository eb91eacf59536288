# pragma version ~=0.4.3
"""
@title payg test multisend
@notice Pays several receivers from the caller's token allowance in one transaction,
        the way multisend contracts do: one transaction, several Transfer events.
"""
from ethereum.ercs import IERC20


@external
def send(token: IERC20, receivers: DynArray[address, 8], amounts: DynArray[uint256, 8]):
    assert len(receivers) == len(amounts), "one amount per receiver"
    for i: uint256 in range(len(receivers), bound=8):
        assert extcall token.transferFrom(msg.sender, receivers[i], amounts[i]), "transferFrom failed"
