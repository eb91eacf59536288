"""payg's codec against the OpenPAYGO library itself: the same codes, the same answers, however old the socket."""

from __future__ import annotations

import random

from openpaygo import OpenPAYGOTokenDecoder, OpenPAYGOTokenEncoder, TokenType

from payg.adapters.openpaygo import OpenPaygoCodec
from payg.domain.codes import CodeCounts, CodeKey

KEY = CodeKey("a1b2c3d4e5f60718293a4b5c6d7e8f90", 271828182)


def library(code: str, counts: CodeCounts):
    """The library's own decoder from count 0, as payg's answer kinds."""
    value, kind, count, used = OpenPAYGOTokenDecoder.decode_token(code, KEY.key_hex, counts.last, list(counts.used),
                                                                  KEY.starting_code)
    if kind == TokenType.ADD_TIME and count:
        return ("add", value, count, CodeCounts(max(counts.last, count), tuple(sorted(used or [count]))))
    return ({TokenType.ALREADY_USED: "used"}.get(kind, "invalid"), None, None, None)


def test_a_long_random_life_of_codes_decodes_exactly_as_the_library_decodes_it():
    rnd = random.Random(5)
    codec = OpenPaygoCodec()
    issued: list[tuple[int, str]] = []
    count = 0
    for _ in range(300):   # a landlord making codes of a few amounts, well ahead of their use
        count, code = OpenPAYGOTokenEncoder.generate_token(KEY.key_hex, count, rnd.choice([1, 2, 5, 10, 50]),
                                                           TokenType.ADD_TIME, KEY.starting_code)
        issued.append((count, code))
    counts = CodeCounts()
    pending = list(issued)
    answers = set()
    while pending:
        # mostly in order, sometimes a few ahead, sometimes an old one again, sometimes a wrong code
        pick = rnd.random()
        if pick < 0.1:
            code = f"{rnd.randrange(10**9):09d}"
        elif pick < 0.2 and issued:
            code = rnd.choice(issued)[1]
        else:
            code = pending.pop(min(len(pending) - 1, int(rnd.expovariate(0.7))))[1]
        ours = codec.decode(KEY, code, counts)
        theirs = library(code, counts)
        assert (ours.kind, ours.units, ours.count, ours.counts) == theirs, (code, counts)
        answers.add(ours.kind)
        if ours.kind == "add":
            counts = ours.counts
    assert answers == {"add", "used", "invalid"} and counts.last >= 580


def test_codes_made_here_are_the_librarys_codes_from_any_count():
    codec = OpenPaygoCodec()
    for count in (0, 1, 15, 16, 17, 200, 201, 731):
        for units in (1, 7, 995):
            assert codec.encode(KEY, count, units) == OpenPAYGOTokenEncoder.generate_token(
                KEY.key_hex, count, units, TokenType.ADD_TIME, KEY.starting_code)
