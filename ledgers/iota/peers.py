"""Where an IOTA trade message goes: to another controller through the PeerLink port (payg/ports/), or to
this controller's own handler when the market, or the party the message is for, is here."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping

from ledgers.iota.envelope import Parties
from ledgers.iota.sdk import parse_address
from payg.errors import NotAuthorised
from payg.ports import PeerLink


class Peers:
    """urls: party address -> base URL of the controller that holds that party's keys."""

    def __init__(self, link: PeerLink, parties: Parties, urls: Mapping[str, str] | None,
                 local: Callable[[str, dict], dict]):
        self.link = link
        self.parties = parties
        self._local = local
        self._urls = {parse_address(party, "peer party"): url.rstrip("/") for party, url in (urls or {}).items()}

    def call(self, base_url: str | None, kind: str, payload: dict) -> dict:
        """`kind` at the controller at base_url, or at this one (None), through the same JSON form."""
        if base_url is None:
            local = json.loads(json.dumps(payload))
            return json.loads(json.dumps(self._local(kind, local)))
        return self.link.post(base_url, kind, payload)

    def url_for(self, party: str) -> str | None:
        """None when this controller holds the party's key."""
        if self.parties.holds(party):
            return None
        try:
            return self._urls[party]
        except KeyError:
            raise NotAuthorised(f"no controller is known for party {party}: add it to peers") from None

    def known_url(self, party: str) -> str | None:
        """The other controller holding the party's key, if one is known."""
        return None if self.parties.holds(party) else self._urls.get(party)

    def add(self, party: str, base_url: str) -> None:
        self._urls[parse_address(party, "peer party")] = base_url.rstrip("/")
