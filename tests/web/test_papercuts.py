"""A newcomer's papercuts on the web side (issue 14), on the embedded default's real objects; and the README's
own references, which a newcomer follows first (tests/test_docs.py checks the rest of the docs)."""

from __future__ import annotations

import json
import re

import pytest

from tests.support import ROOT


def embedded_view(client, socket_id: str) -> dict:
    """The state the tenant page embeds for its script (the `boot` JSON), as a browser reads it."""
    html = client.get(f"/s/{socket_id}").get_data(as_text=True)
    match = re.search(r'<script type="application/json" id="boot">(.*?)</script>', html, re.S)
    assert match, "no boot state in the tenant page"
    return json.loads(match.group(1))["view"]


def test_the_api_and_the_tenant_page_agree_on_credit_exhausted_for_a_never_paid_socket(bed):
    bed.loop.run_for(3)  # the loop has decided every relay: off, for lack of credit
    anonymous, landlord = bed.client(), bed.client(token=True)
    listed = {s["id"]: s for s in landlord.get("/api/sockets").get_json()}

    for socket_id in ("kitchen", "laundry", "office"):
        state = anonymous.get(f"/api/sockets/{socket_id}").get_json()
        page = embedded_view(anonymous, socket_id)
        assert state["balance"] == page["balance"] == 0 and state["relay"] == page["relay"] == "off"
        assert state["credit_exhausted"] is page["credit_exhausted"] is listed[socket_id]["credit_exhausted"] \
            is False, (state, page)  # simply out of credit, not "used up"


def test_after_a_top_up_and_its_use_the_api_and_the_page_still_agree(bed):
    client = bed.client(token=True)
    assert client.post("/api/mock/deposits", json={"socket": "kitchen", "amount": 3}).status_code == 201
    bed.loop.run_for(2)
    assert client.get("/api/sockets/kitchen").get_json()["relay"] == "on"
    bed.loop.run_for(120)  # the kitchen's load uses 3 tokens within this
    state = client.get("/api/sockets/kitchen").get_json()
    page = embedded_view(client, "kitchen")
    assert state["relay"] == "off" and state["balance"] == page["balance"]
    # "used up" only when the cut kept part of a token on the balance
    assert state["credit_exhausted"] is page["credit_exhausted"] is (state["balance"] > 0)


@pytest.mark.parametrize("method", ["get", "post"])
def test_an_unknown_api_route_is_a_json_404_for_the_landlord_and_a_401_for_anyone_else(bed, method):
    """As the API's page says: the guard answers a caller without the session or the API token before routing,
    so an anonymous caller learns nothing about which routes exist."""
    resp = getattr(bed.client(token=True), method)("/api/nope", json={})
    assert resp.status_code == 404 and resp.is_json and resp.get_json()["error"] == "Not Found"

    for path in ("/api/nope", "/api/sockets/kitchen/nope"):
        resp = getattr(bed.client(), method)(path, json={})
        assert resp.status_code == 401 and resp.is_json and resp.get_json()["error"] == "Unauthorized"


def test_an_unknown_api_route_is_a_404_in_the_landlords_session_too(bed):
    resp = bed.landlord().get("/api/sockets/kitchen/nope")
    assert resp.status_code == 404 and resp.get_json()["error"] == "Not Found"


def test_api_without_its_slash_is_a_json_404_too(bed):
    resp = bed.client().get("/api")
    assert resp.status_code == 404 and resp.is_json


def test_the_api_page_says_what_an_unknown_route_answers_with_and_without_credentials():
    text = " ".join((ROOT / "docs" / "api.md").read_text().split())
    assert "404 for an unknown socket or route" in text
    assert "an unknown route under `/api/` answers 401 without them" in text


def test_a_mock_deposit_beyond_what_the_journal_holds_is_refused_and_names_the_limit(bed):
    client = bed.client(token=True)

    resp = client.post("/api/mock/deposits", json={"socket": "kitchen", "amount": 2**62})

    assert resp.status_code == 400 and str(2**62 - 1) in resp.get_json()["message"]
    bed.loop.run_for(2)  # nothing was paid: the watcher has nothing to choke on
    assert bed.rt.watcher.status == "ok" and bed.rt.journal.balance("kitchen") == 0
    assert client.post("/api/mock/deposits", json={"socket": "kitchen", "amount": 2**62 - 1}).status_code == 201
    bed.loop.run_for(2)
    assert bed.rt.journal.balance("kitchen") == 2**62 - 1


def readme_references(text: str) -> set[str]:
    """What the README points at as a file: link targets, and paths of .md, .toml and .py files."""
    links = {t for t in re.findall(r"\]\(([^)\s]+)\)", text) if not re.match(r"[a-z]+:|#", t)}
    paths = set(re.findall(r"(?<![\w/.-])(?:\.\./|/)?[\w.-]+(?:/[\w.-]+)*\.(?:md|toml|py)\b", text))
    return links | paths


def test_the_readme_points_at_no_file_outside_the_repository():
    text = (ROOT / "README.md").read_text()
    outside = sorted(ref for ref in readme_references(text)
                     if ref.startswith("../") or "/../" in ref or ref.startswith(("/work", "/home", "~")))
    assert outside == []
    # A bare name (`app.py`, `site.py`, `default.toml`) is one of the repository's files, or an example path
    # the text makes up (config/mine.toml, /etc/payg/...): every .md it names is in the repository.
    missing = sorted(ref for ref in readme_references(text) if ref.endswith(".md") and not (ROOT / ref).is_file())
    assert missing == []
