# pragma version ~=0.4.3
"""
@title payg test delegate that refuses value
@notice Code an account can delegate to (EIP-7702): every call to the account reverts,
        so a value transfer to it is included in a block with status 0.
"""


@external
@payable
def __default__():
    raise "this account refuses payments"
