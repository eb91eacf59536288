"""`payg trade ...`: market and channel actions, sent to the running controller's API."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Protocol, TextIO

from payg.cli.voice import EXIT_FAILED, EXIT_USAGE, ControllerApi, ask, say, unknown_socket
from payg.domain.settings import Config, EthereumLedgerConfig, MockLedgerConfig
from payg.errors import ConfigError, DeployFailed

__all__ = ["ControllerApi", "cmd_deploy", "cmd_fund", "cmd_trade", "trade_request"]


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


def cmd_trade(args: argparse.Namespace, api: ControllerApi, out: TextIO = sys.stdout, err: TextIO = sys.stderr,
              timeout_s: float = 60.0) -> int:
    """Send a `payg trade` action to the running controller and print its JSON answer."""
    try:
        method, path, body = trade_request(args)
    except ValueError as exc:
        say(str(exc), err)
        return EXIT_USAGE
    answer, status = ask(api, method, path, body, err, timeout_s=timeout_s)
    if status:
        return status
    json.dump(answer, out, indent=2)
    print(file=out)
    return 0


class Deployment(Protocol):
    deployer: str   # the owner socket's trade party, which paid for the deployment
    market: str
    channels: str


def cmd_fund(args: argparse.Namespace, config: Config, fund: Callable[[Config, str, int], tuple[str, int]],
             ) -> int:
    """`payg trade fund`: the mock ledger's faucet for trade wallets (no controller needed)."""
    if not isinstance(config.ledger, MockLedgerConfig):
        print(f"payg: trade fund mints on the mock ledger only; on {config.ledger.backend} send funds to the "
              "socket's trade party (payg trade info shows it)", file=sys.stderr)
        return 2
    if config.socket(args.socket) is None:
        return unknown_socket(args.socket, config)
    party, balance = fund(config, args.socket, args.amount)
    print(f"{party}: {balance}")
    return 0


def cmd_deploy(config: Config, deploy: Callable[[Config], Deployment]) -> int:
    """`payg trade deploy`: compile and deploy the contracts with the owner socket's trade key."""
    tc = config.trade
    if not isinstance(config.ledger, EthereumLedgerConfig):
        print("payg: trade deploy is for the ethereum backend (the mock market lives in its ledger file; on IOTA "
              "the market is hosted by a controller)", file=sys.stderr)
        return 2
    if tc.owner is None:
        print(f"payg: {config.path}: set [trade] owner to the socket whose trade party will own the market",
              file=sys.stderr)
        return 2
    try:
        done = deploy(config)
    except ConfigError as exc:
        print(f"payg: invalid configuration: {exc}", file=sys.stderr)
        return 2
    except DeployFailed as exc:
        print(f"payg: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"# deployed by {done.deployer} (socket {tc.owner}), EVM {tc.evm_version}; add to [trade]:")
    print(f'market_contract = "{done.market}"')
    print(f'channels_contract = "{done.channels}"')
    return 0
