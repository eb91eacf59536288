"""The in-process web bed (tests/support/web_beds.py) served on 127.0.0.1 by payg's own HTTP server, with its live
pushes running, for a browser: the test drives the controller (payments, the virtual clock, the meters) and the
page sees it as it would a real controller's."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support import wait_until
from tests.support.served import Served
from tests.support.web_beds import PASSWORD, WebBed, make_web_bed


@contextmanager
def served_bed(tmp_path: Path, **web) -> Iterator[tuple[WebBed, str]]:
    """(the bed, its base URL); the time zone is UTC unless `web` says otherwise."""
    bed = make_web_bed(tmp_path, **{"timezone": "UTC", **web})
    bed.web.hub.start()
    served = Served(bed.app)
    try:
        yield bed, f"http://127.0.0.1:{served.port}"
        # The browser has gone; its live connections end before the session store they read is closed. A page left
        # mid-handshake on long polling would only be noticed at the ping timeout (about 45 s): close them all, as a
        # logout does.
        bed.web.hub.landlords.end_session(None)
        wait_until(lambda: len(bed.web.hub.landlords) == 0, 10, "the landlord pages' live connections to end")
    finally:
        bed.web.hub.stop()
        served.close()
        bed.close()


def pay(bed: WebBed, socket_id: str, tokens: int) -> None:
    """A mock payment, credited at once (as the loop's deposit poll would)."""
    bed.rt.ledger.pay(socket_id, tokens)
    bed.rt.watcher.poll()


def log_in(page, base: str, then: str) -> None:
    """The landlord's login through the form, landing on `then`."""
    page.goto(f"{base}/landlord/login?next={then}")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(base + then)
