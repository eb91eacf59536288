"""People's numbers for top-up codes (payg/domain/codes.py `number_of`) rest on OpenPAYGO's counts: a top-up code's
count is always even, so the n-th is 2n. Checked here against the library itself, with another code type between."""

from __future__ import annotations

from openpaygo import OpenPAYGOTokenEncoder, TokenType

from payg.adapters.openpaygo import OpenPaygoCodec, new_key
from payg.domain.codes import in_words, number_of


def test_the_nth_code_made_is_count_2n_and_reads_as_n():
    codec, key, count = OpenPaygoCodec(), new_key(), 0
    numbers = []
    for _ in range(5):
        count, _code = codec.encode(key, count, 10)
        numbers.append((count, number_of(count)))
    assert numbers == [(2, 1), (4, 2), (6, 3), (8, 4), (10, 5)]


def test_a_back_office_code_of_another_type_between_does_not_shift_the_numbers():
    codec, key = OpenPaygoCodec(), new_key()
    odd, _ = OpenPAYGOTokenEncoder.generate_token(key.key_hex, 4, 1, TokenType.SET_TIME, key.starting_code)
    assert odd == 5
    after, _ = codec.encode(key, odd, 10)
    assert (after, number_of(after)) == (6, 3)


def test_old_texts_read_as_peoples_numbers_and_new_ones_are_left_alone():
    assert in_words("top-up code #4") == "top-up code 2"
    assert in_words("code #10: +50 tokens") == "code 5: +50 tokens"
    assert in_words("code 3 for 50 tokens") == "code 3 for 50 tokens"
    assert in_words("barcode #4") == "barcode #4"
