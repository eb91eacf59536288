"""Two controllers trading energy on the embedded default (mock ledger, simulated hardware), end to end.

The consumer's socket `home` is fed through the producer's socket `solar` once it buys
from it (the relays are in series, see hardware/simulated.SeriesRelay). When home's
balance falls below its threshold, the consumer's controller opens a payment channel
to solar and streams one voucher per Wh over HTTP; the producer's controller books each
voucher as credit on solar, whose relay supplies what was paid and opens when the
vouchers stop. The producer closes; the ledger, both journals and both balances agree.
"""

from __future__ import annotations

import json
import threading
import urllib.request

import pytest
from werkzeug.serving import make_server

from payg import bootstrap as app
from payg.adapters import config as cfg
from payg.adapters.clocks import ManualClock
from payg.domain import settings
from payg.web import create_web
from payg.webkit.security import WebSecrets
from tests.support import free_port
from tests.support.web_beds import TOKEN

PRICE = 2        # mock units per Wh, asked by solar
ESCROW_WH = 100
THRESHOLD = 20
LOAD_W = 3600    # 1 Wh per second


def config_for(tmp_path, name: str, port: int, socket: str, trade: str) -> settings.Config:
    text = f"""
[controller]
data_dir = "{tmp_path / name}"
poll_interval_s = 1.0
usage_entry_s = 0

[web]
port = {port}

[ledger]
backend = "mock"
path = "{tmp_path / 'shared-mock-ledger.sqlite'}"

[[sockets]]
id = "{socket}"
meter = {{ kind = "simulated", load_w = {LOAD_W} }}
relay = {{ kind = "simulated" }}
trade = {{ {trade} }}
"""
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return cfg.load(path)


class Node:
    """A controller built by app.build, with its web app served on 127.0.0.1."""

    def __init__(self, config: settings.Config, clock: ManualClock):
        self.config = config
        self.rt = app.build(config, clock)
        self.rt.site.start()
        services = app.web_services(self.rt, WebSecrets("s" * 43, TOKEN, None))
        self.server = make_server("127.0.0.1", config.web.port, create_web(services).app, threaded=True)
        self.url = f"http://127.0.0.1:{config.web.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def api(self, path: str, body: dict | None = None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method="GET" if body is None else "POST",
                                     headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"})
        with urllib.request.urlopen(req, timeout=10) as reply:
            return json.loads(reply.read())

    def stop(self) -> None:
        self.server.shutdown()
        self.rt.close()


@pytest.fixture
def pair(tmp_path):
    clock = ManualClock(1_800_000_000)
    producer = Node(config_for(tmp_path, "producer", free_port(), "solar", f"sell_price_per_wh = {PRICE}"), clock)
    consumer = Node(config_for(tmp_path, "consumer", free_port(), "home",
                               f'peer = "{producer.url}", supplier = "solar", below_tokens = {THRESHOLD},'
                               f' escrow_wh = {ESCROW_WH}, max_price_per_wh = 3'), clock)
    yield clock, producer, consumer
    consumer.stop()
    producer.stop()


def test_a_consumer_streams_vouchers_to_a_producer_and_everything_agrees_at_the_close(pair):
    clock, producer, consumer = pair
    solar_meter = producer.rt.meters["solar"]
    home_relay, solar_relay = consumer.rt.relays["home"], producer.rt.relays["solar"]
    solar_meter.feed_through(home_relay)   # solar supplies the line that ends at home

    ledger = consumer.rt.trade
    home_party, solar_party = ledger.party_for("home"), producer.rt.trade.party_for("solar")
    wallet = ESCROW_WH * PRICE + 50        # the household's trade wallet: one channel's escrow, not two
    ledger.fund(home_party, wallet)
    consumer.rt.ledger.pay("home", 30)     # the tenant's prepaid top-up

    def step(seconds: int = 1) -> None:
        for _ in range(seconds):
            clock.advance(1)
            consumer.rt.watcher.poll()
            consumer.rt.metering.tick()
            consumer.rt.supply.tick(consumer.url)
            producer.rt.metering.tick()

    step(3)
    assert home_relay.is_closed() and not solar_relay.is_closed()
    assert producer.api("/api/trade/channels")["channels"] == []

    # home runs on its prepaid balance until it falls below the threshold; then the channel opens
    while not consumer.rt.book.rows("out"):
        step()
        assert clock.now() < 1_800_000_000 + 120, "no channel opened"
    assert consumer.rt.journal.balance("home") <= THRESHOLD  # below it, plus the lead Wh just paid for
    (out,) = consumer.rt.book.rows("out")
    (inc,) = producer.rt.book.rows("in")
    assert (out.channel_id, out.price_per_wh, out.escrow) == (inc.channel_id, PRICE, ESCROW_WH * PRICE)
    assert ledger.balance(home_party) == wallet - ESCROW_WH * PRICE
    step(2)
    assert solar_relay.is_closed(), "the lead voucher lets solar switch on"

    # while vouchers flow, home's balance holds and solar supplies what is paid for
    balance_at_open = consumer.rt.journal.balance("home")
    solar_start = solar_meter.read().energy_wh
    step(40)
    assert abs(consumer.rt.journal.balance("home") - balance_at_open) <= 2
    assert solar_relay.is_closed()
    assert producer.api("/api/trade/channels/" + out.channel_id)["booked"]["amount"] > 30 * PRICE
    solar_balance = producer.rt.journal.balance("solar")
    assert 0 <= solar_balance <= 3

    # the escrow runs out and the wallet cannot fund another channel: vouchers stop, and solar stops
    # supplying within a Wh or two; home goes on from its prepaid balance
    step(ESCROW_WH)
    assert consumer.rt.book.due(consumer.rt.book.rows("out")[0]) == ESCROW_WH * PRICE
    step(5)
    assert not solar_relay.is_closed(), "no more vouchers, no more supply"
    assert len(consumer.rt.book.rows("out")) == 1, "the wallet cannot fund a second channel"
    assert producer.rt.journal.balance("solar") <= 1

    # the producer closes with the latest voucher
    closed = producer.api(f"/api/trade/channels/{out.channel_id}/close", {})
    assert (closed["state"], closed["paid"]) == ("closed", ESCROW_WH * PRICE)
    step(1)

    paid = closed["paid"]
    assert ledger.balance(solar_party) == paid                       # the ledger
    assert ledger.balance(home_party) == wallet - paid
    trade_in = {}
    for node, socket in ((consumer, "home"), (producer, "solar")):
        entries = list(node.rt.journal.all_entries(socket))
        trade_in[socket] = sum(e.amount for e in entries if e.kind == "trade_in")
        assert node.rt.journal.recomputed_balance(socket) == node.rt.journal.balance(socket)
    assert trade_in == {"home": paid // PRICE, "solar": paid // PRICE}  # the journals
    # solar delivered every Wh paid for but the last lead Wh at most
    delivered = solar_meter.read().energy_wh - solar_start
    solar_usage = -sum(e.amount for e in producer.rt.journal.all_entries("solar") if e.kind == "usage")
    assert producer.rt.journal.balance("solar") == trade_in["solar"] - solar_usage
    assert ESCROW_WH - 2 <= solar_usage <= ESCROW_WH
    assert delivered <= ESCROW_WH
    assert producer.rt.book.rows("in")[0].state == "closed"
    consumer_view = consumer.api("/api/trade/channels/" + out.channel_id)
    assert consumer_view["ledger"]["state"] == "closed"
    assert consumer_view["booked"]["state"] == "closed"  # the consumer books the close it sees on the ledger
