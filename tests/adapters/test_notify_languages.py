"""A tenant hears in their own language: the contacts file names a recipient's language (`[web] language`
otherwise), and the message reaches a real `json://` endpoint and a real SMTP server in it."""

from __future__ import annotations

import os

import pytest

from payg.adapters.apprise_notify import NotificationSender
from payg.adapters.clocks import SystemClock
from payg.adapters.contacts import read_contact_book
from payg.adapters.journal import SqliteJournal
from payg.errors import ConfigError
from payg.wiring.notify import composer
from tests.support.notify_beds import JsonEndpoint, SmtpServer, wait_for
from tests.support.web_beds import embedded_config


def contacts_file(tmp_path, text):
    path = tmp_path / "contacts.toml"
    path.write_text(text)
    os.chmod(path, 0o600)
    return path


def test_a_french_tenant_is_told_in_french_and_the_landlord_in_the_default(tmp_path):
    endpoint, smtp = JsonEndpoint(), SmtpServer()
    try:
        path = contacts_file(tmp_path, f'kitchen = {{ urls = ["{endpoint.url}"], language = "fr" }}\n'
                                       f'landlord = ["{smtp.url("landlord@example.com")}"]\n')
        contacts, languages = read_contact_book(path, "c.toml", ["kitchen"])
        assert languages == {"kitchen": "fr"} and contacts["kitchen"] == (endpoint.url,)
        journal = SqliteJournal(tmp_path / "journal.sqlite", notify=True)
        with journal.transaction() as tx:
            tx.event("kitchen", "credit_off", "", 1000.0)
            tx.event("kitchen", "code_lockout", "5 wrong codes", 1001.0)
            assert tx.credit("kitchen", 1500, "deposit", "dep-1", 2000.0, "a deposit")
        config = embedded_config(tmp_path / "var")
        sender = NotificationSender(journal.path, contacts, composer(config), SystemClock(), poll_s=0.05,
                                    languages=languages)
        sender.start()
        try:
            assert wait_for(lambda: len(endpoint.posts) == 2 and len(smtp.to("landlord@example.com")) == 1)
        finally:
            sender.stop()
        said = {p["title"]: p["message"] for p in endpoint.posts}
        assert said["Crédit épuisé\u00a0: Kitchen"] == ("Kitchen est coupée\u00a0: son crédit est épuisé. Rechargez "
                                                       "pour la rallumer.")
        assert said["Paiement reçu\u00a0: Kitchen"].startswith(
            "Kitchen\u00a0: paiement reçu, 1\u202f500 jetons. Merci.")
        assert [m.subject for m in smtp.to("landlord@example.com")] == ["Alarm: Kitchen"]
    finally:
        endpoint.close()
        smtp.stop()


def test_a_contact_s_language_must_be_one_payg_has(tmp_path):
    with pytest.raises(ConfigError) as exc:
        read_contact_book(contacts_file(tmp_path, 'kitchen = { urls = ["ntfy://ntfy.sh/x"], language = "de" }\n'),
                          "c.toml", ["kitchen"])
    assert "kitchen.language" in str(exc.value) and "en, fr" in str(exc.value)
    with pytest.raises(ConfigError):
        read_contact_book(contacts_file(tmp_path, 'kitchen = { url = "ntfy://ntfy.sh/x" }\n'), "c.toml", ["kitchen"])
