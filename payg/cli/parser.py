"""The command line's grammar: every command, its options and their checks (argparse)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from payg.domain.money import MAX_TOKENS

DEFAULT_CONFIG = "config/default.toml"
# Installed from a wheel, away from a source tree: the same embedded default, shipped as a data file.
INSTALLED_DEFAULT = Path(sys.prefix) / "share" / "payg" / "config" / "default.toml"
# The largest amount (tokens or ledger units) a command takes: a deposit of MAX_TOKENS tokens or more
# is never credited (payg/domain/money.py), and the journal and the mock ledger keep 64-bit integers.
MAX_AMOUNT = MAX_TOKENS - 1
MAX_INTEGER = 2**63 - 1  # any other count: SQLite's largest INTEGER


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="payg", description="Prepaid pay-as-you-go controller for wall sockets.")
    parser.add_argument("--config", metavar="FILE", help=f"configuration file (default: {DEFAULT_CONFIG})")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, help_text: str, config_help: str = f"configuration file (default: {DEFAULT_CONFIG})",
                epilog: str | None = None) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text, epilog=epilog)
        p.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS, help=config_help)
        return p

    command("run", "run the controller (the default when no command is given)")
    command("hub", "run the fleet view over many controllers (its own --config: a hub file, README \"Many "
            "buildings\")",
            config_help="the hub's own file, [hub] and [mqtt] (required: the hub has no default and never reads a "
                        "controller's file; start from config/hub.example.toml)",
            epilog="To try it on one machine: make hub-demo (a local broker, two simulated controllers and the hub; "
                   "docs/hub.md).")
    command("status", "show every socket: relay, meter, balance, power")
    p = command("deposit", "pay tokens into a socket's address on the mock ledger")
    p.add_argument("--socket", required=True, metavar="ID", help="socket id")
    p.add_argument("--amount", required=True, type=_amount, metavar="N", help="tokens, a positive integer")
    p = command("address", "print a socket's top-up address and payment URI (what its QR code holds)")
    p.add_argument("--socket", required=True, metavar="ID", help="socket id")
    p.add_argument("--amount", type=_amount, metavar="N", help="tokens to ask for in the URI")
    p = command("cursor", "show the ledger deposit cursor, or set it (with the controller stopped)")
    p.add_argument("--set", metavar="VALUE", dest="set_to",
                   help="the new cursor, in the backend's form (Ethereum '<block>:<hash>', "
                        "IOTA '<checkpoint>@<chain identifier>')")
    p = command("journal", "print a socket's journal (newest first, or all as CSV)")
    p.add_argument("--socket", required=True, metavar="ID", help="socket id")
    p.add_argument("--csv", action="store_true", help="every entry, oldest first, as CSV")
    p.add_argument("--limit", type=_positive_int, default=50, metavar="N", help="entries to show (default 50)")
    p = command("statement", "print a socket's statement for a month or a range of local days ([web] timezone)")
    p.add_argument("--socket", required=True, metavar="ID", help="socket id")
    p.add_argument("--month", metavar="YYYY-MM", help="a calendar month, such as 2027-01")
    p.add_argument("--from", dest="first", metavar="YYYY-MM-DD", help="the first day (instead of --month)")
    p.add_argument("--to", dest="last", metavar="YYYY-MM-DD", help="the last day, included (default: --from)")
    p.add_argument("--csv", action="store_true", help="as CSV, as the landlord view's download")

    command("login-link", "print a one-time link that logs in as the landlord (through the running controller)")
    p = command("code", "make a top-up code for a socket (through the running controller)")
    p.add_argument("--socket", required=True, metavar="ID", help="socket id")
    p.add_argument("--tokens", required=True, type=_amount, metavar="N",
                   help="what the code adds, in tokens, or the currency's minor unit (pence) with a [tariff] "
                        "currency: a multiple of [codes] tokens_per_unit, at most 995 units")
    p.add_argument("--request-id", metavar="ID", help="8 to 64 letters, digits, '-' or '_': running the command again"
                   " with the same id prints the same code instead of making another (for scripts that retry)")
    p = command("redeem", "enter a top-up code for a socket (through the running controller)")
    p.add_argument("--socket", required=True, metavar="ID", help="socket id")
    p.add_argument("code", metavar="CODE", help="the code's 9 digits (spaces allowed, quoted)")
    command("mqtt-acl", "print the Mosquitto ACL lines for this controller and its [mqtt] command_users")
    p = command("codes", "print every socket's top-up code key, starting code and count, for a back office")
    p.add_argument("action", choices=["export"], help="export: print them (they are secrets)")
    p = sub.add_parser("password", help="make the landlord's password hash for the web login",
                       description="Ask for the landlord's password (twice) and print its hash, or write it to "
                                   "an owner-only file. Name the variable or file in [web] of the config.")
    p.add_argument("--file", metavar="PATH", help="write the hash to this file (mode 600) instead of printing it")
    p.add_argument("--stdin", action="store_true", help="read the password from standard input (for scripts)")

    p = sub.add_parser("xpub", help="print the Ethereum account's xpub (m/44'/60'/0') for a watch-only controller",
                       description="Read the mnemonic (on a machine trusted with it, not the controller) and print "
                                   "the extended public key to put in [ledger] xpub: the controller then derives the "
                                   "same top-up addresses and holds no key that can spend.")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--mnemonic-env", metavar="NAME", help="the environment variable holding the mnemonic")
    source.add_argument("--mnemonic-file", metavar="PATH", help="an owner-only file holding the mnemonic")

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
    a.add_argument("--min-price", required=True, type=_amount, metavar="UNITS", help="ledger units per Wh")
    a = act("buy", "buy energy from an advert", socket=True)
    a.add_argument("advert", metavar="ADVERT")
    a.add_argument("--energy-wh", required=True, type=_positive_int, metavar="WH")
    a.add_argument("--max-price", type=_amount, metavar="UNITS", help="refuse if it costs more per Wh now")
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
    a.add_argument("--escrow", type=_amount, metavar="UNITS")
    a.add_argument("--price", type=_amount, metavar="UNITS", help="ledger units per Wh streamed")
    a.add_argument("--hours", type=float, default=24.0)
    a.add_argument("--peer", metavar="URL", help="the recipient's controller, to stream vouchers to")
    for name, text in (("close", "close an incoming channel with its latest voucher"),
                       ("reclaim", "take back an expired outgoing channel's escrow")):
        a = act(name, text)
        a.add_argument("channel", metavar="ID")
    act("deploy", "deploy the market and channel contracts, owned by [trade] owner's trade party (ethereum only)")
    a = act("fund", "mint ledger units into a socket's trade party (mock ledger only)", socket=True)
    a.add_argument("--amount", required=True, type=_amount, metavar="UNITS")

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

    s = sub.add_parser("scan", help="find the meters on a Modbus port and print them as [[sockets]] entries",
                       description="Ask every address 1-247 (or --first to --last) at each baud rate which meter "
                                   "it is (by the shipped profiles); print what answered as ready-to-paste "
                                   "[[sockets]] entries (docs/hardware/meters.md). Only reads are sent.")
    s.add_argument("--port", required=True, help="serial port, e.g. /dev/ttyUSB0")
    s.add_argument("--baud", type=_positive_int, nargs="+", metavar="N",
                   help="baud rates to try (default: the profiles' own, 9600 and 2400)")
    s.add_argument("--timeout-ms", type=_positive_int, metavar="N",
                   help="wait per address (default: the wire time of the request and reply + 100 ms)")
    s.add_argument("--expect", type=_positive_int, metavar="N", help="stop once N meters are found")
    s.add_argument("--first", type=_address, default=1, metavar="ADDRESS", help="first address to try (default 1)")
    s.add_argument("--last", type=_address, default=247, metavar="ADDRESS", help="last address to try (default 247)")
    s.add_argument("--local-echo", action="store_true", help="the RS485 adapter echoes what it sends")

    relay = sub.add_parser("relay", help="test a GPIO relay, or force the configured ones off")
    relay_actions = relay.add_subparsers(dest="action", metavar="ACTION", required=True)
    t = relay_actions.add_parser("test", help="switch a relay on for a moment, after a confirmation",
                                 description="switch a relay on for a moment, after a confirmation")
    t.add_argument("--pin", type=int, required=True, help="BCM GPIO number, 0-27")
    t.add_argument("--active-low", action="store_true", help="the relay board switches on a low level")
    t.add_argument("--driver", choices=("gpiod", "rpi-gpio"), default="gpiod",
                   help="gpiod: the GPIO character device, any Pi (default); rpi-gpio: RPi.GPIO or rpi-lgpio")
    t.add_argument("--chip", metavar="DEVICE", help="with gpiod: the GPIO chip, e.g. /dev/gpiochip0 (default: the "
                   "Raspberry Pi header's, found by its label)")
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


def _positive_int(text: str, maximum: int = MAX_INTEGER,
                  why: str = "the largest integer the journal (SQLite) stores") -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    if value > maximum:
        raise argparse.ArgumentTypeError(f"{text} is too large: at most {maximum} ({why})")
    return value


def _amount(text: str) -> int:
    """Tokens or ledger units: what one journal entry and the mock ledger can hold."""
    return _positive_int(text, MAX_AMOUNT, "2**62 - 1, the most one journal entry holds")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    args.command = args.command or "run"
    given = getattr(args, "config", None)
    args.config = given if given or args.command == "hub" else default_config()  # the hub has no default file
    args.action = getattr(args, "action", None)
    return args


def default_config(installed: Path = INSTALLED_DEFAULT) -> str:
    """config/default.toml in the working directory (a source tree), else the copy a wheel installed."""
    if Path(DEFAULT_CONFIG).is_file() or not installed.is_file():
        return DEFAULT_CONFIG
    return str(installed)
