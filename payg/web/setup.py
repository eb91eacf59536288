"""The landlord's first-run setup: scan a serial port for meters (in a thread of its own, the page polls its
progress) and add the meters chosen as `[[sockets]]` to the configuration file (backed up, checked, replaced at
once by the composition root's writer); the controller reads it at its next start.

Only ports this machine lists may be scanned, and only the meters the last scan found may be added.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

from flask import Blueprint, abort, jsonify, make_response, redirect, render_template

from payg.domain.meter_scan import (
    SOCKET_ID,
    FoundMeter,
    MeterScanner,
    ScanProgress,
    ScanReport,
    bus_timeout_s,
    socket_entry,
)
from payg.domain.settings import Config, ModbusMeterConfig
from payg.errors import ConfigError, PortUnavailable

RESTART = "sudo systemctl restart payg"


@dataclass
class SetupServices:
    config: Config  # the file as it is now (replaced after each write)
    scanner: MeterScanner
    ports: Callable[[], list[str]]  # the serial ports there are
    add_sockets: Callable[[str], tuple[Path, Config]]  # entries -> (the backup, the new config); raises ConfigError
    timeout_s: float | None = None  # the wait per address (None: the wire time + the turnaround)
    bauds: tuple[int, ...] | None = None  # the baud rates to scan (None: the shipped profiles')
    addresses: tuple[int, int] = (1, 247)  # the first and the last address to ask


@dataclass
class ScanJob:
    lock: threading.Lock = field(default_factory=threading.Lock)
    running: bool = False
    port: str | None = None
    progress: ScanProgress | None = None
    report: ScanReport | None = None
    error: str | None = None
    thread: threading.Thread | None = None


def configured_at(config: Config, port: str, address: int) -> str | None:
    """The id of the socket already reading the meter at this port (the same device) and address, if any."""
    where = os.path.realpath(port)
    for s in config.sockets:
        if isinstance(s.meter, ModbusMeterConfig) and s.meter.address == address and s.meter.bus_key == where:
            return s.id
    return None


def refuse(status: int, message: str) -> NoReturn:
    """A refusal the page's script shows: JSON, as the API's (under /landlord the error pages are HTML)."""
    names = {400: "Bad Request", 401: "Unauthorized", 409: "Conflict", 503: "Service Unavailable"}
    abort(make_response(jsonify(error=names.get(status, "Error"), message=message), status))


def port_timeout_s(config: Config, port: str) -> float | None:
    """The timeout of the meters already on this port: a port has one set of serial settings."""
    where = os.path.realpath(port)
    return next((s.meter.timeout_s for s in config.sockets
                 if isinstance(s.meter, ModbusMeterConfig) and s.meter.bus_key == where), None)


def routes(bp: Blueprint, web, setup: SetupServices, json_body: Callable[[], dict], landlord_off) -> None:
    guard = web.guard
    job = ScanJob()

    def need_landlord() -> None:
        if not guard.landlord_enabled:
            refuse(503, "the landlord view is off")
        if not guard.landlord():
            refuse(401, "log in as the landlord (/landlord/login)")

    def meter_json(m: FoundMeter, port: str) -> dict:
        return dict(address=m.address, baud=m.baud, profile=m.profile, model=m.model, energy_wh=m.energy_text,
                    configured=configured_at(setup.config, port, m.address), suggested_id=f"meter-{m.address}")

    def state() -> dict:
        with job.lock:
            report, progress = job.report, job.progress
            out: dict = dict(running=job.running, port=job.port, error=job.error, progress=None, found=[],
                             unidentified=[])
            if progress is not None:
                out["progress"] = dict(baud=progress.baud, address=progress.address, last=progress.last,
                                       found=progress.found)
            if report is not None:
                out.update(found=[meter_json(m, report.port) for m in report.found],
                           unidentified=[dict(address=u.address, baud=u.baud, why=u.why) for u in report.unidentified],
                           elapsed_s=report.elapsed_s)
            return out

    def run_scan(port: str) -> None:
        def progress(step: ScanProgress) -> None:
            with job.lock:
                job.progress = step

        try:
            first, last = setup.addresses
            report = setup.scanner.scan(port, setup.bauds or setup.scanner.default_bauds(), first=first, last=last,
                                        timeout_s=setup.timeout_s, progress=progress)
            with job.lock:
                job.report = report
        except (PortUnavailable, OSError) as exc:
            with job.lock:
                job.error = str(exc)
        finally:
            with job.lock:
                job.running = False

    @bp.get("/landlord/setup")
    def setup_page():
        if not guard.landlord_enabled:
            return landlord_off()
        if not guard.landlord():
            return redirect("/landlord/login?next=/landlord/setup")
        existing = [dict(id=s.id, name=s.name, port=s.meter.port, address=s.meter.address)
                    for s in setup.config.sockets if isinstance(s.meter, ModbusMeterConfig)]
        return render_template("landlord_setup.html", ports=setup.ports(), existing=existing,
                               config_path=str(setup.config.path), restart=RESTART, boot={"restart": RESTART})

    @bp.post("/landlord/setup/scan")
    def start_scan():
        need_landlord()
        port = json_body().get("port")
        if not isinstance(port, str) or port not in setup.ports():
            refuse(400, "port must be one of this machine's serial ports")
        with job.lock:
            if job.running:
                return jsonify(error="Conflict", message="a scan is running already"), 409
            job.running, job.port, job.progress, job.report, job.error = True, port, None, None, None
            job.thread = threading.Thread(target=run_scan, args=(port,), name="meter-scan", daemon=True)
            job.thread.start()
        return jsonify(state()), 202

    @bp.get("/landlord/setup/scan")
    def scan_state():
        need_landlord()
        return jsonify(state())

    @bp.post("/landlord/setup/sockets")
    def add_sockets():
        need_landlord()
        chosen = json_body().get("sockets")
        if not isinstance(chosen, list) or not chosen:
            refuse(400, "sockets must be a non-empty list of {address, id, name}")
        with job.lock:
            report = job.report if not job.running else None
        if report is None:
            refuse(409, "scan the port first, and wait for the scan to end")
        found = {m.address: m for m in report.found}
        taken = {s.id for s in setup.config.sockets}
        entries = []
        for item in chosen:
            if not isinstance(item, dict) or set(item) - {"address", "id", "name"}:
                refuse(400, "each socket is {address, id, name}")
            meter = found.get(item.get("address"))
            sid, name = item.get("id"), item.get("name") or None
            if meter is None:
                refuse(400, f"no meter was found at address {item.get('address')!r}")
            if not isinstance(sid, str) or not SOCKET_ID.match(sid):
                refuse(400, f"socket id {sid!r}: 1-32 characters of a-z 0-9 - _")
            if name is not None and (not isinstance(name, str) or len(name) > 80):
                refuse(400, "a name is text of at most 80 characters")
            if sid in taken:
                refuse(400, f"socket id {sid!r} is taken")
            already = configured_at(setup.config, report.port, meter.address)
            if already is not None:
                refuse(400, f"the meter at address {meter.address} is socket {already!r} already")
            taken.add(sid)
            entries.append((meter, sid, name))
        timeout_s = port_timeout_s(setup.config, report.port) or bus_timeout_s([m for m, _, _ in entries])
        text = "\n".join(socket_entry(m, report.port, sid, name, timeout_s) for m, sid, name in entries)
        try:
            backup, config = setup.add_sockets(text)
        except ConfigError as exc:
            refuse(400, str(exc))
        except OSError as exc:
            return jsonify(error="Internal Server Error", message=f"the configuration was not written ({exc})"), 500
        setup.config = config
        return jsonify(path=str(config.path), backup=str(backup), added=[e["id"] for e in chosen],
                       restart=RESTART), 201
