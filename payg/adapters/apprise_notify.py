"""Notifications to tenants and the landlord through Apprise, sent from the journal's outbox.

How a notification travels:

1. The journal's writer (payg/adapters/journal_writer.py, opened with `notify=True`) writes a row into the
   `outbox` table in the same transaction as the event or the credit it reports, its uid `notify:<hex>` (the MQTT
   bridge leaves those rows alone). A state only the metering loop sees (a meter gone offline, a friendly-credit
   period a socket is living on) is noticed by `StateWatch` on the loop's published states and written as such a
   row by the sender's thread.
2. The sender's thread turns each such row into one message row per contact URL of its recipient (the socket's
   tenant or the landlord), uid `<event uid>:<digest of the URL>`, kind `message`, its words composed now, and
   deletes the event row: one transaction, so a crash leaves either the event or all its messages.
3. Each message is handed to Apprise for its URL and deleted only once Apprise reports success. A failure waits
   (5 s, doubling up to `[notify] retry_max_s`) and is tried again, the later messages to the same URL waiting
   behind it, in order. Each URL may take `burst` messages at once, then one per `interval_s`; a message over the
   limit waits its turn, none is dropped.

At least once: a message is deleted after Apprise's success, so only a crash between the two (a fraction of a
second) sends it again after the restart. Everything runs on the sender's own thread and its own connection to
the journal's file: the tick only writes a row, and never waits for a mail server.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from payg.adapters.journal_writer import NOTIFY_PREFIX
from payg.adapters.sqlite import connect, transaction
from payg.domain.messages import FRIENDLY_ENDS, LANDLORD, METER_OFFLINE, Message, audience_of
from payg.domain.socket import SocketSnapshot
from payg.ports import Clock

log = logging.getLogger("payg.notify")

MESSAGE = "message"  # the kind of a message row (one per contact URL)
FIRST_RETRY_S = 5.0
# (kind, socket id, fields, the recipient's language or None for the default) -> the words
Compose = Callable[[str, str, Mapping[str, Any], str | None], Message | None]
Send = Callable[[str, str, str], bool]  # (Apprise URL, title, body) -> Apprise reported success


def digest(url: str) -> str:
    """A contact URL as the journal names it: the URL holds secrets, the journal does not."""
    return hashlib.sha256(url.encode()).hexdigest()[:16]


def apprise_send() -> Send:
    """Apprise, a new object per message: Apprise's own pause between two messages of one object (5.5 s for most
    services) would hold every other recipient's messages behind it; `Pace` does the pacing, per URL."""
    import apprise

    def send(url: str, title: str, body: str) -> bool:
        a = apprise.Apprise()
        return bool(a.add(url)) and bool(a.notify(title=title, body=body))
    return send


class Pace:
    """Per contact URL: `burst` messages at once, then one per `interval_s` (a token bucket; 0: no limit)."""

    def __init__(self, burst: int, interval_s: float):
        self.burst, self.interval_s = burst, interval_s
        self._tokens: dict[str, tuple[float, float]] = {}  # url digest -> (tokens, when counted)

    def take(self, to: str, now: float) -> bool:
        if self.interval_s <= 0:
            return True
        tokens, at = self._tokens.get(to, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + max(0.0, now - at) / self.interval_s)
        if tokens < 1:
            self._tokens[to] = (tokens, now)
            return False
        self._tokens[to] = (tokens - 1, now)
        return True

    def give_back(self, to: str) -> None:
        tokens, at = self._tokens[to]
        self._tokens[to] = (tokens + 1, at)


class NotificationSender:
    def __init__(self, journal_path: Path, contacts: Mapping[str, tuple[str, ...]], compose: Compose, clock: Clock,
                 *, burst: int = 5, interval_s: float = 60.0, retry_max_s: float = 900.0, poll_s: float = 1.0,
                 send: Send | None = None, languages: Mapping[str, str] | None = None):
        self._conn = connect(journal_path)
        self.contacts = {key: tuple(urls) for key, urls in contacts.items()}
        self.languages = dict(languages or {})  # a recipient's language, when the contacts file names one
        self._urls = {digest(u): u for urls in self.contacts.values() for u in urls}
        self.compose, self.clock, self.poll_s, self.retry_max_s = compose, clock, poll_s, retry_max_s
        self.pace = Pace(burst, interval_s)
        self._send = send or apprise_send()
        self._failures: dict[str, tuple[int, float]] = {}  # url digest -> (failures in a row, retry at)
        self._derived: deque[tuple[str, str, str, dict[str, Any], str | None]] = deque()
        self._lock = threading.Lock()  # the connection: the thread, and `pending` from others
        self._wake, self._stop = threading.Event(), threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.sent = 0

    # --- the thread ------------------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="payg-notify", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop after the message being sent, if any; what is not sent stays in the outbox for the next start."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        with self._lock:
            self._closed = True
            self._conn.close()

    def wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception:  # a damaged row or a full disk: logged, tried again at the next poll
                log.exception("notifications: a round failed")
            self._wake.wait(self.poll_s)
            self._wake.clear()

    def run_once(self) -> None:
        """One round: derived notices written, events made into messages, the messages that are due sent."""
        with self._lock:
            self._write_derived()
            self._expand()
            rows = self._conn.execute("SELECT id, body FROM outbox WHERE uid LIKE ? AND kind = ? ORDER BY id"
                                      " LIMIT 1000", (f"{NOTIFY_PREFIX}%", MESSAGE)).fetchall()
        waiting: set[str] = set()  # URLs whose oldest message waits: the later ones wait behind it
        for row_id, body in rows:
            if self._stop.is_set():
                return
            m = json.loads(body)
            to = m["to"]
            if to in waiting:
                continue
            url = self._urls.get(to)
            if url is None:  # the contacts file changed since: nobody to send it to
                log.warning("notifications: %s to a URL no longer in the contacts file, dropped", m["title"])
                self._delete(row_id)
                continue
            now = self.clock.now()
            failures, retry_at = self._failures.get(to, (0, 0.0))
            if retry_at > now or not self.pace.take(to, now):
                waiting.add(to)
                continue
            if self._attempt(url, m["title"], m["body"]):
                self._delete(row_id)
                self._failures.pop(to, None)
                self.sent += 1
            else:
                self.pace.give_back(to)  # nothing reached the recipient
                delay = min(self.retry_max_s, FIRST_RETRY_S * 2 ** failures)
                self._failures[to] = (failures + 1, now + delay)
                log.warning("notifications: %s not sent to a %s URL; trying again in %.0f s", m["title"],
                            url.partition("://")[0], delay)
                waiting.add(to)

    def _attempt(self, url: str, title: str, body: str) -> bool:
        try:
            return self._send(url, title, body)
        except Exception:  # a plugin's own failure: a failed attempt like any other
            log.exception("notifications: Apprise failed")
            return False

    def _delete(self, row_id: int) -> None:
        with self._lock:
            if not self._closed:  # stopped while Apprise was sending: the message is sent again at the next start
                self._conn.execute("DELETE FROM outbox WHERE id = ?", (row_id,))

    def _expand(self) -> None:
        """Each notification event as one message row per contact URL of its recipient, in one transaction."""
        events = self._conn.execute("SELECT id, uid, socket_id, kind, body FROM outbox WHERE uid LIKE ? AND"
                                    " kind != ? ORDER BY id LIMIT 500", (f"{NOTIFY_PREFIX}%", MESSAGE)).fetchall()
        if not events:
            return
        with transaction(self._conn):
            for row_id, uid, socket_id, kind, body in events:
                to = LANDLORD if audience_of(kind) == LANDLORD else socket_id
                message = self.compose(kind, socket_id, json.loads(body), self.languages.get(to))
                if message is not None:
                    for url in self.contacts.get(to, ()):
                        self._conn.execute(
                            "INSERT INTO outbox (uid, socket_id, at, kind, body) VALUES (?, ?, ?, ?, ?)"
                            " ON CONFLICT (uid) DO NOTHING",
                            (f"{uid}:{digest(url)}", socket_id, self.clock.now(), MESSAGE,
                             json.dumps({"to": digest(url), "title": message.title, "body": message.body})))
                self._conn.execute("DELETE FROM outbox WHERE id = ?", (row_id,))

    # --- what the loop's states tell ---------------------------------------------------------------------------
    def derive(self, kind: str, socket_id: str, key: str, fields: dict[str, Any], once: str | None = None) -> None:
        """A notice the journal has no event for, from the tick's thread: queued in memory, written by the sender.
        `once`: a cursor that keeps `key` across restarts, so the notice is not made again for the same key."""
        self._derived.append((kind, socket_id, key, fields, once))
        self._wake.set()

    def _write_derived(self) -> None:
        while self._derived:
            kind, socket_id, key, fields, once = self._derived.popleft()
            with transaction(self._conn):
                if once is not None:
                    row = self._conn.execute("SELECT value FROM cursors WHERE name = ?", (once,)).fetchone()
                    if row is not None and row[0] == key:
                        continue
                    self._conn.execute("INSERT INTO cursors (name, value) VALUES (?, ?) ON CONFLICT (name)"
                                       " DO UPDATE SET value = excluded.value", (once, key))
                self._conn.execute("INSERT INTO outbox (uid, socket_id, at, kind, body) VALUES (?, ?, ?, ?, ?)"
                                   " ON CONFLICT (uid) DO NOTHING",
                                   (f"{NOTIFY_PREFIX}{kind}:{socket_id}:{key}", socket_id, self.clock.now(), kind,
                                    json.dumps(fields, sort_keys=True)))

    def pending(self) -> int | None:
        """Notifications not sent yet (events and messages); None once stopped."""
        with self._lock:
            if self._closed:
                return None
            return int(self._conn.execute("SELECT COUNT(*) FROM outbox WHERE uid LIKE ?",
                                          (f"{NOTIFY_PREFIX}%",)).fetchone()[0])


class StateWatch:
    """Subscribed to the loop's states (payg/services/metering.py Publishers): a meter that stops answering after it
    answered, for the landlord; a socket living on friendly credit, told once per period when it ends. Costs the
    tick a comparison per socket; anything to write is handed to the sender's thread."""

    def __init__(self, sender: NotificationSender, friendly_end: Callable[[str, float], float | None]):
        self.sender, self.friendly_end = sender, friendly_end
        self._answering: dict[str, bool] = {}

    def publish(self, states: list[SocketSnapshot]) -> None:
        for s in states:
            offline = s.meter == "offline"
            if offline and self._answering.get(s.id):  # not at the start: every meter is offline until it answers
                self.sender.derive(METER_OFFLINE, s.id, f"{s.updated_at:.0f}", {"since": s.updated_at})
            self._answering[s.id] = not offline
            if s.relay_on and s.balance.units <= 0 and s.override is None:
                end = self.friendly_end(s.id, s.updated_at)
                if end is not None and math.isfinite(end):
                    self.sender.derive(FRIENDLY_ENDS, s.id, f"{end:.0f}", {"ends_at": end},
                                       once=f"notify:friendly:{s.id}")
        self.sender.wake()
