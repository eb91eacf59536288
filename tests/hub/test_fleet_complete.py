"""The fleet model's completeness of each controller's events (payg/hub/sequence.py wired in): the replays it
hands the link, a replay's answer kept apart from the landlord's commands, and the figures in /api/fleet."""

from __future__ import annotations

from werkzeug.security import generate_password_hash

from payg.adapters.clocks import ManualClock
from payg.adapters.web_sessions import SqliteSessionStore
from payg.hub.fleet import Fleet
from payg.hub.web import HubServices, create_hub_web
from payg.webkit.security import WebSecrets

TOKEN = "k" * 43


class Bed:
    def __init__(self, tmp_path):
        self.clock = ManualClock(1_800_000_000.0)
        self.fleet = Fleet(self.clock, command_timeout_s=10)
        secrets = WebSecrets("s" * 43, TOKEN, generate_password_hash("a long password", method="pbkdf2:sha256:1000"))
        self.web = create_hub_web(HubServices(self.fleet, None, secrets,  # type: ignore[arg-type]  # sends nothing
                                              SqliteSessionStore(tmp_path / "sessions.sqlite"), self.clock))
        self.web.app.testing = True

    def client(self):
        c = self.web.app.test_client()
        c.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {TOKEN}"
        return c


def ev(controller: str, seq: int, eid: str | None = None) -> dict:
    return {"id": eid or f"{controller}:{seq}", "seq": seq, "kind": "credited", "socket": "kitchen"}


def test_a_gap_gives_one_replay_to_send_and_its_answer_is_not_a_command(tmp_path):
    bed = Bed(tmp_path)
    fleet, clock = bed.fleet, bed.clock
    for seq in (1, 2, 5):
        fleet.event("home", ev("home", seq))
    due = fleet.replays_due()
    assert [(c, n) for c, n, _ in due] == [("home", 3)] and due[0][2].startswith("replay-")
    assert fleet.replays_due() == []  # noted as asked: not handed out twice
    rid = due[0][2]
    fleet.replay_unsent("home", rid)  # the broker was away: asked again at the next check, with a new id
    again = fleet.replays_due()
    assert [(c, n) for c, n, _ in again] == [("home", 3)] and again[0][2] != rid
    version = fleet.version
    fleet.response("home", {"request_id": again[0][2], "ok": True, "command": "replay", "from_seq": 3,
                            "oldest_seq": 4, "last_seq": 5, "replayed": 2})
    assert fleet.version > version and fleet.commands() == [] and fleet.counts["unmatched_responses"] == 0
    fleet.event("home", ev("home", 4))
    home = next(c for c in fleet.controllers() if c["name"] == "home")
    assert (home["complete_through"], home["missing"], home["lost"], home["replays"]) == (5, 0, 1, 2)
    clock.advance(60)
    assert fleet.replays_due() == []


def test_a_duplicate_id_does_not_count_as_its_seq_and_a_replayed_event_is_not_shown_twice(tmp_path):
    bed = Bed(tmp_path)
    fleet = bed.fleet
    for seq in (1, 3):
        fleet.event("home", ev("home", seq))
    fleet.event("home", ev("home", 3))
    assert fleet.counts["duplicate_events"] == 1 and len(fleet.events()) == 2
    fleet.event("home", ev("home", 2))
    assert [e["seq"] for e in fleet.events()] == [2, 3, 1]
    assert next(c for c in fleet.controllers() if c["name"] == "home")["complete_through"] == 3


def test_the_fleet_api_shows_each_controllers_completeness_and_the_fleets(tmp_path):
    bed = Bed(tmp_path)
    for seq in (1, 2, 3):
        bed.fleet.event("home", ev("home", seq))
    for seq in (40, 43):
        bed.fleet.event("shop", ev("shop", seq))
    snap = bed.client().get("/api/fleet").get_json()
    ctl = {x["name"]: x for x in snap["controllers"]}
    assert {k: ctl["home"][k] for k in ("complete_through", "missing", "lost", "baseline_seq")} == \
        {"complete_through": 3, "missing": 0, "lost": 0, "baseline_seq": 1}
    assert {k: ctl["shop"][k] for k in ("complete_through", "missing", "lost")} == \
        {"complete_through": 40, "missing": 2, "lost": 0}
    assert snap["events_complete"] == {"complete": False, "controllers": 2, "controllers_complete": 1,
                                       "missing": 2, "lost": 0}
