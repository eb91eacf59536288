"""The command line: `payg COMMAND ...` (`python app.py` is the same).

`main` parses the arguments and runs the command. What a command needs from outside
(the configuration, the journal, the ledger, the running controller's API, the hardware)
it asks of a `Wiring`, which the composition root (app.py) provides: the commands
decide and print, they build nothing. Each command's module is imported when it runs:
`payg run`, the controller's start, loads none of the others.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from argparse import Namespace
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from payg.cli.parser import parse_args
from payg.domain.settings import Config, GpioRelayConfig, SecretRef
from payg.errors import ConfigError, DataDirBusy
from payg.ports import DepositSource, Journal, Relay

if TYPE_CHECKING:
    from payg.cli import installer, trade
    from payg.domain.codes import CodeKey
    from payg.domain.meter_profile import MeterProfile
    from payg.domain.meter_scan import MeterScanner
    from payg.services.statements import StatementDesk


class ClosingJournal(Journal, Protocol):
    def close(self) -> None: ...


class ClosingRelay(Relay, Protocol):
    def close(self) -> None: ...


class Wiring(Protocol):
    """What the commands need built (payg/bootstrap.py's CliWiring)."""

    def load_config(self, path: str) -> Config:
        """Raises ConfigError."""

    def serve(self, config: Config) -> int:
        """Run the controller until a signal stops it; the exit status."""

    def mqtt_acl(self, config: Config) -> str:
        """The broker's ACL for this controller's user and its command users (Mosquitto's acl_file format)."""

    def serve_hub(self, path: str) -> int:
        """Run the fleet view (`payg hub`) of the hub configuration at path until a signal stops it."""

    def open_journal(self, config: Config) -> ClosingJournal | None:
        """The data directory's journal, or None before any controller ran."""

    def statement_desk(self, config: Config, journal: Journal) -> StatementDesk:
        """Receipts and statements over that journal, in the controller's time zone and money."""

    def ledger(self, config: Config) -> AbstractContextManager[DepositSource]:
        """The configured ledger, open while the block runs; raises ConfigError."""

    def lock_data_dir(self, config: Config) -> AbstractContextManager[None]:
        """Held while nothing else may run on the data directory; raises DataDirBusy."""

    def controller_api(self, config: Config) -> trade.ControllerApi: ...

    def code_keys(self, config: Config) -> dict[str, CodeKey]:
        """Each socket's top-up code secret, made the first time (raises ConfigError)."""

    def fund_trade_party(self, config: Config, socket_id: str, amount: int) -> tuple[str, int]:
        """Mint on the mock ledger into a socket's trade party: (party, its balance)."""

    def deploy_contracts(self, config: Config) -> trade.Deployment:
        """Raises ConfigError or DeployFailed."""

    def gpio_relay(self, relay: GpioRelayConfig) -> ClosingRelay:
        """The relay, claimed at its off level by its driver; raises RelayError or ValueError."""

    def force_relay_off(self, relay: GpioRelayConfig) -> None:
        """Drive the relay off and leave it driven off; raises RelayError or ValueError."""

    def meter_profile(self, name: str) -> MeterProfile:
        """Raises ConfigError."""

    def meter_scanner(self, local_echo: bool) -> MeterScanner:
        """Finds meters on a port with every shipped profile (`payg scan`)."""

    def account_xpub(self, ref: SecretRef) -> str:
        """`payg xpub`: the Ethereum account's xpub from the mnemonic ref names; raises ConfigError."""

    def modbus_probe(self, port: str, profile: MeterProfile, *, baud: int, parity: str, timeout_s: float,
                     local_echo: bool) -> installer.Probe:
        """Reads one meter at an address (close it after use)."""


# The shell's status for a process whose reader went away (128 + SIGPIPE), as `yes | head -1` gives.
EXIT_PIPE_CLOSED = 128 + signal.SIGPIPE


def main(argv: list[str] | None, wiring: Wiring) -> int:
    """Run one command. When whoever reads its output stops early (`payg status | head -2`), the command
    ends quietly with EXIT_PIPE_CLOSED: no traceback, and nothing left for the interpreter to flush at exit."""
    try:
        try:
            return _run(argv, wiring)
        finally:
            sys.stdout.flush()  # what is still buffered fails here, not at the interpreter's exit
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_PIPE_CLOSED


def _run(argv: list[str] | None, wiring: Wiring) -> int:
    args = parse_args(argv)
    if args.command == "password":
        from payg.cli import password

        return password.cmd_password(args)
    if args.command == "scan":  # no config: run before there is one for these meters
        from payg.cli import scan

        return scan.run(args, wiring.meter_scanner(args.local_echo))
    if args.command in ("meters", "relay") and args.action != "off":
        from payg.cli import installer

        return installer.run(args, wiring, time.sleep)
    if args.command == "xpub":  # no config: run where the mnemonic may be, not on the controller
        ref = (SecretRef(env=args.mnemonic_env, key="--mnemonic-env") if args.mnemonic_env
               else SecretRef(file=Path(args.mnemonic_file), key="--mnemonic-file"))
        try:
            print(wiring.account_xpub(ref))
        except ConfigError as exc:
            print(f"payg: {exc}", file=sys.stderr)
            return 2
        return 0
    if args.command == "hub":
        return wiring.serve_hub(args.config)  # its own configuration file (README "Many buildings")
    try:
        config = wiring.load_config(args.config)
    except ConfigError as exc:
        print(f"payg: invalid configuration: {exc}", file=sys.stderr)
        return 2
    if args.command == "run":
        return wiring.serve(config)
    return _command(args, config, wiring)


def _command(args: Namespace, config: Config, wiring: Wiring) -> int:
    """The commands that read or change a controller's files or ask the running one."""
    from payg.cli import accounts, codes, installer, password, trade, voice

    socket_id = getattr(args, "socket", None)  # journal and statement also read a removed socket's entries, below
    if socket_id is not None and config.socket(socket_id) is None and args.command not in ("journal", "statement"):
        return voice.unknown_socket(socket_id, config)
    if args.command == "relay":
        return installer.relays_off(config, wiring.force_relay_off)
    if args.command in ("deposit", "address"):
        return accounts.ledger_command(args, config, wiring.ledger)
    if args.command == "login-link":
        return password.cmd_login_link(wiring.controller_api(config))
    if args.command in ("code", "redeem"):
        from payg.domain.money import MoneyUnit
        from payg.webkit import i18n

        return codes.cmd_code(args, wiring.controller_api(config), unit=MoneyUnit.of(config.tariff),
                              lang=i18n.from_environment(os.environ, config.web.language))
    if args.command == "mqtt-acl":
        try:
            print(wiring.mqtt_acl(config))
        except ConfigError as exc:
            print(f"payg: invalid configuration: {exc}", file=sys.stderr)
            return 2
        return 0
    if args.command == "codes":
        journal = wiring.open_journal(config)
        try:
            return codes.cmd_export(config, wiring.code_keys(config), journal)
        finally:
            if journal is not None:
                journal.close()
    if args.command == "trade":
        if args.action == "fund":
            return trade.cmd_fund(args, config, wiring.fund_trade_party)
        if args.action == "deploy":
            return trade.cmd_deploy(config, wiring.deploy_contracts)
        return trade.cmd_trade(args, wiring.controller_api(config))
    if args.command == "statement":
        from payg.cli import statements

        if status := statements.bad_period(args):  # a bad argument is said first, with or without a journal
            return status
    journal = wiring.open_journal(config)
    try:
        if args.command == "status":
            return accounts.cmd_status(config, journal, wiring.controller_api(config).states())
        if socket_id is not None and config.socket(socket_id) is None and (
                journal is None or not journal.entries(socket_id, 1)):
            return voice.unknown_socket(socket_id, config)
        if journal is None:
            print(f"payg: no journal at {config.controller.data_dir / 'journal.sqlite'} yet (has the controller "
                  "run?)", file=sys.stderr)
            return 1
        if args.command == "cursor":
            if args.set_to is None:
                return accounts.cmd_cursor(args, config, journal)
            try:
                with wiring.lock_data_dir(config):
                    return accounts.cmd_cursor(args, config, journal)
            except DataDirBusy as exc:
                print(f"payg: {exc} -- stop it before moving the cursor", file=sys.stderr)
                return 1
        if args.command == "statement":
            from payg.cli import statements

            return statements.cmd_statement(args, config, journal, wiring.statement_desk(config, journal))
        return accounts.cmd_journal(args, config, journal)
    finally:
        if journal is not None:
            journal.close()

