"""Edwards25519 arithmetic for the Ed25519 tests: small-order points, computed here (not copied).

[L]P for a point P of the full group is a torsion point; the verifiers must refuse keys and signatures made of
them. `L` is the group's order, used to make non-canonical (malleated) signatures too.
"""

import functools
import hashlib

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = -121665 * pow(121666, P - 2, P) % P


def _add(a, b):
    (x1, y1), (x2, y2) = a, b
    t = D * x1 * x2 * y1 * y2 % P
    return ((x1 * y2 + x2 * y1) * pow(1 + t, P - 2, P) % P, (y1 * y2 + x1 * x2) * pow(1 - t, P - 2, P) % P)


def _times(n, point):
    result = (0, 1)
    while n:
        if n & 1:
            result = _add(result, point)
        point, n = _add(point, point), n >> 1
    return result


def _encode(point) -> bytes:
    x, y = point
    return (y | (x & 1) << 255).to_bytes(32, "little")


def _decode(raw):
    y = int.from_bytes(raw, "little") & ((1 << 255) - 1)
    x2 = (y * y - 1) * pow(D * y * y + 1, P - 2, P) % P
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P:
        x = x * pow(2, (P - 1) // 4, P) % P
    return (x, y) if (x * x - x2) % P == 0 else None


@functools.cache
def small_order_points() -> frozenset[bytes]:
    """All 8 points of the 8-torsion subgroup: the multiples of one point of order 8, [L]P for some P."""
    seed = 0
    while True:
        seed += 1
        point = _decode(hashlib.sha256(str(seed).encode()).digest())
        if point is None:
            continue
        torsion = _times(L, point)
        if _times(4, torsion) != (0, 1):  # order 8, not a divisor of 4: it generates the subgroup
            break
    multiples = [(0, 1)]
    for _ in range(7):
        multiples.append(_add(multiples[-1], torsion))
    return frozenset(_encode(m) for m in multiples)
