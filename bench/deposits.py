"""Deposit backends against the local test nodes: idle poll cost, catch-up, payment-to-credit latency.

The backends are the ones of the ledger conformance tests, on their beds (tests/support/ledger_beds*.py):
mock (SQLite file), ethereum and ethereum-erc20 (a real eth-tester EVM behind JSON-RPC on
127.0.0.1, 3 confirmations) and iota (the fake IOTA GraphQL node, in its own process on 127.0.0.1).
Per backend:

1. poll cost: wall time of one `deposits_since(cursor)` (median, p95) with 3 sockets and with
   --sockets sockets (Ethereum ether mode also without its balance check, `check_balances = false`),
   and the HTTP requests one such poll sends to the node (EvmNode.requests;
   the fake IOTA node's GET /_fake/requests), broken down by JSON-RPC method / GraphQL operation.
   "idle": nothing new on the chain; "+1 empty": one new, empty, final block (Ethereum) or
   checkpoint (IOTA) per poll, which is the steady state on a live network.
2. catch-up: 100 final payments over the sockets (Ethereum: one per block; IOTA: 10 checkpoints),
   read from a fresh cursor by a real DepositWatcher into a real SqliteJournal; checks that every
   payment was credited exactly once (per socket: the deposit entries are exactly the payments).
3. latency: pay, make final, then the time until a DepositWatcher polling every 0.2 s in a thread
   has credited it (median over a few payments). Local node only: the time a real network takes to
   make a payment final is not measured here.

IOTA also gets a scale table (always 3, 200 and 500 sockets, --quick included): requests per poll after a
new checkpoint holding one payment to the last socket and one to a stranger, and the poll's time (goals of
issue 17: the same request count for all three, at most 3 + pages; 500 sockets under 100 ms).

Prints figures; exits 1 after printing if a catch-up check fails or the IOTA scale goals are missed.
Run from the repository root: `.venv/bin/python bench/deposits.py` (about a minute on 2 cores);
--sockets N for the large case (default 200); --quick: 30 sockets, 15 polls per row, 30 payments,
5 latency trials (about 15 s). A timing row stops after 6 s (at least 5 polls) when polls are slow.
"""

from __future__ import annotations

import argparse
import collections
import logging
import math
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from report import finish  # noqa: E402  (bench/report.py, next to this script)

from payg.adapters.clocks import SystemClock  # noqa: E402
from payg.adapters.journal import SqliteJournal  # noqa: E402
from payg.services.deposits import DepositWatcher  # noqa: E402
from tests.support.ledger_beds import LedgerBed, MockBed  # noqa: E402

BACKENDS = ("mock", "ethereum", "ethereum-erc20", "iota")
WATCH_INTERVAL_S = 0.2
TIME_BUDGET_S = 6.0  # per timing row: stop early (after at least 5 calls) when polls are slow


def make_bed(name: str, tmp: Path) -> LedgerBed:
    if name == "mock":
        return MockBed(tmp)
    if name.startswith("ethereum"):
        from tests.support.ledger_beds_ethereum import EthereumBed
        return EthereumBed(erc20=name == "ethereum-erc20")
    from tests.support.ledger_beds_iota import IotaBed
    return IotaBed(tmp)


def percentile(values, p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(p / 100.0 * len(s)) - 1))]


def node_requests(bed: LedgerBed) -> list[str] | None:
    """Every request the bed's node received so far, by JSON-RPC method or GraphQL operation (None: no node)."""
    if bed.name.startswith("ethereum"):
        return list(bed.node.requests)
    if bed.name == "iota":
        return [(r["json"] or {}).get("query", "?").split("(")[0].split("{")[0].removeprefix("query").strip()
                for r in bed.node.requests()]
    return None


def clear_requests(bed: LedgerBed) -> None:
    if bed.name.startswith("ethereum"):
        bed.node.requests.clear()
    elif bed.name == "iota":
        bed.node.clear_requests()


def requests_of(bed: LedgerBed, action) -> collections.Counter | None:
    clear_requests(bed)
    action()
    asked = node_requests(bed)
    return None if asked is None else collections.Counter(asked)


def fmt_requests(counts: collections.Counter | None) -> str:
    if counts is None:
        return f"{'-':>5}  (no HTTP: a local SQLite file)"
    detail = ", ".join(f"{name} {n}" for name, n in sorted(counts.items()))
    return f"{sum(counts.values()):>5}  ({detail})"


def drain(ledger, cursor):
    """Follow the cursor until it stops moving; returns the deposits and the last cursor."""
    found = []
    for _ in range(100):
        deposits, new_cursor = ledger.deposits_since(cursor)
        found.extend(deposits)
        if not deposits and new_cursor == cursor:
            return found, cursor
        cursor = new_cursor
    raise RuntimeError("the cursor kept moving after 100 calls")


def new_empty_block(bed: LedgerBed) -> None:
    if bed.name.startswith("ethereum"):
        bed.node.mine(1)
    else:
        bed.finalize()  # IOTA: a checkpoint with no transactions


def time_polls(bed: LedgerBed, ledger, cursor, calls: int, advance: bool):
    """Wall times (s) of up to `calls` polls; with `advance`, one new empty final block before each."""
    times: list[float] = []
    budget_end = time.perf_counter() + TIME_BUDGET_S
    for _ in range(calls):
        if advance:
            new_empty_block(bed)
        t = time.perf_counter()
        deposits, new_cursor = ledger.deposits_since(cursor)
        times.append(time.perf_counter() - t)
        assert not deposits, deposits
        assert advance or new_cursor == cursor
        cursor = new_cursor
        if len(times) >= 5 and time.perf_counter() > budget_end:
            break
    return times, cursor


def poll_cost(bed: LedgerBed, ledgers: dict, cursor: str | None, calls: int) -> list[str]:
    """Rows of poll cost per kind of poll and socket count; `cursor` is where the earlier phases left off
    (cursors name a block, checkpoint or row of the chain, so ledgers over other sockets share them)."""
    kinds = [("idle", False)] + ([("+1 empty", True)] if bed.name != "mock" else [])
    unit = "checkpoint" if bed.name == "iota" else "block"
    lines = ["  1. poll cost: deposits_since(cursor) with nothing to credit",
             f"  {'poll':<9} {'sockets':>7} {'calls':>5} {'median ms':>10} {'p95 ms':>9}  requests/poll"]
    for label, advance in kinds:
        for n, ledger in ledgers.items():
            _, cursor = drain(ledger, cursor)
            times, cursor = time_polls(bed, ledger, cursor, calls, advance)
            if advance:
                new_empty_block(bed)
            counts = requests_of(bed, lambda ledger=ledger, cursor=cursor: ledger.deposits_since(cursor))
            _, cursor = drain(ledger, cursor)
            ms = [x * 1e3 for x in times]
            lines.append(f"  {label:<9} {n:>7} {len(ms):>5} {statistics.median(ms):>10.3f} "
                         f"{percentile(ms, 95):>9.3f}  {fmt_requests(counts)}")
    if bed.name != "mock":
        lines.append(f"  idle = nothing new since the cursor; +1 empty = one new empty final {unit} per poll "
                     f"(a live chain's steady state)")
        if any(str(n).endswith("*") for n in ledgers):
            lines.append("  * check_balances = false: without the balance check of the socket addresses")
    clear_requests(bed)
    return lines


def make_payments(bed: LedgerBed, addresses: list[str], count: int) -> list[tuple[str, int]]:
    """`count` payments spread over the addresses, made final; returns (address, tokens) per payment.

    Ethereum: one payment per block (each transaction is mined on its own). IOTA: 10 payments per
    checkpoint. Mock: all at once.
    """
    paid = []
    per_checkpoint = 10
    for i in range(count):
        address, tokens = addresses[i % len(addresses)], 1 + i % 7
        bed.pay(address, tokens * bed.units_per_token)
        paid.append((address, tokens))
        if bed.name == "iota" and (i + 1) % per_checkpoint == 0:
            bed.finalize()
    if bed.name != "iota" or count % per_checkpoint:
        bed.finalize()
    return paid


def credited_exactly_once(journal: SqliteJournal, ledger, paid, socket_ids) -> tuple[bool, str]:
    """Per socket, the journal's deposit credits are exactly the payments made to it (as a multiset)."""
    expected: dict[str, list[int]] = {s: [] for s in socket_ids}
    by_address = {ledger.address_for(s): s for s in socket_ids}
    for address, tokens in paid:
        expected[by_address[address]].append(tokens)
    wrong = []
    booked_total = 0
    for s in socket_ids:
        booked = sorted(e.amount for e in journal.all_entries(s) if e.kind == "deposit")
        booked_total += len(booked)
        if booked != sorted(expected[s]) or journal.balance(s) != journal.recomputed_balance(s):
            wrong.append(f"{s}: paid {sorted(expected[s])}, credited {booked}")
    if wrong:
        return False, f"FAILED ({len(wrong)} sockets wrong, e.g. {wrong[0]})"
    return True, f"ok ({booked_total} deposit credits = {len(paid)} payments, each once, right amounts)"


def poll_until_done(watcher: DepositWatcher) -> tuple[int, int]:
    """Poll until a poll moves nothing (the controller's poll job, without its interval); (polls, duplicates)."""
    polls = duplicates = 0
    while True:
        cursor = watcher.journal.cursor(watcher.cursor_name)
        result = watcher.poll()
        polls += 1
        duplicates += result.duplicates
        if not result.credited and not result.carried and watcher.journal.cursor(watcher.cursor_name) == cursor:
            return polls, duplicates


def catch_up(bed: LedgerBed, ledger, socket_ids: list[str], payments: int, tmp: Path):
    addresses = [ledger.address_for(s) for s in socket_ids]
    paid = make_payments(bed, addresses, payments)
    journal = SqliteJournal(tmp / f"journal-{bed.name}.sqlite")
    watcher = DepositWatcher(ledger, journal, SystemClock())
    clear_requests(bed)
    started = time.perf_counter()
    polls, duplicates = poll_until_done(watcher)
    wall = time.perf_counter() - started
    asked = node_requests(bed)
    ok, check = credited_exactly_once(journal, ledger, paid, socket_ids)
    if duplicates:
        ok, check = False, f"FAILED ({duplicates} deposits delivered twice)"
    spread = {"iota": f"{math.ceil(payments / 10)} checkpoints", "mock": "one batch"}.get(
        bed.name, f"{payments} blocks")
    title = (f"  2. catch-up: {payments} final payments over {len(socket_ids)} sockets in {spread}, "
             "fresh cursor, DepositWatcher -> SqliteJournal")
    figures = (f"    {wall * 1e3:.0f} ms in {polls} polls (the last one finds nothing) = "
               f"{wall / payments * 1e3:.2f} ms per payment; requests {'-' if asked is None else len(asked)}")
    return ok, [title, figures, f"    check, every payment credited exactly once: {check}"], journal, watcher


def latency(bed: LedgerBed, watcher: DepositWatcher, socket_ids: list[str], trials: int) -> list[str]:
    """Pay, make final, and time until a watcher polling every WATCH_INTERVAL_S in a thread credits it."""
    credited = threading.Event()
    stop = threading.Event()
    errors: list[BaseException] = []
    watcher.on_credit = lambda sockets: credited.set()
    poll_until_done(watcher)  # past the empty blocks the earlier phases mined

    def loop():
        while not stop.is_set():
            try:
                watcher.poll()
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
                return
            stop.wait(WATCH_INTERVAL_S)

    thread = threading.Thread(target=loop, name="bench-watcher", daemon=True)
    thread.start()
    times = []
    try:
        for i in range(trials):
            stop.wait(0.05 + (i % 4) * 0.05)  # pay at different moments of the polling cycle
            credited.clear()
            socket_id = socket_ids[(7 * i) % len(socket_ids)]
            bed.pay(watcher.source.address_for(socket_id), bed.units_per_token)
            bed.finalize()
            final_at = time.perf_counter()
            while not credited.wait(0.01):
                if errors or time.perf_counter() - final_at > 30:
                    raise RuntimeError(f"{bed.name}: payment not credited ({errors or 'within 30 s'})")
            times.append(time.perf_counter() - final_at)
    finally:
        stop.set()
        thread.join(timeout=30)
        watcher.on_credit = None
    ms = [x * 1e3 for x in times]
    line = (f"  3. payment-to-credit latency, {len(socket_ids)} sockets, watcher polling every {WATCH_INTERVAL_S:g} s: "
            f"median {statistics.median(ms):.0f} ms, max {max(ms):.0f} ms over {len(ms)} payments "
            "(from the payment being final on the local node to the journal commit)")
    return [line]


IOTA_SCALE_SOCKETS = (3, 200, 500)
IOTA_SCALE_GOAL_MS = 100.0


def iota_scale(bed: LedgerBed, calls: int) -> tuple[bool, list[str]]:
    """Requests and time of a poll after a new checkpoint with a payment, per socket count (one scan each)."""
    lines = ["  0. scale: a poll after a new checkpoint with 1 payment to a socket and 1 to a stranger",
             f"  {'sockets':>7} {'polls':>5} {'median ms':>10} {'p95 ms':>9}  requests/poll"]
    counts_seen, ok = set(), True
    for n in IOTA_SCALE_SOCKETS:
        ledger = bed.open({f"s{i:03d}": i for i in range(n)})
        _, cursor = drain(ledger, None)
        times, requests = [], []
        for _ in range(calls):
            bed.pay(ledger.address_for(f"s{n - 1:03d}"), bed.units_per_token)
            bed.pay(bed.foreign_address(), bed.units_per_token)
            bed.finalize()
            clear_requests(bed)
            t = time.perf_counter()
            deposits, cursor = ledger.deposits_since(cursor)
            times.append(time.perf_counter() - t)
            requests.append(len(node_requests(bed) or []))
            assert [d.socket_id for d in deposits] == [f"s{n - 1:03d}"], deposits
        ms = [x * 1e3 for x in times]
        counts_seen.update(requests)
        lines.append(f"  {n:>7} {len(ms):>5} {statistics.median(ms):>10.3f} {percentile(ms, 95):>9.3f}  "
                     f"{'/'.join(str(c) for c in sorted(set(requests)))}")
        if n == max(IOTA_SCALE_SOCKETS) and statistics.median(ms) >= IOTA_SCALE_GOAL_MS:
            ok = False
    same = len(counts_seen) == 1 and max(counts_seen) <= 3
    lines.append(f"  goals: the same requests/poll for every size, at most 3 + pages: {'met' if same else 'MISSED'}; "
                 f"{max(IOTA_SCALE_SOCKETS)} sockets under {IOTA_SCALE_GOAL_MS:g} ms: {'met' if ok else 'MISSED'}")
    bed.node.control("reset", {})  # an empty chain again: the payments above are not the catch-up's
    return same and ok, lines


def bench_backend(name: str, args, tmp: Path) -> bool:
    bed_dir = tmp / name
    bed_dir.mkdir()
    t0 = time.perf_counter()
    bed = make_bed(name, bed_dir)
    try:
        setup_s = time.perf_counter() - t0
        ledgers, open_s = {}, {}
        for n in sorted({3, args.sockets}):
            t = time.perf_counter()
            ledgers[n] = bed.open({f"s{i:03d}": i for i in range(n)})
            open_s[n] = time.perf_counter() - t
        if name == "ethereum":  # the cost of the balance check (ether mode): the large case without it
            ledgers[f"{args.sockets}*"] = bed.open({f"s{i:03d}": i for i in range(args.sockets)},
                                                   check_balances=False)
        where = ("SQLite file" if name == "mock" else f"fake GraphQL node {bed.node.url}" if name == "iota"
                 else f"eth-tester EVM over JSON-RPC {bed.node.rpc_url}")
        print(f"{name}  ({where}; bed up in {setup_s:.1f} s; ledger built in "
              + ", ".join(f"{t:.2f} s for {n} sockets" for n, t in open_s.items()) + ")")

        scale_ok = True
        if name == "iota":
            scale_ok, scale_lines = iota_scale(bed, args.calls)
            print("\n".join(scale_lines))
        big = args.sockets
        socket_ids = [f"s{i:03d}" for i in range(big)]
        ok, lines, journal, watcher = catch_up(bed, ledgers[big], socket_ids, args.payments, bed_dir)
        try:
            cost = poll_cost(bed, ledgers, journal.cursor(watcher.cursor_name), args.calls)
            lines += latency(bed, watcher, socket_ids, args.latency_trials)
        finally:
            journal.close()
        print("\n".join(cost + lines))
        print()
        return ok and scale_ok
    finally:
        bed.close()  # closes the ledgers it opened and stops its node


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sockets", type=int, help="sockets for the large case (default 200; --quick: 30)")
    parser.add_argument("--quick", action="store_true", help="fewer sockets, calls and payments")
    parser.add_argument("--backends", default=",".join(BACKENDS),
                        help="comma-separated subset of " + ",".join(BACKENDS))
    args = parser.parse_args(argv)
    if args.sockets is None:
        args.sockets = 30 if args.quick else 200
    if args.sockets < 1:
        parser.error("--sockets must be at least 1")
    args.calls, args.payments, args.latency_trials = (15, 30, 5) if args.quick else (50, 100, 10)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if any(b not in BACKENDS for b in backends):
        parser.error(f"--backends: choose from {', '.join(BACKENDS)}")
    logging.basicConfig(level=logging.ERROR)
    started = time.perf_counter()
    failures = []
    print(f"payg ledger bench — {args.sockets} sockets (and 3), {args.calls} polls per row "
          f"(fewer if a row takes over {TIME_BUDGET_S:g} s), {args.payments} payments to catch up, "
          f"{args.latency_trials} latency trials; local nodes on 127.0.0.1")
    print()
    with tempfile.TemporaryDirectory(prefix="payg-bench-ledgers-") as tmp_name:
        for name in backends:
            if not bench_backend(name, args, Path(tmp_name)):
                failures.append(f"{name}: catch-up did not credit every payment exactly once"
                                + (" or the scale goals were missed" if name == "iota" else ""))
    print("Real networks add the time to make a payment final, which is not measured here: Ethereum about 12 s per")
    print("block times the confirmations required (3 here: ~36 s; more on mainnet), IOTA one checkpoint (about a")
    print("second or less). Polls against a remote node also pay its network round trip per request, not measured")
    print("here either; the requests/poll column says how many round trips a poll makes.")
    print()
    return finish(started, failures, "every catch-up credited each payment exactly once")


if __name__ == "__main__":
    sys.exit(main())
