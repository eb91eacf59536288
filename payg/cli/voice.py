"""How every `payg` command says that it did not do what was asked, and the exit code it ends with.

One voice: each message is one line on standard error, `payg: ` and one sentence, with no second prefix. The exit
codes are the table in docs/cli.md:

- 0: done.
- 1 (`EXIT_FAILED`): the request was well formed, but it was refused (the controller refused it: a code used
  already, a wrong code, a trade rule broken, a missing API token) or could not be carried out (no controller
  running, no journal yet, a ledger that does not pay).
- 2 (`EXIT_USAGE`): the request itself is wrong, and nothing was done: bad arguments, an unknown socket, an
  amount no code or entry can carry, a bad configuration.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, TextIO

from payg import errors
from payg.domain.settings import Config
from payg.errors import Unreachable

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class ControllerApi(Protocol):
    """The running controller's API (payg/adapters/controller_api.py)."""

    url: str
    token_file: Path

    def request(self, method: str, path: str, body: dict | None = None, timeout_s: float = 60.0,
                headers: dict[str, str] | None = None): ...

    def states(self, timeout_s: float = 2.0) -> list[dict] | None: ...


def say(text: str, err: TextIO | None = None) -> None:
    print(f"payg: {text}", file=err if err is not None else sys.stderr)


def unknown_socket(socket_id: str, config: Config, err: TextIO | None = None) -> int:
    """The one message for a socket id the configuration does not name, in every command that takes `--socket`."""
    say(f"unknown socket {socket_id!r} (configured: {', '.join(s.id for s in config.sockets)})", err)
    return EXIT_USAGE


def not_running(url: str) -> str:
    return f"the controller at {url} is not running (connection refused)"


def ask(api: ControllerApi, method: str, path: str, body: dict | None, err: TextIO, *, timeout_s: float = 60.0,
        headers: dict[str, str] | None = None, why: str = "start it with `payg run`",
        refused: Callable[[int, dict], str | None] | None = None) -> tuple[dict, int]:
    """The running controller's answer: (its JSON object, 0), or ({}, the exit code) once what went wrong is said.

    A request the controller found malformed (HTTP 400, but for a refused code) or that names a socket it does not
    have is a usage error (2); anything else it refused (a used code, a trade rule, a missing API token), or no
    controller answering, is 1. (A socket the configuration does not name was refused before: `unknown_socket`.)
    `refused` may word a refusal itself, from its status and answer (a tenant's, in the tenant's language)."""
    try:
        reply = api.request(method, path, body, timeout_s=timeout_s, headers=headers)
    except Unreachable as exc:
        if exc.refused:
            say(not_running(api.url), err)
            say(why, err)
        else:
            say(f"no usable answer from the controller at {api.url} ({exc}); {why}", err)
        return {}, EXIT_FAILED
    answer = reply.body if isinstance(reply.body, dict) else {}
    if reply.ok:
        return answer, EXIT_OK
    name, message = str(answer.get("error") or ""), str(answer.get("message") or reply.reason or "")
    if reply.status == 404 and name == "Not Found" and message.startswith("unknown socket"):
        # configured here, but not in the running controller: it was started before the configuration changed
        say(f"{message} in the controller at {api.url} (restart it to use the configuration as it is now)", err)
        return {}, EXIT_USAGE
    if reply.status == 400 and name != "Refused":  # bad input: an amount, a field, a form (not a refused code)
        say(message or f"the controller found the request malformed (HTTP {reply.status})", err)
        return {}, EXIT_USAGE
    if reply.status >= 500:
        say(f"the controller failed (HTTP {reply.status}{': ' + message if message else ''})", err)
        return {}, EXIT_FAILED
    own = refused(reply.status, answer) if refused is not None and reply.status in (400, 423, 429) else None
    if own is not None:
        say(own, err)
        return {}, EXIT_FAILED
    rule = getattr(errors, name, None)
    named = f" ({name})" if isinstance(rule, type) and issubclass(rule, errors.TradeRefused) else ""
    say(f"refused: {message or f'HTTP {reply.status}'}{named}", err)
    if reply.status == 401:
        say(f"run this as the user that runs the controller (it reads {api.token_file})", err)
    return {}, EXIT_FAILED
