"""Payment-channel vouchers per second on one core, per backend.

On each backend's conformance bed (tests/support/trade_beds*.py: the mock ledger file, a real EVM
behind JSON-RPC on 127.0.0.1, the fake IOTA node), one channel is opened, then this process,
single-threaded, times:

1. sign: `sign_voucher` for increasing cumulative amounts (the sender's cost per Wh streamed);
2. verify: the signature alone (Ethereum: EIP-712 recovery and the low-s rule, `voucher_signer`, on coincurve;
   IOTA: `ed25519.verify`, libsodium with the strict rules; mock: `check_voucher`, which reads only its file);
3. check: `check_voucher` on each of them (signature, domain, escrow and expiry, including
   whatever the backend asks its ledger about the channel: on Ethereum one JSON-RPC call, the latest block,
   with the channel itself read once per block);
4. accept: `ChannelBook.accept` for each in order (check + replay refusal + one journal
   transaction with the trade credit, into a real SQLite journal): the recipient's full path.
   On Ethereum the latest block is read at most once per `voucher_cache_s` (1 s) and the channel once
   per block; on IOTA each voucher waits for an escrow read that started after it (ledgers/common.py
   FreshRead), so one thread pays one request per voucher;
5. IOTA only: accept on 20 channels at once, one thread each: the vouchers share the escrow reads
   (the requests per voucher are printed; at 1 or more the sharing is broken and the run fails).

One voucher per Wh means a 3.6 kW load needs 1 voucher per second per channel: the figures say how
many such channels one core can sign or verify. Prints figures, then issue 17's goals (met or not);
exits 1 if a backend cannot sign and verify 50 vouchers per second (180 kW of streamed supply per core),
the floor this project sets.

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
from ledgers.iota import ed25519  # noqa: E402
from ledgers.iota.envelope import voucher_bytes  # noqa: E402
from payg.adapters.clocks import ManualClock  # noqa: E402
from payg.adapters.journal import SqliteJournal  # noqa: E402
from payg.domain import market as rules  # noqa: E402
from payg.services.channels import ChannelBook  # noqa: E402

BEDS = {"mock": ("tests.support.trade_beds", "make_mock_bed"),
        "ethereum": ("tests.support.trade_beds_ethereum", "make_bed"),
        "iota": ("tests.support.trade_beds_iota", "make_bed")}
FLOOR_PER_S = 50
# issue 17's goals on one core: (backend, figure) -> vouchers per second
GOALS = {("ethereum", "verify"): 2_000, ("iota", "verify"): 10_000, ("ethereum", "accept"): 300}


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:10.0f}/s  ({seconds / n * 1000:7.3f} ms each)"


def run_backend(name: str, count: int, workdir: Path) -> tuple[float, float, float, float]:
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
        public = c._parties.public_key("cons") if name == "iota" else None
        t0 = time.perf_counter()
        for v in vouchers:
            if signer is not None:
                assert signer(v, int(ch.channel_id)) == ch.sender
            elif public is not None:  # the signature alone, as check_voucher runs it (libsodium, strict)
                assert ed25519.verify(public, voucher_bytes(v.channel_id, v.amount, v.domain), v.signature)
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
        return count / sign_s, count / verify_s, count / check_s, count / accept_s
    finally:
        journal.close()
        bed.close()


def run_iota_shared_reads(channels: int, per_channel: int, workdir: Path) -> tuple[float, float]:
    """Vouchers on `channels` incoming channels at once (one thread each, as the web server's workers take peers'
    posts), each checked against its escrow from a read that started after it arrived: (vouchers per second,
    balance requests per voucher)."""
    import threading

    module, factory = BEDS["iota"]
    bed = getattr(importlib.import_module(module), factory)(workdir, capacity_wh=10_000, tax_bps=500)
    journal = SqliteJournal(workdir / "journal-shared.sqlite")
    try:
        c = bed.channels
        bed.fund("cons", channels * (per_channel + 5) * bed.price + channels * 10**8)
        opened = [c.open_channel("cons", c.party_for("prod"), (per_channel + 5) * bed.price, c.now() + 6 * rules.HOUR_S)
                  for _ in range(channels)]
        book = ChannelBook(c, journal, ManualClock(), Fraction(1), escrow_watch=c)
        signed = []
        for ch in opened:
            book.accept_channel("prod", ch.channel_id, bed.price)
            signed.append([c.sign_voucher("cons", ch.channel_id, (i + 1) * bed.price) for i in range(per_channel)])
        bed.node.clear_requests()
        start = threading.Barrier(channels + 1)

        def stream(vouchers):
            start.wait()
            for v in vouchers:
                book.accept(v, v.channel_id)
        threads = [threading.Thread(target=stream, args=(vs,)) for vs in signed]
        for t in threads:
            t.start()
        start.wait()
        t0 = time.perf_counter()
        for t in threads:
            t.join()
        seconds = time.perf_counter() - t0
        n = channels * per_channel
        assert journal.balance("prod") == n, "every voucher books exactly one Wh"
        reads = sum("PaygBalances" in (r.get("json") or {}).get("query", "") for r in bed.node.requests())
        print(f"iota      accept, {channels} channels at once: {rate(n, seconds)}, {reads} balance requests for"
              f" {n} vouchers ({reads / n:.2f} per voucher)")
        return n / seconds, reads / n
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
    results: dict[str, tuple[float, float, float, float]] = {}
    print(f"vouchers per second, one channel, one thread, {args.count} vouchers per backend")
    for name in args.backends.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            results[name] = sign, verify, _check, _accept = run_backend(name, args.count, Path(tmp))
        if min(sign, verify) < FLOOR_PER_S:
            failures.append(f"{name}: below {FLOOR_PER_S} vouchers/s (sign {sign:.0f}/s, verify {verify:.0f}/s)")
    print(f"\n{'backend':9s} {'sign':>10s} {'verify':>10s} {'check':>10s} {'accept':>10s}  (per second)")
    for name, figures in results.items():
        print(f"{name:9s} " + " ".join(f"{f:10,.0f}" for f in figures))
    if "iota" in results:
        with tempfile.TemporaryDirectory() as tmp:
            _shared, per_voucher = run_iota_shared_reads(20, max(5, args.count // 20), Path(tmp))
        if per_voucher >= 1:
            failures.append(f"iota: {per_voucher:.2f} balance requests per voucher with 20 channels at once")
    for (name, figure), goal in GOALS.items():
        if name in results:
            got = results[name][("sign", "verify", "check", "accept").index(figure)]
            print(f"goal {name} {figure} >= {goal:,}/s: {got:,.0f}/s {'met' if got >= goal else 'NOT MET'}")
    return finish(started, failures, f"every backend signs and verifies at least {FLOOR_PER_S} vouchers/s")


if __name__ == "__main__":
    sys.exit(main())
