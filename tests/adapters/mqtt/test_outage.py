"""The broker is not part of billing: down, stalled or refusing the login, the meters are billed and the
relays switched exactly as with MQTT off; and no event is lost or doubled for a deduplicating subscriber."""

from __future__ import annotations

import sqlite3
import time

import pytest

from tests.support import free_port, wait_until


def scenario(c) -> tuple:
    """A top-up, 800 W until the credit is gone and the relay cut, a second top-up: what billing did."""
    c.rt.ledger.pay("kitchen", 30)
    c.rt.ledger.pay("hall", 5)
    slowest = 0.0
    for _ in range(3):
        for _ in range(100):  # 20 s of virtual time per round
            started = time.perf_counter()
            c.driver.step()
            slowest = max(slowest, time.perf_counter() - started)
        if _ == 1:
            c.rt.ledger.pay("kitchen", 10)
    entries = [(e.socket_id, e.kind, e.amount) for s in ("kitchen", "hall") for e in c.rt.journal.all_entries(s)]
    events = [(e["kind"], e["detail"]) for s in ("kitchen", "hall") for e in c.rt.journal.events(s, 100)]
    relays = {s: c.rt.relays[s].is_closed() for s in ("kitchen", "hall")}
    return entries, events, relays, {s: c.balance(s) for s in ("kitchen", "hall")}, slowest


@pytest.fixture
def control(controllers):
    result = scenario(controllers(("kitchen", "hall"), data="control", mqtt=False))
    entries, events, relays, balances, _ = result
    with sqlite3.connect(controllers.last.rt.journal.path) as db:  # MQTT off: the outbox is not kept
        assert db.execute("SELECT COUNT(*) FROM outbox").fetchone() == (0,)
    assert any(kind == "credit_off" for kind, _ in events) and relays["kitchen"] is True  # the scenario bites
    return result


def same_billing(result, control) -> None:
    assert result[:4] == control[:4]
    assert result[4] < 0.5, f"a tick took {result[4]:.3f} s"  # nothing waited for the broker


def test_a_broker_that_is_down_changes_nothing_in_billing(controllers, control):
    c = controllers(("kitchen", "hall"), data="down", port=free_port(), wait_online=False)
    same_billing(scenario(c), control)
    assert c.bridge.status()["connected"] is False and c.bridge.outbox.pending() > 0  # kept for later


def test_a_broker_that_refuses_the_login_changes_nothing_in_billing(controllers, control):
    c = controllers(("kitchen", "hall"), data="refused", password="wrong", wait_online=False)
    result = scenario(c)
    same_billing(result, control)
    assert "refused" in (c.bridge.status()["last_error"] or "")


def test_a_stalled_broker_changes_nothing_and_gets_everything_once_it_answers(controllers, control, broker,
                                                                              listeners):
    audit = listeners(user="landlord", topics=("payg/home/events",), client_id="audit", clean=False)
    c = controllers(("kitchen", "hall"), data="stalled")
    broker.pause()  # accepts bytes into its socket buffer, answers nothing
    try:
        same_billing(scenario(c), control)
    finally:
        broker.resume()
    assert c.bridge.outbox.pending() > 0  # held while the broker said nothing
    wait_until(lambda: c.bridge.outbox.pending() == 0, 60, "the outbox delivered")
    # every event of the journal and every credit, once
    want = len(control[1]) + sum(1 for _, kind, _ in control[0] if kind in ("deposit", "credit"))
    wait_until(lambda: len(audit.events) == want, 30, f"{want} events at the subscriber")


def test_events_reach_a_deduplicating_subscriber_exactly_once_and_in_order_across_a_broker_restart(
        controllers, broker, listeners):
    audit = listeners(user="landlord", topics=("payg/home/events",), client_id="audit", clean=False)
    c = controllers(("kitchen", "hall"), load_w=0)
    deposits = 0
    for round_ in range(4):
        for _ in range(5):
            c.rt.ledger.pay("kitchen", 3)
            deposits += 1
            c.driver.run_for(1.2)
        if round_ == 1:
            broker.stop()  # events booked now wait in the outbox; some were in flight when it went
        elif round_ == 2:
            broker.start()
    wait_until(lambda: c.bridge.outbox.pending() == 0, 60, "the outbox delivered")
    wait_until(lambda: len(audit.events_of("credited")) == deposits, 30, f"{deposits} credited events")
    seqs = [e["seq"] for e in audit.events_of()]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # none missing
    arrival = [e["seq"] for e in audit.in_arrival_order()]
    assert arrival == sorted(arrival)
    assert audit.connections >= 2  # it really lived through the restart
