"""What the hub's MQTT link feeds when the fleet's history is kept: the live model (Fleet) first, then the
archive (payg/adapters/fleet_archive.py) for each socket's state and each event.

The archive takes them without waiting (its writer thread batches them into the database), so a database
that is slow or away never holds up the link's thread; the archive keeps them until it is back.
"""

from __future__ import annotations

from typing import Protocol

from payg.hub.fleet import Fleet


class History(Protocol):
    """What the sink writes to (payg.adapters.fleet_archive.FleetArchive matches it)."""

    def event(self, controller: str, body: dict) -> None: ...

    def state(self, controller: str, socket: str, body: dict) -> None: ...


class RecordingSink:
    """A FleetSink (payg.adapters.mqtt.hub_link) that hands everything to `fleet` and states and events also to
    `history`. Events are archived by their id, so a redelivery the fleet drops is a no-op there too."""

    def __init__(self, fleet: Fleet, history: History):
        self.fleet = fleet
        self.history = history

    def status(self, controller: str, value: str | None) -> None:
        self.fleet.status(controller, value)

    def state(self, controller: str, socket: str, body: dict | None) -> None:
        self.fleet.state(controller, socket, body)
        if body is not None:
            self.history.state(controller, socket, body)

    def event(self, controller: str, body: dict) -> None:
        self.fleet.event(controller, body)
        if isinstance(body.get("id"), str):
            self.history.event(controller, body)

    def response(self, controller: str, body: dict) -> None:
        self.fleet.response(controller, body)

    def link(self, connected: bool, error: str | None = None) -> None:
        self.fleet.link(connected, error)

    def replays_due(self) -> list[tuple[str, int, str]]:
        return self.fleet.replays_due()

    def replay_unsent(self, controller: str, request_id: str) -> None:
        self.fleet.replay_unsent(controller, request_id)
