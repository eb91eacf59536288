"""A controller's notifications through Apprise ([notify]), made from its config and runtime, and started."""

from __future__ import annotations

import logging
import zoneinfo
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from payg.adapters.apprise_notify import NotificationSender, Send
    from payg.domain.messages import Message
    from payg.domain.settings import Config
    from payg.wiring.runtime import Runtime

log = logging.getLogger("payg")


def composer(config: Config) -> Callable[[str, str, Mapping[str, Any], str | None], Message | None]:
    """The words of a notification in the recipient's language (None: `[web] language`): the socket's name, money
    as the pages write it, times in `[web] timezone`, the receipt's link made absolute with `[web] public_url`."""
    from babel.dates import format_datetime

    from payg.domain import messages
    from payg.domain.money import MoneyUnit
    from payg.webkit import i18n, money

    names = {s.id: s.name for s in config.sockets}
    unit = MoneyUnit.of(config.tariff)
    tz = zoneinfo.ZoneInfo(config.web.timezone) if config.web.timezone else None

    def compose(kind: str, socket_id: str, fields: Mapping[str, Any], language: str | None = None) -> Message | None:
        lang = language or config.web.language
        entry_id = fields.get("entry_id")
        receipt = messages.receipt_path(socket_id, entry_id, config.web.public_url) \
            if isinstance(entry_id, int) else None
        return messages.compose(kind, names.get(socket_id, socket_id), fields,
                                money=lambda x: money.text(x, unit, lang), receipt_url=receipt,
                                when=lambda t: format_datetime(datetime.fromtimestamp(t, tz), "EEE dd MMM HH:mm",
                                                               locale=lang),
                                _=i18n.gettext_for(lang))
    return compose


def friendly_end(config: Config) -> Callable[[str, float], float | None]:
    """When the friendly-credit period around a time ends for a socket (None: not in one, or the socket has none)."""
    friendly = config.protections.friendly_credit
    without = {s.id for s in config.sockets if not s.friendly_credit}
    return lambda socket_id, t: None if socket_id in without else friendly.ends_at(t)


def start_notifications(rt: Runtime, send: Send | None = None, poll_s: float = 1.0) -> NotificationSender | None:
    """The sender started on its own thread and the state watch subscribed (None when [notify] has no contacts
    file). The journal must be open with `notify=True` (bootstrap's `open_journal`). Tests pass `send`."""
    from payg.adapters.apprise_notify import NotificationSender, StateWatch
    from payg.adapters.contacts import read_contact_book

    config: Config = rt.config
    n = config.notify
    if n.contacts_file is None:
        return None
    contacts, languages = read_contact_book(n.contacts_file, config.path, [s.id for s in config.sockets])
    sender = NotificationSender(rt.journal.path, contacts, composer(config), rt.clock, burst=n.burst,
                                interval_s=n.interval_s, retry_max_s=n.retry_max_s, poll_s=poll_s, send=send,
                                languages=languages)
    rt.publishers.subscribe(StateWatch(sender, friendly_end(config)))
    sender.start()
    rt.closers.append(("notifications", sender.stop))
    log.info("notifications: %d recipients with %d contact URLs", len(contacts),
             sum(len(u) for u in contacts.values()))
    return sender
