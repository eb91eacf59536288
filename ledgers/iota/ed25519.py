"""Ed25519 strictness, before a signature reaches the SDK's verifier.

The SDK's verifier follows the cofactorless equation without the "strict" checks, and accepts for instance an
all-zero public key with an all-zero signature for every message. IotaWallet.verify therefore refuses first
what RFC 8032 / verify_strict refuse: a non-canonical point encoding, a public key or R of small order (the
8-torsion, which makes signatures forgeable or malleable), and s >= L.

`verify` is the fast path for vouchers: the same strict rules, with the equation checked by libsodium
(PyNaCl, compiled; the SDK's verifier is a Rust object built per call and the R check here was pure Python,
~0.3 ms a voucher). libsodium's crypto_sign_open (its verify_detached) itself refuses s >= L, a small-order R or key and
a non-canonical key, and compares R byte for byte with the canonical encoding it computes, so a non-canonical
R fails too; the public key's checks below are cached, s < L is checked before the call, so the result is
what `strict` + the SDK's verify gave (tests/ledgers/test_voucher_crypto.py compares them).
"""

from __future__ import annotations

import functools

import nacl.bindings
import nacl.exceptions

_P = 2**255 - 19
_L = 2**252 + 27742317777372353535851937790883648493
_D = -121665 * pow(121666, _P - 2, _P) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)


def strict(public: bytes, signature: bytes) -> bool:
    """A 32-byte public key and a 64-byte signature (R || s) that verify_strict would go on to check."""
    return (len(public) == 32 and len(signature) == 64 and int.from_bytes(signature[32:], "little") < _L
            and _strong_point(public) and _strong_point(signature[:32]))


def verify(public_key_hex: str, message: bytes, signature_hex: str) -> bool:
    """True only for a strictly valid Ed25519 signature of `message` by the 32-byte key; never raises."""
    try:
        if not isinstance(message, (bytes, bytearray)):
            return False
        public = bytes.fromhex(public_key_hex)
        signature = bytes.fromhex(signature_hex)
    except (TypeError, ValueError, AttributeError):
        return False
    if len(public) != 32 or len(signature) != 64 or int.from_bytes(signature[32:], "little") >= _L:
        return False
    if not _strong_point(public):
        return False
    try:
        nacl.bindings.crypto_sign_open(signature + bytes(message), public)  # libsodium's verify_detached inside
        return True
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.CryptoError, ValueError, TypeError):
        return False


def _decode_point(raw: bytes) -> tuple[int, int] | None:
    """The affine Edwards25519 point (x, y) of a canonical 32-byte encoding, or None."""
    y = int.from_bytes(raw, "little")
    sign, y = y >> 255, y & ((1 << 255) - 1)
    if y >= _P:
        return None
    u, v = (y * y - 1) % _P, (_D * y * y + 1) % _P
    # x = sqrt(u / v) with one exponentiation: x = u v^3 (u v^7)^((p - 5) / 8), then fix the root of -1
    x = u * pow(v, 3, _P) * pow(u * pow(v, 7, _P), (_P - 5) // 8, _P) % _P
    if (v * x * x - u) % _P:
        x = x * _SQRT_M1 % _P
        if (v * x * x - u) % _P:
            return None
    if x == 0 and sign:
        return None
    if x & 1 != sign:
        x = _P - x
    return x, y


@functools.lru_cache(maxsize=1024)
def _strong_point(raw: bytes) -> bool:
    """A canonical encoding of a point outside the small-order subgroup ([8]P is not the identity).
    (Cached: the same public keys come back with every voucher.)"""
    point = _decode_point(raw)
    if point is None:
        return False
    x, y, z = point[0], point[1], 1
    for _ in range(3):  # projective doubling on -x^2 + y^2 = 1 + d x^2 y^2
        b, c, d = (x + y) ** 2 % _P, x * x % _P, y * y % _P
        f = (d - c) % _P
        j = (f - 2 * z * z) % _P
        x, y, z = (b - c - d) * j % _P, f * (-c - d) % _P, f * j % _P
    return not (x == 0 and (y - z) % _P == 0)
