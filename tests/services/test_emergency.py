"""Emergency credit: taken once when the credit is nearly gone, journaled as its own kind, repaid first by the
next top-up (before any debt plan), and offered again only after that."""

from __future__ import annotations

import pytest

from payg.adapters.openpaygo import OpenPaygoCodec, new_key
from payg.errors import CodeRefused
from payg.services.codes import CodeDesk
from payg.services.deposits import DepositWatcher
from payg.services.emergency import EmergencyDesk
from tests.support.rigs import Rig


@pytest.fixture
def rig(tmp_path):
    r = Rig(tmp_path, ids=("a",))
    r.emergency = EmergencyDesk(r.metering, r.journal, tokens=50, below_tokens=20)
    r.loop.run_ticks(1)
    return r

def test_taken_when_low_repaid_first_by_the_next_top_up_then_offered_again(rig):
    rig.deposit("a", 30)
    rig.loop.run_for(2)
    assert rig.emergency.offer("a") is None            # 30 left: not below 20
    with pytest.raises(CodeRefused, match="less than 20 tokens"):
        rig.emergency.take("a")
    rig.draw("a", 600.0, 3 * 60)                        # 30 Wh used: off
    assert not rig.relays["a"].closed and rig.emergency.offer("a") == 50
    assert rig.emergency.take("a") == 50
    assert rig.relays["a"].closed and rig.balance() == 50
    [entry] = [e for e in rig.journal.all_entries("a") if e.kind == "emergency"]
    assert (entry.amount, entry.idem_key) == (50, "emergency:a:1")
    with pytest.raises(CodeRefused, match="taken already"):
        rig.emergency.take("a")
    rig.draw("a", 600.0, 2 * 60)                        # 20 of the 50 used
    rig.deposit("a", 100)                               # repays the 50 first: 30 + 100 - 50 = 80
    rig.loop.run_for(2)
    assert rig.balance() == 80 and rig.emergency.owed_tokens("a") == 0
    repaid = [e for e in rig.journal.all_entries("a") if e.kind == "emergency_repaid"]
    assert [e.amount for e in repaid] == [-50]
    rig.draw("a", 600.0, 7 * 60)                        # down below 20 again
    assert rig.emergency.offer("a") == 50 and rig.emergency.take("a") == 50
    assert [e.idem_key for e in rig.journal.all_entries("a") if e.kind == "emergency"] == ["emergency:a:1",
                                                                                              "emergency:a:2"]

def test_a_small_top_up_repays_part_and_the_rest_comes_from_the_one_after(rig):
    rig.loop.run_for(2)
    rig.emergency.take("a")
    rig.deposit("a", 20)
    rig.loop.run_for(2)
    assert rig.emergency.owed_tokens("a") == 30 and rig.balance() == 50   # all 20 repaid the loan
    rig.deposit("a", 100)
    rig.loop.run_for(2)
    assert rig.emergency.owed_tokens("a") == 0 and rig.balance() == 120

def test_a_code_repays_it_too_and_the_plan_takes_its_share_only_after(tmp_path):
    rig = Rig(tmp_path, ids=("a",))
    rig.watcher = DepositWatcher(rig.source, rig.journal, rig.clock, on_credit=rig.metering.credits_arrived,
                                 recovery_percent=50)
    rig.site.watcher = rig.watcher
    emergency = EmergencyDesk(rig.metering, rig.journal, tokens=40, below_tokens=10)
    codes = CodeDesk(rig.metering, rig.journal, OpenPaygoCodec(), {"a": new_key()}, 10, recovery_percent=50)
    rig.loop.run_ticks(1)
    emergency.take("a")
    codes.redeem("a", codes.issue("a", 100).code)
    assert emergency.owed_tokens("a") == 0 and rig.balance() == 100   # 40 + 100 - 40 repaid
    assert rig.journal.deferred_debt("a") == 0

def test_off_unless_configured(rig):
    off = EmergencyDesk(rig.metering, rig.journal, tokens=0, below_tokens=20)
    assert off.offer("a") is None
    with pytest.raises(CodeRefused) as refused:
        off.take("a")
    assert refused.value.reason == "emergency_off" and rig.balance() == 0

def test_it_survives_a_restart_as_owed(rig):
    rig.emergency.take("a")
    rig.restart()
    again = EmergencyDesk(rig.metering, rig.journal, tokens=50, below_tokens=20)
    rig.draw("a", 600.0, 10 * 60)
    assert again.owed_tokens("a") == 50 and again.offer("a") is None
