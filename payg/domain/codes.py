"""Offline top-up codes (OpenPAYGO Token): what a code's value is worth, and the decoder's memory per socket.

A code carries a value of 1 to 995 units (the standard 9-digit token's Add-Time range) and
a count. payg books `units × tokens_per_unit` tokens for it, once: the count is the code's
identity, and the journal keeps, per socket, the highest count used and the older counts
used within the format's window (less than 16 counts below it), as the format's decoder wants.
The algorithm itself is the `openpaygo` package's (payg/adapters/openpaygo.py).

People never see the count: a top-up (Add-Time) code always has an even count (2, 4, 6 ...; the odd ones
are the format's other code types), so the n-th code of a socket is count 2n and is called "code n".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from payg.errors import InvalidAmount

MAX_CODE_UNITS = 995        # the largest Add-Time value of a standard (9-digit) OpenPAYGO token
CODE_DIGITS = re.compile(r"^[0-9]{9}$")


@dataclass(frozen=True)
class CodeKey:
    """A socket's secret: the 16-byte key (hex) and the starting code; kept owner-only in the data directory."""

    key_hex: str
    starting_code: int


@dataclass(frozen=True)
class CodeCounts:
    """The decoder's memory for one socket: the highest count used and the counts used near it."""

    last: int = 0
    used: tuple[int, ...] = ()


@dataclass(frozen=True)
class Decoded:
    """What a code is for this socket: kind "add" (a top-up of `units`), "used" (valid but used or too old),
    "invalid" (not a code of this socket), or "other" (a valid code of a type payg does not book)."""

    kind: Literal["add", "used", "invalid", "other"]
    units: int | None = None
    count: int | None = None
    counts: CodeCounts | None = None  # the memory after booking it (kind "add")

    def added(self) -> tuple[int, int, CodeCounts] | None:
        """(units, count, the memory after it) of a top-up; None for any other kind."""
        if self.kind != "add" or self.units is None or self.count is None or self.counts is None:
            return None
        return self.units, self.count, self.counts


def highest_count(issued: int, counts: CodeCounts) -> int:
    """The highest count the controller has seen for a socket: of the codes it issued (`issued`) and of the codes
    entered (`counts`, a back office's codes among them). The next code is made above it, so it is never at a count
    already used, and `payg codes export` hands it to a back office as `last_count` to go on from."""
    return max(issued, counts.last, *counts.used)


def number_of(count: int) -> int:
    """The number a person reads for the top-up code with OpenPAYGO count `count`: 1, 2, 3 ... for 2, 4, 6 ..."""
    return count // 2


OLD_WORDS = re.compile(r"\bcode #(\d+)")


def in_words(text: str) -> str:
    """A code's journal memo or event detail as a person reads it (only a code's: a landlord's own reason may say
    "#"). Texts written before codes were numbered for people name the count ("top-up code #4"); they are read as
    the number ("top-up code 2"). Newer texts have no "#"."""
    return OLD_WORDS.sub(lambda m: f"code {number_of(int(m.group(1)))}", text)


def units_for(tokens: object, tokens_per_unit: int) -> int:
    """The value a code must carry for `tokens` tokens; InvalidAmount naming what is possible."""
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens <= 0:
        raise InvalidAmount(f"a code's amount is a positive whole number of tokens, got {tokens!r}")
    if tokens % tokens_per_unit:
        raise InvalidAmount(f"{tokens} tokens is not a multiple of {tokens_per_unit} (one code unit is "
                            f"{tokens_per_unit} tokens: [codes] tokens_per_unit)")
    units = tokens // tokens_per_unit
    if units > MAX_CODE_UNITS:
        raise InvalidAmount(f"{tokens} tokens is more than one code carries: at most {MAX_CODE_UNITS} units of "
                            f"{tokens_per_unit} tokens, {MAX_CODE_UNITS * tokens_per_unit} tokens (make two codes)")
    return units


def normalise(code: object) -> str:
    """A code as typed (spaces, dashes and dots between digit groups allowed) as its 9 digits; ValueError else."""
    if not isinstance(code, str):
        raise ValueError("a code is 9 digits")
    digits = re.sub(r"[\s.\-]", "", code)
    if not CODE_DIGITS.match(digits):
        raise ValueError("a code is 9 digits, such as 123 456 789")
    return digits


def spaced(code: str) -> str:
    """123456789 as 123 456 789, the way it is read out and typed."""
    return " ".join(code[i:i + 3] for i in range(0, len(code), 3))
