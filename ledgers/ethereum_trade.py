"""EthereumTrade: the energy market and the payment channels on an EVM chain, through two contracts.

The rules live in the contracts (ledgers/contracts/market.vy and channels.vy), with the formulas of
payg/trade.py; this class sends the transactions, reads the state back and verifies vouchers
off-chain with the contract's own EIP-712 rules.

Keys. Each socket trades with its own key, derived from the controller's BIP-39 mnemonic at
m/44'/60'/0'/1/<index> (branch 1): never the socket's top-up address m/44'/60'/0'/0/<index>, so trade
money is never mistaken for a tenant's deposit. Unlike EthereumLedger, this class signs: it keeps the
socket keys (not the phrase) in memory.

Transactions. Every operation is checked first with eth_estimateGas, which runs it against the chain's
state without spending anything: a refusal raises the specific payg error (the contracts' revert
strings are mapped to error classes) and no gas is paid. Then it is signed, sent and its receipt
awaited (one block). Should it still revert on chain (the state changed in between), the revert is
replayed with eth_call and mapped the same way; the gas of a reverted transaction is spent.
A node that cannot be reached or answers badly raises LedgerUnavailable (the endpoint is named
without its path, which often carries an API key).

Buys. The buy is paid exactly at the price the advert has when the transaction is expected in a block
(one second after the latest block) and that price is sent as the buyer's limit: if the price steps
up before it is mined, the buy is refused with PriceAboveLimit and nothing moves.

Reading channels. The channel contract stores one slot per channel, keyed by (id, sender, recipient):
the parties of a channel id are read from its ChannelOpened event (eth_getLogs from the contract's
deployment block) and kept in memory.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import requests
from eth_account import Account
from eth_account.messages import encode_typed_data
from web3 import Web3
from web3.exceptions import ContractLogicError, Web3Exception, Web3RPCError
from web3.logs import DISCARD

from ledgers.ethereum import _redacted, _require_int, _scrub, connect_over_http, derive_accounts
from payg.errors import (AboveEscrow, AdvertExpired, AdvertNotExpired, BadSignature, CapacityExceeded,
                         ChannelClosed, ChannelExpired, ChannelNotExpired, ExpiryNotExtended, InsufficientFunds,
                         InvalidAmount, LedgerUnavailable, NotAuthorised, NotEnoughEnergy, PaygError,
                         PriceAboveLimit, RoleConflict, TradeRefused, UnknownAdvert, UnknownChannel, UnknownSocket,
                         WrongChannel, WrongDomain)
from payg.domain.market import (ADVERT_LIFETIME_S, Advert, CLOSED, CONSUMER, Channel, MarketInfo, NO_ROLE, OPEN,
                                OWNER, PRODUCER, Purchase, RECLAIMED, REGULATOR, Voucher, check_capacity, is_expired,
                                positive)

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
_NODE_REFUSES_FUNDS = re.compile(r"insufficient funds|cannot afford|exceeds (the )?balance", re.IGNORECASE)


# -- the contracts' interface (what this class calls; checked against the compiled ABI by the tests) --

def _params(spec: str) -> list[dict]:
    """'uint256 a, address b' (or bare types) as ABI parameters."""
    out = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        words = part.split()
        out.append({"name": words[1] if len(words) > 1 else "", "type": words[0]})
    return out


def _fn(name: str, inputs: str, outputs: str = "", mutability: str = "nonpayable") -> dict:
    return {"type": "function", "name": name, "inputs": _params(inputs), "outputs": _params(outputs),
            "stateMutability": mutability}


def _event(name: str, fields: str) -> dict:
    inputs = []
    for part in filter(None, (p.strip() for p in fields.split(","))):
        words = part.split()
        inputs.append({"name": words[-1], "type": words[0], "indexed": "indexed" in words})
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


def deploy_contracts(w3: Web3, deployer_private_key: bytes | str, *, capacity_wh: int, tax_bps: int,
                     evm_version: str = "prague", gas_limit: int = 3_000_000,
                     priority_fee_wei: int | None = None) -> tuple[str, str]:
    """Compiles and deploys the market (owner: the deployer) and the channel manager; their addresses.

    Needs the `vyper` package. Each deployment waits for its receipt and must succeed.
    """
    from ledgers.contracts import compile_contract  # imports vyper

    _require_int("capacity_wh", capacity_wh, minimum=1)
    _require_int("tax_bps", tax_bps, minimum=0)
    deployer = Account.from_key(deployer_private_key)
    chain_id = w3.eth.chain_id
    addresses = []
    for name, args in (("market", (capacity_wh, tax_bps)), ("channels", ())):
        abi, bytecode = compile_contract(name, evm_version)
        block = w3.eth.get_block("latest")
        tip = priority_fee_wei if priority_fee_wei is not None else int(w3.eth.max_priority_fee)
        tx = w3.eth.contract(abi=abi, bytecode=bytecode).constructor(*args).build_transaction({
            "from": deployer.address, "nonce": w3.eth.get_transaction_count(deployer.address, "pending"),
            "chainId": chain_id, "gas": gas_limit, "maxPriorityFeePerGas": tip,
            "maxFeePerGas": 2 * int(block.get("baseFeePerGas", 0) or 0) + tip})
        signed = deployer.sign_transaction(tx)
        receipt = w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(signed.raw_transaction))
        if receipt["status"] != 1 or not receipt.get("contractAddress"):
            raise RuntimeError(f"deploying {name}.vy failed (transaction {receipt['transactionHash'].hex()}):"
                               " check the constructor arguments (capacity 1000..1000000 Wh, tax at most 10000 bps)"
                               " and the EVM version the chain supports")
        addresses.append(Web3.to_checksum_address(receipt["contractAddress"]))
    return addresses[0], addresses[1]


class EthereumTrade:
    """PeerTrade and PaymentChannel on an EVM chain (see the module docstring)."""

    name = "ethereum"

    def __init__(self, w3: Web3, *, chain_id: int, mnemonic: str, accounts: Mapping[str, int], market: str,
                 channels: str, endpoint: str = "", receipt_timeout_s: float = 120.0,
                 priority_fee_wei: int | None = None, gas_margin_percent: int = 25):
        """Builds without contacting the node. `priority_fee_wei`: the tip per gas (None: the node's suggestion)."""
        _require_int("chain_id", chain_id, minimum=1)
        _require_int("gas_margin_percent", gas_margin_percent, minimum=0)
        if priority_fee_wei is not None:
            _require_int("priority_fee_wei", priority_fee_wei, minimum=0)
        self.w3 = w3
        self.chain_id = chain_id
        self.market_address = _contract_address("market", market)
        self.channels_address = _contract_address("channels", channels)
        self.endpoint = _redacted(endpoint or str(getattr(w3.provider, "endpoint_uri", "") or "")) or "(unnamed)"
        self.receipt_timeout_s = receipt_timeout_s
        self.priority_fee_wei = priority_fee_wei
        self.gas_margin_percent = gas_margin_percent
        self.preflight = True  # False only in tests that send what the contracts must refuse on chain
        self._keys = derive_trade_keys(mnemonic, accounts)
        self._sockets = {account.address.lower(): socket_id for socket_id, account in self._keys.items()}
        self._market = w3.eth.contract(address=self.market_address, abi=MARKET_ABI)
        self._channels = w3.eth.contract(address=self.channels_address, abi=CHANNELS_ABI)
        self._lock = threading.RLock()
        self._session: requests.Session | None = None
        self._chain_checked = False
        self._immutables: dict[str, Any] = {}
        self._adverts: dict[int, tuple[str, int, int, int]] = {}  # id -> (producer, energy, min price, posted at)
        self._settled_upto = 0  # every advert up to this id has nothing left (sold out or returned)
        self._parties: dict[int, tuple[str, str]] = {}  # channel id -> (sender, recipient)

    @classmethod
    def connect(cls, rpc_url: str, *, timeout_s: float = 10.0, **kwargs: Any) -> EthereumTrade:
        """An EthereumTrade on the JSON-RPC endpoint at `rpc_url` (HTTP or HTTPS), web3's retries off."""
        return connect_over_http(cls, rpc_url, timeout_s, **kwargs)

    def disconnect(self) -> None:
        """Closes the HTTP session (`close` is the channel operation)."""
        if self._session is not None:
            self._session.close()

    shutdown = disconnect  # the name every trade backend releases its resources by

    # -- parties and time ---------------------------------------------------------------

    def party_for(self, socket_id: str) -> str:
        return self._account(socket_id).address

    def socket_of(self, party: str) -> str | None:
        return self._sockets.get(str(party).lower())

    def now(self) -> int:
        with self._node_errors():
            self._check_chain_id()
            return int(self.w3.eth.get_block("latest")["timestamp"])

    def domain(self) -> str:
        return f"ethereum:{self.chain_id}:{self.channels_address}"

    # -- the market ---------------------------------------------------------------------

    def market(self) -> MarketInfo:
        with self._node_errors():
            self._check_chain_id()
            now = self._next_block_time()
            advertised = self._market.functions.advertisedWh().call()
            unreturned = sum(wh for _, wh in self._expired_unreturned(now))
            return MarketInfo(owner=self._owner(), capacity_wh=self._immutable("CAPACITY_WH"),
                              advertised_wh=advertised - unreturned, tax_bps=self._immutable("TAX_BPS"),
                              domain=f"ethereum:{self.chain_id}:{self.market_address}")

    def role_of(self, party: str) -> str:
        address = _party_address(party)
        with self._node_errors():
            self._check_chain_id()
            if address == self._owner():
                return OWNER
            return ROLE_NAMES.get(self._market.functions.roleOf(address).call(), NO_ROLE)

    def grant(self, as_socket: str, party: str, role: str) -> None:
        if role not in (REGULATOR, PRODUCER, CONSUMER):
            if role in (OWNER, NO_ROLE):
                raise NotAuthorised(f"the role {role!r} cannot be granted: the market's owner is its deployer")
            raise ValueError(f"unknown role {role!r}: one of {REGULATOR}, {PRODUCER}, {CONSUMER}")
        self._transact(as_socket, self._market.functions.grant(_party_address(party), ROLE_CODES[role]))

    def revoke(self, as_socket: str, party: str) -> None:
        self._transact(as_socket, self._market.functions.revoke(_party_address(party)))

    def post_advert(self, as_socket: str, energy_wh: int, min_price_per_wh: int) -> Advert:
        positive(energy_wh, "energy_wh")
        positive(min_price_per_wh, "min_price_per_wh")
        account = self._account(as_socket)
        with self._node_errors():
            self._check_chain_id()
            sweep: list[int] = []
            advertised = self._market.functions.advertisedWh().call()
            capacity = self._immutable("CAPACITY_WH")
            if advertised + energy_wh > capacity:
                # Expired adverts still count until their energy is returned: return them in the same
                # transaction, the oldest first, as many as the capacity needs.
                unreturned = self._expired_unreturned(self._next_block_time())
                check_capacity(advertised - sum(wh for _, wh in unreturned), energy_wh, capacity)
                for advert_id, wh in unreturned:
                    if advertised + energy_wh <= capacity or len(sweep) == MAX_SWEEP:
                        break
                    sweep.append(advert_id)
                    advertised -= wh
        receipt = self._transact(account, self._market.functions.postAdvert(energy_wh, min_price_per_wh, sweep))
        posted = self._market.events.AdvertPosted().process_receipt(receipt, errors=DISCARD)
        if len(posted) != 1:
            raise LedgerUnavailable(f"Ethereum node {self.endpoint}: the receipt of a postAdvert transaction"
                                    " has no AdvertPosted event: is the market address right?")
        return self.advert(str(posted[0]["args"]["advert_id"]))

    def advert(self, advert_id: str) -> Advert:
        number = _id_number(advert_id, UnknownAdvert, "advert")
        with self._node_errors():
            self._check_chain_id()
            advert = self._read_advert(number)
        if advert is None:
            raise UnknownAdvert(f"no advert {advert_id!r} on market {self.market_address}")
        return advert

    def adverts(self) -> list[Advert]:
        with self._node_errors():
            self._check_chain_id()
            now = self._next_block_time()
            found: list[Advert] = []
            number = self._market.functions.lastAdvertId().call()
            # Ids grow with time: stop at the first advert posted before the oldest one still open.
            while number > self._settled_upto:
                advert = self._read_advert(number)
                if advert is None or is_expired(advert.posted_at, now):
                    break
                if advert.remaining_wh > 0:
                    found.append(advert)
                number -= 1
        return found[::-1]

    def buy(self, as_socket: str, advert_id: str, energy_wh: int,
            max_price_per_wh: int | None = None) -> Purchase:
        positive(energy_wh, "energy_wh")
        if max_price_per_wh is not None:
            positive(max_price_per_wh, "max_price_per_wh")
        account = self._account(as_socket)
        advert = self.advert(advert_id)
        with self._node_errors():
            role = self._market.functions.roleOf(account.address).call()
            if ROLE_NAMES.get(role) != CONSUMER:
                raise NotAuthorised(f"socket {as_socket!r} ({account.address}) is not a consumer on this market")
            price, share, tax = advert.quote(energy_wh, self._next_block_time(), self._immutable("TAX_BPS"),
                                             max_price_per_wh)
        call = self._market.functions.buy(int(advert.advert_id), energy_wh, price)
        receipt = self._transact(account, call, value=share + tax)
        events = self._market.events.Bought().process_receipt(receipt, errors=DISCARD)
        if len(events) != 1:
            raise LedgerUnavailable(f"Ethereum node {self.endpoint}: the receipt of a buy has no Bought event")
        args = events[0]["args"]
        return Purchase(purchase_id=_hex(receipt["transactionHash"]), advert_id=advert.advert_id,
                        consumer=account.address, producer=Web3.to_checksum_address(args["producer"]),
                        energy_wh=args["energy_wh"], price_per_wh=args["price_per_wh"],
                        producer_amount=args["producer_amount"], tax_amount=args["tax_amount"],
                        regulator=Web3.to_checksum_address(args["regulator"]), at=self._block_time(receipt))

    def expire(self, advert_id: str) -> int:
        advert = self.advert(advert_id)
        with self._node_errors():
            now = self._next_block_time()
        if not is_expired(advert.posted_at, now):
            raise AdvertNotExpired(f"advert {advert_id} expires at {advert.expires_at}; it is {now - 1} now")
        if advert.remaining_wh == 0:
            return 0
        # Anyone may return an expired advert's energy: the producer's key if it is ours, else the first socket's.
        socket_id = self.socket_of(advert.producer) or next(iter(self._keys))
        receipt = self._transact(socket_id, self._market.functions.expire(int(advert.advert_id)))
        returned = self._market.events.AdvertReturned().process_receipt(receipt, errors=DISCARD)
        return sum(event["args"]["energy_wh"] for event in returned)

    def withdraw(self, as_socket: str) -> int:
        """Pulls what the market owes the socket's party, and any close refund the channel manager holds for it."""
        account = self._account(as_socket)
        total = 0
        for contract in (self._market, self._channels):
            with self._node_errors():
                self._check_chain_id()
                owed = contract.functions.owed(account.address).call()
            if owed > 0:
                self._transact(account, contract.functions.withdraw())
                total += owed
        return total

    # -- payment channels ---------------------------------------------------------------

    def open_channel(self, as_socket: str, recipient: str, escrow: int, expires_at: int) -> Channel:
        positive(escrow, "escrow")
        positive(expires_at, "expires_at")
        account = self._account(as_socket)
        to = _party_address(recipient)
        receipt = self._transact(account, self._channels.functions.open(to, expires_at), value=escrow)
        opened = self._channels.events.ChannelOpened().process_receipt(receipt, errors=DISCARD)
        if len(opened) != 1:
            raise LedgerUnavailable(f"Ethereum node {self.endpoint}: the receipt of an open has no ChannelOpened"
                                    " event: is the channels address right?")
        args = opened[0]["args"]
        self._parties[args["channel_id"]] = (Web3.to_checksum_address(args["sender"]),
                                             Web3.to_checksum_address(args["recipient"]))
        return self.channel(str(args["channel_id"]))

    def top_up(self, as_socket: str, channel_id: str, amount: int, expires_at: int) -> Channel:
        if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
            raise InvalidAmount(f"a top-up amount is an integer >= 0, got {amount!r}")
        positive(expires_at, "expires_at")
        account = self._account(as_socket)
        number = _id_number(channel_id, UnknownChannel, "channel")
        sender, recipient = self._channel_parties(number)
        if account.address != sender:
            raise NotAuthorised(f"socket {as_socket!r} did not open channel {channel_id}: only its sender tops it up")
        self._transact(account, self._channels.functions.topUp(number, recipient, expires_at), value=amount)
        return self.channel(channel_id)

    def channel(self, channel_id: str) -> Channel:
        number = _id_number(channel_id, UnknownChannel, "channel")
        sender, recipient = self._channel_parties(number)
        with self._node_errors():
            state, escrow, paid, expiry = self._channels.functions.channel(number, sender, recipient).call()
        if state not in CHANNEL_STATES:
            raise LedgerUnavailable(f"Ethereum node {self.endpoint}: channel {number} has no state on"
                                    f" {self.channels_address} although it was opened there")
        return Channel(channel_id=str(number), sender=sender, recipient=recipient, escrow=escrow,
                       expires_at=expiry, state=CHANNEL_STATES[state], paid=paid)

    def sign_voucher(self, as_socket: str, channel_id: str, amount: int) -> Voucher:
        positive(amount, "amount")
        number = _id_number(channel_id, UnknownChannel, "channel")
        account = self._account(as_socket)
        message = voucher_typed_data(self.chain_id, self.channels_address, number, amount)
        signed = account.sign_message(encode_typed_data(full_message=message))
        return Voucher(str(number), amount, self.domain(), "0x" + bytes(signed.signature).hex())

    def voucher_signer(self, voucher: Voucher, channel_id: int) -> str:
        """The address that signed `voucher` for `channel_id` in this domain; BadSignature if none (malformed,
        high s, v not 27/28, or no public key)."""
        signature = _signature_bytes(voucher.signature)
        r = int.from_bytes(signature[:32], "big")
        s = int.from_bytes(signature[32:64], "big")
        v = signature[64]
        if v not in (27, 28) or not 0 < r < SECP256K1_N or not 0 < s <= SECP256K1_N // 2:
            raise BadSignature(f"voucher signature for channel {channel_id} is not a low-s secp256k1 signature"
                               " with v 27 or 28 (malleated or malformed)")
        message = voucher_typed_data(self.chain_id, self.channels_address, channel_id, voucher.amount)
        try:
            return Account.recover_message(encode_typed_data(full_message=message), vrs=(v, r, s))
        except Exception as exc:  # eth-keys refuses points that are not on the curve in several ways
            raise BadSignature(f"voucher signature for channel {channel_id} recovers to no key: {exc}") from None

    def check_voucher(self, voucher: Voucher, channel_id: str) -> Channel:
        if str(voucher.channel_id) != str(channel_id):
            raise WrongChannel(f"voucher is for channel {voucher.channel_id!r}, presented for channel {channel_id!r}")
        if str(voucher.domain).lower() != self.domain().lower():
            raise WrongDomain(f"voucher was signed for {voucher.domain!r}, not for {self.domain()!r}")
        positive(voucher.amount, "voucher amount")
        channel = self.channel(channel_id)
        if channel.state != OPEN:
            raise ChannelClosed(f"channel {channel_id} is {channel.state}")
        now = self._next_block_time_guarded()
        if now >= channel.expires_at:
            raise ChannelExpired(f"channel {channel_id} expired at {channel.expires_at}")
        if voucher.amount > channel.escrow:
            raise AboveEscrow(f"voucher for {voucher.amount} on channel {channel_id}, which holds {channel.escrow}")
        signer = self.voucher_signer(voucher, int(channel.channel_id))
        if signer != channel.sender:
            raise BadSignature(f"voucher for channel {channel_id} is signed by {signer}, not by its sender"
                               f" {channel.sender}")
        return channel

    def close(self, as_socket: str, channel_id: str, voucher: Voucher) -> Channel:
        account = self._account(as_socket)
        if str(voucher.channel_id) != str(channel_id):
            raise WrongChannel(f"voucher is for channel {voucher.channel_id!r}, presented for channel {channel_id!r}")
        if str(voucher.domain).lower() != self.domain().lower():
            raise WrongDomain(f"voucher was signed for {voucher.domain!r}, not for {self.domain()!r}")
        number = _id_number(channel_id, UnknownChannel, "channel")
        sender, recipient = self._channel_parties(number)
        if account.address != recipient:
            raise NotAuthorised(f"socket {as_socket!r} is not the recipient of channel {channel_id}: only"
                                f" {recipient} closes it")
        signature = _signature_bytes(voucher.signature)
        self._transact(account, self._channels.functions.close(number, sender, voucher.amount, signature))
        return self.channel(channel_id)

    def reclaim(self, as_socket: str, channel_id: str) -> Channel:
        account = self._account(as_socket)
        number = _id_number(channel_id, UnknownChannel, "channel")
        sender, recipient = self._channel_parties(number)
        if account.address != sender:
            raise NotAuthorised(f"socket {as_socket!r} is not the sender of channel {channel_id}: only"
                                f" {sender} reclaims it")
        self._transact(account, self._channels.functions.reclaim(number, recipient))
        return self.channel(channel_id)

    # -- reading the chain ----------------------------------------------------------------

    def _read_advert(self, number: int) -> Advert | None:
        producer, energy, remaining, min_price, posted_at = self._market.functions.advert(number).call()
        if int(producer, 16) == 0:
            return None
        self._adverts[number] = (Web3.to_checksum_address(producer), energy, min_price, posted_at)
        return Advert(str(number), Web3.to_checksum_address(producer), energy, remaining, min_price, posted_at)

    def _expired_unreturned(self, now: int) -> list[tuple[int, int]]:
        """(id, Wh) of the expired adverts whose unsold energy is not returned yet, oldest first."""
        found = []
        last = self._market.functions.lastAdvertId().call()
        settled = True
        for number in range(self._settled_upto + 1, last + 1):
            known = self._adverts.get(number)
            if known is not None and not is_expired(known[3], now):
                break  # this one and every later one are still open
            advert = self._read_advert(number)
            if advert is None or not is_expired(advert.posted_at, now):
                break
            if advert.remaining_wh > 0:
                found.append((number, advert.remaining_wh))
                settled = False
            elif settled:
                self._settled_upto = number
        return found

    def _channel_parties(self, number: int) -> tuple[str, str]:
        if number in self._parties:
            return self._parties[number]
        with self._node_errors():
            self._check_chain_id()
            if number == 0 or number > self._channels.functions.lastChannelId().call():
                raise UnknownChannel(f"no channel {number} on {self.channels_address}")
            event = self._channels.events.ChannelOpened()
            topic = event.topic if hasattr(event, "topic") else Web3.keccak(
                text="ChannelOpened(uint256,address,address,uint256,uint256)").to_0x_hex()
            logs = self.w3.eth.get_logs({
                "fromBlock": self._immutable("DEPLOYED_BLOCK", self._channels), "toBlock": "latest",
                "address": self.channels_address, "topics": [topic, "0x" + number.to_bytes(32, "big").hex()]})
            if len(logs) != 1:
                raise LedgerUnavailable(f"Ethereum node {self.endpoint}: {len(logs)} ChannelOpened events for"
                                        f" channel {number} (expected one): the node may have pruned its logs")
            args = event.process_log(logs[0])["args"]
        parties = (Web3.to_checksum_address(args["sender"]), Web3.to_checksum_address(args["recipient"]))
        self._parties[number] = parties
        return parties

    def _owner(self) -> str:
        return Web3.to_checksum_address(self._immutable("owner"))

    def _immutable(self, name: str, contract: Any = None) -> Any:
        contract = contract if contract is not None else self._market
        key = f"{contract.address}:{name}"
        if key not in self._immutables:
            self._immutables[key] = getattr(contract.functions, name)().call()
        return self._immutables[key]

    def _next_block_time(self) -> int:
        """The earliest time a transaction sent now can be mined at: one second after the latest block."""
        return int(self.w3.eth.get_block("latest")["timestamp"]) + 1

    def _next_block_time_guarded(self) -> int:
        with self._node_errors():
            return self._next_block_time()

    def _block_time(self, receipt: Any) -> int:
        with self._node_errors():
            return int(self.w3.eth.get_block(receipt["blockNumber"])["timestamp"])

    def _check_chain_id(self) -> None:
        if self._chain_checked:
            return
        served = self.w3.eth.chain_id
        if served != self.chain_id:
            raise LedgerUnavailable(f"Ethereum node {self.endpoint} serves chain id {served}, but chain id"
                                    f" {self.chain_id} is configured: wrong node or wrong chain_id")
        self._chain_checked = True

    # -- sending ----------------------------------------------------------------------------

    def _account(self, socket: Any) -> Any:
        if not isinstance(socket, str):
            return socket  # already an account
        try:
            return self._keys[socket]
        except KeyError:
            raise UnknownSocket(socket) from None

    def _transact(self, socket: Any, call: Any, value: int = 0) -> Any:
        """Pre-flight (estimate), sign, send and wait for one call; the receipt. Refusals raise the payg error."""
        account = self._account(socket)
        with self._lock, self._node_errors():
            self._check_chain_id()
            balance = self.w3.eth.get_balance(account.address)
            if balance < value:
                raise InsufficientFunds(f"{account.address} holds {balance} wei, {value} wei needed (plus gas)")
            tx: dict[str, Any] = {"from": account.address, "value": value}
            if self.preflight:
                gas = self._refusal_or(lambda: call.estimate_gas({**tx, "gasPrice": 0}))
                gas = gas + gas * self.gas_margin_percent // 100
            else:
                gas = 1_000_000
            base_fee = int(self.w3.eth.get_block("latest").get("baseFeePerGas", 0) or 0)
            tip = self.priority_fee_wei if self.priority_fee_wei is not None else int(self.w3.eth.max_priority_fee)
            max_fee = 2 * base_fee + tip
            if self.preflight and balance < value + gas * max_fee:
                raise InsufficientFunds(f"{account.address} holds {balance} wei: {value} wei and up to"
                                        f" {gas * max_fee} wei of gas needed")
            built = call.build_transaction({
                **tx, "nonce": self.w3.eth.get_transaction_count(account.address, "pending"),
                "chainId": self.chain_id, "gas": gas, "maxFeePerGas": max_fee, "maxPriorityFeePerGas": tip})
            signed = account.sign_transaction(built)
            tx_hash = self._refusal_or(lambda: self.w3.eth.send_raw_transaction(signed.raw_transaction))
            receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=self.receipt_timeout_s,
                                                               poll_latency=0.1)
            if receipt["status"] != 1:
                # The state changed between the estimate and the block: find out why by replaying it.
                self._refusal_or(lambda: call.call(tx, block_identifier=receipt["blockNumber"]))
                raise TradeRefused(f"transaction {_hex(tx_hash)} reverted on chain (it passes now: the state"
                                   " changed in between); nothing moved but its gas")
            return receipt

    def _refusal_or(self, action: Callable[[], Any]) -> Any:
        """Runs `action`; a contract revert or a node refusing for funds becomes the payg error."""
        try:
            return action()
        except ContractLogicError as exc:
            raise _refusal(exc) from None
        except Web3RPCError as exc:
            error = (exc.rpc_response or {}).get("error")
            message = str(error.get("message") if isinstance(error, dict) else exc.message)
            if _NODE_REFUSES_FUNDS.search(message):
                raise InsufficientFunds(f"the node refused the transaction: {_scrub(_plain(message))}") from None
            raise

    @contextmanager
    def _node_errors(self) -> Iterator[None]:
        try:
            yield
        except PaygError:
            raise
        except (requests.RequestException, Web3Exception, OSError, ValueError) as exc:
            raise LedgerUnavailable(f"Ethereum node {self.endpoint}: {_cause(exc)}") from exc


def _refusal(exc: ContractLogicError) -> Exception:
    message = str(exc.message or exc)
    reason = message.split("execution reverted:", 1)[-1].strip().strip("'\"")
    for text, error in REVERTS.items():
        if reason == text or reason.endswith(f": {text}") or reason.endswith(f"'{text}'"):
            return error(f"refused by the contract: {text}")
    for text, error in REVERTS.items():
        if text in reason:
            return error(f"refused by the contract: {text}")
    return TradeRefused(f"refused by the contract: {_scrub(reason) or 'reverted without a reason'}")


def _plain(message: str) -> str:
    return re.sub(r"b'[^']*'", "the sender", message)


def _cause(exc: BaseException) -> str:
    if isinstance(exc, requests.Timeout):
        return "no answer in time (timeout)"
    if isinstance(exc, requests.ConnectionError):
        reason = re.search(r"\[Errno [^\]]+\][^\"')]*", str(exc))
        return f"cannot connect ({reason.group(0).strip() if reason else type(exc).__name__})"
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return f"HTTP {exc.response.status_code} {exc.response.reason}"
    if isinstance(exc, Web3RPCError):
        error = (exc.rpc_response or {}).get("error")
        detail = error.get("message") if isinstance(error, dict) else None
        return _scrub(f"the node answered an error: {detail or exc.message}")
    return _scrub(f"{type(exc).__name__}: {exc}")


def derive_trade_keys(mnemonic: str, accounts: Mapping[str, int]) -> dict[str, Any]:
    """Socket id -> its trade key at m/44'/60'/0'/1/<index>, never its top-up key (branch 0)."""
    return derive_accounts(mnemonic, accounts, 1)


def _contract_address(what: str, address: object) -> str:
    if not isinstance(address, str) or not re.fullmatch(r"0x[0-9a-fA-F]{40}", address):
        raise ValueError(f"{what} must be the contract's 0x address (40 hex digits), got {address!r}")
    digits = address[2:]
    if digits != digits.lower() and digits != digits.upper() and not Web3.is_checksum_address(address):
        raise ValueError(f"{what} address {address!r}: its mixed-case checksum is wrong (a mistyped address?)")
    return Web3.to_checksum_address(address)


def _party_address(party: object) -> str:
    if not isinstance(party, str) or not re.fullmatch(r"0x[0-9a-fA-F]{40}", party):
        raise ValueError(f"a party is a 0x Ethereum address (40 hex digits), got {party!r}")
    if int(party, 16) == 0:
        raise ValueError("the zero address is nobody's party")
    return Web3.to_checksum_address(party)


def _id_number(value: object, error: type[Exception], what: str) -> int:
    text = str(value)
    if not text.isdigit() or len(text) > 78:
        raise error(f"no {what} {value!r}: {what} ids here are decimal numbers")
    return int(text)


def _signature_bytes(signature: object) -> bytes:
    text = str(signature)
    if text.startswith(("0x", "0X")):
        text = text[2:]
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise BadSignature("voucher signature is not hex") from None
    if len(raw) != 65:
        raise BadSignature(f"voucher signature has {len(raw)} bytes, not 65 (r, s, v)")
    return raw


def _hex(value: Any) -> str:
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    text = str(value).lower()
    return text if text.startswith("0x") else "0x" + text


__all__ = ["EthereumTrade", "deploy_contracts", "voucher_typed_data", "MARKET_ABI", "CHANNELS_ABI", "REVERTS",
           "ADVERT_LIFETIME_S"]
