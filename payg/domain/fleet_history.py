"""What the hub's history gives back: a socket's day and the fleet's day (payg/adapters/fleet_archive.py keeps
them; the hub's pages and CSV read them). Amounts are in the socket's currency's minor unit, or tokens."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SocketDay:
    day: str  # an ISO date, a UTC day
    energy_wh: int
    topups: int
    closing_balance: int | None
    currency: str | None


@dataclass(frozen=True)
class FleetDay:
    day: str
    sockets: int
    energy_wh: int
    topups: int
