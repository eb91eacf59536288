"""`payg code`, `payg redeem` and `payg codes export`: offline top-up codes from the controller's machine.

Making and entering a code go through the running controller (its API, with the API token), so the
code is booked with the socket's lock held and its relay decided at once. `payg codes export`
reads the data directory: each socket's key, starting code and the highest count the controller has
seen (issued or entered), which a landlord's back office needs to make codes elsewhere. It prints
secrets: only on request.
"""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from payg.cli.voice import EXIT_USAGE, ControllerApi, ask, say
from payg.domain.codes import CodeKey, highest_count, normalise
from payg.domain.money import TOKENS, MoneyUnit
from payg.domain.settings import Config
from payg.ports import Journal
from payg.webkit import money


def value(units: int, unit: MoneyUnit) -> str:
    """What a code is worth, as the commands print it: "50 tokens", or with `[tariff] currency` (its amounts in
    the minor unit: `--tokens 500` is 500 pence) "£5.00"."""
    return f"{units} tokens" if unit.currency is None else money.text(units, unit)


def cmd_code(args: argparse.Namespace, api: ControllerApi, out: TextIO = sys.stdout, err: TextIO = sys.stderr,
             unit: MoneyUnit = TOKENS) -> int:
    if args.command == "redeem":
        try:
            normalise(args.code)  # what is not a code at all is a bad argument, said before the controller is asked
        except ValueError as exc:
            say(f"not a code: {exc}", err)
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
                         why="codes are made and entered through the running controller: start it with `payg run`")
    if status:
        return status
    if args.command == "code":
        print(answer["spaced"], file=out)
        print(f"code #{answer['count']} for socket {args.socket}: {value(answer['tokens'], unit)}, good once"
              + (" (made before for this request id: the same code, not a new one)" if answer.get("repeated") else ""),
              file=err)
    else:
        print(f"{value(answer['tokens'], unit)} credited to {args.socket}" if answer.get("booked")
              else f"this code was credited to {args.socket} before", file=out)
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
