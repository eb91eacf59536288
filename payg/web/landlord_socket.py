"""The landlord's page of one socket (/landlord/sockets/<id>) and the journal as CSV, whole or filtered.

The page shows the socket's live state (the landlord namespace's pushes, as the overview), its journal filtered by
kind and local days a page at a time, its events and alarms, its statements and receipts, and the actions of the
overview that apply. Records are read by payg/services/records.py; the filters are the same for the page and the CSV.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from urllib.parse import quote, urlencode

from flask import Blueprint, Response, abort, redirect, render_template, request, stream_with_context
from flask.typing import ResponseReturnValue

from payg.domain.accounts import Entry
from payg.services.records import ENTRY_KINDS, NOT_USAGE, JournalQuery, SocketRecords, kinds_of
from payg.web.statements import Figures
from payg.web.views import fresh_view, page_settings
from payg.webkit.pages import csv_cell

CSV_FIELDS = ["id", "socket", "time_utc", "kind", "amount_tokens", "energy_wh", "key", "memo"]
FILTERS = ("kind", "from", "to")
RECEIPTS_SHOWN = 5


def routes(bp: Blueprint, web, services, landlord_off: Callable[[], ResponseReturnValue]) -> None:
    """Adds the socket page and the journal's CSV to the landlord's blueprint."""
    ctl = services.metering
    guard, hub = web.guard, web.hub
    records = SocketRecords(services.journal)

    def login_first() -> ResponseReturnValue | None:
        if not guard.landlord_enabled:
            return landlord_off()
        if guard.landlord():
            return None
        target = request.full_path if request.query_string else request.path
        return redirect(f"/landlord/login?next={quote(target, safe='/')}")

    def tokens(e: Entry) -> int | float:
        upt = ctl.tariff.units_per_token
        return e.amount // upt if e.amount % upt == 0 else e.amount / upt

    def query() -> tuple[JournalQuery, dict[str, str]]:
        """The filters of the request (kind, from and to as local days, both included), and as given."""
        args = {k: request.args.get(k, "").strip() for k in FILTERS}
        try:
            kinds = kinds_of(args["kind"])
            first = date.fromisoformat(args["from"]) if args["from"] else None
            last = date.fromisoformat(args["to"]) if args["to"] else None
        except ValueError as exc:
            abort(400, description=f"a filter is not understood: {exc} (dates are written 2025-01-31)")
        if first is not None and last is not None and last < first:
            abort(400, description="the first day of the filter is after its last")
        desk = services.statements  # the controller's time zone: a day is a local day, as in a statement
        before = request.args.get("before", "")
        if before and not before.isdigit():
            abort(400, description="before is an entry id")
        return JournalQuery(kinds, None if first is None else desk.instant(first),
                            None if last is None else desk.instant(last + timedelta(days=1)),
                            int(before) if before else None), {k: v for k, v in args.items() if v}

    @bp.get("/landlord/sockets/<socket_id>")
    def socket_page(socket_id: str):
        answer = login_first()
        if answer is not None:
            return answer
        socket = ctl.socket(socket_id)
        q, given = query()
        page = records.journal_page(socket.id, q)
        desk = services.statements
        settings = page_settings(ctl, services.settings, services.codes.tokens_per_unit if services.codes else None,
                                 services.money)
        view = fresh_view(hub, socket.id)
        base = f"/landlord/sockets/{socket.id}"
        older = f"{base}?{urlencode({**given, 'before': page.older})}" if page.older is not None else None
        return render_template(
            "landlord_socket.html", socket=socket, view=view, page=settings, entries=page.entries, older=older,
            scanned_out=page.scanned_out, filters=given, kinds=ENTRY_KINDS, not_usage=NOT_USAGE,
            newest=f"{base}?{urlencode(given)}" if q.before_id is not None else None,
            csv_url=f"/landlord/journal.csv?{urlencode({'socket': socket.id, **given})}",
            events=records.events(socket.id), receipts=desk.receipts(socket.id, RECEIPTS_SHOWN),
            fig=Figures(desk.money, desk.tz), amount=tokens, codes_on=services.codes is not None,
            boot={"page": settings, "socket": socket.id, "view": view})

    @bp.get("/landlord/journal.csv")
    def journal_csv():
        answer = login_first()
        if answer is not None:
            return answer
        socket_id = request.args.get("socket")
        ids = [ctl.socket(socket_id).id] if socket_id else list(ctl.sockets)
        q, given = query()

        def rows():
            buf = io.StringIO()
            out = csv.writer(buf)
            out.writerow(CSV_FIELDS)
            for sid in ids:
                for e in records.entries(sid, q):
                    out.writerow([e.id, csv_cell(e.socket_id),
                                  datetime.fromtimestamp(e.at, UTC).isoformat(timespec="seconds"),
                                  e.kind, tokens(e), "" if e.energy_wh is None else float(e.energy_wh),
                                  csv_cell(e.idem_key), csv_cell(e.memo)])
                    if buf.tell() > 64 * 1024:
                        yield buf.getvalue()
                        buf.seek(0)
                        buf.truncate()
            yield buf.getvalue()

        stamp = datetime.fromtimestamp(ctl.clock.now(), UTC).strftime("%Y%m%d-%H%M%S")
        part = "".join(f"-{v}" for v in given.values())  # a filtered file says so in its name
        name = f"payg-journal-{socket_id or 'all'}{part}-{stamp}.csv"
        return Response(stream_with_context(rows()), mimetype="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})
