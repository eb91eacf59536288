"""Money: integers in the ledger's smallest unit, the tariff, and the conversions with their carry.

A journal counts ledger units (1 per token on the mock ledger; a token may be many nanos or
wei elsewhere: `units_per_token`). Nothing here rounds money away: what does not make a
whole unit (billing) or a whole token (deposits) is carried to the next conversion.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from functools import cached_property
from typing import Protocol


@dataclass(frozen=True)
class Tariff:
    tokens_per_wh: Fraction
    units_per_token: int = 1  # ledger units in one token (1 for the mock ledger)

    @cached_property  # read several times a tick; a frozen tariff's product never changes
    def units_per_wh(self) -> Fraction:
        return self.tokens_per_wh * self.units_per_token

    def cost(self, energy_wh: Fraction, carry: Fraction) -> tuple[int, Fraction]:
        """(whole units to debit now, new carry) for energy_wh on top of an owed carry."""
        owed = carry + Fraction(energy_wh) * self.units_per_wh
        debit = math.floor(owed)
        return debit, owed - debit

    def energy_wh(self, units: int | float) -> float:
        """The energy `units` pays for (0 for a balance at or below zero)."""
        return float(max(units, 0) / self.units_per_wh)


class Priced(Protocol):
    @property
    def currency(self) -> str | None: ...
    @property
    def minor(self) -> int: ...
    @property
    def locale(self) -> str: ...


@dataclass(frozen=True)
class MoneyUnit:
    """What a journal amount is, for the edges that show it: tokens (`currency` None), or the minor unit of an ISO
    4217 currency with `minor` decimal places (`[tariff] currency`, its digits from the config loader), written for
    `locale`. Built once by the composition root from `[tariff]`; the formatting (Babel, Intl) is the edges'."""

    currency: str | None = None
    minor: int = 0
    locale: str = "en_GB"

    @classmethod
    def of(cls, tariff: Priced) -> MoneyUnit:
        """`[tariff]`'s unit (a TariffConfig)."""
        return cls(tariff.currency, tariff.minor, tariff.locale)

    def major(self, units: int) -> Decimal:
        """A journal amount in the currency's major unit, exactly (1234 pence: Decimal("12.34"))."""
        return Decimal(units).scaleb(-self.minor)


TOKENS = MoneyUnit()  # no [tariff] currency: amounts are tokens


MAX_TOKENS = 2**62  # what one journal entry can hold (SQLite integers are 64-bit)


def deposit_tokens(units: int, carried_units: int, units_per_token: int) -> tuple[int, int]:
    """(whole tokens, ledger units carried) for a deposit of `units` on top of what earlier deposits left over.

    Raises ValueError for a deposit that is not a positive integer or would exceed what the journal holds."""
    if not isinstance(units, int) or isinstance(units, bool) or units <= 0:
        raise ValueError(f"a deposit is a positive integer of ledger units, got {units!r}")
    if not isinstance(units_per_token, int) or units_per_token < 1:
        raise ValueError(f"units_per_token must be a positive integer, got {units_per_token!r}")
    tokens, carry = divmod(carried_units + units, units_per_token)
    if tokens >= MAX_TOKENS:
        raise ValueError(f"a deposit of {units} units is {tokens} tokens, beyond what the journal holds")
    return tokens, carry


def tokens_shown(units: int, units_per_token: int) -> int | float:
    """A journal amount as tokens for people: an integer when it is whole."""
    return units // units_per_token if units % units_per_token == 0 else units / units_per_token


def time_left_s(energy_wh: float, power_w: float | None) -> float | None:
    """How long `energy_wh` lasts at `power_w`; None when nothing is drawn."""
    if not power_w or power_w <= 0:
        return None
    return energy_wh / power_w * 3600.0
