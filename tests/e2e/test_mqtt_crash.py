"""Events survive a SIGKILL: booked while the broker was away, the controller killed before it could send
them, they reach a deduplicating subscriber exactly once when both come back."""

from __future__ import annotations

import os
import signal
import sqlite3
from pathlib import Path

from ledgers.mock import MockLedger
from payg.adapters.clocks import SystemClock
from tests.support import launcher, terminate, wait_until
from tests.support.mqtt_beds import PASSWORDS, Listener, controller_toml, fleet_broker


def start(config: Path, log: Path) -> launcher.Process:
    env = dict(os.environ, PAYG_TEST_MQTT_PASSWORD=PASSWORDS["ctl-home"])
    return launcher.start(["--config", str(config)], cwd=config.parent, stdout=log, env=env, append=True)


def outbox(data_dir: Path) -> list[tuple[str, str]]:
    """The events the broker has not acknowledged yet (delivered ones are kept for replays, marked delivered)."""
    with sqlite3.connect(data_dir / "journal.sqlite") as db:
        return db.execute("SELECT kind, uid FROM outbox WHERE seq IS NOT NULL AND delivered_at IS NULL"
                          " ORDER BY seq").fetchall()


def test_events_booked_before_a_sigkill_are_delivered_once_after_it(tmp_path):
    broker = fleet_broker(tmp_path / "broker")
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    config = tmp_path / "payg.toml"
    config.write_text(controller_toml(data, broker.port, sockets=("kitchen", "hall"), load_w=60).replace(
        "[controller]\n", "[controller]\npoll_interval_s = 0.1\ndeposit_poll_interval_s = 0.1\n", 1))
    ledger = MockLedger(data / "mock-ledger.sqlite", SystemClock(), ["kitchen", "hall"])
    audit = Listener(broker.port, topics=("payg/home/events", "payg/home/status"), client_id="audit", clean=False)
    log = tmp_path / "controller.log"
    proc = start(config, log)
    try:
        wait_until(lambda: audit.on("payg/home/status")[-1:] == [b"online"], 30, "the controller online")
        ledger.pay("kitchen", 50)
        wait_until(lambda: len(audit.events_of("credited")) == 1, 30, "the first credit, delivered")
        broker.stop()
        for socket_id in ("kitchen", "hall", "kitchen"):
            ledger.pay(socket_id, 20)
        waiting = wait_until(lambda: (o := outbox(data)) and sum(k == "credited" for k, _ in o) >= 3 and o, 20,
                             "three credits in the outbox")
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        assert set(waiting) <= set(outbox(data))  # the kill lost nothing
        broker.start()
        proc = start(config, log)
        wait_until(lambda: len(audit.events_of("credited")) == 4, 30, "every credit at the subscriber")
        wait_until(lambda: outbox(data) == [], 30, "every event acknowledged")
        # The outbox empties when the broker acknowledges; the broker hands the last events on to the subscriber
        # a moment later, so every event booked before the kill is waited for, not expected at once.
        booked = {uid for _, uid in waiting}
        wait_until(lambda: booked <= {e["id"].split(":", 1)[1] for e in audit.events_of()}, 30,
                   "every event booked before the kill at the subscriber")
        credited = audit.events_of("credited")
        assert sorted(e["socket"] for e in credited) == ["hall", "kitchen", "kitchen", "kitchen"]
        assert [e["amount"] for e in credited] == [50, 20, 20, 20]  # in the order they were booked
    finally:
        terminate(proc)
        audit.close()
        broker.stop()
    assert "Traceback" not in log.read_text()
