"""Voucher cryptography on compiled backends, with the semantics the slow paths had.

Ethereum: eth-keys must really run on coincurve in this process, and the fast EIP-712 digest and signature must
be byte for byte what eth-account's typed-data encoder and signer give. IOTA: ed25519.verify (libsodium) must
pass the RFC 8032 vectors and refuse exactly what IotaWallet.verify (strict checks + the SDK) refuses.
"""

from __future__ import annotations

import hashlib

import nacl.bindings
import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_keys.backends import CoinCurveECCBackend, get_backend

from ledgers.ethereum.abi import voucher_typed_data
from ledgers.ethereum.channels import _private_key, voucher_digest
from ledgers.iota import IotaWallet, ed25519
from tests.support.ed25519_points import L, small_order_points

CONTRACT = "0x" + "5A" * 20


def test_eth_keys_signs_and_recovers_through_coincurve_in_this_process():
    assert isinstance(get_backend(), CoinCurveECCBackend)
    assert isinstance(_private_key(b"\x01" * 32).backend, CoinCurveECCBackend)


@pytest.mark.parametrize("chain_id, channel, amount", [(1337, 1, 1), (1, 2**255, 10**30), (10, 7, 2**256 - 1)])
def test_fast_digest_and_signature_are_eth_accounts_own(chain_id, channel, amount):
    signable = encode_typed_data(full_message=voucher_typed_data(chain_id, CONTRACT, channel, amount))
    account = Account.create()
    expected = account.sign_message(signable)
    digest = voucher_digest(chain_id, CONTRACT, channel, amount)
    ours = _private_key(bytes(account.key)).sign_msg_hash(digest)
    assert digest == bytes(expected.message_hash)
    assert (ours.r, ours.s, ours.v + 27) == (expected.r, expected.s, expected.v)
    assert Account.recover_message(signable, vrs=(ours.v + 27, ours.r, ours.s)) == account.address
    # a different amount or contract is a different digest: the binding the contract checks
    assert voucher_digest(chain_id, CONTRACT, channel, amount - 1) != digest
    assert voucher_digest(chain_id, "0x" + "5B" * 20, channel, amount) != digest


RFC8032 = [  # (secret, public, message, signature), RFC 8032 section 7.1, tests 1-3
    ("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
     "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
     "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"),
    ("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
     "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
     "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"),
    ("c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
     "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", "af82",
     "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a"),
]


@pytest.mark.parametrize("secret, public, message, signature", RFC8032)
def test_rfc8032_vectors_verify_and_their_tampered_forms_do_not(secret, public, message, signature):
    public_key, _ = nacl.bindings.crypto_sign_seed_keypair(bytes.fromhex(secret))
    assert public_key.hex() == public  # the vector is transcribed right
    msg = bytes.fromhex(message)
    assert ed25519.verify(public, msg, signature) and IotaWallet.verify(public, msg, signature)
    assert not ed25519.verify(public, msg + b"x", signature)
    other = RFC8032[(RFC8032.index((secret, public, message, signature)) + 1) % 3][1]
    assert not ed25519.verify(other, msg, signature)
    raw = bytes.fromhex(signature)
    s = int.from_bytes(raw[32:], "little")
    malleated = (raw[:32] + (s + L).to_bytes(32, "little")).hex()
    assert not ed25519.verify(public, msg, malleated) and not IotaWallet.verify(public, msg, malleated)
    flipped = bytes([raw[0] ^ 1]) + raw[1:]
    assert not ed25519.verify(public, msg, flipped.hex())


def _cases() -> list[tuple[str, bytes, str]]:
    """Keys, messages and signatures that exercise every strict rule, good ones among them."""
    public, secret = nacl.bindings.crypto_sign_seed_keypair(hashlib.sha256(b"payg").digest())
    message = b"payg voucher v1|channel 7|amount 1200"
    good = nacl.bindings.crypto_sign(message, secret)[:64]
    cases = [(public.hex(), message, good.hex()), (public.hex(), message + b"0", good.hex()),
             ("zz", message, good.hex()), (public.hex(), message, good.hex()[:-2]),
             (public.hex()[:-2], message, good.hex())]
    for point in sorted(small_order_points()):
        cases += [(point.hex(), message, (point + bytes(32)).hex()), (public.hex(), message, (point + good[32:]).hex()),
                  (public.hex(), message, (point + bytes(32)).hex())]
    non_canonical = (2**255 - 19 + 1).to_bytes(32, "little")  # y = p + 1, a non-canonical encoding of y = 1
    cases += [(non_canonical.hex(), message, good.hex()), (public.hex(), message, (non_canonical + good[32:]).hex())]
    return cases


@pytest.mark.parametrize("public, message, signature", _cases())
def test_compiled_verify_refuses_exactly_what_the_wallet_refuses(public, message, signature):
    assert ed25519.verify(public, message, signature) is IotaWallet.verify(public, message, signature)


def test_the_good_case_really_is_good_so_the_comparison_means_something():
    public, message, signature = _cases()[0]
    assert ed25519.verify(public, message, signature) is True
