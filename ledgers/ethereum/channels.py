"""EthereumTrade's payment channels, through the channel contract (contracts/channels.vy).

Vouchers are EIP-712 messages bound to the chain and the contract; they are verified off-chain with
the contract's own rules (low-s signatures, v 27 or 28) before a recipient relies on them.

Reading channels. The channel contract stores one slot per channel, keyed by (id, sender, recipient):
the parties of a channel id are read from its ChannelOpened event (eth_getLogs from the contract's
deployment block) and kept in memory.

Voucher cryptography. The EIP-712 digest is keccak(0x1901 || domain separator || keccak(type hash || id || amount)):
the domain separator and the type hash are computed once (through eth-account's encoder, so they are the
library's own), and per voucher only two keccaks and one compiled secp256k1 operation run, through eth-keys'
backend (CoinCurveECCBackend when `coincurve` is installed, as the `[ethereum]` extra requires). Going through
`encode_typed_data` per voucher cost ~4 ms in pure-Python encoders, more than the signature itself.

What a voucher check reads from the node. The latest block, at most once per `voucher_cache_s`, and the channel
once per block: see `_channel_at_head` for why that can never accept a voucher above what the escrow holds. With a
remote node (tens of ms per call) a read per voucher would cap a controller at a few dozen vouchers per second.
"""

from __future__ import annotations

import functools
import math

from eth_account.messages import encode_typed_data
from eth_keys import keys
from eth_keys.datatypes import PrivateKey
from eth_utils import keccak
from web3 import Web3
from web3.logs import DISCARD

from ledgers.ethereum.abi import CHANNEL_STATES, SECP256K1_N, voucher_typed_data
from ledgers.ethereum.client import TradeClient, id_number, party_address
from payg.domain.market import OPEN, Channel, Voucher, positive
from payg.errors import (
    AboveEscrow,
    BadSignature,
    ChannelClosed,
    ChannelExpired,
    InvalidAmount,
    LedgerUnavailable,
    NotAuthorised,
    UnknownChannel,
    WrongChannel,
    WrongDomain,
)

# With the voucher cache on, seconds before the expiry from which vouchers are refused beside voucher_cache_s
# (see EthereumChannels._channel_at_head).
HEAD_GAP_S = 30


class EthereumChannels(TradeClient):
    """PaymentChannel on an EVM chain: the channel half of EthereumTrade."""

    def open_channel(self, as_socket: str, recipient: str, escrow: int, expires_at: int) -> Channel:
        positive(escrow, "escrow")
        positive(expires_at, "expires_at")
        account = self._account(as_socket)
        to = party_address(recipient)
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
        number = id_number(channel_id, UnknownChannel, "channel")
        sender, recipient = self._channel_parties(number)
        if account.address != sender:
            raise NotAuthorised(f"socket {as_socket!r} did not open channel {channel_id}: only its sender tops it up")
        self._transact(account, self._channels.functions.topUp(number, recipient, expires_at), value=amount)
        return self.channel(channel_id)

    def channel(self, channel_id: str) -> Channel:
        number = id_number(channel_id, UnknownChannel, "channel")
        sender, recipient = self._channel_parties(number)
        with self._node.errors():
            state, escrow, paid, expiry = self._channels.functions.channel(number, sender, recipient).call()
        if state not in CHANNEL_STATES:
            raise LedgerUnavailable(f"Ethereum node {self.endpoint}: channel {number} has no state on"
                                    f" {self.channels_address} although it was opened there")
        return Channel(channel_id=str(number), sender=sender, recipient=recipient, escrow=escrow,
                       expires_at=expiry, state=CHANNEL_STATES[state], paid=paid)

    def sign_voucher(self, as_socket: str, channel_id: str, amount: int) -> Voucher:
        positive(amount, "amount")
        number = id_number(channel_id, UnknownChannel, "channel")
        account = self._account(as_socket)
        digest = voucher_digest(self.chain_id, self.channels_address, number, amount)
        signed = _private_key(bytes(account.key)).sign_msg_hash(digest)  # low s, v 0/1 (eth-keys normalises)
        signature = signed.r.to_bytes(32, "big") + signed.s.to_bytes(32, "big") + bytes([signed.v + 27])
        return Voucher(str(number), amount, self.domain(), "0x" + signature.hex())

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
        if isinstance(voucher.amount, bool) or not isinstance(voucher.amount, int) or not 0 <= voucher.amount < 2**256:
            raise BadSignature(f"voucher for channel {channel_id} has an amount no uint256 can sign: "
                               f"{voucher.amount!r}")
        digest = voucher_digest(self.chain_id, self.channels_address, channel_id, voucher.amount)
        try:
            public = keys.Signature(vrs=(v - 27, r, s)).recover_public_key_from_msg_hash(digest)
            return public.to_checksum_address()
        except Exception as exc:  # eth-keys refuses points that are not on the curve in several ways
            raise BadSignature(f"voucher signature for channel {channel_id} recovers to no key: {exc}") from None

    def check_voucher(self, voucher: Voucher, channel_id: str) -> Channel:
        self._check_bound_here(voucher, channel_id)
        positive(voucher.amount, "voucher amount")
        channel, now, margin = self._channel_at_head(channel_id)
        if channel.state != OPEN:
            raise ChannelClosed(f"channel {channel_id} is {channel.state}")
        if now + margin >= channel.expires_at:
            raise ChannelExpired(f"channel {channel_id} expired at {channel.expires_at}" if margin == 0 else
                                 f"channel {channel_id} expires at {channel.expires_at}: within {margin} s of it a"
                                 " voucher is refused (the cached block's allowance), as the close needs a block")
        if voucher.amount > channel.escrow:
            raise AboveEscrow(f"voucher for {voucher.amount} on channel {channel_id}, which holds {channel.escrow}")
        signer = self.voucher_signer(voucher, int(channel.channel_id))
        if signer != channel.sender:
            raise BadSignature(f"voucher for channel {channel_id} is signed by {signer}, not by its sender"
                               f" {channel.sender}")
        return channel

    def _channel_at_head(self, channel_id: str) -> tuple[Channel, int, int]:
        """The channel as the latest block read has it, the earliest time a transaction sent now can be mined at,
        and the margin before the expiry within which a voucher is refused.

        The latest block is read at most once per `voucher_cache_s` (0: for every voucher), and a channel once per
        block (keyed by its number and hash: a reorganisation at the same height changes the hash). Reusing them
        for that long never lets a voucher through above what the escrow holds, because of the contract's rules
        (contracts/channels.vy): before its expiry an open channel's escrow only grows (top-ups), and it is paid
        out only by its recipient's close, which is this controller's own transaction (every transaction sent
        from here drops the cached block) or is booked in the journal, which ChannelBook reads first; the sender's
        reclaim needs a block at or after the expiry, which is why, with the cache on, vouchers are refused from
        `voucher_cache_s` (rounded up) + HEAD_GAP_S before it: a block unseen for that long can hold a reclaim only
        if the chain's time passed the expiry meanwhile, and the chain's time runs ahead of the cached block's by
        the seconds since it was read plus the gap between that block's time and the moment it was read (about one
        block interval; HEAD_GAP_S allows two of mainnet's 12 s slots and some). The next block's earliest time is
        the cached block's timestamp + 1 + the seconds since it was read."""
        head, at = self._head, self._monotonic()
        if head is None or at - head[3] >= self.voucher_cache_s:
            with self._node.errors():
                block = self.w3.eth.get_block("latest")
            head = self._head = (int(block["number"]), bytes(block["hash"]), int(block["timestamp"]), at)
        key = (head[0], head[1], str(channel_id))
        channel = self._voucher_cache.get(key)
        if channel is None:
            channel = self.channel(channel_id)
            with self._cache_lock:  # the web server's workers check vouchers at once
                cache = self._voucher_cache
                if len(cache) > 1024 or any(k[:2] != key[:2] for k in cache):
                    cache.clear()  # an older block's entries are never read again
                cache[key] = channel
        age = max(0.0, at - head[3])
        margin = math.ceil(self.voucher_cache_s) + HEAD_GAP_S if self.voucher_cache_s > 0 else 0
        return channel, head[2] + 1 + math.ceil(age), margin

    def close(self, as_socket: str, channel_id: str, voucher: Voucher) -> Channel:
        account = self._account(as_socket)
        self._check_bound_here(voucher, channel_id)
        number = id_number(channel_id, UnknownChannel, "channel")
        sender, recipient = self._channel_parties(number)
        if account.address != recipient:
            raise NotAuthorised(f"socket {as_socket!r} is not the recipient of channel {channel_id}: only"
                                f" {recipient} closes it")
        signature = _signature_bytes(voucher.signature)
        self._transact(account, self._channels.functions.close(number, sender, voucher.amount, signature))
        return self.channel(channel_id)

    def reclaim(self, as_socket: str, channel_id: str) -> Channel:
        account = self._account(as_socket)
        number = id_number(channel_id, UnknownChannel, "channel")
        sender, recipient = self._channel_parties(number)
        if account.address != sender:
            raise NotAuthorised(f"socket {as_socket!r} is not the sender of channel {channel_id}: only"
                                f" {sender} reclaims it")
        self._transact(account, self._channels.functions.reclaim(number, recipient))
        return self.channel(channel_id)

    def _check_bound_here(self, voucher: Voucher, channel_id: str) -> None:
        """WrongChannel or WrongDomain unless `voucher` is for `channel_id` on this chain and contract."""
        if str(voucher.channel_id) != str(channel_id):
            raise WrongChannel(f"voucher is for channel {voucher.channel_id!r}, presented for channel {channel_id!r}")
        if str(voucher.domain).lower() != self.domain().lower():
            raise WrongDomain(f"voucher was signed for {voucher.domain!r}, not for {self.domain()!r}")

    def _channel_parties(self, number: int) -> tuple[str, str]:
        if number in self._parties:
            return self._parties[number]
        with self._node.errors():
            self._node.check_chain_id()
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


@functools.lru_cache(maxsize=64)
def _domain_prefix(chain_id: int, channels: str) -> bytes:
    """0x1901 || domain separator || the Voucher type hash: what every voucher of one contract shares, computed
    once by eth-account's own EIP-712 encoder (a voucher for channel 1, amount 1, whose hashed message part we
    recompute below, checks that the fast path gives the library's digest)."""
    signable = encode_typed_data(full_message=voucher_typed_data(chain_id, channels, 1, 1))
    type_hash = keccak(text="Voucher(uint256 channelId,uint256 amount)")
    if keccak(type_hash + (1).to_bytes(32, "big") * 2) != signable.body:
        raise RuntimeError("the Voucher type hash does not match eth-account's EIP-712 encoding")
    return b"\x19\x01" + signable.header + type_hash


def voucher_digest(chain_id: int, channels: str, channel_id: int, amount: int) -> bytes:
    """The 32-byte EIP-712 digest a voucher signs: what eth-account's sign_typed_data / recover would hash."""
    prefix = _domain_prefix(chain_id, channels)
    struct = keccak(prefix[34:] + channel_id.to_bytes(32, "big") + amount.to_bytes(32, "big"))
    return keccak(prefix[:34] + struct)


@functools.lru_cache(maxsize=256)
def _private_key(secret: bytes) -> PrivateKey:
    """A trade key's eth-keys object (deriving its public key is a curve multiplication: once per key)."""
    return keys.PrivateKey(secret)


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
