"""The command-line entry point: argument parsing and the commands' output.

app.py builds the objects a command needs and calls the functions here.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, TextIO

from payg.adapters.secrets import API_TOKEN_FILE
from payg.domain.settings import Config
from payg.errors import InvalidAmount, MeterTimeout, MeterUnavailable, PortUnavailable, UnknownSocket
from payg.adapters.journal import SqliteJournal
from payg.domain.meter_profile import MeterProfile
from payg.ports import DepositPayer, DepositSource, Relay

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
    p = command("address", "print a socket's top-up address and payment URI (what its QR code holds)")
    p.add_argument("--socket", required=True, metavar="ID", help="socket id")
    p.add_argument("--amount", type=_positive_int, metavar="N", help="tokens to ask for in the URI")
    p = command("cursor", "show the ledger deposit cursor, or set it (with the controller stopped)")
    p.add_argument("--set", metavar="VALUE", dest="set_to",
                   help="the new cursor, in the backend's form (Ethereum '<block>:<hash>', IOTA a checkpoint)")
    p = command("journal", "print a socket's journal (newest first, or all as CSV)")
    p.add_argument("--socket", required=True, metavar="ID", help="socket id")
    p.add_argument("--csv", action="store_true", help="every entry, oldest first, as CSV")
    p.add_argument("--limit", type=_positive_int, default=50, metavar="N", help="entries to show (default 50)")

    p = sub.add_parser("password", help="make the landlord's password hash for the web login",
                       description="Ask for the landlord's password (twice) and print its hash, or write it to "
                                   "an owner-only file. Name the variable or file in [web] of the config.")
    p.add_argument("--file", metavar="PATH", help="write the hash to this file (mode 600) instead of printing it")
    p.add_argument("--stdin", action="store_true", help="read the password from standard input (for scripts)")

    trade = sub.add_parser("trade", help="the energy market and payment channels (through the running controller)")
    trade.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS,
                       help=f"configuration file (default: {DEFAULT_CONFIG})")
    acts = trade.add_subparsers(dest="action", metavar="ACTION", required=True)

    def act(name: str, help_text: str, socket: bool = False) -> argparse.ArgumentParser:
        a = acts.add_parser(name, help=help_text, description=help_text)
        if socket:
            a.add_argument("--socket", required=True, metavar="ID", help="the socket whose trade party acts")
        return a

    act("info", "the market, and each socket's trade party and role")
    act("adverts", "open adverts with their price now")
    a = act("post", "post a sell advert", socket=True)
    a.add_argument("--energy-wh", required=True, type=_positive_int, metavar="WH")
    a.add_argument("--min-price", required=True, type=_positive_int, metavar="UNITS", help="ledger units per Wh")
    a = act("buy", "buy energy from an advert", socket=True)
    a.add_argument("advert", metavar="ADVERT")
    a.add_argument("--energy-wh", required=True, type=_positive_int, metavar="WH")
    a.add_argument("--max-price", type=_positive_int, metavar="UNITS", help="refuse if it costs more per Wh now")
    a = act("grant", "give a party a role (owner: regulator; regulator: producer, consumer; none revokes)",
            socket=True)
    a.add_argument("--party", required=True, metavar="ADDRESS")
    a.add_argument("--role", required=True, choices=("regulator", "producer", "consumer", "none"))
    act("withdraw", "pull what the market owes the socket's party", socket=True)
    act("channels", "the payment channels this controller pays on or is paid on")
    a = act("channel", "one channel, as the ledger and this controller see it")
    a.add_argument("channel", metavar="ID")
    a = act("open", "open a payment channel (--supplier: to the socket's configured supplier)", socket=True)
    a.add_argument("--supplier", action="store_true", help="use the socket's [sockets.trade] buying settings")
    a.add_argument("--recipient", metavar="ADDRESS")
    a.add_argument("--escrow", type=_positive_int, metavar="UNITS")
    a.add_argument("--price", type=_positive_int, metavar="UNITS", help="ledger units per Wh streamed")
    a.add_argument("--hours", type=float, default=24.0)
    a.add_argument("--peer", metavar="URL", help="the recipient's controller, to stream vouchers to")
    for name, text in (("close", "close an incoming channel with its latest voucher"),
                       ("reclaim", "take back an expired outgoing channel's escrow")):
        a = act(name, text)
        a.add_argument("channel", metavar="ID")
    act("deploy", "deploy the market and channel contracts, owned by [trade] owner's trade party (ethereum only)")
    a = act("fund", "mint ledger units into a socket's trade party (mock ledger only)", socket=True)
    a.add_argument("--amount", required=True, type=_positive_int, metavar="UNITS")

    meters = sub.add_parser("meters", help="find and read Modbus meters (for installers; no config needed)")
    meter_actions = meters.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, help_text in (("scan", "find which slave addresses answer on a port"),
                            ("read", "print one decoded reading of one meter")):
        m = meter_actions.add_parser(name, help=help_text, description=help_text)
        m.add_argument("--port", required=True, help="serial port, e.g. /dev/ttyUSB0")
        m.add_argument("--profile", default="pzem004t", help="meter profile name or .toml path (default pzem004t)")
        m.add_argument("--baud", type=_positive_int, help="baud rate (default: the profile's)")
        m.add_argument("--parity", choices=("N", "E", "O"), help="parity (default: the profile's)")
        m.add_argument("--timeout", type=float, metavar="S",
                       help=f"seconds to wait for each reply (default: the reply's wire time + "
                            f"{0.2 if name == 'scan' else 0.5} s)")
        m.add_argument("--local-echo", action="store_true", help="the RS485 adapter echoes what it sends")
        if name == "scan":
            m.add_argument("--first", type=_address, default=1, help="first address to try (default 1)")
            m.add_argument("--last", type=_address, default=247, help="last address to try (default 247)")
        else:
            m.add_argument("--address", type=_address, required=True, help="slave address, 1-247")

    relay = sub.add_parser("relay", help="test a GPIO relay, or force the configured ones off")
    relay_actions = relay.add_subparsers(dest="action", metavar="ACTION", required=True)
    t = relay_actions.add_parser("test", help="switch a relay on for a moment, after a confirmation",
                                 description="switch a relay on for a moment, after a confirmation")
    t.add_argument("--pin", type=int, required=True, help="BCM GPIO number, 0-27")
    t.add_argument("--active-low", action="store_true", help="the relay board switches on a low level")
    t.add_argument("--seconds", type=float, default=2.0, help="how long to keep it on (default 2)")
    t.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    o = relay_actions.add_parser("off", help="drive every configured GPIO relay off (systemd ExecStopPost)",
                                 description="drive every configured GPIO relay off (systemd ExecStopPost)")
    o.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS,
                   help=f"configuration file (default: {DEFAULT_CONFIG})")
    return parser


def _address(text: str) -> int:
    value = _positive_int(text)
    if not 1 <= value <= 247:
        raise argparse.ArgumentTypeError(f"a Modbus slave address is 1-247, got {text!r}")
    return value


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
    args.config = getattr(args, "config", None) or DEFAULT_CONFIG
    args.action = getattr(args, "action", None)
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


def cmd_address(args: argparse.Namespace, source: DepositSource, out: TextIO = sys.stdout) -> int:
    try:
        address = source.address_for(args.socket)
        uri = source.payment_uri(args.socket, args.amount)
    except (InvalidAmount, UnknownSocket) as exc:
        print(f"payg: {exc}", file=sys.stderr)
        return 1
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


def controller_url(config: Config) -> str:
    host = "127.0.0.1" if config.web.host in ("0.0.0.0", "::", "") else config.web.host
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{config.web.port}"


def trade_request(args: argparse.Namespace) -> tuple[str, str, dict | None]:
    """(method, path, body) of the API request a `payg trade` action makes."""
    a = args.action
    if a in ("info", "adverts", "channels"):
        return "GET", {"info": "/api/trade", "adverts": "/api/trade/adverts",
                       "channels": "/api/trade/channels"}[a], None
    if a == "channel":
        return "GET", f"/api/trade/channels/{args.channel}", None
    if a == "post":
        return "POST", "/api/trade/adverts", {"socket": args.socket, "energy_wh": args.energy_wh,
                                               "min_price_per_wh": args.min_price}
    if a == "buy":
        body = {"socket": args.socket, "energy_wh": args.energy_wh}
        if args.max_price is not None:
            body["max_price_per_wh"] = args.max_price
        return "POST", f"/api/trade/adverts/{args.advert}/buy", body
    if a == "grant":
        return "POST", "/api/trade/roles", {"socket": args.socket, "party": args.party, "role": args.role}
    if a == "withdraw":
        return "POST", "/api/trade/withdraw", {"socket": args.socket}
    if a == "open":
        if args.supplier:
            return "POST", "/api/trade/channels", {"socket": args.socket, "supplier_config": True}
        missing = [k for k in ("recipient", "escrow", "price") if getattr(args, k) is None]
        if missing:
            raise ValueError("open needs --supplier, or --recipient, --escrow and --price"
                             f" (missing: {', '.join('--' + m for m in missing)})")
        body = {"socket": args.socket, "recipient": args.recipient, "escrow": args.escrow,
                "price_per_wh": args.price, "hours": args.hours}
        if args.peer:
            body["peer"] = args.peer
        return "POST", "/api/trade/channels", body
    return "POST", f"/api/trade/channels/{args.channel}/{a}", {}


MIN_PASSWORD = 10


def cmd_password(args: argparse.Namespace, out: TextIO = sys.stdout, err: TextIO = sys.stderr,
                 stdin: TextIO = sys.stdin) -> int:
    """`payg password`: the landlord's password hash (werkzeug's scrypt); the password is never stored."""
    import getpass

    from werkzeug.security import generate_password_hash

    if args.stdin:
        password = stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("Landlord password: ")
        if getpass.getpass("Again: ") != password:
            print("payg: the two passwords differ; nothing written", file=err)
            return 1
    if len(password) < MIN_PASSWORD:
        print(f"payg: the password needs at least {MIN_PASSWORD} characters", file=err)
        return 1
    hashed = generate_password_hash(password, method="scrypt")
    if args.file is None:
        print(hashed, file=out)
        return 0
    path = Path(args.file)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(hashed + "\n")
    except OSError as exc:
        print(f"payg: cannot write {path}: {exc.strerror}", file=err)
        return 1
    print(f"wrote the landlord's password hash to {path} (mode 600); set landlord_password_hash_file = "
          f"\"{path}\" under [web] and restart the controller", file=out)
    return 0


def api_token_of(config: Config) -> str | None:
    """The controller's API token (from its data directory), or None when this user cannot read it."""
    try:
        return (config.controller.data_dir / API_TOKEN_FILE).read_text(encoding="ascii").strip() or None
    except OSError:
        return None


def api_headers(config: Config, json_body: bool = False) -> dict:
    headers = {"Content-Type": "application/json"} if json_body else {}
    token = api_token_of(config)
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


def cmd_trade(args: argparse.Namespace, config: Config, out: TextIO = sys.stdout, err: TextIO = sys.stderr,
              timeout_s: float = 60.0) -> int:
    """Send a `payg trade` action to the running controller and print its JSON answer."""
    try:
        method, path, body = trade_request(args)
    except ValueError as exc:
        print(f"payg: {exc}", file=err)
        return 2
    url = controller_url(config) + path
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=api_headers(config, json_body=True))
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            answer = json.load(resp)
    except urllib.error.HTTPError as exc:
        try:
            detail = json.load(exc)
        except ValueError:
            detail = {}
        print(f"payg: refused: {detail.get('error', exc.code)}: {detail.get('message', exc.reason)}", file=err)
        if exc.code == 401:
            print(f"payg: run this as the user that runs the controller (it reads "
                  f"{config.controller.data_dir / API_TOKEN_FILE})", file=err)
        return 1
    except (urllib.error.URLError, OSError, ValueError) as exc:
        print(f"payg: no controller answers at {controller_url(config)} ({exc}); start it with `payg run`",
              file=err)
        return 1
    json.dump(answer, out, indent=2)
    print(file=out)
    return 0


def fetch_live_states(config: Config, timeout_s: float = 2.0) -> list[dict] | None:
    """The running controller's view, or None when it does not answer (or another controller answers)."""
    if not config.web.enabled:
        return None
    host = "127.0.0.1" if config.web.host in ("0.0.0.0", "::", "") else config.web.host
    if ":" in host:
        host = f"[{host}]"
    try:
        req = urllib.request.Request(f"http://{host}:{config.web.port}/api/sockets", headers=api_headers(config))
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
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


def cmd_cursor(args: argparse.Namespace, config: Config, journal: SqliteJournal, out: TextIO = sys.stdout) -> int:
    """Deposits before the cursor are never read again; deposits after it are booked once (by their keys),
    so moving it back re-reads without double credits, and moving it forward skips payments."""
    name = f"deposits:{config.ledger.backend}"
    old = journal.cursor(name)
    if args.set_to is None:
        print(f"{name}: {old if old is not None else '(none: the first poll starts at the ledger head)'}", file=out)
        return 0
    value = args.set_to.strip()
    if not value:
        print("payg: --set needs a value", file=sys.stderr)
        return 2
    with journal.transaction() as tx:
        tx.set_cursor(name, value)
    print(f"{name}: {old} -> {value}", file=out)
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


def _reading_lines(profile: MeterProfile, values: dict) -> list[str]:
    lines = []
    for f in profile.fields:
        value = values[f.name]
        shown = f"{float(value):.3f}".rstrip("0").rstrip(".") if value.denominator != 1 else str(value)
        lines.append(f"  {f.name:<14} {shown} {_UNITS.get(f.name, '')}".rstrip())
    return lines


_UNITS = {"energy_wh": "Wh", "power_w": "W", "voltage_v": "V", "current_a": "A", "frequency_hz": "Hz"}


def cmd_meters_read(args: argparse.Namespace, profile: MeterProfile, read_fields: Callable[[], dict],
                    out: TextIO = sys.stdout) -> int:
    try:
        values = read_fields()
    except MeterUnavailable as exc:
        print(f"payg: {exc}", file=sys.stderr)
        return 1
    print(f"{profile.model} at address {args.address} on {args.port}:", file=out)
    for line in _reading_lines(profile, values):
        print(line, file=out)
    return 0


def cmd_meters_scan(args: argparse.Namespace, profile: MeterProfile, probe: Callable[[int], dict],
                    out: TextIO = sys.stdout, progress: TextIO = sys.stderr) -> int:
    if args.last < args.first:
        print("payg: --last must not be below --first", file=sys.stderr)
        return 2
    addresses = range(args.first, args.last + 1)
    found = []
    for n, address in enumerate(addresses, 1):
        _progress_bar(progress, n, len(addresses), f"address {address}, found {len(found)}")
        try:
            values = probe(address)
        except PortUnavailable as exc:
            print(file=progress)
            print(f"payg: {exc}", file=sys.stderr)
            return 1
        except MeterTimeout:
            continue
        except MeterUnavailable as exc:  # something answered, but not as this profile expects
            found.append((address, None, str(exc)))
            continue
        found.append((address, values, None))
    print(file=progress)
    if not any(values is not None for _, values, _ in found):
        print(f"no {profile.model} answered on {args.port} at addresses {args.first}-{args.last}", file=out)
    for address, values, error in found:
        if values is None:
            print(f"address {address}: answered, but not as a {profile.name} ({error})", file=out)
            continue
        print(f"address {address}: {profile.model}", file=out)
        for line in _reading_lines(profile, values):
            print(line, file=out)
    return 0 if any(values is not None for _, values, _ in found) else 1


def _progress_bar(stream: TextIO, done: int, total: int, text: str, width: int = 30) -> None:
    filled = width * done // total
    stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {text}")
    stream.flush()


def cmd_relay_test(args: argparse.Namespace, relay: Relay, sleep: Callable[[float], None],
                   ask: Callable[[str], str] = input, out: TextIO = sys.stdout) -> int:
    polarity = "active-low" if args.active_low else "active-high"
    if not args.yes:
        answer = ask(f"This switches the relay on GPIO{args.pin} ({polarity}) ON for {args.seconds:g} s: whatever "
                     f"is plugged into its socket gets power. Type 'yes' to go on: ")
        if answer.strip().lower() != "yes":
            print("nothing switched", file=out)
            return 1
    try:
        relay.set_closed(True)
        print(f"GPIO{args.pin}: relay ON", file=out)
        sleep(args.seconds)
    finally:
        relay.set_closed(False)
        print(f"GPIO{args.pin}: relay OFF", file=out)
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
