"""The contracts' interface: what EthereumTrade calls in market.vy and channels.vy (checked against the
compiled ABI by the tests), the codes they store, their revert strings and the EIP-712 voucher they verify."""

from __future__ import annotations

from payg.domain.market import CLOSED, CONSUMER, NO_ROLE, OPEN, PRODUCER, RECLAIMED, REGULATOR
from payg.errors import (
    AboveEscrow,
    AdvertExpired,
    AdvertNotExpired,
    BadSignature,
    CapacityExceeded,
    ChannelClosed,
    ChannelExpired,
    ChannelNotExpired,
    ExpiryNotExtended,
    InsufficientFunds,
    InvalidAmount,
    NotAuthorised,
    NotEnoughEnergy,
    PriceAboveLimit,
    RoleConflict,
    TradeRefused,
    UnknownAdvert,
    UnknownChannel,
)

ROLE_CODES = {REGULATOR: 1, PRODUCER: 2, CONSUMER: 3}
ROLE_NAMES = {0: NO_ROLE, **{code: name for name, code in ROLE_CODES.items()}}
CHANNEL_STATES = {1: OPEN, 2: CLOSED, 3: RECLAIMED}
MAX_SWEEP = 32  # the market's limit on expired adverts returned by one postAdvert
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
VOUCHER_NAME = "payg channels"
VOUCHER_VERSION = "1"
VOUCHER_TYPES = {
    "EIP712Domain": [{"name": "name", "type": "string"}, {"name": "version", "type": "string"},
                     {"name": "chainId", "type": "uint256"}, {"name": "verifyingContract", "type": "address"}],
    "Voucher": [{"name": "channelId", "type": "uint256"}, {"name": "amount", "type": "uint256"}],
}

# The contracts' revert strings and the error each one means.
REVERTS: dict[str, type[Exception]] = {
    "not authorised": NotAuthorised,
    "role conflict": RoleConflict,
    "no role": RoleConflict,
    "invalid role": NotAuthorised,
    "invalid party": ValueError,
    "invalid capacity": ValueError,  # constructor
    "invalid tax": ValueError,       # constructor
    "invalid amount": InvalidAmount,
    "invalid expiry": InvalidAmount,
    "invalid recipient": TradeRefused,
    "capacity exceeded": CapacityExceeded,
    "unknown advert": UnknownAdvert,
    "advert expired": AdvertExpired,
    "advert not expired": AdvertNotExpired,
    "not enough energy": NotEnoughEnergy,
    "price above limit": PriceAboveLimit,
    "insufficient payment": InsufficientFunds,
    "unknown channel": UnknownChannel,
    "channel closed": ChannelClosed,
    "channel expired": ChannelExpired,
    "channel not expired": ChannelNotExpired,
    "expiry not extended": ExpiryNotExtended,
    "above escrow": AboveEscrow,
    "bad signature": BadSignature,
}


def _fields(spec: str) -> list[list[str]]:
    """'uint256 a, address b' as [['uint256', 'a'], ['address', 'b']]."""
    return [part.split() for part in spec.split(",") if part.strip()]


def _params(spec: str) -> list[dict]:
    """'uint256 a, address b' (or bare types) as ABI parameters."""
    return [{"name": words[1] if len(words) > 1 else "", "type": words[0]} for words in _fields(spec)]


def _fn(name: str, inputs: str, outputs: str = "", mutability: str = "nonpayable") -> dict:
    return {"type": "function", "name": name, "inputs": _params(inputs), "outputs": _params(outputs),
            "stateMutability": mutability}


def _event(name: str, fields: str) -> dict:
    """Fields as 'uint256 indexed a, address b'."""
    inputs = [{"name": words[-1], "type": words[0], "indexed": "indexed" in words} for words in _fields(fields)]
    return {"type": "event", "name": name, "inputs": inputs, "anonymous": False}


MARKET_ABI = [
    _fn("grant", "address party, uint256 role"),
    _fn("revoke", "address party"),
    _fn("postAdvert", "uint256 energy_wh, uint256 min_price_per_wh, uint256[] sweep", "uint256"),
    _fn("expire", "uint256 advert_id", "uint256"),
    _fn("buy", "uint256 advert_id, uint256 energy_wh, uint256 max_price_per_wh", "", "payable"),
    _fn("withdraw", "", "uint256"),
    _fn("owner", "", "address", "view"),
    _fn("CAPACITY_WH", "", "uint256", "view"),
    _fn("TAX_BPS", "", "uint256", "view"),
    _fn("DEPLOYED_BLOCK", "", "uint256", "view"),
    _fn("roleOf", "address party", "uint256", "view"),
    _fn("admittedBy", "address party", "address", "view"),
    _fn("advert", "uint256 advert_id", "address, uint256, uint256, uint256, uint256", "view"),
    _fn("lastAdvertId", "", "uint256", "view"),
    _fn("advertisedWh", "", "uint256", "view"),
    _fn("owed", "address party", "uint256", "view"),
    _event("AdvertPosted", "uint256 indexed advert_id, address indexed producer, uint256 energy_wh,"
                           " uint256 min_price_per_wh, uint256 posted_at"),
    _event("Bought", "uint256 indexed advert_id, address indexed consumer, address indexed producer,"
                     " uint256 energy_wh, uint256 price_per_wh, uint256 producer_amount, uint256 tax_amount,"
                     " address regulator"),
    _event("AdvertReturned", "uint256 indexed advert_id, uint256 energy_wh"),
]

CHANNELS_ABI = [
    _fn("open", "address recipient, uint256 expiry", "uint256", "payable"),
    _fn("topUp", "uint256 channel_id, address recipient, uint256 expiry", "", "payable"),
    _fn("close", "uint256 channel_id, address sender, uint256 amount, bytes signature"),
    _fn("reclaim", "uint256 channel_id, address recipient"),
    _fn("withdraw", "", "uint256"),
    _fn("channel", "uint256 channel_id, address sender, address recipient",
        "uint256, uint256, uint256, uint256", "view"),
    _fn("lastChannelId", "", "uint256", "view"),
    _fn("DEPLOYED_BLOCK", "", "uint256", "view"),
    _fn("DOMAIN_SEPARATOR", "", "bytes32", "view"),
    _fn("owed", "address party", "uint256", "view"),
    _fn("voucherSigner", "uint256 channel_id, uint256 amount, bytes signature", "address", "view"),
    _event("ChannelOpened", "uint256 indexed channel_id, address indexed sender, address indexed recipient,"
                            " uint256 escrow, uint256 expiry"),
    _event("ChannelClosed", "uint256 indexed channel_id, uint256 paid, uint256 refunded"),
    _event("ChannelReclaimed", "uint256 indexed channel_id, uint256 refunded"),
]


def voucher_typed_data(chain_id: int, channels: str, channel_id: int, amount: int) -> dict:
    """The EIP-712 message a voucher signs (domain: name, version, chain id, the channel contract)."""
    return {"types": VOUCHER_TYPES, "primaryType": "Voucher",
            "domain": {"name": VOUCHER_NAME, "version": VOUCHER_VERSION, "chainId": chain_id,
                       "verifyingContract": channels},
            "message": {"channelId": channel_id, "amount": amount}}


def refusal(reason: str) -> Exception | None:
    """The payg error a contract's revert reason means, or None for a reason the contracts do not give."""
    for text, error in REVERTS.items():
        if reason == text or reason.endswith(f": {text}") or reason.endswith(f"'{text}'"):
            return error(f"refused by the contract: {text}")
    for text, error in REVERTS.items():
        if text in reason:
            return error(f"refused by the contract: {text}")
    return None
