"""`payg statement`: a socket's statement for a month or a range of local days, read from the journal file (the
controller may run or not: the journal is only read), as text or as the CSV the landlord view gives."""

from __future__ import annotations

import argparse
import csv
import sys
from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from typing import TextIO

from payg.cli.voice import EXIT_USAGE, unknown_socket
from payg.domain.money import MoneyUnit
from payg.domain.settings import Config
from payg.domain.statement import TABLE_FIELDS, Statement, period_of, plain, table
from payg.ports import Journal
from payg.services.statements import StatementDesk
from payg.webkit import money

ADJUSTMENT_NAMES = {"debit": "manual debit", "emergency_repaid": "emergency credit repaid", "trade_out": "energy sold"}


def bad_period(args: argparse.Namespace) -> int:
    """EXIT_USAGE once a period that is no period is said (before the journal is looked for), else 0."""
    try:
        period_of(args.month, args.first, args.last)
    except ValueError as exc:
        print(f"payg: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return 0


def cmd_statement(args: argparse.Namespace, config: Config, journal: Journal, desk: StatementDesk,
                  out: TextIO = sys.stdout) -> int:
    try:
        first, last = period_of(args.month, args.first, args.last)
    except ValueError as exc:
        print(f"payg: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if config.socket(args.socket) is None and not journal.entries(args.socket, 1):  # a removed socket's is kept
        return unknown_socket(args.socket, config)
    s = desk.statement(args.socket, first, last)
    unit = desk.money
    if args.csv:
        writer = csv.writer(out)
        writer.writerow(TABLE_FIELDS)
        writer.writerows(table(s, unit.minor, unit.currency))
        return 0
    socket = config.socket(args.socket)
    name = socket.name if socket is not None else args.socket
    zone = config.web.timezone or "the system's time zone"
    print(f"Statement: {name} ({args.socket})", file=out)
    print(f"{first} to {last}, local days of {zone}; amounts in {money.word(unit)}", file=out)
    print(file=out)
    write_text(s, unit, desk, out)
    return 0


def write_text(s: Statement, unit: MoneyUnit, desk: StatementDesk, out: TextIO) -> None:
    def m(units: int) -> str:
        return money.text(units, unit)

    def less(units: int) -> str:
        return f"-{m(units)}" if units else m(units)

    def rate(units: Decimal | None) -> str:
        return "-" if units is None else f"{plain(units.scaleb(-unit.minor))} {money.word(unit)}"

    def when(at: float) -> str:
        moment = datetime.fromtimestamp(at, desk.tz) if desk.tz is not None else datetime.fromtimestamp(at).astimezone()
        return moment.isoformat(timespec="seconds")

    def kwh(wh: Fraction) -> str:
        return format((Decimal(wh.numerator) / wh.denominator / 1000).quantize(Decimal("0.001")), "f")

    _table(["", "amount"], [
        ["opening balance", m(s.opening)], ["top-ups", m(s.credits)],
        [f"energy ({kwh(s.energy_wh)} kWh)", less(s.energy_units)],
        [f"standing charges ({s.standing_days} days)", less(s.standing_units)],
        ["adjustments", less(s.adjustment_units)], ["closing balance", m(s.closing)],
        ["VAT inside the charges", m(s.tax)], ["debt at the close", m(s.debt)]], out, right=(1,))
    sections = [
        ("top-ups", ["receipt", "time", "method", "amount"],
         [[str(t.id), when(t.at), t.method, m(t.amount)] for t in s.top_ups], (3,)),
        ("energy", ["band", "rate per kWh (VAT in)", "VAT %", "kWh", "charge", "VAT in it"],
         [[g.band or "no rate kept", rate(g.units_per_kwh), "-" if g.vat_percent is None else str(g.vat_percent),
           kwh(g.energy_wh), m(g.units), m(g.vat)]
          for g in s.energy], (1, 2, 3, 4, 5)),
        ("standing charges", ["days", "per day (VAT in)", "VAT %", "count", "charge", "VAT in it"],
         [[f"{g.first_day} to {g.last_day}", rate(g.per_day), "-" if g.vat_percent is None else str(g.vat_percent),
           str(g.days), m(g.units), m(g.vat)] for g in s.standing], (1, 2, 3, 4, 5)),
        ("adjustments", ["entry", "time", "kind", "reason", "amount"],
         [[str(a.id), when(a.at), ADJUSTMENT_NAMES.get(a.kind, a.kind), a.memo, less(a.amount)]
          for a in s.adjustments], (4,)),
    ]
    for title, header, rows, right in sections:
        print(file=out)
        print(f"{title}:" if rows else f"{title}: none", file=out)
        if rows:
            _table(header, rows, out, right=right, indent="  ")


def _table(header: list[str], rows: list[list[str]], out: TextIO, right: tuple[int, ...] = (),
           indent: str = "") -> None:
    widths = [max(len(c) for c in col) for col in zip(header, *rows, strict=True)]
    for row in [header, *rows]:
        cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        print((indent + "  ".join(cells)).rstrip(), file=out)
