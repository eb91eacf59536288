"""What the composition root does with the tariffs: a schedule per socket in the controller's time zone, the
resale check at start, and the journal's money unit kept for ever."""

from __future__ import annotations

import logging
import zoneinfo

from payg.adapters.journal import SqliteJournal
from payg.domain import resale
from payg.domain.settings import Config
from payg.domain.tariff import TariffSchedule
from payg.errors import ConfigError

log = logging.getLogger("payg")


def socket_schedules(config: Config) -> dict[str, TariffSchedule]:
    """Each socket's schedule: its `[tariffs.NAME]`, else `[tariff]`; one object per tariff, in `[web] timezone`."""
    tz = zoneinfo.ZoneInfo(config.web.timezone) if config.web.timezone else None
    by_name = {name: t.schedule(tz) for name, t in (("", config.tariff), *config.tariffs)}
    return {s.id: by_name[s.tariff or ""] for s in config.sockets}


def resale_check(config: Config) -> list[str]:
    """Where a socket's tariff sells above `[tariff.supply]` (payg/domain/resale.py), each logged as a warning."""
    supply = config.tariff.supply
    if supply is None:
        return []
    warnings = resale.check([config.tariff_of(s).periods for s in config.sockets], supply,
                            config.tariff.currency or "tokens")
    for text in warnings:
        log.warning("resale price above the supply's: %s", text)
    return warnings


MONEY_CURSOR = "money"  # the journal's unit: "tokens", or the ISO 4217 code whose minor unit it counts


def keep_money_unit(journal: SqliteJournal, config: Config) -> None:
    """A journal counts one unit for ever. Tokens may become a currency's minor unit, one for one (the mapping
    docs/tenants/tariffs.md documents); a currency is never silently read as another, or as tokens."""
    unit = config.tariff.currency or "tokens"
    kept = journal.cursor(MONEY_CURSOR)
    if kept == unit:
        return
    stored = kept if kept is not None or not journal.entries_after(0, 1) else "tokens"  # entries from before: tokens
    if stored not in (None, "tokens", unit):
        raise ConfigError(str(config.path), "tariff.currency",
                          f"{stored!r}: this journal counts {stored} and payg does not convert it to another unit "
                          f"(start a new data_dir for a new currency)", config.tariff.currency, has_got=True)
    if stored == "tokens" and unit != "tokens":
        log.warning("the journal counted tokens: from now on each token booked is one minor unit of %s "
                    "(docs/tenants/tariffs.md, From tokens to a currency)", unit)
    with journal.transaction() as tx:
        tx.set_cursor(MONEY_CURSOR, unit)
