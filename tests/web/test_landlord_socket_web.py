"""The landlord's socket page and the journal's CSV through Flask's test client, and the landlord view's cookie:
who may see them, the filters' refusals, the pages of a long journal, codes in people's numbers."""

from __future__ import annotations

import csv
import io
import re

import pytest

from tests.support.web_beds import csrf_of, make_web_bed

SESSION = "payg_session"


@pytest.fixture
def bed(tmp_path):
    b = make_web_bed(tmp_path, timezone="UTC")
    yield b
    b.close()


def pay(bed, socket_id: str, tokens: int) -> None:
    bed.rt.ledger.pay(socket_id, tokens)
    bed.rt.watcher.poll()


def session_cookies(resp) -> list[str]:
    return [c for c in resp.headers.getlist("Set-Cookie") if c.startswith(SESSION + "=")]


@pytest.mark.parametrize("path", ["/landlord", "/landlord/login", "/landlord/sockets/kitchen", "/landlord/journal.csv",
                                  "/landlord/link/not-a-token"])
def test_the_landlord_view_when_off_sets_no_session_cookie(tmp_path, path):
    b = make_web_bed(tmp_path, password_hash=None)
    try:
        resp = b.client().get(path)
        assert resp.status_code == 503 and "not set up" in resp.get_data(as_text=True)
        assert session_cookies(resp) == [], resp.headers.getlist("Set-Cookie")
    finally:
        b.close()


def test_the_login_page_when_on_still_keeps_its_form_in_a_session(bed):
    resp = bed.client().get("/landlord/login")   # the check above would see a cookie: here is one
    assert resp.status_code == 200 and len(session_cookies(resp)) == 1


def test_the_socket_page_and_the_csv_want_the_landlord(bed):
    client = bed.client()
    resp = client.get("/landlord/sockets/kitchen?kind=deposit")
    assert resp.status_code == 302
    assert resp.headers["Location"] == "/landlord/login?next=/landlord/sockets/kitchen%3Fkind%3Ddeposit"
    assert client.get("/landlord/journal.csv").status_code == 302
    bed.landlord(client)
    assert client.get("/landlord/sockets/kitchen").status_code == 200
    assert client.get("/landlord/sockets/nope").status_code == 404
    for bad in ("kind=nothing", "from=yesterday", "from=2027-01-15&to=2027-01-14", "before=x"):
        page = client.get(f"/landlord/sockets/kitchen?{bad}")
        assert page.status_code == 400, bad
        assert client.get(f"/landlord/journal.csv?socket=kitchen&{bad}").status_code == 400, bad


def test_the_overview_links_each_socket_to_its_page(bed):
    client = bed.landlord()
    html = client.get("/landlord").get_data(as_text=True)
    for sid in ("kitchen", "laundry", "office"):
        assert f'href="/landlord/sockets/{sid}"' in html


def test_a_long_journal_comes_a_page_at_a_time_newest_first(bed):
    client = bed.landlord()
    token = csrf_of(client)
    for i in range(60):
        resp = client.post("/api/sockets/kitchen/adjust", json={"amount_tokens": i + 1, "reason": f"credit {i + 1}",
                                                                "request_id": f"request-{i:04d}"},
                           headers={"X-CSRFToken": token})
        assert resp.status_code == 201
    first = client.get("/landlord/sockets/kitchen?kind=credit").get_data(as_text=True)
    memos = re.findall(r"<td>credit (\d+)</td>", first)
    assert memos == [str(n) for n in range(60, 10, -1)], memos
    older = re.search(r'href="([^"]+)#journal" id="j-older"', first).group(1).replace("&amp;", "&")
    assert "kind=credit" in older and "before=" in older
    rest = client.get(older).get_data(as_text=True)
    assert re.findall(r"<td>credit (\d+)</td>", rest) == [str(n) for n in range(10, 0, -1)]
    assert 'id="j-older"' not in rest and "Newest entries" in rest


def test_codes_are_numbered_for_people_on_the_page_old_entries_too(bed):
    client = bed.landlord()
    token = csrf_of(client)
    made = [client.post("/api/sockets/kitchen/codes", json={"tokens": 50}, headers={"X-CSRFToken": token}).get_json()
            for _ in range(3)]
    assert [(m["number"], m["count"]) for m in made] == [(1, 2), (2, 4), (3, 6)]
    tenant = bed.client()
    assert tenant.post("/api/sockets/kitchen/redeem", json={"code": made[1]["code"]}).status_code == 200
    # an entry and an event as a journal from before people's numbers has them: the count after "#"
    with bed.rt.journal.transaction() as tx:
        tx.credit("kitchen", 10, "credit", "code:kitchen:8", bed.clock.now(), memo="top-up code #8")
        tx.event("kitchen", "code", "code #8: +10 tokens", bed.clock.now())
        tx.credit("kitchen", 5, "credit", "manual:x", bed.clock.now(), memo="refund for code #8")
    html = client.get("/landlord/sockets/kitchen").get_data(as_text=True)
    assert "<td>top-up code 4</td>" in html and "<td>code 4: +10 tokens</td>" in html
    assert "<td>top-up code 2</td>" in html and "<td>code 2: +50 tokens</td>" in html
    assert [f"code {n} for 50 tokens" in html for n in (1, 2, 3)] == [True] * 3
    assert "refund for code #8" in html, "a landlord's own words are left as they are"
    rows = list(csv.DictReader(io.StringIO(client.get("/landlord/journal.csv?socket=kitchen&kind=credit").text)))
    assert [r["key"] for r in rows] == ["code:kitchen:4", "code:kitchen:8", "manual:x"], "the stored keys keep counts"
