# pragma version ~=0.4.3
# pragma optimize gas
"""
@title payg one-way payment channels
@notice A sender opens a channel with an escrow, a recipient and an expiry, and pays the recipient
        off-chain with EIP-712 vouchers Voucher(uint256 channelId, uint256 amount) signed over this
        contract's domain (name, version, chain id, this address). The amount is cumulative.
        - only the recipient closes, and only before the expiry (block.timestamp < expiry): it
          receives the voucher's amount, the sender gets the rest;
        - only the sender reclaims, and only from the expiry on: the whole escrow comes back;
        - a top-up (sender only, before the expiry) adds to the escrow and may only keep or
          extend the expiry;
        - signatures must be low-s (s <= n/2), v 27 or 28, and recover to the sender (never to the
          zero address); a closed channel stays closed and channel ids are never reused.
        The sender's share on close is sent with the 2300 gas stipend only: if the sender is a
        contract that refuses it (or needs more gas), it is credited to `owed` and the close
        still succeeds; the sender pulls it with withdraw().
@dev One storage slot per channel, keyed by keccak256(abi_encode(id, sender, recipient)): the
     parties are not stored, they are given with each call (and logged by ChannelOpened).
     _ids holds the last channel id plus a marker bit (255), so that it is never zero after deployment.
     Slot: escrow (bits 0-95) | paid to the recipient (96-191) | expiry (192-231) | state (232-239).
"""

OPEN: constant(uint256) = 1
CLOSED: constant(uint256) = 2
RECLAIMED: constant(uint256) = 3

MASK40: constant(uint256) = 2**40 - 1
MASK96: constant(uint256) = 2**96 - 1
MARKER: constant(uint256) = 2**255
# secp256k1 group order / 2: higher s values are the malleated twins of valid signatures.
HALF_N: constant(uint256) = 57896044618658097711785492504343953926418782139537452191302581570759080747168

DOMAIN_TYPEHASH: constant(bytes32) = keccak256(
    "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)")
VOUCHER_TYPEHASH: constant(bytes32) = keccak256("Voucher(uint256 channelId,uint256 amount)")
NAME: constant(String[16]) = "payg channels"
VERSION: constant(String[4]) = "1"

event ChannelOpened:
    channel_id: indexed(uint256)
    sender: indexed(address)
    recipient: indexed(address)
    escrow: uint256
    expiry: uint256

event ChannelToppedUp:
    channel_id: indexed(uint256)
    escrow: uint256
    expiry: uint256

event ChannelClosed:
    channel_id: indexed(uint256)
    paid: uint256
    refunded: uint256

event ChannelReclaimed:
    channel_id: indexed(uint256)
    refunded: uint256

event Withdrawn:
    party: indexed(address)
    amount: uint256

CHAIN_ID: immutable(uint256)
CACHED_DOMAIN_SEPARATOR: immutable(bytes32)
DEPLOYED_BLOCK: public(immutable(uint256))

_ids: uint256
_channels: HashMap[bytes32, uint256]
owed: public(HashMap[address, uint256])


@deploy
def __init__():
    CHAIN_ID = chain.id
    CACHED_DOMAIN_SEPARATOR = self._separator()
    DEPLOYED_BLOCK = block.number
    self._ids = MARKER


@view
@internal
def _separator() -> bytes32:
    return keccak256(abi_encode(DOMAIN_TYPEHASH, keccak256(NAME), keccak256(VERSION), chain.id, self))


@view
@external
def DOMAIN_SEPARATOR() -> bytes32:
    if chain.id == CHAIN_ID:
        return CACHED_DOMAIN_SEPARATOR
    return self._separator()


@pure
@internal
def _key(channel_id: uint256, sender: address, recipient: address) -> bytes32:
    return keccak256(abi_encode(channel_id, sender, recipient))


@view
@internal
def _load(channel_id: uint256, key: bytes32) -> uint256:
    """The open channel's slot, or a revert saying why it cannot be acted on."""
    assert channel_id != 0 and channel_id <= self._ids - MARKER, "unknown channel"
    slot: uint256 = self._channels[key]
    assert slot != 0, "not authorised"
    assert slot >> 232 == OPEN, "channel closed"
    return slot


@external
@payable
def open(recipient: address, expiry: uint256) -> uint256:
    """@notice Escrows msg.value for `recipient` until `expiry` (unix seconds); returns the new channel id."""
    assert msg.value != 0 and msg.value <= MASK96, "invalid amount"
    assert recipient != empty(address) and recipient != msg.sender, "invalid recipient"
    assert expiry > block.timestamp, "channel expired"
    assert expiry <= MASK40, "invalid expiry"
    ids: uint256 = self._ids + 1
    self._ids = ids
    channel_id: uint256 = ids - MARKER
    self._channels[self._key(channel_id, msg.sender, recipient)] = msg.value | (expiry << 192) | (OPEN << 232)
    log ChannelOpened(channel_id=channel_id, sender=msg.sender, recipient=recipient, escrow=msg.value,
                      expiry=expiry)
    return channel_id


@external
@payable
def topUp(channel_id: uint256, recipient: address, expiry: uint256):
    """@notice Sender only, before the expiry: adds msg.value (may be 0); the expiry may only stay or grow."""
    key: bytes32 = self._key(channel_id, msg.sender, recipient)
    slot: uint256 = self._load(channel_id, key)
    current: uint256 = (slot >> 192) & MASK40
    assert block.timestamp < current, "channel expired"
    assert expiry >= current, "expiry not extended"
    assert expiry <= MASK40, "invalid expiry"
    escrow: uint256 = (slot & MASK96) + msg.value
    assert escrow <= MASK96, "invalid amount"
    self._channels[key] = escrow | (expiry << 192) | (OPEN << 232)
    log ChannelToppedUp(channel_id=channel_id, escrow=escrow, expiry=expiry)


@view
@internal
def _signer(channel_id: uint256, amount: uint256, signature: Bytes[65]) -> address:
    """The voucher's signer, or the zero address for a signature that is malformed or malleable."""
    if len(signature) != 65:
        return empty(address)
    r: uint256 = convert(extract32(signature, 0), uint256)
    s: uint256 = convert(extract32(signature, 32), uint256)
    v: uint256 = convert(slice(signature, 64, 1), uint256)
    if s > HALF_N or (v != 27 and v != 28):
        return empty(address)
    separator: bytes32 = CACHED_DOMAIN_SEPARATOR
    if chain.id != CHAIN_ID:
        separator = self._separator()
    digest: bytes32 = keccak256(concat(b"\x19\x01", separator,
                                       keccak256(abi_encode(VOUCHER_TYPEHASH, channel_id, amount))))
    return ecrecover(digest, v, r, s)


@external
@nonreentrant
def close(channel_id: uint256, sender: address, amount: uint256, signature: Bytes[65]):
    """
    @notice Recipient only, before the expiry, with the sender's voucher for `amount` (cumulative):
            pays `amount` to the recipient and the rest of the escrow to the sender.
    """
    key: bytes32 = self._key(channel_id, sender, msg.sender)
    slot: uint256 = self._load(channel_id, key)
    assert block.timestamp < (slot >> 192) & MASK40, "channel expired"
    escrow: uint256 = slot & MASK96
    assert amount <= escrow, "above escrow"
    signer: address = self._signer(channel_id, amount, signature)
    assert signer != empty(address) and signer == sender, "bad signature"
    self._channels[key] = (slot & ~(2**240 - 2**232)) | (amount << 96) | (CLOSED << 232)
    if amount != 0:
        raw_call(msg.sender, b"", value=amount)
    rest: uint256 = escrow - amount
    if rest != 0:
        # The stipend only: a sender contract can neither block the close nor spend the recipient's gas.
        if not raw_call(sender, b"", value=rest, gas=0, revert_on_failure=False):
            self.owed[sender] += rest
    log ChannelClosed(channel_id=channel_id, paid=amount, refunded=rest)


@external
@nonreentrant
def reclaim(channel_id: uint256, recipient: address):
    """@notice Sender only, from the expiry on, if not closed: the whole escrow back to the sender."""
    key: bytes32 = self._key(channel_id, msg.sender, recipient)
    slot: uint256 = self._load(channel_id, key)
    assert block.timestamp >= (slot >> 192) & MASK40, "channel not expired"
    self._channels[key] = (slot & ~(2**240 - 2**232)) | (RECLAIMED << 232)
    escrow: uint256 = slot & MASK96
    raw_call(msg.sender, b"", value=escrow)
    log ChannelReclaimed(channel_id=channel_id, refunded=escrow)


@view
@external
def channel(channel_id: uint256, sender: address, recipient: address) -> (uint256, uint256, uint256, uint256):
    """@notice (state 0 none/1 open/2 closed/3 reclaimed, escrow, paid, expiry) of the channel with these parties."""
    slot: uint256 = self._channels[self._key(channel_id, sender, recipient)]
    return (slot >> 232, slot & MASK96, (slot >> 96) & MASK96, (slot >> 192) & MASK40)


@view
@external
def lastChannelId() -> uint256:
    return self._ids - MARKER


@view
@external
def voucherSigner(channel_id: uint256, amount: uint256, signature: Bytes[65]) -> address:
    """@notice Who signed this voucher on this contract (zero address if malformed or high-s)."""
    return self._signer(channel_id, amount, signature)


@external
@nonreentrant
def withdraw() -> uint256:
    """@notice Pays the caller the refunds it could not take on close; returns the amount (0 if none)."""
    amount: uint256 = self.owed[msg.sender]
    if amount == 0:
        return 0
    self.owed[msg.sender] = 0
    raw_call(msg.sender, b"", value=amount)
    log Withdrawn(party=msg.sender, amount=amount)
    return amount
