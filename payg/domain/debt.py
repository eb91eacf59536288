"""Debt recovery: at most `percent` of each top-up repays old debt; the rest is credit to use at once.

A socket falls into debt when it draws on friendly credit (payg/domain/friendly.py) or overshoots
its cut. Without a plan (percent 100, the default) a top-up repays the debt first, all of it,
and only what is left is credit: a tenant who owes more than he pays stays off. With a plan,
the debt not yet repaid is set aside (`deferred`): still owed, but not counted against the
credit, so paying while in debt always turns the power back on.

    usable credit = journal balance + deferred
    debt          = deferred + what the usable credit is below zero
    usable credit (when >= 0) - debt = journal balance, always

Nothing here moves money: every unit is in the journal as it was paid and billed; the plan only
decides how much of the balance the relay may use.
"""

from __future__ import annotations


def top_up(balance_before: int, deferred: int, amount: int, percent: int) -> tuple[int, int]:
    """(the deferred debt after a top-up of `amount` units, the units of it that repaid debt)."""
    if percent >= 100:
        return 0, 0
    owed = deferred + max(0, -(balance_before + deferred))
    recovered = min(owed, amount * percent // 100)
    return owed - recovered, recovered


def usable(balance: int, deferred: int) -> int:
    return balance + deferred


def debt(balance: int, deferred: int) -> int:
    return deferred + max(0, -(balance + deferred))
