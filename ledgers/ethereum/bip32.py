"""BIP-32 extended public keys (xpub): parse, derive non-hardened children, serialise; and the one xpub a
controller needs, its account node m/44'/60'/0', made from the mnemonic on another machine.

Why our own: a watch-only controller must derive exactly the addresses eth_account derives from the
mnemonic, without the mnemonic. Public child derivation is a few lines over coincurve (libsecp256k1,
compiled: `PublicKey.add` adds a scalar times G); no wallet library is needed on the device.
Why only non-hardened children below the account node: a hardened child needs the private key.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from coincurve import PrivateKey, PublicKey

from ledgers.ethereum.abi import SECP256K1_N

XPUB_VERSION = bytes.fromhex("0488b21e")  # mainnet public ("xpub"), what Ethereum wallets export
XPRV_VERSION = bytes.fromhex("0488ade4")  # mainnet private ("xprv"): refused, it is the whole wallet
TPUB_VERSION = bytes.fromhex("043587cf")
TPRV_VERSION = bytes.fromhex("04358394")
HARDENED = 2**31
ACCOUNT_PATH = (44 + HARDENED, 60 + HARDENED, 0 + HARDENED)  # m/44'/60'/0'
_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


class XpubError(ValueError):
    """A malformed extended public key; the message says what is wrong (it is not a secret)."""


@dataclass(frozen=True)
class ExtendedPublicKey:
    depth: int
    parent_fingerprint: bytes  # 4 bytes
    child_number: int
    chain_code: bytes  # 32 bytes
    key: bytes  # 33 bytes, compressed point
    version: bytes = XPUB_VERSION

    def child(self, index: int) -> ExtendedPublicKey:
        """CKDpub: the non-hardened child `index` (BIP-32)."""
        if not 0 <= index < HARDENED:
            raise ValueError(f"only non-hardened children (0 to {HARDENED - 1}) derive from a public key, got {index}")
        digest = hmac.new(self.chain_code, self.key + index.to_bytes(4, "big"), hashlib.sha512).digest()
        tweak = digest[:32]
        if int.from_bytes(tweak, "big") >= SECP256K1_N:  # probability below 2**-127; BIP-32 says skip it
            raise ValueError(f"child {index} is invalid (BIP-32: use the next index)")
        key = PublicKey(self.key).add(tweak).format(compressed=True)
        return ExtendedPublicKey(self.depth + 1, fingerprint(self.key), index, digest[32:], key, self.version)

    def address(self) -> str:
        """The EIP-55 Ethereum address of this key."""
        from eth_utils import keccak, to_checksum_address

        return to_checksum_address(keccak(PublicKey(self.key).format(compressed=False)[1:])[-20:])

    def serialize(self) -> str:
        return b58check_encode(self.version + bytes([self.depth]) + self.parent_fingerprint
                               + self.child_number.to_bytes(4, "big") + self.chain_code + self.key)


def fingerprint(key: bytes) -> bytes:
    return hashlib.new("ripemd160", hashlib.sha256(key).digest()).digest()[:4]


def b58check_encode(payload: bytes) -> str:
    data = payload + hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4]
    number, text = int.from_bytes(data, "big"), ""
    while number:
        number, rest = divmod(number, 58)
        text = _ALPHABET[rest] + text
    return "1" * (len(data) - len(data.lstrip(b"\0"))) + text


def b58check_decode(text: str) -> bytes:
    number = 0
    for char in text:
        position = _ALPHABET.find(char)
        if position < 0:
            raise XpubError(f"{char!r} is not a base58 character")
        number = number * 58 + position
    body = number.to_bytes((number.bit_length() + 7) // 8, "big")
    data = b"\0" * (len(text) - len(text.lstrip("1"))) + body
    if len(data) < 5 or hashlib.sha256(hashlib.sha256(data[:-4]).digest()).digest()[:4] != data[-4:]:
        raise XpubError("its base58check checksum does not match (a typo, or a truncated copy)")
    return data[:-4]


def parse_xpub(text: str, depth: int | None = None) -> ExtendedPublicKey:
    """An extended public key from its base58 text; `depth` (if given) is the depth it must have."""
    if not isinstance(text, str) or not text.strip():
        raise XpubError("it is empty")
    data = b58check_decode(text.strip())
    if len(data) != 78:
        raise XpubError(f"it holds {len(data)} bytes, an extended key holds 78")
    version = data[:4]
    if version in (XPRV_VERSION, TPRV_VERSION):
        raise XpubError("it is an extended PRIVATE key (xprv): it can spend every deposit; give the xpub instead")
    if version not in (XPUB_VERSION, TPUB_VERSION):
        raise XpubError(f"its version bytes {version.hex()} are not those of an xpub (0488b21e) or tpub (043587cf)")
    key = data[45:78]
    if key[0] not in (2, 3):
        raise XpubError("its key is not a compressed public key")
    try:
        PublicKey(key)
    except ValueError:
        raise XpubError("its key is not a point of secp256k1") from None
    xpub = ExtendedPublicKey(data[4], data[5:9], int.from_bytes(data[9:13], "big"), data[13:45], key, version)
    if depth is not None and xpub.depth != depth:
        raise XpubError(f"it is at depth {xpub.depth}; the account node m/44'/60'/0' is at depth {depth}"
                        + (" (an xpub of the master key or of a whole wallet)" if xpub.depth < depth else
                           " (an xpub of a branch or of one address, not of the account)"))
    if xpub.depth == 0 and (xpub.parent_fingerprint != b"\0" * 4 or xpub.child_number != 0):
        raise XpubError("it claims depth 0 (the master key) with a parent fingerprint or a child number")
    return xpub


def account_xpub(seed: bytes, path: tuple[int, ...] = ACCOUNT_PATH) -> ExtendedPublicKey:
    """The xpub at `path` below the master key of `seed` (BIP-32 CKDpriv, then its public half)."""
    digest = hmac.new(b"Bitcoin seed", seed, hashlib.sha512).digest()
    key, chain = int.from_bytes(digest[:32], "big"), digest[32:]
    if not 0 < key < SECP256K1_N:
        raise ValueError("this seed gives an invalid master key (BIP-32)")
    parent = b""
    for index in path:
        public = PrivateKey(key.to_bytes(32, "big")).public_key.format(compressed=True)
        data = b"\0" + key.to_bytes(32, "big") if index >= HARDENED else public
        digest = hmac.new(chain, data + index.to_bytes(4, "big"), hashlib.sha512).digest()
        tweak = int.from_bytes(digest[:32], "big")
        child = (tweak + key) % SECP256K1_N
        if tweak >= SECP256K1_N or child == 0:
            raise ValueError(f"child {index} is invalid (BIP-32)")
        parent, key, chain = public, child, digest[32:]
    public = PrivateKey(key.to_bytes(32, "big")).public_key.format(compressed=True)
    return ExtendedPublicKey(len(path), fingerprint(parent) if path else b"\0" * 4, path[-1] if path else 0,
                             chain, public)
