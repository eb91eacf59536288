"""Top-up codes through the OpenPAYGO project's own library (`openpaygo` on PyPI): the CodeCodec port.

payg makes and reads standard 9-digit Add-Time tokens only; the value is the code's units
(payg/domain/codes.py says what a unit is worth). Two things the library leaves to its
caller are done here: its memory of used counts comes back as None while it is empty (so a
first code starts it with its own count), "count 0" (the starting code with other last digits,
which its decoder accepts) is refused, and a decode result of another type (Set-Time,
Disable-PAYG, Counter-Sync, made by a back office for devices with a clock) is reported as
"other" and booked by nobody.
"""

from __future__ import annotations

import secrets

from openpaygo import OpenPAYGOTokenDecoder, OpenPAYGOTokenEncoder, TokenType

from payg.domain.codes import MAX_CODE_UNITS, CodeCounts, CodeKey, Decoded

KEY_BYTES = 16


def new_key() -> CodeKey:
    """A fresh random key and starting code (9 digits, never starting with 0 so it prints as 9 digits)."""
    return CodeKey(secrets.token_hex(KEY_BYTES), 100_000_000 + secrets.randbelow(900_000_000))


class OpenPaygoCodec:
    def encode(self, key: CodeKey, count: int, units: int) -> tuple[int, str]:
        if not 1 <= units <= MAX_CODE_UNITS:
            raise ValueError(f"a code carries 1 to {MAX_CODE_UNITS} units, not {units}")
        # (secret key, count, value, type, starting code): the library's order
        new_count, code = OpenPAYGOTokenEncoder.generate_token(key.key_hex, count, units, TokenType.ADD_TIME,
                                                               key.starting_code)
        return new_count, code

    def decode(self, key: CodeKey, code: str, counts: CodeCounts) -> Decoded:
        # (token, secret key, last count, used counts, starting code): the library's order
        value, kind, count, used = OpenPAYGOTokenDecoder.decode_token(code, key.key_hex, counts.last,
                                                                      list(counts.used), key.starting_code)
        if kind == TokenType.ADD_TIME and (not count or not 1 <= value <= MAX_CODE_UNITS):
            # Count 0 is the starting code itself with another value in its last three digits: the library
            # takes it as an older unused code, but no generator ever makes it (the first code has count 1
            # or 2), so it could only come from someone who knows the secret starting code. Not a code.
            return Decoded("invalid")
        if kind == TokenType.ADD_TIME:
            if used is None:  # the library's memory was empty: this code's count is its first entry
                used = [count]
            return Decoded("add", int(value), count, CodeCounts(max(counts.last, count), tuple(sorted(used))))
        if kind == TokenType.ALREADY_USED:
            return Decoded("used")
        if kind == TokenType.INVALID:
            return Decoded("invalid")
        return Decoded("other", count=count)
