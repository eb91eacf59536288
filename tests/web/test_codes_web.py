"""Top-up codes over the web: the landlord makes them, a tenant enters one on the socket's own page."""

from __future__ import annotations

import pytest

from tests.support.web_beds import csrf_of, make_web_bed


@pytest.fixture
def bed(tmp_path):
    b = make_web_bed(tmp_path)
    b.loop.run_ticks(1)
    yield b
    b.close()


def make_code(bed, tokens: int = 50, socket_id: str = "kitchen") -> dict:
    resp = bed.client(token=True).post(f"/api/sockets/{socket_id}/codes", json={"tokens": tokens})
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()


def enter(client, code: str, socket_id: str = "kitchen", **headers):
    return client.post(f"/api/sockets/{socket_id}/redeem", json={"code": code},
                       headers={"Origin": "http://localhost", **headers})


def test_the_landlord_makes_a_code_and_a_tenant_enters_it_once(bed):
    landlord = bed.landlord()
    resp = landlord.post("/api/sockets/kitchen/codes", json={"tokens": 120}, headers={"X-CSRFToken": csrf_of(landlord)})
    assert resp.status_code == 201
    made = resp.get_json()
    assert made["tokens"] == 120 and len(made["code"]) == 9 and made["spaced"].replace(" ", "") == made["code"]
    tenant = bed.client()
    first = enter(tenant, made["spaced"])
    assert first.status_code == 200 and first.get_json()["tokens"] == 120
    assert first.get_json()["view"]["relay"] == "on" and "Set-Cookie" not in first.headers
    again = enter(tenant, made["code"])
    assert again.status_code == 400 and again.get_json()["reason"] == "used"
    assert "used already" in again.get_json()["message"]
    assert bed.rt.journal.balance("kitchen") == 120


def test_only_the_landlord_makes_codes_and_bad_amounts_say_what_is_possible(bed):
    assert bed.client().post("/api/sockets/kitchen/codes", json={"tokens": 50}).status_code == 401
    resp = bed.client(token=True).post("/api/sockets/kitchen/codes", json={"tokens": 10_000})
    assert resp.status_code == 400 and "9950 tokens" in resp.get_json()["message"]
    resp = bed.client(token=True).post("/api/sockets/kitchen/codes", json={"tokens": 5})
    assert resp.status_code == 400 and "multiple of 10" in resp.get_json()["message"]
    resp = bed.client(token=True).post("/api/sockets/kitchen/codes", json={"tokens": 10, "extra": 1})
    assert resp.status_code == 400


def test_a_retried_request_gets_the_same_code_so_a_lost_answer_never_makes_two(bed):
    client = bed.client(token=True)
    path = "/api/sockets/kitchen/codes"
    first = client.post(path, json={"tokens": 50, "request_id": "retry-0001"})
    assert first.status_code == 201 and first.get_json()["repeated"] is False
    again = client.post(path, json={"tokens": 50, "request_id": "retry-0001"})
    assert again.status_code == 200 and again.get_json()["repeated"] is True
    assert [again.get_json()[k] for k in ("code", "count")] == [first.get_json()[k] for k in ("code", "count")]
    other = client.post(path, json={"tokens": 50, "request_id": "retry-0002"})
    assert other.status_code == 201 and other.get_json()["code"] != first.get_json()["code"]
    # the retry did not move the count: the code after the second request still follows it
    assert bed.rt.journal.codes_issued("kitchen") == other.get_json()["count"]
    again = client.post(path, json={"tokens": 50, "request_id": "retry-0001"})
    assert again.get_json()["code"] == first.get_json()["code"], "still the same code after a later one"
    wrong = client.post(path, json={"tokens": 60, "request_id": "retry-0001"})
    assert wrong.status_code == 400 and "already made code 1 for" in wrong.get_json()["message"]
    for bad in ("short", "has spaces in it", 12345678):
        assert client.post(path, json={"tokens": 50, "request_id": bad}).status_code == 400
    tenant = bed.client()
    assert enter(tenant, first.get_json()["code"]).status_code == 200
    assert enter(tenant, again.get_json()["code"]).status_code == 400, "the repeated answer is that code, used now"
    assert enter(tenant, other.get_json()["code"]).status_code == 200
    assert bed.rt.journal.balance("kitchen") == 100
    issued = [e for e in bed.rt.journal.events("kitchen", 50) if e["kind"] == "code_issued"]
    assert len(issued) == 2, "two codes issued, whatever the retries"


@pytest.mark.parametrize("headers, status", [({"Origin": "https://evil.example"}, 403),
                                             ({"Sec-Fetch-Site": "cross-site"}, 403)])
def test_a_code_entered_from_another_site_is_refused(bed, headers, status):
    made = make_code(bed)
    resp = bed.client().post("/api/sockets/kitchen/redeem", json={"code": made["code"]}, headers=headers)
    assert resp.status_code == status and bed.rt.journal.balance("kitchen") == 0


def test_a_form_post_cannot_enter_a_code(bed):
    made = make_code(bed)
    resp = bed.client().post("/api/sockets/kitchen/redeem", data={"code": made["code"]})
    assert resp.status_code == 400 and bed.rt.journal.balance("kitchen") == 0


def test_wrong_codes_slow_down_their_sender_then_lock_the_socket_until_the_landlord_clears_it(bed):
    made = make_code(bed)
    guesser = bed.client()
    for i in range(5):
        assert enter(guesser, f"{111111111 + i}").get_json()["reason"] == "invalid"
    slow = enter(guesser, "222222222")
    assert slow.status_code == 429 and int(slow.headers["Retry-After"]) >= 1
    wrong, waits = 5, []
    while wrong < 10:  # waiting each time as told: the socket locks at the tenth wrong code
        resp = enter(guesser, f"{333333333 + wrong}")
        if resp.status_code == 429:
            waits.append(int(resp.headers["Retry-After"]))
            bed.clock.advance(waits[-1])
        else:
            assert resp.get_json()["reason"] == "invalid"
            wrong += 1
    assert waits == [1, 2, 4, 8, 16]
    bed.clock.advance(60)
    locked = enter(bed.client(), made["code"])
    assert locked.status_code == 423 and locked.get_json()["reason"] == "locked"
    assert "10 wrong codes" in bed.rt.journal.open_alarms()["kitchen"][2]
    landlord = bed.landlord()
    assert landlord.post("/api/sockets/kitchen/alarms/ack", json={},
                         headers={"X-CSRFToken": csrf_of(landlord)}).status_code == 200
    bed.clock.advance(901)
    assert enter(bed.client(), made["code"]).status_code == 200
    assert bed.rt.journal.balance("kitchen") == 50


def test_an_unknown_socket_and_a_non_code_are_answered_plainly(bed):
    assert enter(bed.client(), "123456789", socket_id="nope").status_code == 404
    resp = enter(bed.client(), "12-34")
    assert resp.status_code == 400 and resp.get_json()["reason"] == "malformed"
