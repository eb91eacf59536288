"""Notifications from the metering loop itself: the loop on the virtual clock books a payment, low-credit
crossings, the time off for lack of credit and a meter that stops answering; the sender's thread, in real time,
tells the tenant and the landlord over a real SMTP server and a real (slow) HTTP endpoint, and the tick never
waits for them. Then the whole controller as `serve` wires it: the socket's name, money as the pages write it and
the receipt's absolute link; and a contacts file others can read stops the start."""

from __future__ import annotations

import dataclasses
import os
import time

import pytest

from payg.adapters.apprise_notify import NotificationSender, StateWatch
from payg.adapters.clocks import SystemClock
from payg.adapters.journal import SqliteJournal
from payg.domain.notices import NoticeSettings
from payg.errors import ConfigError
from payg.services.metering import Publishers
from payg.wiring.notify import composer, start_notifications
from tests.support.configs import MINIMAL, load_text
from tests.support.notify_beds import JsonEndpoint, SmtpServer, wait_for
from tests.support.rigs import Rig, journal_dir

TENANT, LANDLORD = "tenant@example.com", "landlord@example.com"


@pytest.fixture
def smtp():
    server = SmtpServer()
    yield server
    server.stop()


def timed_ticks(rig) -> list[float]:
    """How long each tick of the rig's loop takes, from now on."""
    took: list[float] = []
    tick = rig.loop._by_name["tick"]

    def timed() -> None:
        started = time.monotonic()
        tick.run()
        took.append(time.monotonic() - started)
    rig.loop._by_name["tick"] = dataclasses.replace(tick, run=timed)
    return took


def test_the_loop_tells_the_tenant_and_the_landlord_and_never_waits_for_them(tmp_path, smtp):
    slow = JsonEndpoint(delay_s=1.5)  # every answer takes 1.5 s: the ticks must not
    journal = SqliteJournal(journal_dir(tmp_path, slow) / "journal.sqlite", notify=True)
    rig = Rig(tmp_path, ids=("a",), journal=journal)
    rig.metering.settings = dataclasses.replace(rig.metering.settings, notices=NoticeSettings((1.0, 0.25)))
    rig.metering.notices.settings = rig.metering.settings.notices
    config = load_text(tmp_path, MINIMAL.replace('id = "kitchen"', 'id = "a"\nname = "Flat A"')
                       + '[web]\npublic_url = "https://payg.example/"\n')
    sender = NotificationSender(journal.path, {"a": (smtp.url(TENANT), slow.url), "landlord": (smtp.url(LANDLORD),)},
                                composer(config), SystemClock(), burst=50, poll_s=0.05)
    publishers = Publishers()
    publishers.subscribe(rig.publisher)
    publishers.subscribe(StateWatch(sender, lambda socket_id, t: None))
    rig.metering.publisher = publishers
    sender.start()
    try:
        rig.loop.run_ticks(1)
        ticks = timed_ticks(rig)
        rig.deposit("a", 1000)          # 1000 Wh at 600 W: 100 minutes
        rig.loop.run_for(2)
        assert wait_for(lambda: slow.arrived, 10)  # the endpoint holds "payment received" for 1.5 s from now
        loop_start = time.monotonic()
        rig.draw("a", 600, 105 * 60)    # through both thresholds, then off for lack of credit
        rig.meters["a"].offline = True  # then the meter stops answering
        rig.loop.run_for(30)
        # a loop that waited for the answers would stall a tick for 1.5 s at each of the 4 slow ones; a loaded CI
        # machine stalled one tick on its own (1.05 s, then 1.56 s), never two
        slowest = sorted(ticks)[-2:]
        assert len(ticks) > 6000 and slowest[0] < 0.5, f"the slowest ticks took {slowest} s"
        assert wait_for(lambda: len(smtp.to(TENANT)) == 4 and len(smtp.to(LANDLORD)) == 1, 30)
        assert wait_for(lambda: len(slow.posts) == 4, 30)
        assert loop_start < slow.arrived[0] + slow.delay_s  # the loop ran while the endpoint held a message
    finally:
        sender.stop()
        slow.close()
    subjects = [m.subject for m in sorted(smtp.to(TENANT), key=lambda m: m.at)]
    assert subjects == ["Payment received: Flat A", "Low credit: Flat A", "Low credit: Flat A",
                        "Out of credit: Flat A"]
    paid = sorted(smtp.to(TENANT), key=lambda m: m.at)[0]
    entry_id = journal._conn.execute("SELECT id FROM entries WHERE kind = 'deposit'").fetchone()[0]
    assert "payment received, 1,000 tokens" in paid.body
    assert f"https://payg.example/s/a/receipts/{entry_id}" in paid.body
    assert "less than 1 h of credit left" in sorted(smtp.to(TENANT), key=lambda m: m.at)[1].body
    assert "Alarm on Flat A: the meter does not answer" in smtp.to(LANDLORD)[0].body


def controller_config(tmp_path, contacts_text, mode=0o600):
    contacts = tmp_path / "contacts.toml"
    contacts.write_text(contacts_text)
    os.chmod(contacts, mode)
    text = MINIMAL.replace('data_dir = "var"', f'data_dir = "{tmp_path / "var"}"') \
        .replace('id = "kitchen"', 'id = "kitchen"\nname = "Kitchen"')
    return load_text(tmp_path, text + f'[notify]\ncontacts_file = "{contacts}"\n'
                     '[web]\npublic_url = "https://flats.example"\n')


def test_the_controller_wires_notifications_as_serve_does(tmp_path, smtp):
    from payg.bootstrap import build

    config = controller_config(tmp_path, f'kitchen = ["{smtp.url(TENANT)}"]\nlandlord = ["{smtp.url(LANDLORD)}"]\n')
    rt = build(config)
    try:
        assert rt.journal.notify
        sender = start_notifications(rt)
        assert sender is not None and ("notifications", sender.stop) in rt.closers
        rt.landlord.adjust("kitchen", 25, "cash at the door", "r1")
        assert wait_for(lambda: smtp.to(TENANT))
    finally:
        rt.close()
    (mail,) = smtp.to(TENANT)
    assert mail.subject == "Payment received: Kitchen"
    assert "Kitchen: payment received, 25 tokens." in mail.body
    assert "Receipt: https://flats.example/s/kitchen/receipts/" in mail.body
    assert smtp.to(LANDLORD) == []


def test_a_contacts_file_others_can_read_stops_the_start(tmp_path, smtp):
    from payg.bootstrap import build

    config = controller_config(tmp_path, f'kitchen = ["{smtp.url(TENANT)}"]\n', mode=0o640)
    rt = build(config)
    try:
        with pytest.raises(ConfigError, match=r"notify.contacts_file: expected a file readable by its owner only"):
            start_notifications(rt)
    finally:
        rt.close()


def test_no_contacts_file_no_notifications(tmp_path):
    from payg.bootstrap import build

    config = load_text(tmp_path, MINIMAL.replace('data_dir = "var"', f'data_dir = "{tmp_path / "var"}"'))
    rt = build(config)
    try:
        assert not rt.journal.notify and start_notifications(rt) is None
    finally:
        rt.close()
