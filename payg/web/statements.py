"""Receipts and statements on the web: a top-up's receipt for the tenant (open, as the socket's own page is), the
statements for the landlord (behind the session), as HTML that prints (static/print.css) and as CSV.

Amounts are written by payg/webkit/money.py (the pages' `money`: Babel for `[tariff] locale` when `[tariff] currency`
is set, else tokens); the journal's integers are only turned into text here, at the edge.
"""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, tzinfo
from decimal import Decimal
from fractions import Fraction
from urllib.parse import quote

from babel.numbers import format_currency, format_decimal
from flask import Blueprint, Response, abort, jsonify, redirect, render_template, request
from flask.typing import ResponseReturnValue

from payg.domain.money import MoneyUnit
from payg.domain.statement import TABLE_FIELDS, Receipt, Statement, period_of, table
from payg.services.statements import MAX_RECEIPTS, StatementDesk
from payg.webkit.pages import csv_cell


class Figures:
    """What the statement pages write besides amounts (the `money` of payg/webkit/money.py): a rate to its last
    decimal, energy in kWh, a time in the controller's zone."""

    def __init__(self, unit: MoneyUnit, tz: tzinfo | None):
        self.unit, self.tz = unit, tz

    def rate(self, units: Decimal | None) -> str:
        """Journal units per kWh (or per day), exactly: "£0.25725", or "1,000" tokens."""
        if units is None:
            return "—"
        u = self.unit
        if u.currency is None:
            return format_decimal(units, locale=u.locale, decimal_quantization=False)
        return format_currency(units.scaleb(-u.minor), u.currency, locale=u.locale, decimal_quantization=False)

    def kwh(self, wh: Fraction) -> str:
        return format_decimal(Decimal(wh.numerator) / wh.denominator / 1000, format="#,##0.000",
                              locale=self.unit.locale)

    def when(self, at: float) -> str:
        moment = datetime.fromtimestamp(at, self.tz) if self.tz is not None else datetime.fromtimestamp(at).astimezone()
        return moment.strftime("%Y-%m-%d %H:%M %Z").strip()


def receipt_json(r: Receipt) -> dict:
    return {"id": r.id, "at": r.at, "amount": r.amount, "method": r.method, "balance_after": r.balance_after,
            "url": f"/s/{quote(r.socket_id, safe='')}/receipts/{r.id}"}


def blueprint(web, services) -> Blueprint:
    bp = Blueprint("statements", __name__)
    ctl = services.metering
    desk: StatementDesk = services.statements
    guard = web.guard
    unit = desk.money
    fig = Figures(unit, desk.tz)

    def sockets_of(socket_id: str | None) -> list:
        return [ctl.socket(socket_id)] if socket_id is not None else list(ctl.sockets.values())

    # --- the tenant's receipts --------------------------------------------------------------------------------

    @bp.get("/s/<socket_id>/receipts")
    def receipts_page(socket_id: str):
        socket = ctl.socket(socket_id)
        return render_template("receipts.html", socket=socket, receipts=desk.receipts(socket_id, 50), fig=fig)

    @bp.get("/s/<socket_id>/receipts/<int:entry_id>")
    def receipt_page(socket_id: str, entry_id: int):
        socket = ctl.socket(socket_id)
        receipt = desk.receipt(socket_id, entry_id)
        if receipt is None:
            abort(404, description=f"{socket.name} has no top-up with receipt number {entry_id}.")
        return render_template("receipt.html", socket=socket, r=receipt, fig=fig)

    @bp.get("/api/sockets/<socket_id>/receipts")
    def receipts_json(socket_id: str):
        ctl.socket(socket_id)
        limit = request.args.get("limit", "20")
        if not limit.isdigit() or not 1 <= int(limit) <= MAX_RECEIPTS:
            abort(400, description=f"limit must be a whole number from 1 to {MAX_RECEIPTS}")
        return jsonify(receipts=[receipt_json(r) for r in desk.receipts(socket_id, int(limit))],
                       currency=unit.currency, minor=unit.minor)

    # --- the landlord's statements ----------------------------------------------------------------------------

    def period() -> tuple[date, date]:
        args = request.args
        if not any(k in args for k in ("month", "from", "to")):  # this month
            today = desk.local_day(ctl.clock.now())
            return period_of(today.strftime("%Y-%m"))
        try:
            return period_of(args.get("month"), args.get("from"), args.get("to"))
        except ValueError as exc:
            abort(400, description=str(exc))

    def statements_of(socket_id: str | None) -> tuple[date, date, list[tuple[object, Statement]]]:
        first, last = period()
        return first, last, [(s, desk.statement(s.id, first, last)) for s in sockets_of(socket_id)]

    def login_first() -> ResponseReturnValue | None:
        if guard.landlord():
            return None
        target = request.full_path if request.query_string else request.path
        return redirect(f"/landlord/login?next={quote(target, safe='/')}")

    def html(socket_id: str | None) -> ResponseReturnValue:
        first, last, found = statements_of(socket_id)
        return render_template("statement.html", statements=found, first=first, last=last, fig=fig,
                               timezone=services.settings.timezone or "the controller's time zone")

    def csv_file(socket_id: str | None) -> Response:
        first, last, found = statements_of(socket_id)
        buf = io.StringIO()
        out = csv.writer(buf)
        out.writerow(TABLE_FIELDS)
        for _, s in found:
            out.writerows([csv_cell(c) for c in row] for row in table(s, unit.minor, unit.currency))
        name = f"payg-statement-{socket_id or 'all'}-{first.isoformat()}-{last.isoformat()}.csv"
        return Response(buf.getvalue(), mimetype="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})

    @bp.get("/landlord/statements")
    def all_statements():
        return login_first() or html(None)

    @bp.get("/landlord/statements.csv")
    def all_statements_csv():
        return login_first() or csv_file(None)

    @bp.get("/landlord/statements/<socket_id>")
    def one_statement(socket_id: str):
        return login_first() or html(socket_id)

    @bp.get("/landlord/statements/<socket_id>.csv")
    def one_statement_csv(socket_id: str):
        return login_first() or csv_file(socket_id)

    return bp
