"""`payg code`, `payg redeem` and `payg codes export`: offline top-up codes from the controller's machine.

Making and entering a code go through the running controller (its API, with the API token), so the
code is booked with the socket's lock held and its relay decided at once. `payg codes export`
reads the data directory: each socket's key, starting code and the highest count the controller has
seen (issued or entered), which a landlord's back office needs to make codes elsewhere. It prints
secrets: only on request.

What a tenant may run and read (`payg redeem`: the credit, the refusals) is in the tenant's language
(payg/webkit/i18n.py `from_environment`); the landlord's commands speak English, as the rest of the CLI does.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TextIO

from payg.cli.voice import EXIT_USAGE, ControllerApi, ask, say
from payg.domain.codes import CodeKey, highest_count, normalise, number_of
from payg.domain.money import TOKENS, MoneyUnit
from payg.domain.settings import Config
from payg.ports import Journal
from payg.services.codes import REFUSALS
from payg.webkit import i18n, money


def value(units: int, unit: MoneyUnit, lang: str = i18n.SOURCE) -> str:
    """What a code is worth, as the commands print it: "50 tokens", or with `[tariff] currency` (its amounts in
    the minor unit: `--tokens 500` is 500 pence) "£5.00"."""
    if unit.currency is None and lang == i18n.SOURCE:
        return f"{units} tokens"
    return money.text(units, unit, lang)


def refusal(lang: str) -> Callable[[int, dict], str | None]:
    """A refused code in the tenant's words, by the controller's reason (None: said as any other refusal)."""
    _ = i18n.gettext_for(lang)

    def word(status: int, answer: dict) -> str | None:
        reason = answer.get("reason")
        if reason == "slow_down" and isinstance(answer.get("retry_after_s"), int):
            return _("Too many wrong codes. Wait %(seconds)s s and try again.") % {"seconds": answer["retry_after_s"]}
        if isinstance(reason, str) and reason in REFUSALS:
            return _("refused: %(why)s") % {"why": _(REFUSALS[reason])}
        return None
    return word


def cmd_code(args: argparse.Namespace, api: ControllerApi, out: TextIO = sys.stdout, err: TextIO = sys.stderr,
             unit: MoneyUnit = TOKENS, lang: str = i18n.SOURCE) -> int:
    _ = i18n.gettext_for(lang)
    if args.command == "redeem":
        try:
            normalise(args.code)  # what is not a code at all is a bad argument, said before the controller is asked
        except ValueError as exc:
            say(_("not a code: %(why)s") % {"why": exc}, err)
            return EXIT_USAGE
    if args.command == "code":
        path, body = f"/api/sockets/{args.socket}/codes", {"tokens": args.tokens}
        if getattr(args, "request_id", None):
            body["request_id"] = args.request_id
        headers = {}
    else:
        path, body = f"/api/sockets/{args.socket}/redeem", {"code": args.code}
        headers = {"Origin": api.url}  # the tenant's action, taken on the controller's machine
    answer, status = ask(api, "POST", path, body, err, timeout_s=10.0, headers=headers,
                         why="codes are made and entered through the running controller: start it with `payg run`",
                         refused=refusal(lang) if args.command == "redeem" else None)
    if status:
        return status
    if args.command == "code":
        print(answer["spaced"], file=out)
        # `number` is what people call the code (1, 2, 3 ...); a controller from before it had only the count
        number = answer.get("number", number_of(answer["count"]))
        print(f"code {number} for socket {args.socket}: {value(answer['tokens'], unit)}, good once"
              + (" (made before for this request id: the same code, not a new one)" if answer.get("repeated") else ""),
              file=err)
    else:
        said = {"amount": value(answer["tokens"], unit, lang), "socket": args.socket}
        print(_("%(amount)s credited to %(socket)s") % said if answer.get("booked")
              else _("this code was credited to %(socket)s before") % said, file=out)
    return 0


def cmd_export(config: Config, keys: dict[str, CodeKey], journal: Journal | None, out: TextIO = sys.stdout,
               err: TextIO = sys.stderr) -> int:
    print("socket\tkey\tstarting_code\tlast_count\ttokens_per_unit", file=out)
    for s in config.sockets:
        key = keys[s.id]
        # the highest count issued here or entered here (a back office's code too): the back office goes on above it
        count = highest_count(journal.codes_issued(s.id), journal.code_counts(s.id)) if journal is not None else 0
        print(f"{s.id}\t{key.key_hex}\t{key.starting_code}\t{count}\t{config.codes.tokens_per_unit}", file=out)
    print("payg: these are secrets: anyone with a key makes codes for its socket. Make a socket's codes in one "
          "place only (here or the back office), continuing from last_count.", file=err)
    return 0
