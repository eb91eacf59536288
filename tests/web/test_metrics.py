"""GET /metrics on a real controller (the embedded default: the mock ledger, simulated meters, a virtual clock),
read back with prometheus_client's own parser."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from prometheus_client import CONTENT_TYPE_LATEST

from tests.support.prometheus import Scrape
from tests.support.web_beds import TOKEN, make_web_bed

KITCHEN_W = 800.0  # config/default.toml


def scrape(client) -> Scrape:
    resp = client.get("/metrics")
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.headers["Content-Type"] == CONTENT_TYPE_LATEST
    return Scrape(resp.get_data(as_text=True))


def test_every_metric_has_its_type_and_every_socket_its_series(bed):
    bed.loop.run_ticks(1)
    m = scrape(bed.client())
    assert m.types == {
        "payg_tick_duration_seconds": "histogram", "payg_socket_info": "gauge",
        "payg_socket_energy_joules": "counter", "payg_socket_balance_units": "gauge",
        "payg_socket_balance_tokens": "gauge", "payg_socket_relay_on": "gauge",
        "payg_socket_meter_errors": "counter", "payg_ticks_failed": "counter",
        "payg_deposit_poll_errors": "counter", "payg_deposit_watcher_lag_seconds": "gauge",
        "payg_journal_bytes": "gauge", "payg_ledger_cursor": "gauge",
        "payg_tick_duration_seconds_created": "gauge",
    }
    for sid, name in (("kitchen", "Kitchen"), ("laundry", "Laundry"), ("office", "Office")):
        assert m("payg_socket_info", socket=sid, name=name) == 1
        assert m("payg_socket_energy_joules_total", socket=sid) == 0
        assert m("payg_socket_meter_errors_total", socket=sid) == 0
    assert not m.has("payg_ledger_cursor", ledger="mock")  # nothing paid yet: no cursor


def test_energy_balance_and_relay_follow_a_top_up_until_the_credit_runs_out(bed):
    client, loop = bed.client(), bed.loop
    loop.run_for(2)
    m = scrape(client)
    assert m("payg_socket_balance_units", socket="kitchen") == 0
    assert m("payg_socket_relay_on", socket="kitchen") == 0
    bed.rt.ledger.pay("kitchen", 5)  # 5 tokens, 5 Wh at 1 token per Wh
    loop.run_for(1)  # the watcher's next poll credits it and closes the relay
    m = scrape(client)
    assert m("payg_socket_balance_units", socket="kitchen") == 5
    assert m("payg_socket_balance_tokens", socket="kitchen") == 5
    assert m("payg_socket_relay_on", socket="kitchen") == 1
    assert m("payg_socket_relay_on", socket="office") == 0
    assert m("payg_ledger_cursor", ledger="mock") == 1
    loop.run_for(9)  # 800 W for 9 s: the meter's counter shows 2 Wh
    m = scrape(client)
    assert m("payg_socket_energy_joules_total", socket="kitchen") == 2 * 3600
    state = client.get("/api/sockets/kitchen").get_json()
    assert state["energy_wh"] == 2 and state["balance"] == 3
    assert m("payg_socket_balance_units", socket="kitchen") == 3
    loop.run_for(20)  # 5 Wh last 22.5 s at 800 W
    m = scrape(client)
    state = client.get("/api/sockets/kitchen").get_json()
    assert state["relay"] == "off" and state["credit_exhausted"]
    assert m("payg_socket_relay_on", socket="kitchen") == 0
    # cut just before the 5th Wh: the counter shows 4, the token of the part it has not counted yet is kept
    assert bed.rt.meters["kitchen"].true_energy_wh == pytest.approx(4.95, abs=0.01)
    assert m("payg_socket_energy_joules_total", socket="kitchen") == 4 * 3600 == state["energy_wh"] * 3600
    assert m("payg_socket_balance_units", socket="kitchen") == 1 == state["balance"]
    assert m("payg_socket_energy_joules_total", socket="laundry") == 0  # never paid, never on


def test_meter_errors_count_every_tick_without_a_reading(bed):
    client, loop = bed.client(), bed.loop
    loop.run_ticks(2)
    bed.rt.meters["laundry"].offline = True
    loop.run_ticks(4)
    m = scrape(client)
    assert m("payg_socket_meter_errors_total", socket="laundry") == 4
    assert m("payg_socket_meter_errors_total", socket="kitchen") == 0
    bed.rt.meters["laundry"].offline = False
    loop.run_ticks(3)
    assert scrape(client)("payg_socket_meter_errors_total", socket="laundry") == 4


def test_the_tick_histogram_counts_every_tick_and_its_duration(bed):
    client, loop = bed.client(), bed.loop
    loop.run_ticks(5)
    m = scrape(client)
    assert m("payg_tick_duration_seconds_count") == loop.ticks == 5
    assert m("payg_tick_duration_seconds_bucket", le="+Inf") == 5
    assert m("payg_tick_duration_seconds_sum") > 0
    steps = itertools.count(0.0, 0.003)  # each tick takes 3 ms by this timer
    bed.rt.site.timer = lambda: next(steps)
    loop.run_ticks(4)
    after = scrape(client)
    assert after("payg_tick_duration_seconds_count") == loop.ticks == 9
    for le, more in (("0.001", 0), ("0.0025", 0), ("0.005", 4), ("1.0", 4), ("+Inf", 4)):
        assert after("payg_tick_duration_seconds_bucket", le=le) == m("payg_tick_duration_seconds_bucket", le=le) + more
    assert after("payg_tick_duration_seconds_sum") - m("payg_tick_duration_seconds_sum") == pytest.approx(0.012)


def test_a_failed_tick_is_counted_and_timed(bed, monkeypatch):
    client, loop = bed.client(), bed.loop
    loop.run_ticks(2)

    def broken():
        raise RuntimeError("a bug in the meter driver")

    monkeypatch.setattr(bed.rt.meters["office"], "read", broken)  # not a MeterUnavailable: the tick fails
    loop.run_ticks(3)
    m = scrape(client)
    assert m("payg_ticks_failed_total") == 3
    assert m("payg_tick_duration_seconds_count") == 5
    monkeypatch.undo()
    loop.run_ticks(1)
    m = scrape(client)
    assert m("payg_ticks_failed_total") == 3 and m("payg_tick_duration_seconds_count") == 6


def test_the_watcher_lag_and_poll_errors_grow_while_the_ledger_is_down(bed):
    client, loop, clock = bed.client(), bed.loop, bed.clock
    loop.run_for(3)
    m = scrape(client)
    assert m("payg_deposit_watcher_lag_seconds", ledger="mock") == 0
    assert m("payg_deposit_poll_errors_total", ledger="mock") == 0
    last_good = clock.now()
    bed.rt.ledger.set_offline(True)
    loop.run_for(5)  # five polls (one a second), each refused
    clock.advance(0.5)
    m = scrape(client)
    assert m("payg_deposit_poll_errors_total", ledger="mock") == 5
    assert m("payg_deposit_watcher_lag_seconds", ledger="mock") == pytest.approx(clock.now() - last_good) == 5.5
    bed.rt.ledger.set_offline(False)
    bed.rt.ledger.pay("office", 2)
    bed.rt.ledger.pay("office", 1)
    loop.run_for(1)
    m = scrape(client)
    assert m("payg_deposit_watcher_lag_seconds", ledger="mock") == 0.5  # the poll ran at the last whole second
    assert m("payg_deposit_poll_errors_total", ledger="mock") == 5
    assert m("payg_ledger_cursor", ledger="mock") == 2


def test_journal_bytes_are_the_file_and_its_write_ahead_log(bed):
    bed.rt.ledger.pay("kitchen", 3)
    bed.loop.run_for(5)
    path = Path(bed.rt.journal.path)
    wal = path.with_name(path.name + "-wal")
    assert wal.stat().st_size > 0  # else this test could not tell the two apart
    assert scrape(bed.client())("payg_journal_bytes") == path.stat().st_size + wal.stat().st_size


def test_the_token_or_this_machine_may_scrape_and_nobody_else(bed):
    remote = bed.client()
    remote.environ_base["REMOTE_ADDR"] = "192.168.1.66"
    resp = remote.get("/metrics")
    assert resp.status_code == 401 and "payg_" not in resp.get_data(as_text=True)
    remote.environ_base["HTTP_AUTHORIZATION"] = "Bearer " + "u" * 43
    assert remote.get("/metrics").status_code == 401
    remote.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {TOKEN}"
    assert remote.get("/metrics").status_code == 200
    for address in ("127.0.0.1", "::1", "::ffff:127.0.0.1"):
        local = bed.client()
        local.environ_base["REMOTE_ADDR"] = address
        assert local.get("/metrics").status_code == 200, address
    spoofed = bed.client()
    spoofed.environ_base.update(REMOTE_ADDR="192.168.1.66", HTTP_X_FORWARDED_FOR="127.0.0.1")
    assert spoofed.get("/metrics").status_code == 401
    # a proxy on this machine that is not a trusted one forwards a stranger's request
    forwarded = bed.client()
    forwarded.environ_base.update(REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.9")
    assert forwarded.get("/metrics").status_code == 401


def test_behind_a_trusted_proxy_the_client_it_names_is_who_scrapes(tmp_path):
    bed = make_web_bed(tmp_path, trusted_proxies=("127.0.0.1",))
    try:
        c = bed.client()
        c.environ_base.update(REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.9")
        assert c.get("/metrics").status_code == 401
        c.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {TOKEN}"
        assert c.get("/metrics").status_code == 200
    finally:
        bed.close()


def test_two_controllers_in_one_process_keep_their_own_figures(tmp_path):
    first, second = make_web_bed(tmp_path / "a"), make_web_bed(tmp_path / "b")
    try:
        first.loop.run_ticks(2)
        second.loop.run_ticks(7)
        first.rt.meters["kitchen"].offline = True
        first.loop.run_ticks(1)
        assert scrape(first.client())("payg_tick_duration_seconds_count") == 3
        assert scrape(first.client())("payg_socket_meter_errors_total", socket="kitchen") == 1
        assert scrape(second.client())("payg_tick_duration_seconds_count") == 7
        assert scrape(second.client())("payg_socket_meter_errors_total", socket="kitchen") == 0
    finally:
        first.close()
        second.close()
