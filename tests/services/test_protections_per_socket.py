"""Each protection set for the controller and, where a socket says so, for that socket alone."""

from __future__ import annotations

import pytest

from payg import bootstrap as composition
from payg.adapters import config as cfg
from payg.adapters.clocks import ManualClock
from payg.errors import ConfigError
from payg.services.topups import TopUps
from payg.web import create_web
from payg.webkit.security import WebSecrets
from tests.fakes import FakeJournal

TOML = """
[controller]
data_dir = "{data}"
[ledger]
backend = "mock"
[protections]
debt_recovery_percent = 40
emergency_credit_tokens = 20
warn_hours = [24]
[[sockets]]
id = "a"
meter = {{ kind = "simulated", load_w = 100 }}
relay = {{ kind = "simulated" }}
protections = {{ debt_recovery_percent = 10, emergency_credit_tokens = 0, warn_hours = [6, 1] }}
[[sockets]]
id = "b"
meter = {{ kind = "simulated", load_w = 100 }}
relay = {{ kind = "simulated" }}
"""


def load(tmp_path, text=TOML):
    (tmp_path / "c.toml").write_text(text.format(data=tmp_path / "var"))
    return cfg.load(tmp_path / "c.toml")


def test_a_sockets_own_values_win_and_the_others_follow_the_controller(tmp_path):
    config = load(tmp_path)
    p = config.protections
    assert p.per(["a", "b"], "debt_recovery_percent") == {"a": 10, "b": 40}
    assert p.per(["a", "b"], "emergency_credit_tokens") == {"a": 0, "b": 20}
    assert p.per(["a", "b"], "warn_hours") == {"a": (6.0, 1.0), "b": (24.0,)}
    rt = composition.build(config, ManualClock())
    try:
        assert rt.watcher.top_ups.percent("a") == 10 and rt.watcher.top_ups.percent("b") == 40
        assert rt.codes.top_ups.percent("a") == 10
        assert rt.metering.settings.notices.warn_for("a") == (6.0, 1.0)
        assert rt.metering.settings.notices.warn_for("b") == (24.0,)
        web = create_web(composition.web_services(rt, WebSecrets("s" * 43, "t" * 43, None)))
        assert (web.emergency.tokens("a"), web.emergency.tokens("b")) == (0, 20)
    finally:
        rt.close()


def test_a_sockets_protections_are_checked_like_the_controllers(tmp_path):
    with pytest.raises(ConfigError) as err:
        load(tmp_path, TOML.replace("debt_recovery_percent = 10", "debt_recovery_percent = 0"))
    assert err.value.key == "sockets[0].protections.debt_recovery_percent"
    with pytest.raises(ConfigError, match="did you mean 'warn_hours'"):
        load(tmp_path, TOML.replace("warn_hours = [6, 1]", "warn_hour = [6, 1]"))


def test_top_ups_take_each_sockets_share_of_its_debt():
    journal = FakeJournal()
    for sid in ("a", "b"):
        with journal.transaction() as tx:
            tx.debit(sid, 100, "usage", 1.0)
    top_ups = TopUps(journal, {"a": 10, "b": 50})
    with journal.transaction() as tx:
        top_ups.book(tx, "a", 100, "deposit", "k:a", 2.0, "")
        top_ups.book(tx, "b", 100, "deposit", "k:b", 2.0, "")
    assert journal.deferred_debt("a") == 90 and journal.deferred_debt("b") == 50
