"""Notifications through Apprise from the journal's outbox (payg/adapters/apprise_notify.py), against a real SMTP
server on 127.0.0.1 (aiosmtpd) and a real HTTP endpoint for `json://`: every kind reaches its recipient, an outage
of the mail server loses nothing and sends nothing twice, each URL is paced, a restart sends what was left, once;
and the contacts file is refused when others can read it, as the other secrets are."""

from __future__ import annotations

import os
import time

import pytest

from payg.adapters.apprise_notify import NotificationSender
from payg.adapters.clocks import SystemClock
from payg.adapters.contacts import read_contacts
from payg.adapters.journal import SqliteJournal
from payg.domain import messages
from payg.errors import ConfigError
from tests.support.notify_beds import JsonEndpoint, SmtpServer, wait_for

TENANT, LANDLORD = "tenant@example.com", "landlord@example.com"


def compose(kind, socket_id, fields, language=None):
    entry_id = fields.get("entry_id")
    return messages.compose(kind, socket_id.capitalize(), fields, money=lambda x: f"{x} tokens",
                            when=lambda t: f"@{t:.0f}",
                            receipt_url=messages.receipt_path(socket_id, entry_id, "https://payg.example")
                            if isinstance(entry_id, int) else None)


@pytest.fixture
def smtp():
    server = SmtpServer()
    yield server
    server.stop()


@pytest.fixture
def endpoint():
    bed = JsonEndpoint()
    yield bed
    bed.close()


def sender_for(journal, contacts, **kw):
    kw.setdefault("poll_s", 0.05)
    return NotificationSender(journal.path, contacts, compose, SystemClock(), **kw)


def book_events(journal, *kinds, socket_id="kitchen"):
    with journal.transaction() as tx:
        for i, kind in enumerate(kinds):
            tx.event(socket_id, kind, f"{kind} detail {i}", 1000.0 + i)


def notify_rows(journal) -> int:
    return journal._conn.execute("SELECT COUNT(*) FROM outbox WHERE uid LIKE 'notify:%'").fetchone()[0]


def test_each_kind_reaches_its_recipient_and_only_it(tmp_path, smtp, endpoint):
    journal = SqliteJournal(tmp_path / "journal.sqlite", notify=True)
    contacts = {"kitchen": (smtp.url(TENANT), endpoint.url), "landlord": (smtp.url(LANDLORD),)}
    book_events(journal, "low_credit", "credit_off", "emergency", "relay_bypass", "code_lockout",
                "unexplained_funds", "uncreditable_deposit", "override", "channel")  # the last two: nobody's
    with journal.transaction() as tx:
        assert tx.credit("kitchen", 250, "deposit", "dep-1", 2000.0, "a deposit")
        assert tx.credit("kitchen", 7, "trade_in", "trade-1", 2000.0)  # not a payment the tenant made
    entry_id = journal._conn.execute("SELECT id FROM entries WHERE idem_key = 'dep-1'").fetchone()[0]
    sender = sender_for(journal, contacts, burst=50)
    sender.derive(messages.METER_OFFLINE, "kitchen", "1500", {"since": 1500.0})
    sender.derive(messages.FRIENDLY_ENDS, "kitchen", "9000", {"ends_at": 9000.0}, once="notify:friendly:kitchen")
    sender.start()
    try:
        assert wait_for(lambda: len(smtp.to(TENANT)) == 5 and len(smtp.to(LANDLORD)) == 5
                        and len(endpoint.posts) == 5 and notify_rows(journal) == 0)
    finally:
        sender.stop()
    tenant = {m.subject for m in smtp.to(TENANT)}
    assert tenant == {"Low credit: Kitchen", "Out of credit: Kitchen", "Emergency credit: Kitchen",
                      "Payment received: Kitchen", "Friendly credit ends: Kitchen"}
    assert {p["title"] for p in endpoint.posts} == tenant  # each of the tenant's URLs has every tenant message
    assert {m.subject for m in smtp.to(LANDLORD)} == {"Alarm: Kitchen"}
    landlord = " ".join(m.body for m in smtp.to(LANDLORD))
    for words in ("relay_bypass detail", "code_lockout detail", "unexplained_funds detail",
                  "uncreditable_deposit detail", "the meter does not answer"):
        assert words in landlord
    paid = next(m for m in smtp.to(TENANT) if m.subject.startswith("Payment"))
    assert "250 tokens" in paid.body and f"https://payg.example/s/kitchen/receipts/{entry_id}" in paid.body
    assert "until @9000" in next(m.body for m in smtp.to(TENANT) if m.subject.startswith("Friendly"))
    assert not any(m.to == [TENANT] and m.subject.startswith("Alarm") for m in smtp.mails)
    assert len(smtp.mails) == 10 and sender.sent == 15


def test_a_friendly_period_is_told_once_even_across_a_restart(tmp_path, endpoint):
    path = tmp_path / "journal.sqlite"
    for _ in range(2):
        journal = SqliteJournal(path, notify=True)
        sender = sender_for(journal, {"kitchen": (endpoint.url,)})
        sender.start()
        for _ in range(3):  # every tick of the period says the same
            sender.derive(messages.FRIENDLY_ENDS, "kitchen", "9000", {"ends_at": 9000.0},
                          once="notify:friendly:kitchen")
        assert wait_for(lambda j=journal: notify_rows(j) == 0 and len(endpoint.posts) >= 1)
        time.sleep(0.3)
        sender.stop()
        journal.close()
    assert len(endpoint.posts) == 1


def test_an_outage_of_the_mail_server_loses_nothing_and_sends_nothing_twice(tmp_path, smtp):
    journal = SqliteJournal(tmp_path / "journal.sqlite", notify=True)
    sender = sender_for(journal, {"kitchen": (smtp.url(TENANT),), "landlord": (smtp.url(LANDLORD),)},
                        burst=50, retry_max_s=1.0)
    sender.start()
    try:
        book_events(journal, "low_credit")
        assert wait_for(lambda: len(smtp.mails) == 1)
        smtp.stop()
        book_events(journal, "credit_off", "relay_bypass")
        with journal.transaction() as tx:
            tx.credit("kitchen", 40, "credit", "cash-1", 3000.0, "cash")
        assert wait_for(lambda: sender._failures, 15)  # tried and failed while the server is down
        assert len(smtp.mails) == 1
        smtp.start()
        assert wait_for(lambda: len(smtp.mails) == 4 and notify_rows(journal) == 0, 40)
        time.sleep(1.5)  # nothing more comes
    finally:
        sender.stop()
    subjects = sorted(m.subject for m in smtp.mails)
    assert subjects == ["Alarm: Kitchen", "Low credit: Kitchen", "Out of credit: Kitchen",
                        "Payment received: Kitchen"]


def test_each_url_is_paced_and_nothing_over_the_limit_is_dropped(tmp_path, endpoint, smtp):
    journal = SqliteJournal(tmp_path / "journal.sqlite", notify=True)
    sender = sender_for(journal, {"kitchen": (endpoint.url,), "landlord": (smtp.url(LANDLORD),)},
                        burst=2, interval_s=1.0)
    book_events(journal, *["low_credit"] * 5)
    book_events(journal, "relay_bypass", "code_lockout", "unexplained_funds")
    start = time.monotonic()
    sender.start()
    try:
        assert wait_for(lambda: len(endpoint.posts) == 5 and len(smtp.mails) == 3, 20)
    finally:
        sender.stop()
    offsets = sorted(p["at"] - start for p in endpoint.posts)
    # the burst goes at once: its second message does not wait an interval (a busy machine only adds delay,
    # so the gap is compared, not the time since the start)
    assert offsets[1] - offsets[0] < 0.9, offsets
    for k in (2, 3, 4):  # then one a second
        assert offsets[k] >= k - 1 - 0.1, offsets
    landlord = sorted(m.at - start for m in smtp.mails)
    # the landlord's own budget, not the tenant's
    assert landlord[1] - landlord[0] < 0.9 and landlord[2] >= 0.9, landlord
    assert [p["message"].split(": ", 1)[1] for p in sorted(endpoint.posts, key=lambda p: p["at"])] == \
        [f"low_credit detail {i}. Top up soon to keep the power on." for i in range(5)]  # in order


def test_a_restart_sends_what_was_left_once(tmp_path, smtp):
    path = tmp_path / "journal.sqlite"
    journal = SqliteJournal(path, notify=True)
    book_events(journal, "low_credit", "credit_off")
    attempts = []

    def down(url, title, body):
        attempts.append(title)
        return False

    first = sender_for(journal, {"kitchen": (smtp.url(TENANT),)}, send=down)
    first.start()
    assert wait_for(lambda: attempts)
    first.stop()  # as a crash would leave it: messages made, none deleted
    book_events(journal, "emergency")  # written while nothing sends
    journal.close()
    assert smtp.mails == []

    journal = SqliteJournal(path, notify=True)
    second = sender_for(journal, {"kitchen": (smtp.url(TENANT),)})
    second.start()
    try:
        assert wait_for(lambda: len(smtp.mails) == 3 and notify_rows(journal) == 0)
        time.sleep(1)
    finally:
        second.stop()
    assert sorted(m.subject for m in smtp.mails) == ["Emergency credit: Kitchen", "Low credit: Kitchen",
                                                     "Out of credit: Kitchen"]


def test_notifications_off_write_no_rows_and_the_mqtt_outbox_does_not_see_them(tmp_path):
    from payg.adapters.mqtt.outbox import Outbox

    quiet = SqliteJournal(tmp_path / "quiet.sqlite")
    book_events(quiet, "low_credit")
    assert notify_rows(quiet) == 0
    both = SqliteJournal(tmp_path / "both.sqlite", outbox=True, notify=True)
    book_events(both, "low_credit", "override")
    outbox = Outbox(both.path)
    try:
        assert [r.kind for r in outbox.after(0, 10)] == ["low_credit", "override"]  # MQTT's rows only
        assert outbox.pending() == 2 and notify_rows(both) == 1
    finally:
        outbox.close()


def contacts_file(tmp_path, text, mode=0o600):
    path = tmp_path / "contacts.toml"
    path.write_text(text)
    os.chmod(path, mode)
    return path


def test_the_contacts_file_is_read_and_refused_like_the_other_secrets(tmp_path):
    good = contacts_file(tmp_path, 'landlord = ["mailto://u:p@example.com"]\nkitchen = "ntfy://ntfy.sh/topic"\n')
    assert read_contacts(good, "c.toml", ["kitchen"]) == {"landlord": ("mailto://u:p@example.com",),
                                                          "kitchen": ("ntfy://ntfy.sh/topic",)}
    os.chmod(good, 0o644)
    with pytest.raises(ConfigError, match="readable by its owner only") as exc:
        read_contacts(good, "c.toml", ["kitchen"])
    assert "notify.contacts_file" in str(exc.value)
    with pytest.raises(ConfigError, match="a readable file of contacts"):
        read_contacts(tmp_path / "missing.toml", "c.toml", ["kitchen"])
    with pytest.raises(ConfigError, match="landlord` or a configured socket id"):
        read_contacts(contacts_file(tmp_path, 'garage = ["ntfy://ntfy.sh/x"]\n'), "c.toml", ["kitchen"])
    with pytest.raises(ConfigError, match="an Apprise URL") as exc:
        read_contacts(contacts_file(tmp_path, 'kitchen = ["nosuch://secret-token@x"]\n'), "c.toml", ["kitchen"])
    assert "secret-token" not in str(exc.value)  # a URL may hold a password: never echoed
