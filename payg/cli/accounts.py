"""Commands on a controller's accounts: status, journal, cursor, and the ledger's deposit and address."""

from __future__ import annotations

import argparse
import csv
import re
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime, tzinfo
from typing import TextIO
from zoneinfo import ZoneInfo

from payg import serialize
from payg.cli.voice import EXIT_USAGE, unknown_socket
from payg.domain.money import MoneyUnit
from payg.domain.settings import Config, IotaLedgerConfig, MockLedgerConfig
from payg.errors import ConfigError, InvalidAmount, UnknownSocket
from payg.ports import DepositPayer, DepositSource, Journal
from payg.services.dashboard import Dashboard
from payg.webkit import money


def ledger_command(args: argparse.Namespace, config: Config,
                   ledger: Callable[[Config], AbstractContextManager[DepositSource]]) -> int:
    """`payg deposit` (mock ledger only) and `payg address`: the configured ledger, no node contact needed."""
    if config.socket(args.socket) is None:
        return unknown_socket(args.socket, config)
    if args.command == "deposit" and not isinstance(config.ledger, MockLedgerConfig):  # refused before it opens
        return _not_a_payer(args, config)
    try:
        with ledger(config) as source:
            if args.command != "deposit":
                return cmd_address(args, source)
            if not isinstance(source, DepositPayer):
                return _not_a_payer(args, config)
            return cmd_deposit(args, config, source)
    except ConfigError as exc:
        print(f"payg: invalid configuration: {exc}", file=sys.stderr)
        return 2


def _not_a_payer(args: argparse.Namespace, config: Config) -> int:
    print(f"payg: deposit pays on the mock ledger only; with the {config.ledger.backend} backend pay from a "
          f"wallet to the address `payg address --socket {args.socket}` prints", file=sys.stderr)
    return EXIT_USAGE


def cmd_deposit(args: argparse.Namespace, config: Config, payer: DepositPayer, out: TextIO = sys.stdout) -> int:
    if config.socket(args.socket) is None:
        return unknown_socket(args.socket, config)
    try:
        deposit_id = payer.pay(args.socket, args.amount)
    except (InvalidAmount, UnknownSocket) as exc:
        print(f"payg: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"paid {args.amount} tokens to {args.socket}: deposit {deposit_id}", file=out)
    return 0


def cmd_address(args: argparse.Namespace, source: DepositSource, out: TextIO = sys.stdout) -> int:
    try:
        address = source.address_for(args.socket)
        uri = source.payment_uri(args.socket, args.amount)
    except (InvalidAmount, UnknownSocket) as exc:
        print(f"payg: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"socket:  {args.socket}", file=out)
    print(f"ledger:  {source.name}", file=out)
    print(f"address: {address}", file=out)
    print(f"uri:     {uri}", file=out)
    if args.amount is not None:
        units = args.amount * source.units_per_token
        print(f"amount:  {args.amount} tokens = {units} ledger units", file=out)
    elif source.units_per_token != 1:
        print(f"token:   1 token = {source.units_per_token} ledger units", file=out)
    return 0


def amount(x: int | float, config: Config) -> str:
    """A journal amount as the commands print it: the number of tokens as it is, or with `[tariff] currency` money
    written for its locale ("£12.34")."""
    unit = MoneyUnit.of(config.tariff)
    return str(x) if unit.currency is None else money.text(x, unit)


def cmd_status(config: Config, journal: Journal | None, live: list[dict] | None,
               out: TextIO = sys.stdout) -> int:
    """Live from the running controller, or from the journal alone. Either way `energy_today_wh` is the energy used
    since the local midnight ([web] timezone), read from the journal as the pages count it: one figure online and
    offline. (Not the meter's counter: a meter's own total, which the journal knows only as of its last reading.)"""
    today = energy_today(config, journal)
    rows = []
    if live is not None:
        for st in live:
            rows.append([st["id"], st["name"], st["relay"], st["meter"], amount(st["balance_tokens"], config),
                         _fmt(st.get("power_w")), today.get(st["id"], "-")])
    else:
        print("controller not answering on the web port: balances from the journal only", file=out)
        for s in config.sockets:
            balance = journal.balance(s.id) if journal is not None else 0
            rows.append([s.id, s.name, "-", "-", amount(balance, config), "-", today.get(s.id, "-")])
    _table(["socket", "name", "relay", "meter", "balance", "power_w", "energy_today_wh"], rows, out)
    return 0


class _SystemClock:
    def now(self) -> float:
        return time.time()


def energy_today(config: Config, journal: Journal | None) -> dict[str, str]:
    """Each socket's energy used today, written as `payg status` prints it: the usage entries booked since the local
    midnight and the usage not yet closed into an entry (the tenant page's "today"; services/dashboard.py)."""
    if journal is None:
        return {}
    dashboard = Dashboard(journal, _SystemClock(), ZoneInfo(config.web.timezone) if config.web.timezone else None)
    dashboard.refresh()
    today = {}
    for s in config.sockets:
        state = journal.meter_state(s.id)
        pending = state.pending_wh if state is not None else 0
        today[s.id] = _fmt(float(dashboard.figures(s.id).energy_today_wh + pending))
    return today


def cmd_cursor(args: argparse.Namespace, config: Config, journal: Journal, out: TextIO = sys.stdout) -> int:
    """Deposits before the cursor are never read again; deposits after it are booked once (by their keys),
    so moving it back re-reads without double credits, and moving it forward skips payments. An IOTA cursor
    names its network (`<checkpoint>@<chain identifier>`): a controller pointed at another network stops
    rather than credit from it, and moving to another network is done here, on purpose, by setting both."""
    name = f"deposits:{config.ledger.backend}"
    old = journal.cursor(name)
    iota = isinstance(config.ledger, IotaLedgerConfig)
    if args.set_to is None:
        print(f"{name}: {old if old is not None else '(none: the first poll starts at the ledger head)'}", file=out)
        if iota:
            print(_IOTA_CURSOR_HELP, file=out)
        return 0
    value = args.set_to.strip()
    if not value:
        print("payg: --set needs a value", file=sys.stderr)
        return 2
    if iota and not _IOTA_CURSOR.fullmatch(value):
        print(f"payg: an IOTA cursor is <checkpoint>@<chain identifier> (the network's GraphQL chainIdentifier), "
              f"got {value!r}", file=sys.stderr)
        return 2
    with journal.transaction() as tx:
        tx.set_cursor(name, value)
    print(f"{name}: {old} -> {value}", file=out)
    return 0


# The IOTA ledger's cursor (ledgers/iota/deposits.py parse_cursor); a bare checkpoint is bound at the next poll.
_IOTA_CURSOR = re.compile(r"[0-9]+(@[0-9A-Za-z]{1,64})?", re.ASCII)
_IOTA_CURSOR_HELP = (
    "  the IOTA cursor is <checkpoint>@<chain identifier>: deposits are read from that network only; a\n"
    "  controller whose graphql_url is on another network stops (exit 2) and credits nothing. To move to\n"
    "  another network on purpose, stop the controller and run\n"
    "    payg cursor --set '<checkpoint>@<chain identifier>'\n"
    "  with the new network's chainIdentifier (ask its GraphQL service: { chainIdentifier checkpoint\n"
    "  { sequenceNumber } }) and the checkpoint to start after; payments before it are not credited.")


def cmd_journal(args: argparse.Namespace, config: Config, journal: Journal, out: TextIO = sys.stdout) -> int:
    """The times are ISO 8601 with their offset: in UTC in the CSV (as the landlord's download has them),
    in the controller's time zone in the table ([web] timezone, else the system's, as the pages count days)."""
    if config.socket(args.socket) is None and not journal.entries(args.socket, 1):  # a removed socket's is kept
        return unknown_socket(args.socket, config)
    fields = ["id", "at", "kind", "amount", "energy_wh", "key", "memo"]
    if args.csv:
        writer = csv.writer(out)
        writer.writerow(fields)
        for e in journal.all_entries(args.socket):
            d = dict(serialize.entry(e), at=iso_time(e.at, UTC))
            writer.writerow([d[f] if d[f] is not None else "" for f in fields])
        return 0
    zone = ZoneInfo(config.web.timezone) if config.web.timezone else None
    entries = journal.entries(args.socket, args.limit)
    print(f"{args.socket}: balance {amount(journal.balance(args.socket), config)}", file=out)
    _table(fields, [[_fmt(d[f]) for f in fields] for d in (dict(serialize.entry(e), at=iso_time(e.at, zone))
                                                            for e in entries)], out)
    return 0


def iso_time(at: float, zone: tzinfo | None) -> str:
    """A Unix time as ISO 8601 to the second with its offset, in `zone` (None: the system's time zone)."""
    moment = datetime.fromtimestamp(at, zone) if zone is not None else datetime.fromtimestamp(at).astimezone()
    return moment.isoformat(timespec="seconds")


def _fmt(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def _table(header: list[str], rows: list[list[str]], out: TextIO) -> None:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
    for row in [header, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip(), file=out)
