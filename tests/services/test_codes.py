"""Top-up codes on the virtual clock: made by the landlord's desk, entered by a tenant, credited once."""

from __future__ import annotations

import pytest
from openpaygo import OpenPAYGOTokenDecoder, OpenPAYGOTokenEncoder, TokenType

from payg.adapters.openpaygo import OpenPaygoCodec, new_key
from payg.domain.codes import CodeCounts, CodeKey, highest_count
from payg.errors import CodeRefused, InvalidAmount, UnknownSocket
from payg.services.codes import CodeDesk
from tests.fakes import FakeJournal
from tests.support.rigs import Rig

KEY = CodeKey("0123456789abcdef0123456789abcdef", 123456789)


@pytest.fixture
def rig(tmp_path):
    r = Rig(tmp_path, ids=("a", "b"), journal=FakeJournal())
    r.codes = CodeDesk(r.metering, r.journal, OpenPaygoCodec(), {"a": KEY, "b": new_key()}, tokens_per_unit=10)
    r.loop.run_ticks(1)
    return r


def back_office(count: int, units: int, key: CodeKey = KEY, kind=TokenType.ADD_TIME) -> tuple[int, str]:
    """A code as the OpenPAYGO library's own generator makes it elsewhere (a back office)."""
    return OpenPAYGOTokenEncoder.generate_token(key.key_hex, count, units, kind, key.starting_code)


def test_a_code_credits_its_tokens_once_and_switches_the_relay_on_at_once(rig):
    issued = rig.codes.issue("a", 50)
    assert issued.tokens == 50 and len(issued.code) == 9 and issued.spaced.count(" ") == 2
    assert not rig.relays["a"].closed
    redeemed = rig.codes.redeem("a", issued.spaced)   # as read out: "123 456 789"
    assert (redeemed.tokens, redeemed.booked) == (50, True)
    assert rig.relays["a"].closed and rig.balance("a") == 50
    with pytest.raises(CodeRefused) as refused:
        rig.codes.redeem("a", issued.code)
    assert refused.value.reason == "used" and "used already" in str(refused.value)
    assert rig.balance("a") == 50
    entry = rig.journal.entry_by_key(f"code:a:{issued.count}")
    # the first code: "code 1" to people, whatever its OpenPAYGO count (2)
    assert (entry.kind, entry.amount, entry.memo) == ("credit", 50, "top-up code 1") and issued.count == 2


def test_another_sockets_code_and_a_forged_one_are_refused(rig):
    other = rig.codes.issue("b", 100)
    # 123456789 is this socket's starting code: with other last digits the library's decoder takes it for a
    # code of count 0, which no generator makes; payg books none of them
    for code in (other.code, "123456789", "000000000", "123456788", "123456790", "123456000"):
        with pytest.raises(CodeRefused) as refused:
            rig.codes.redeem("a", code)
        assert refused.value.reason == "invalid"
    assert rig.balance("a") == 0
    for bad in ("12345678", "1234567890", "12345678x", ""):
        with pytest.raises(CodeRefused, match="not a code") as refused:
            rig.codes.redeem("a", bad)
        assert refused.value.reason == "malformed"


def test_codes_entered_out_of_order_within_the_window_count_and_older_ones_do_not(rig):
    codes = [rig.codes.issue("a", 10 * (i + 1)) for i in range(12)]
    rig.codes.redeem("a", codes[-1].code)       # the newest first
    for c in codes[4:-1]:                        # older ones, unused, less than 16 counts below: still good
        assert rig.codes.redeem("a", c.code).booked
    for c in codes[:4]:                          # counts 2 to 8: 16 or more below the newest (24)
        with pytest.raises(CodeRefused) as refused:
            rig.codes.redeem("a", c.code)
        assert refused.value.reason == "used"
    assert rig.balance("a") == sum(c.tokens for c in codes[4:])


def test_codes_from_the_librarys_generator_decode_here_and_ours_decode_there(rig):
    count, code = back_office(0, 7)
    assert rig.codes.redeem("a", code).tokens == 70
    issued = rig.codes.issue("a", 30)
    value, kind, count, _ = OpenPAYGOTokenDecoder.decode_token(issued.code, KEY.key_hex, 0, [], KEY.starting_code)
    assert (value, kind, count) == (3, TokenType.ADD_TIME, issued.count)


def test_the_librarys_published_vectors_decode_to_their_values(tmp_path):
    """Vectors published with the OpenPAYGO Python library (test/test_tokens.jsonl): standard tokens."""
    codec = OpenPaygoCodec()
    for key, start, last, token, value, count in [
        ("bc41ec9530f6dac86b1a29ab82edc5fb", 516959010, 1, "588224011", 1, 2),
        ("bc41ec9530f6dac86b1a29ab82edc5fb", 516959010, 1, "944829005", 995, 2),
        ("dac86b1a29ab82edc5fbbc41ec9530f6", 432435255, 10, "579194256", 1, 12),
    ]:
        decoded = codec.decode(CodeKey(key, start), token, CodeCounts(last))
        assert (decoded.kind, decoded.units, decoded.count) == ("add", value, count)
        assert codec.encode(CodeKey(key, start), last, value) == (count, token)


def test_a_code_of_another_type_books_nothing(rig):
    _, set_time = back_office(0, 5, kind=TokenType.SET_TIME)
    with pytest.raises(CodeRefused) as refused:
        rig.codes.redeem("a", set_time)
    assert refused.value.reason == "unsupported" and rig.balance("a") == 0


@pytest.mark.parametrize("tokens, fragment", [(0, "positive"), (15, "multiple of 10"), (9960, "at most 995 units"),
                                              (True, "positive")])
def test_an_amount_a_code_cannot_carry_is_refused_with_what_can(rig, tokens, fragment):
    with pytest.raises(InvalidAmount, match=fragment):
        rig.codes.issue("a", tokens)
    assert rig.journal.codes_issued("a") == 0


def test_unknown_sockets_are_refused(rig):
    with pytest.raises(UnknownSocket):
        rig.codes.issue("zz", 10)
    with pytest.raises(UnknownSocket):
        rig.codes.redeem("zz", "123456789")


def test_repeated_wrong_codes_lock_code_entry_until_the_landlord_acknowledges(rig):
    good = rig.codes.issue("a", 20)
    for i in range(10):
        with pytest.raises(CodeRefused) as refused:
            rig.codes.redeem("a", f"{100000000 + i * 7919}")
        assert refused.value.reason == "invalid"
    assert rig.codes.locked("a") and not rig.codes.locked("b")
    assert "code_lockout" in [e["kind"] for e in rig.journal.events("a")]
    assert rig.journal.open_alarms()["a"][0] == 1   # the landlord view shows it as an alarm
    with pytest.raises(CodeRefused) as refused:
        rig.codes.redeem("a", good.code)    # even a good code, while locked
    assert refused.value.reason == "locked" and rig.balance("a") == 0
    rig.landlord.acknowledge_alarms("a")
    assert not rig.codes.locked("a")
    assert rig.codes.redeem("a", good.code).tokens == 20


def test_a_failed_commit_books_neither_the_credit_nor_the_count(rig):
    issued = rig.codes.issue("a", 40)
    rig.journal.fail_next_commit = True
    with pytest.raises(Exception, match="commit failed"):
        rig.codes.redeem("a", issued.code)
    assert rig.balance("a") == 0 and rig.journal.code_counts("a").last == 0
    assert rig.codes.redeem("a", issued.code).booked and rig.balance("a") == 40


def test_codes_and_emergency_credit_work_with_the_ledger_node_down(rig):
    from payg.services.emergency import EmergencyDesk

    rig.source.fail = True                      # the node is unreachable: deposit polls fail
    rig.loop.run_for(5)
    assert rig.site.health()["ledger"] == "unavailable"
    assert rig.codes.redeem("a", rig.codes.issue("a", 30).code).tokens == 30
    assert rig.relays["a"].closed and rig.balance("a") == 30
    emergency = EmergencyDesk(rig.metering, rig.journal, tokens=10, below_tokens=5)
    assert emergency.take("b") == 10 and rig.relays["b"].closed


def test_after_a_back_office_code_is_entered_the_next_code_is_made_above_its_count(rig):
    """Issue 28: a back office went on from the exported count with the OpenPAYGO library and its code was entered;
    the controller's next code was made at that very count, and was refused as used when entered."""
    ours = rig.codes.issue("a", 10)
    assert rig.codes.redeem("a", ours.code).booked
    exported = highest_count(rig.journal.codes_issued("a"), rig.journal.code_counts("a"))
    assert exported == ours.count
    count, elsewhere = back_office(exported, 3)         # the back office's next code: the count ours would take
    assert count == ours.count + 2
    assert rig.codes.redeem("a", elsewhere).count == count
    assert highest_count(rig.journal.codes_issued("a"), rig.journal.code_counts("a")) == count

    nxt = rig.codes.issue("a", 20)
    assert nxt.count > count
    redeemed = rig.codes.redeem("a", nxt.code)           # good: not at a count already used
    assert (redeemed.booked, redeemed.tokens, redeemed.count) == (True, 20, nxt.count)
    assert rig.balance("a") == 10 + 30 + 20
    assert rig.journal.codes_issued("a") == nxt.count


def test_codes_made_by_a_back_office_far_ahead_are_never_issued_again(rig):
    """Codes the back office made and the tenant entered out of order, well above anything issued here: every count
    the controller has seen is below the next code it makes, and that code still counts."""
    made = [back_office(c, 1 + c) for c in (10, 20, 14)]    # counts 12, 22, 16, entered in that order
    for count, code in made:
        assert rig.codes.redeem("a", code).count == count
    used = {count for count, _ in made}
    assert max(used) == 22 == highest_count(0, rig.journal.code_counts("a"))
    issued = [rig.codes.issue("b", 10), rig.codes.issue("a", 10), rig.codes.issue("a", 10)]
    assert [i.count for i in issued] == [2, 24, 26]       # socket b has its own counts
    assert all(rig.codes.redeem(i.socket_id, i.code).booked for i in issued)


def test_a_repeated_request_is_still_its_own_code_after_a_back_office_redeem(rig):
    first = rig.codes.issue("a", 10, request_id="desk-0001")
    count, elsewhere = back_office(first.count, 5)
    rig.codes.redeem("a", elsewhere)
    again = rig.codes.issue("a", 10, request_id="desk-0001")
    assert (again.code, again.count, again.repeated) == (first.code, first.count, True)   # the same code, not new
    assert rig.codes.issue("a", 10).count == count + 2


def test_the_highest_count_takes_what_was_issued_and_what_was_entered():
    assert highest_count(0, CodeCounts()) == 0
    assert highest_count(8, CodeCounts(4, (2, 4))) == 8
    assert highest_count(2, CodeCounts(12, (10, 12))) == 12
