"""Payment-channel vouchers per second on one core, per backend.

On each backend's conformance bed (tests/support/trade_beds*.py: the mock ledger file, a real EVM
behind JSON-RPC on 127.0.0.1, the fake IOTA node), one channel is opened, then this process,
single-threaded, times:

1. sign: `sign_voucher` for increasing cumulative amounts (the sender's cost per Wh streamed);
2. verify: the signature alone (Ethereum: EIP-712 recovery and the low-s rule, `voucher_signer`;
   mock and IOTA: `check_voucher`, which reads only the controller's own store);
3. check: `check_voucher` on each of them (signature, domain, escrow and expiry, including
   whatever the backend asks its ledger about the channel: two JSON-RPC calls on Ethereum);
4. accept: `ChannelBook.accept` for each in order (check + replay refusal + one journal
   transaction with the trade credit, into a real SQLite journal): the recipient's full path.

One voucher per Wh means a 3.6 kW load needs 1 voucher per second per channel: the figures say how
many such channels one core can sign or verify. Prints figures; exits 1 if a backend cannot sign
and verify 50 vouchers per second (180 kW of streamed supply per core), the floor this project sets.

Run from the repository root: `.venv/bin/python bench/vouchers.py [--count N] [--backends mock,ethereum,iota]`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.report import finish  # noqa: E402
from payg.domain import market as rules  # noqa: E402
from payg.services.channels import ChannelBook  # noqa: E402
from payg.adapters.clocks import ManualClock  # noqa: E402
from payg.adapters.journal import SqliteJournal  # noqa: E402

BEDS = {"mock": ("tests.support.trade_beds", "make_mock_bed"),
        "ethereum": ("tests.support.trade_beds_ethereum", "make_bed"),
        "iota": ("tests.support.trade_beds_iota", "make_bed")}
FLOOR_PER_S = 50


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:10.0f}/s  ({seconds / n * 1000:7.3f} ms each)"


def run_backend(name: str, count: int, workdir: Path) -> tuple[float, float, float]:
    module, factory = BEDS[name]
    bed = getattr(importlib.import_module(module), factory)(workdir, capacity_wh=10_000, tax_bps=500)
    journal = SqliteJournal(workdir / "journal.sqlite")
    try:
        c = bed.channels
        bed.fund("cons", (count + 10) * bed.price)
        ch = c.open_channel("cons", c.party_for("prod"), (count + 5) * bed.price, c.now() + 6 * rules.HOUR_S)
        t0 = time.perf_counter()
        vouchers = [c.sign_voucher("cons", ch.channel_id, (i + 1) * bed.price) for i in range(count)]
        sign_s = time.perf_counter() - t0
        signer = getattr(c, "voucher_signer", None)
        t0 = time.perf_counter()
        for v in vouchers:
            if signer is not None:
                assert signer(v, int(ch.channel_id)) == ch.sender
            else:
                c.check_voucher(v, ch.channel_id)
        verify_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        for v in vouchers:
            c.check_voucher(v, ch.channel_id)
        check_s = time.perf_counter() - t0
        # as app.py wires it: on IOTA the recipient looks at the escrow address before every voucher
        book = ChannelBook(c, journal, ManualClock(), Fraction(1), escrow_watch=c if name == "iota" else None)
        book.accept_channel("prod", ch.channel_id, bed.price)
        t0 = time.perf_counter()
        for v in vouchers:
            book.accept(v, ch.channel_id)
        accept_s = time.perf_counter() - t0
        assert journal.balance("prod") == count, "every voucher books exactly one Wh"
        print(f"{name:9s} sign   {rate(count, sign_s)}")
        print(f"{name:9s} verify {rate(count, verify_s)}")
        print(f"{name:9s} check  {rate(count, check_s)}")
        print(f"{name:9s} accept {rate(count, accept_s)}")
        return count / sign_s, count / verify_s, count / accept_s
    finally:
        journal.close()
        bed.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=300, help="vouchers per backend (default 300)")
    parser.add_argument("--backends", default=",".join(BEDS), help="comma-separated, from: " + ", ".join(BEDS))
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)
    started = time.perf_counter()
    failures = []
    print(f"vouchers per second, one channel, one thread, {args.count} vouchers per backend")
    for name in args.backends.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            sign, verify, _accept = run_backend(name, args.count, Path(tmp))
        if min(sign, verify) < FLOOR_PER_S:
            failures.append(f"{name}: below {FLOOR_PER_S} vouchers/s (sign {sign:.0f}/s, verify {verify:.0f}/s)")
    return finish(started, failures, f"every backend signs and verifies at least {FLOOR_PER_S} vouchers/s")


if __name__ == "__main__":
    sys.exit(main())
