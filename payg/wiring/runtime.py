"""What the composition root (payg/bootstrap.py) makes and the parts it hands off (payg/wiring/) share: the
`Runtime` of one controller, and where the project's files are. Here so that nothing in payg/wiring imports
the root back."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from payg.adapters.journal import SqliteJournal
    from payg.domain.settings import Config
    from payg.ports import Clock, DepositSource, EnergyMeter, Relay
    from payg.services.channels import ChannelBook
    from payg.services.codes import CodeDesk
    from payg.services.deposits import DepositWatcher
    from payg.services.landlord import LandlordDesk
    from payg.services.metering import Metering, Publishers
    from payg.services.site import Site
    from payg.services.supply import SupplyDesk
    from payg.web.trade import Trade

log = logging.getLogger("payg")
ROOT = Path(__file__).resolve().parent.parent.parent  # the source tree: config/, templates/, static/


@dataclass
class Runtime:
    """Every object of one controller. `close()` releases them in the reverse order they were made."""

    config: Config
    clock: Clock
    journal: SqliteJournal
    ledger: DepositSource
    meters: dict[str, EnergyMeter]
    relays: dict[str, Relay]
    publishers: Publishers
    metering: Metering
    landlord: LandlordDesk
    watcher: DepositWatcher
    site: Site
    codes: CodeDesk
    trade: Trade | None = None
    book: ChannelBook | None = None
    supply: SupplyDesk | None = None
    closers: list[tuple[str, Callable[[], None]]] = field(default_factory=list)
    mqtt_status: Callable[[], dict] | None = None  # the MQTT bridge's, once it has started (payg/wiring/mqtt.py)
    server_status: Callable[[], dict] | None = None  # the web server's, once serve_web has made it
    resale_warnings: tuple[str, ...] = ()  # resale prices above [tariff.supply], logged at start

    def close(self) -> None:
        close_all(self.closers)


def close_all(closers: list[tuple[str, Callable[[], None]]]) -> None:
    """Each in turn, the last made first; one that fails is logged and the others still close."""
    while closers:
        name, close = closers.pop()
        try:
            close()
        except Exception:
            log.exception("closing %s failed", name)


def profile_dirs() -> tuple[Path, ...]:  # where meter profiles are found by name
    return (ROOT / "config" / "meters", Path(sys.prefix) / "share" / "payg" / "meters")


def web_dirs() -> dict[str, Path]:
    """The pages' files: the project's folders in a source tree, else the copies under share/payg."""
    shared = Path(sys.prefix) / "share" / "payg"
    source = {"templates": ROOT / "templates", "static": ROOT / "static", "assets": ROOT / "node_modules"}
    if source["templates"].is_dir():
        return source
    return {"templates": shared / "templates", "static": shared / "static", "assets": shared / "assets"}
