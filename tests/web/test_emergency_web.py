"""Emergency credit from the tenant page: offered in the page's boot, taken by a same-origin JSON request."""

from __future__ import annotations

import json
import re

from payg.services.emergency import EmergencyDesk
from tests.support.web_beds import make_web_bed


def boot_of(html: str) -> dict:
    return json.loads(re.search(r'<script type="application/json" id="boot">(.*?)</script>', html, re.S).group(1))


def test_a_tenant_out_of_credit_takes_emergency_credit_once(tmp_path):
    bed = make_web_bed(tmp_path)
    try:
        bed.loop.run_ticks(1)
        bed.web.emergency = EmergencyDesk(bed.rt.metering, bed.rt.journal, tokens=25, below_tokens=10)
        page = boot_of(bed.client().get("/s/kitchen").get_data(as_text=True))
        assert page["emergency"] == {"offer_tokens": 25, "owed_tokens": 0, "tokens": 25, "below_tokens": 10}
        origin = {"Origin": "http://localhost"}
        assert bed.client().post("/api/sockets/kitchen/emergency", data="{}", headers=origin).status_code == 400
        assert bed.client().post("/api/sockets/kitchen/emergency", json={},
                                 headers={"Origin": "https://evil.example"}).status_code == 403
        taken = bed.client().post("/api/sockets/kitchen/emergency", json={}, headers=origin)
        assert taken.status_code == 200 and taken.get_json()["tokens"] == 25
        assert taken.get_json()["view"]["relay"] == "on"
        assert taken.get_json()["emergency"]["offer_tokens"] is None
        assert taken.get_json()["emergency"]["owed_tokens"] == 25
        again = bed.client().post("/api/sockets/kitchen/emergency", json={}, headers=origin)
        assert again.status_code == 409 and again.get_json()["reason"] == "emergency_owed"
        assert bed.rt.journal.balance("kitchen") == 25
    finally:
        bed.close()
