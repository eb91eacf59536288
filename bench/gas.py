"""Gas used by the market and channel contracts, for the prague and paris builds, next to the goals.

Each operation is a real transaction on eth-tester + py-evm (a Prague VM for the prague build, a Paris
VM for the paris build), sent from the node's funded accounts. Every operation runs twice: "first" is
the first time it happens on a freshly deployed contract (for the paris build this includes setting
the storage reentrancy lock for the first time, which costs about 20k more once per contract), "again"
is the same operation later, which is what a market pays day to day. The goals are checked on
"again"; "first" is printed so that nothing is hidden.

What is measured (gas of the whole transaction, 21,000 base included):
  post advert  a producer's advert, no expired advert returned with it
  buy          10 Wh of an advert, paying producer and tax into `owed`
  open         a channel with an escrow
  top-up       more escrow and a later expiry
  close        the recipient with the sender's voucher: recipient and sender both paid
  reclaim      the sender after the expiry
  withdraw     the producer pulls what the market owes it

Run from the repository root: `.venv/bin/python bench/gas.py` (about 15 s). Prints figures; exits 1 if
a goal is missed on "again".
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from eth.vm.forks import ParisVM, PragueVM  # noqa: E402
from eth_account import Account  # noqa: E402
from eth_tester import EthereumTester, PyEVMBackend  # noqa: E402
from report import finish  # noqa: E402  (bench/report.py, next to this script)
from web3 import EthereumTesterProvider, Web3  # noqa: E402
from web3.logs import DISCARD  # noqa: E402

from ledgers.ethereum import voucher_typed_data  # noqa: E402
from ledgers.ethereum.contracts import compile_contract  # noqa: E402
from payg.domain.market import tax_on  # noqa: E402

GOALS = {"post advert": 90_000, "buy": 70_000, "open": 60_000, "close": 60_000}
OPERATIONS = ("post advert", "buy", "open", "top-up", "close", "reclaim", "withdraw")
VMS = {"prague": PragueVM, "paris": ParisVM}
PRICE = 10**9
TAX_BPS = 500


def measure(evm_version: str) -> tuple[dict[str, tuple[int, int]], dict[str, int]]:
    """{operation: (first, again)}, {contract: deployment gas}."""
    tester = EthereumTester(PyEVMBackend(vm_configuration=((0, VMS[evm_version]),)))
    w3 = Web3(EthereumTesterProvider(tester))
    owner, reg, prod, cons = w3.eth.accounts[:4]
    keys = {k.public_key.to_checksum_address(): bytes(k.to_bytes()) for k in tester.backend.account_keys}
    deployed: dict[str, int] = {}

    def deploy(name: str, *args):
        abi, bytecode = compile_contract(name, evm_version)
        receipt = w3.eth.get_transaction_receipt(w3.eth.contract(abi=abi, bytecode=bytecode).constructor(*args)
                                                 .transact({"from": owner, "gas": 5_000_000}))
        assert receipt["status"] == 1, f"{name} did not deploy on {evm_version}"
        deployed[name] = receipt["gasUsed"]
        return w3.eth.contract(address=receipt["contractAddress"], abi=abi)

    def send(call, sender: str, value: int = 0):
        receipt = w3.eth.get_transaction_receipt(call.transact({"from": sender, "value": value, "gas": 1_000_000}))
        assert receipt["status"] == 1, f"{call.fn_name} failed on {evm_version}"
        return receipt

    market = deploy("market", 1_000_000, TAX_BPS)
    channels = deploy("channels")
    send(market.functions.grant(reg, 1), owner)
    send(market.functions.grant(prod, 2), reg)
    send(market.functions.grant(cons, 3), reg)
    gas: dict[str, list[int]] = {op: [] for op in OPERATIONS}
    for _ in range(2):
        receipt = send(market.functions.postAdvert(100, PRICE, []), prod)
        gas["post advert"].append(receipt["gasUsed"])
        advert_id = market.events.AdvertPosted().process_receipt(receipt, errors=DISCARD)[0]["args"]["advert_id"]
        cost = 10 * PRICE
        gas["buy"].append(send(market.functions.buy(advert_id, 10, PRICE), cons, cost + tax_on(cost, TAX_BPS))
                          ["gasUsed"])
        gas["withdraw"].append(send(market.functions.withdraw(), prod)["gasUsed"])
        now = w3.eth.get_block("latest")["timestamp"]
        opened = []
        first_open = 0
        for _channel in range(2):
            receipt = send(channels.functions.open(prod, now + 600), cons, 10**15)
            first_open = first_open or receipt["gasUsed"]
            opened.append(channels.events.ChannelOpened().process_receipt(receipt, errors=DISCARD)[0]["args"]
                          ["channel_id"])
        gas["open"].append(first_open if not gas["open"] else receipt["gasUsed"])
        gas["top-up"].append(send(channels.functions.topUp(opened[0], prod, now + 700), cons, 10**14)["gasUsed"])
        amount = 4 * 10**14
        message = voucher_typed_data(w3.eth.chain_id, channels.address, opened[0], amount)
        signature = bytes(Account.sign_typed_data(keys[cons], full_message=message).signature)
        gas["close"].append(send(channels.functions.close(opened[0], cons, amount, signature), prod)["gasUsed"])
        tester.time_travel(now + 601)
        gas["reclaim"].append(send(channels.functions.reclaim(opened[1], prod), cons)["gasUsed"])
    return {op: (values[0], values[1]) for op, values in gas.items()}, deployed


def main() -> int:
    started = time.perf_counter()
    failures: list[str] = []
    results = {version: measure(version) for version in VMS}
    print("payg contracts — gas per transaction (21,000 base included), eth-tester + py-evm")
    print()
    header = f"{'operation':<12}" + "".join(f"{v + ' first':>14}{v + ' again':>14}" for v in VMS) + f"{'goal':>10}"
    print(header)
    print("-" * len(header))
    for op in OPERATIONS:
        row = f"{op:<12}"
        for version in VMS:
            first, again = results[version][0][op]
            row += f"{first:>14,}{again:>14,}"
            if op in GOALS and again > GOALS[op]:
                failures.append(f"{op} on {version}: {again:,} gas, goal at most {GOALS[op]:,}")
        goal = GOALS.get(op)
        print(row + (f"{'≤ ' + format(goal, ','):>10}" if goal else f"{'':>10}"))
    print()
    for version in VMS:
        deployed = results[version][1]
        print(f"deployment ({version}): market {deployed['market']:,} gas, channels {deployed['channels']:,} gas")
    print()
    print("first: the first such transaction on fresh contracts; again: the same one later (the goals apply).")
    print("Paris has no transient storage: its reentrancy lock is a storage slot, ~20k gas the first time it")
    print("is set on each contract (first withdraw, first close) and ~2k gas per call after that.")
    print()
    return finish(started, failures, "gas goals met on both builds: advert ≤ 90k, buy ≤ 70k, open ≤ 60k, close ≤ 60k")


if __name__ == "__main__":
    sys.exit(main())
