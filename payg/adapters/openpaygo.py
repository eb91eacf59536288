"""Top-up codes through the OpenPAYGO project's own library (`openpaygo` on PyPI): the CodeCodec port.

payg makes and reads standard 9-digit Add-Time tokens only; the value is the code's units
(payg/domain/codes.py says what a unit is worth). The token algorithm is the library's: its
hash step (`generate_next_token`), its value encoding, its window rules (`_count_is_valid`,
`update_used_counts`). Three things are done here:

- **The walk starts where it left off.** A code for count n is the chain of hashes from the
  starting code (with the value in its last three digits) taken n times, and the library's
  decoder walks that chain from count 0 on every call: a socket with a year of daily codes
  costs 730 hashes a code. A code is only valid from 15 counts below the highest used, so the
  chain's state at that count, per value, is kept in memory and the walk starts there (the
  library's own decoder notes this shortcut). A code not found in the window is given to the
  library's decoder whole, to tell an old used code from a wrong one.
- Its memory of used counts comes back as None while empty: a first code starts it.
- "Count 0" (the starting code with other last digits, which its decoder accepts) is refused,
  and a code of another type (Set-Time, Disable-PAYG, Counter-Sync, for devices with a clock)
  is reported as "other" and booked by nobody.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from typing import overload

from openpaygo import OpenPAYGOTokenDecoder, OpenPAYGOTokenEncoder, TokenType
from openpaygo.token_shared import OpenPAYGOTokenShared

from payg.domain.codes import MAX_CODE_UNITS, CodeCounts, CodeKey, Decoded

KEY_BYTES = 16
BASE = OpenPAYGOTokenShared.TOKEN_VALUE_OFFSET
OLDER = OpenPAYGOTokenDecoder.MAX_UNUSED_OLDER_TOKENS   # 16: how far below the highest count a code may be
JUMP = OpenPAYGOTokenDecoder.MAX_TOKEN_JUMP             # 64: how far above it


def new_key() -> CodeKey:
    """A fresh random key and starting code (9 digits, never starting with 0 so it prints as 9 digits)."""
    return CodeKey(secrets.token_hex(KEY_BYTES), 100_000_000 + secrets.randbelow(900_000_000))


class OpenPaygoCodec:
    def __init__(self) -> None:
        # (key, starting code, token base) -> {count: chain state}, at every multiple of OLDER walked so far
        self._points: dict[tuple[str, int, int], dict[int, int]] = {}
        self._lock = threading.Lock()

    @overload
    def _walk(self, key: CodeKey, base: int, floor: int, upto: int, stop: None = None) -> tuple[int, int]: ...

    @overload
    def _walk(self, key: CodeKey, base: int, floor: int, upto: int,
              stop: Callable[[int, int], bool]) -> tuple[int, int] | None: ...

    def _walk(self, key: CodeKey, base: int, floor: int, upto: int,
              stop: Callable[[int, int], bool] | None = None) -> tuple[int, int] | None:
        """The chain for `base`, from the nearest known point at or below count `floor`, up to count `upto`:
        the first (count, state) for which `stop(count, state)` is true (without `stop`: the one at `upto`)."""
        secret = OpenPAYGOTokenShared.load_secret_key_from_hex(key.key_hex)
        ident = (key.key_hex, key.starting_code, base)
        with self._lock:
            points = self._points.setdefault(ident, {})
            known = [c for c in points if c <= floor]
            count = max(known) if known else 0
            state = points[count] if known else OpenPAYGOTokenShared.put_base_in_token(key.starting_code, base)
        seen: dict[int, int] = {}
        found = None
        while True:
            if stop is not None and stop(count, state):
                found = (count, state)
                break
            if count >= upto:
                found = (count, state) if stop is None else None
                break
            state = OpenPAYGOTokenShared.generate_next_token(state, secret)
            count += 1
            if count % OLDER == 0:
                seen[count] = state
        if seen:
            with self._lock:
                self._points[ident].update(seen)
        return found

    def encode(self, key: CodeKey, count: int, units: int) -> tuple[int, str]:
        if not 1 <= units <= MAX_CODE_UNITS:
            raise ValueError(f"a code carries 1 to {MAX_CODE_UNITS} units, not {units}")
        new_count = OpenPAYGOTokenEncoder._get_new_count(count, TokenType.ADD_TIME)
        start_base = OpenPAYGOTokenShared.get_token_base(key.starting_code)
        base = OpenPAYGOTokenEncoder._encode_base(start_base, units)
        _, state = self._walk(key, base, new_count, new_count)
        return new_count, f"{OpenPAYGOTokenShared.put_base_in_token(state, base):09d}"

    def decode(self, key: CodeKey, code: str, counts: CodeCounts) -> Decoded:
        token = int(code)
        base = OpenPAYGOTokenShared.get_token_base(token)
        value = (base - OpenPAYGOTokenShared.get_token_base(key.starting_code)) % BASE
        if not 1 <= value <= MAX_CODE_UNITS:
            return self._whole(key, code, counts)   # not an Add-Time value payg books: the library says what it is
        low, high = max(1, counts.last - OLDER + 1), counts.last + JUMP
        used = list(counts.used)

        def matches(count: int, state: int) -> bool:
            return (count >= low and count % 2 == 0 and OpenPAYGOTokenShared.put_base_in_token(state, base) == token
                    and OpenPAYGOTokenDecoder._count_is_valid(count, counts.last, value, TokenType.ADD_TIME, used))

        found = self._walk(key, base, low, high, matches)
        if found is None:
            return self._whole(key, code, counts)
        count = found[0]
        after = OpenPAYGOTokenDecoder.update_used_counts(used, value, count, TokenType.ADD_TIME) or [count]
        return Decoded("add", value, count, CodeCounts(max(counts.last, count), tuple(sorted(after))))

    @staticmethod
    def _whole(key: CodeKey, code: str, counts: CodeCounts) -> Decoded:
        """The library's decoder from count 0: for what the window does not hold (old, wrong or of another type)."""
        # (token, secret key, last count, used counts, starting code): the library's order
        value, kind, count, used = OpenPAYGOTokenDecoder.decode_token(code, key.key_hex, counts.last,
                                                                      list(counts.used), key.starting_code)
        if kind == TokenType.ADD_TIME and (not count or not 1 <= value <= MAX_CODE_UNITS):
            # Count 0 is the starting code itself with another value in its last three digits: the library
            # takes it as an older unused code, but no generator ever makes it (the first code has count 1
            # or 2), so it could only come from someone who knows the secret starting code. Not a code.
            return Decoded("invalid")
        if kind == TokenType.ADD_TIME:
            after = tuple(sorted(used or [count]))
            return Decoded("add", int(value), count, CodeCounts(max(counts.last, count), after))
        if kind == TokenType.ALREADY_USED:
            return Decoded("used")
        if kind == TokenType.INVALID:
            return Decoded("invalid")
        return Decoded("other", count=count)
