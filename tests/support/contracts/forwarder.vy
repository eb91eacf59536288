# pragma version ~=0.4.3
"""
@title payg test forwarder
@notice Sends the ether it is paid on to a receiver in an internal call, the way a Safe wallet
        or an exchange's batch withdrawal does: the transaction's `to` is this contract, not the receiver.
"""


@external
@payable
def forward(receiver: address):
    send(receiver, msg.value)
