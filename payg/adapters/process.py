"""The controller's process: run until SIGTERM or SIGINT, then return so the caller can stop everything."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable

log = logging.getLogger("payg")


def run_until_stopped(started: Callable[[], None], serve_forever: Callable[[], None] | None = None) -> None:
    """Call `started()`, then serve (or wait) until a signal asks the process to stop."""
    stop = threading.Event()

    def on_signal(signum, _frame):
        if stop.is_set():
            return  # already stopping; a second Ctrl-C must not interrupt the shutdown
        log.info("signal %s: stopping", signal.Signals(signum).name)
        stop.set()
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        started()
        if serve_forever is not None:
            serve_forever()
        else:
            while not stop.wait(1.0):  # woken now and then: a signal that came just before a wait is not missed
                pass
    except SystemExit:
        pass
