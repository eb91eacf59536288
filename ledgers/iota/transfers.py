"""Transfers: what IotaWallet reads from and writes to the ledger, as coroutines run on its IotaNode.

Transfers. `send` builds ONE programmable transaction with the SDK's offline `TransactionBuilder`:
`pay_iota` (SplitCoins from the gas coin, one TransferObjects per output), the sender's coins as gas payment
(largest first, at most 256; the node smashes them into the first), the epoch's reference gas price read from
the node, and a fixed budget (`gas_budget`). The SDK signs it (`Ed25519PrivateKey.sign_transaction`: the
intent message of the transaction's BCS) and submits it with `GraphQlClient.execute_transaction`
(Mutation.executeTransactionBlock). The sender pays the gas from the same coins. `send` then polls
`transactionBlock(digest) { effects { checkpoint } }` until the transaction is in a checkpoint (final: it can
no longer be reverted) and returns its digest. `sweep` sends the whole gas coin (TransferObjects of the gas
coin itself): everything at the address minus the gas actually charged.

Gas budget. A budget is reserved (not spent) before execution and must be covered by the gas coins on top of
the amounts sent, so `send` refuses (InsufficientFunds, before anything is sent) when
balance < sum(outputs) + budget. The budget is

    reference gas price * 10,000 gas units  +  2,000,000 nanos per coin object written

(outputs + the sender's change coin). A plain IOTA transfer costs about 1,000 units of computation (the lowest
bucket) and about 988,000 nanos of storage per coin object written, rebated when the object is consumed, so
this leaves a wide margin. What was actually paid is `transaction(digest)["gas_fee"]`
(computation + storage - storage rebate, which can be negative when many coins are merged).

Ambiguous failures. Two wallets (or processes) spending from the same address at once may make one send
fail with LedgerUnavailable (its coins were consumed); a retry builds from the new coins. After an ambiguous
failure (timeout, connection lost after the request left), `send` asks the node whether the transaction
exists before reporting; if it does, it waits for it as usual. Both a lost answer and a late one leave the
coins consumed at most once: a rebuilt transaction would use different coin versions, so a caller that
retries only after LedgerUnavailable should first look the digest up (exceptions from send carry it as
`.digest` when the transaction was built).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import iota_sdk

from ledgers.iota.sdk import (
    IOTA_COIN,
    SDK_ERRORS,
    IotaNode,
    _BadAnswer,
    _bigint,
    _get,
    _list,
    _owner,
    _page_info,
    _status,
    _timestamp_ms,
    _uint,
    normalise_address,
    normalise_coin_type,
)
from payg.errors import InsufficientFunds, LedgerUnavailable, PaygError

BUDGET_GAS_UNITS = 10_000           # computation allowance, in gas units at the reference gas price
BUDGET_PER_OBJECT = 2_000_000       # storage allowance per coin object written, nanos
MAX_GAS_BUDGET = 50 * 10**9         # the protocol's maximum budget (50 IOTA)
MAX_GAS_OBJECTS = 256               # the protocol's maximum number of gas payment coins
PAGE_SIZE = 50
POLL_INITIAL_S = 0.05
POLL_MAX_S = 0.5

# Addresses per balances query: 3 input nodes each (address, balance, totalBalance) and about 75 bytes of query
# text; 50 keeps a query under the service's 300 nodes and 5,000 bytes (ledgers/iota/deposits.py QUERY_LIMITS).
BALANCES_PER_QUERY = 50


def balances_query(n: int) -> str:
    """One query for the balances of n addresses ($a0..), with the checkpoint it is read at."""
    declared = ", ".join(f"$a{i}: IotaAddress!" for i in range(n))
    fields = "\n".join(f"  a{i}: address(address: $a{i}) {{ balance {{ totalBalance }} }}" for i in range(n))
    return f"query PaygBalances({declared}) {{\n  checkpoint {{ sequenceNumber }}\n{fields}\n}}" if n else \
        "query PaygBalances { checkpoint { sequenceNumber } }"


COINS_QUERY = """query PaygCoins($address: IotaAddress!, $first: Int!, $after: String) {
  address(address: $address) {
    coins(first: $first, after: $after) {
      pageInfo { hasNextPage endCursor }
      nodes { address version digest coinBalance }
    }
  }
}"""

BALANCE_QUERY = """query PaygBalance($address: IotaAddress!) {
  address(address: $address) { balance { totalBalance } }
}"""

GAS_PRICE_QUERY = """query PaygGasPrice { epoch { referenceGasPrice } }"""

CHAIN_QUERY = """query PaygChain { chainIdentifier }"""

CHECKPOINT_QUERY = """query PaygTransactionCheckpoint($digest: String!) {
  transactionBlock(digest: $digest) { effects { checkpoint { sequenceNumber } } }
}"""

TRANSACTION_QUERY = """query PaygTransaction($digest: String!, $first: Int!, $after: String) {
  transactionBlock(digest: $digest) {
    digest
    sender { address }
    effects {
      status
      errors
      timestamp
      checkpoint { sequenceNumber }
      gasEffects { gasSummary { computationCost storageCost storageRebate nonRefundableStorageFee } }
      balanceChanges(first: $first, after: $after) {
        pageInfo { hasNextPage endCursor }
        nodes { owner { address } coinType { repr } amount }
      }
    }
  }
}"""


class TransactionNotFound(PaygError):
    """The node knows no transaction with that digest (or the digest is not one)."""


class TransferFailed(LedgerUnavailable):
    """The transaction was executed and checkpointed but failed: nothing moved except the gas it paid."""

    def __init__(self, message: str, digest: str, gas_fee: int | None):
        super().__init__(message)
        self.digest = digest
        self.gas_fee = gas_fee


def gas_budget(objects_written: int, gas_price: int) -> int:
    """The budget `send` reserves for a transaction writing `objects_written` coin objects (see the module doc)."""
    return min(MAX_GAS_BUDGET, gas_price * BUDGET_GAS_UNITS + BUDGET_PER_OBJECT * objects_written)


class Transfers:
    def __init__(self, node: IotaNode, finality_timeout_s: float):
        self._node = node
        self.finality_timeout_s = finality_timeout_s

    async def chain(self) -> str:
        chain = (await self._node.query(CHAIN_QUERY)).get("chainIdentifier")
        if not isinstance(chain, str) or not chain:
            raise _BadAnswer(f"chainIdentifier {chain!r}")
        return chain

    async def balance(self, address: str) -> int:
        data = await self._node.query(BALANCE_QUERY, {"address": address})
        holder = data.get("address")
        balance = holder.get("balance") if isinstance(holder, dict) else None
        if balance is None:
            return 0
        return _bigint(_get(balance, "totalBalance"), "balance.totalBalance")

    async def balances(self, addresses: list[str]) -> tuple[int, dict[str, int]]:
        """The balance of each address and the checkpoint the answer was read at, in one query per
        BALANCES_PER_QUERY addresses (every answer of one query is read at one checkpoint)."""
        checkpoint, found = -1, {}
        for start in range(0, max(len(addresses), 1), BALANCES_PER_QUERY):
            chunk = addresses[start:start + BALANCES_PER_QUERY]
            data = await self._node.query(balances_query(len(chunk)), {f"a{i}": a for i, a in enumerate(chunk)})
            seen = _uint(_get(_get(data, "checkpoint"), "sequenceNumber"), "checkpoint.sequenceNumber")
            checkpoint = seen if checkpoint < 0 else min(checkpoint, seen)
            for i, address in enumerate(chunk):
                holder = data.get(f"a{i}")
                balance = holder.get("balance") if isinstance(holder, dict) else None
                found[address] = 0 if balance is None else _bigint(_get(balance, "totalBalance"),
                                                                   f"a{i}.balance.totalBalance")
        return checkpoint, found

    async def gas_price(self) -> int:
        data = await self._node.query(GAS_PRICE_QUERY)
        price = _bigint(_get(_get(data, "epoch"), "referenceGasPrice"), "epoch.referenceGasPrice")
        if price < 1:
            raise _BadAnswer(f"reference gas price {price}")
        return price

    async def _coins(self, address: str) -> list[tuple[int, Any]]:
        """(balance, ObjectReference) of every IOTA coin at the address, largest first."""
        coins = []
        cursor = None
        while True:
            data = await self._node.query(COINS_QUERY, {"address": address, "first": PAGE_SIZE, "after": cursor})
            holder = data.get("address")
            if holder is None:
                return []
            connection = _get(holder, "coins")
            for node in _list(connection, "nodes"):
                try:
                    reference = iota_sdk.ObjectReference(
                        object_id=iota_sdk.ObjectId.from_hex(normalise_address(_get(node, "address"))),
                        version=iota_sdk.Version.from_u64(_uint(_get(node, "version"), "coin version")),
                        digest=iota_sdk.ObjectDigest.from_base58(_get(node, "digest")))
                except (ValueError, TypeError, *SDK_ERRORS):
                    raise _BadAnswer(f"coin {node!r}"[:300]) from None
                coins.append((_bigint(_get(node, "coinBalance"), "coinBalance"), reference))
            more, cursor = _page_info(connection, cursor)
            if not more:
                break
        coins.sort(key=lambda coin: -coin[0])
        return coins

    async def _gas_payment(self, sender: str, needed_beyond_budget: int, objects_written: int):
        price = await self.gas_price()
        budget = gas_budget(objects_written, price)
        coins = (await self._coins(sender))[:MAX_GAS_OBJECTS]
        total = sum(balance for balance, _ in coins)
        if total < needed_beyond_budget + budget:
            raise InsufficientFunds(
                f"{sender} holds {total} nanos usable in one transaction; it needs {needed_beyond_budget} "
                f"+ a gas budget of {budget} nanos at {price} nanos per gas unit")
        return price, budget, coins, total

    async def send(self, key, sender: str, outputs: list[tuple[str, int]]) -> str:
        amount = sum(n for _, n in outputs)
        price, budget, coins, _total = await self._gas_payment(sender, amount, len(outputs) + 1)
        builder = iota_sdk.TransactionBuilder(iota_sdk.Address.from_hex(sender)).pay_iota(
            [iota_sdk.Payment(recipient=iota_sdk.Address.from_hex(address), amount=iota_sdk.PtbArgument.u64(n))
             for address, n in outputs])
        return await self._execute(key, builder, [ref for _, ref in coins], price, budget)

    async def sweep(self, key, sender: str, to: str) -> str:
        price, budget, coins, _total = await self._gas_payment(sender, 0, 1)
        builder = iota_sdk.TransactionBuilder(iota_sdk.Address.from_hex(sender)).transfer_objects(
            iota_sdk.Address.from_hex(to), [iota_sdk.PtbArgument.gas()])
        return await self._execute(key, builder, [ref for _, ref in coins], price, budget)

    async def _execute(self, key, builder, gas_refs: list, price: int, budget: int) -> str:
        try:
            transaction = builder.gas(gas_refs).gas_price(price).gas_budget(budget).finish()
        except SDK_ERRORS as exc:
            raise LedgerUnavailable(f"could not build the transaction: {exc}") from None
        signature = key.sign_transaction(transaction)
        digest = transaction.digest().to_base58()
        try:
            try:
                effects = await self._node.call(self._node.client().execute_transaction([signature], transaction))
            except LedgerUnavailable:
                # The request may have reached the node: if the transaction exists, it is ours to wait for.
                if not await self._known(digest):
                    raise
                effects = None
            checkpoint = await self._wait_for_checkpoint(digest)
            failed = (not effects.as_v1().status().is_success() if effects is not None
                      else not (await self.transaction(digest))["success"])
            if failed:
                facts = await self.transaction(digest)
                raise TransferFailed(f"transaction {digest} (checkpoint {checkpoint}) failed on chain: "
                                     f"{facts['error']}; it paid {facts['gas_fee']} nanos of gas and moved nothing "
                                     "else",
                                     digest, facts["gas_fee"])
            return digest
        except LedgerUnavailable as exc:
            exc.digest = digest
            raise

    async def _known(self, digest: str) -> bool:
        try:
            data = await self._node.query(CHECKPOINT_QUERY, {"digest": digest})
        except (LedgerUnavailable, _BadAnswer):
            return False
        return data.get("transactionBlock") is not None

    async def _wait_for_checkpoint(self, digest: str) -> int:
        deadline = time.monotonic() + self.finality_timeout_s
        delay = POLL_INITIAL_S
        while True:
            data = await self._node.query(CHECKPOINT_QUERY, {"digest": digest})
            block = data.get("transactionBlock")
            if block is not None:
                checkpoint = _get(_get(block, "effects"), "checkpoint")
                if checkpoint is not None:
                    return _uint(_get(checkpoint, "sequenceNumber"), "checkpoint.sequenceNumber")
            left = deadline - time.monotonic()
            if left <= 0:
                state = "executed" if block is not None else "submitted"
                raise LedgerUnavailable(
                    f"IOTA node {self._node.url}: transaction {digest} was {state} but is not in a checkpoint after "
                    f"{self.finality_timeout_s:g} s; it may still become final: look it up before sending again")
            await asyncio.sleep(min(delay, left))
            delay = min(delay * 2, POLL_MAX_S)

    async def transaction(self, digest: str) -> dict:
        data = await self._node.query(TRANSACTION_QUERY, {"digest": digest, "first": PAGE_SIZE, "after": None})
        block = data.get("transactionBlock")
        if block is None:
            raise TransactionNotFound(f"IOTA node {self._node.url} knows no transaction {digest}")
        effects = _get(block, "effects")
        status = _status(effects, digest)
        sender = _get(block, "sender")
        checkpoint = _get(effects, "checkpoint")
        timestamp = _get(effects, "timestamp")
        gas = _get(effects, "gasEffects")
        summary = _get(gas, "gasSummary") if gas is not None else None
        gas_fee = None
        if summary is not None:
            gas_fee = (_bigint(_get(summary, "computationCost"), "computationCost")
                       + _bigint(_get(summary, "storageCost"), "storageCost")
                       - _bigint(_get(summary, "storageRebate"), "storageRebate"))
        changes: dict[str, int] = {}
        connection = _get(effects, "balanceChanges")
        cursor = None
        while True:
            for change in _list(connection, "nodes"):
                coin = _get(_get(change, "coinType"), "repr")
                if not isinstance(coin, str) or normalise_coin_type(coin) != IOTA_COIN:
                    continue
                owner = _owner(change, digest)
                changes[owner] = changes.get(owner, 0) + _bigint(_get(change, "amount"), "amount")
            more, cursor = _page_info(connection, cursor)
            if not more:
                break
            page = await self._node.query(TRANSACTION_QUERY, {"digest": digest, "first": PAGE_SIZE, "after": cursor})
            connection = _get(_get(_get(page, "transactionBlock"), "effects"), "balanceChanges")
        ms = _timestamp_ms(timestamp, digest) if timestamp is not None else None
        return {
            "digest": digest,
            "sender": normalise_address(_get(sender, "address")) if sender is not None else None,
            "checkpoint": _uint(_get(checkpoint, "sequenceNumber"), "checkpoint") if checkpoint is not None else None,
            "timestamp": ms // 1000 if ms is not None else None,
            "timestamp_ms": ms,
            "success": status == "SUCCESS",
            "error": _get(effects, "errors"),
            "changes": {address: amount for address, amount in changes.items() if amount},
            "gas_fee": gas_fee,
        }

