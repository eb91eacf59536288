"""A socket nobody has paid for is vacant: off, but not "off for lack of credit", never flagged for help, and
the first top-up of any kind (a deposit, a credit, a code) ends it, across restarts too."""

from __future__ import annotations

from payg.services.dashboard import Dashboard, ViewSettings, socket_view
from tests.support.rigs import Rig


def kinds(r: Rig, socket_id="a") -> list[str]:
    return [e["kind"] for e in r.journal.events(socket_id, 100)]


def view(r: Rig, socket_id="a"):
    return socket_view(r.metering.state(socket_id), Dashboard(r.journal, r.clock),
                       ViewSettings(r.metering.tariff, 10, flag_off_hours=1.0))


def test_a_never_paid_socket_is_vacant_not_off_for_credit_and_never_flagged(tmp_path):
    r = Rig(tmp_path, ids=("a", "b"), tick_s=60, deposit_poll_s=60, grace_s=120)
    r.deposit("b", 5)
    r.loop.run_for(120)
    r.draw("b", 1000, 600, step_s=60)                            # "b" runs out; "a" was never paid
    r.loop.run_for(3 * 3600)
    a, b = view(r, "a"), view(r, "b")
    assert (a.status, a.state.vacant, a.needs_help) == ("vacant", True, False)
    assert "credit_off" not in kinds(r, "a")
    assert (b.status, b.state.vacant, b.needs_help) == ("off", False, True) and "credit_off" in kinds(r, "b")


def test_the_first_payment_ends_vacancy_and_a_restart_remembers_it(tmp_path):
    r = Rig(tmp_path)
    r.loop.run_for(5)
    assert r.metering.state("a").vacant and not r.relays["a"].closed
    r.landlord.adjust("a", 3, "moving-in credit", "req-1")     # a manual credit is a payment too
    r.loop.run_for(2)
    assert not r.metering.state("a").vacant and r.relays["a"].closed
    r.restart()
    r.loop.run_for(2)
    assert not r.metering.state("a").vacant
