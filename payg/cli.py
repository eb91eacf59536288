"""The command-line entry point: argument parsing and the commands' output.

app.py builds the objects a command needs and calls the functions here.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import urllib.error
import urllib.request
from typing import TextIO

from payg.config import Config
from payg.errors import InvalidAmount, UnknownSocket
from payg.journal import SqliteJournal
from payg.ports import DepositPayer

DEFAULT_CONFIG = "config/default.toml"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="payg", description="Prepaid pay-as-you-go controller for wall sockets.")
    parser.add_argument("--config", metavar="FILE", help=f"configuration file (default: {DEFAULT_CONFIG})")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS,
                       help=f"configuration file (default: {DEFAULT_CONFIG})")
        return p

    command("run", "run the controller (the default when no command is given)")
    command("status", "show every socket: relay, meter, balance, power")
    p = command("deposit", "pay tokens into a socket's address on the mock ledger")
    p.add_argument("--socket", required=True, metavar="ID", help="socket id")
    p.add_argument("--amount", required=True, type=_positive_int, metavar="N", help="tokens, a positive integer")
    p = command("journal", "print a socket's journal (newest first, or all as CSV)")
    p.add_argument("--socket", required=True, metavar="ID", help="socket id")
    p.add_argument("--csv", action="store_true", help="every entry, oldest first, as CSV")
    p.add_argument("--limit", type=_positive_int, default=50, metavar="N", help="entries to show (default 50)")
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    args.command = args.command or "run"
    args.config = args.config or DEFAULT_CONFIG
    return args


def unknown_socket(socket_id: str, config: Config) -> int:
    print(f"payg: unknown socket {socket_id!r} (configured: {', '.join(s.id for s in config.sockets)})",
          file=sys.stderr)
    return 1


def cmd_deposit(args: argparse.Namespace, config: Config, payer: DepositPayer, out: TextIO = sys.stdout) -> int:
    if config.socket(args.socket) is None:
        return unknown_socket(args.socket, config)
    try:
        deposit_id = payer.pay(args.socket, args.amount)
    except (InvalidAmount, UnknownSocket) as exc:
        print(f"payg: {exc}", file=sys.stderr)
        return 1
    print(f"paid {args.amount} tokens to {args.socket}: deposit {deposit_id}", file=out)
    return 0


def fetch_live_states(config: Config, timeout_s: float = 2.0) -> list[dict] | None:
    """The running controller's view, or None when it does not answer (or another controller answers)."""
    if not config.web.enabled:
        return None
    host = "127.0.0.1" if config.web.host in ("0.0.0.0", "::", "") else config.web.host
    if ":" in host:
        host = f"[{host}]"
    try:
        with urllib.request.urlopen(f"http://{host}:{config.web.port}/api/sockets", timeout=timeout_s) as resp:
            states = json.load(resp)
    except (urllib.error.URLError, OSError, ValueError):
        return None
    if not isinstance(states, list) or not all(isinstance(st, dict) for st in states):
        return None
    if sorted(str(st.get("id")) for st in states) != sorted(s.id for s in config.sockets):
        return None
    return states


def cmd_status(config: Config, journal: SqliteJournal | None, live: list[dict] | None,
               out: TextIO = sys.stdout) -> int:
    rows = []
    if live is not None:
        for st in live:
            rows.append([st["id"], st["name"], st["relay"], st["meter"], str(st["balance_tokens"]),
                         _fmt(st.get("power_w")), _fmt(st.get("energy_wh"))])
    else:
        print("controller not answering on the web port: balances from the journal only", file=out)
        for s in config.sockets:
            balance = journal.balance(s.id) if journal is not None else 0
            state = journal.meter_state(s.id) if journal is not None else None
            energy = _fmt(float(state.baseline.counter_wh)) if state else "-"
            rows.append([s.id, s.name, "-", "-", str(balance), "-", energy])
    _table(["socket", "name", "relay", "meter", "balance", "power_w", "energy_wh"], rows, out)
    return 0


def cmd_journal(args: argparse.Namespace, config: Config, journal: SqliteJournal, out: TextIO = sys.stdout) -> int:
    if config.socket(args.socket) is None and journal.balance(args.socket) == 0:
        print(f"payg: unknown socket {args.socket!r}", file=sys.stderr)
        return 1
    fields = ["id", "at", "kind", "amount", "energy_wh", "key", "memo"]
    if args.csv:
        writer = csv.writer(out)
        writer.writerow(fields)
        for e in journal.all_entries(args.socket):
            d = e.as_dict()
            writer.writerow([d[f] if d[f] is not None else "" for f in fields])
        return 0
    entries = journal.entries(args.socket, args.limit)
    print(f"{args.socket}: balance {journal.balance(args.socket)}", file=out)
    _table(fields, [[_fmt(e.as_dict()[f]) for f in fields] for e in entries], out)
    return 0


def _fmt(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def _table(header: list[str], rows: list[list[str]], out: TextIO) -> None:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    for row in [header, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip(), file=out)
