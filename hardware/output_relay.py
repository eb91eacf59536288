"""What the two GPIO relays (gpiod_relay.py, gpio_relay.py) share: the state last commanded, one command at a
time, and a release that leaves the output driven at its off level, never handed back (their module docs say why).
"""

from __future__ import annotations

import threading
from typing import Any

from payg.errors import RelayError


class DrivenOutputRelay:
    """A relay on one output the subclass drives: `_write(level)` sets it (raising RelayError), `_where()` names it
    in errors; `_on` and `_off` are its levels. Matches payg.ports.Relay."""

    _on: Any
    _off: Any

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._closed_state = False
        self._released = False

    def _where(self) -> str:
        raise NotImplementedError

    def _write(self, level: Any) -> None:
        raise NotImplementedError

    def set_closed(self, closed: bool) -> None:
        with self._lock:
            if self._released:
                raise RelayError(f"{self._where()}: relay already released (close() was called)")
            self._write(self._on if closed else self._off)
            self._closed_state = bool(closed)

    def is_closed(self) -> bool:
        """The last state commanded successfully (the output is not read back)."""
        return self._closed_state

    def close(self) -> None:
        """Drive the output off and stop using it; it stays driven at the off level."""
        with self._lock:
            if self._released:
                return
            self._write(self._off)  # on failure the relay stays usable, so the caller can retry
            self._closed_state = False
            self._released = True
