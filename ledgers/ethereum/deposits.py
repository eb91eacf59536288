"""EthereumLedger: top-ups to per-socket addresses on an EVM chain, read over JSON-RPC with web3.py.

Addresses. Each socket has its own address, derived from the controller's BIP-39
mnemonic at m/44'/60'/0'/0/<index>, or (watch-only) from the account's extended public
key (xpub of m/44'/60'/0') to the very same addresses. The controller only watches the
chain and never signs: the mnemonic is used once to derive the addresses and is not kept;
with the xpub, no key that can spend is ever on the device. Whoever holds the phrase can
move the money paid in, with any wallet.

Deposits. Without `token`, a deposit is a transaction that sends ether (value > 0)
to a socket address and succeeded (receipt status 1). Ether moved to a socket
by a contract's internal call (a Safe wallet, an exchange's batch withdrawal) is NOT
credited: it is no transaction's `to`/`value`. A balance check finds it: with
`check_balances` (on by default), each poll that reads new blocks compares every
socket address's balance at the last block read with its balance at the block before
the first one, less the deposits, plus what the address itself sent (value and fee,
from its own transactions in those blocks). What is left is handed over as an
`unexplained` Deposit, which the watcher books as an alarm, never as a credit: the
landlord view shows it, and the landlord refunds or credits by hand. Cost: one
JSON-RPC batch of one eth_getBalance per socket per poll that reads new blocks (two
after a restart, when the earlier balance is read too; a node that no longer holds
that block's state skips the check for that poll, with a log line), and a receipt per
transaction a socket address sent.
With `token`, a deposit is a Transfer event of that
ERC-20 contract to a socket address, and ether sent to a socket is not credited
(it stays at the address, recoverable with the mnemonic). Payments to other
addresses are ignored.

Finality. A transaction in block B has head - B + 1 confirmations; it is final
with `confirmations` of them, and only final blocks are read. The cursor is
"<block number>:<block hash>" of the last block read. Every call first checks that
this block is still in the chain: if not, the chain was reorganised deeper than
`confirmations`, LedgerReorganised is raised and nothing more is credited until an
operator has looked. A deposit id (chain id, transaction hash, position in the
transaction) survives the re-mining of its transaction in another block, so
reading a block range again never credits a payment twice.

First start. Without a cursor, reading starts at `start_block` if given, else at
the final head at that moment: anything paid before it is never found, so set
`start_block` to the block before the addresses were first shown to tenants.

Trust. The node (yours or a provider's) is trusted to report the chain honestly;
the controller checks the chain id, the parent links of the blocks it reads and
the receipts, but verifies no proofs. Use a node you trust for the money involved.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass

import requests
from web3 import Web3
from web3.exceptions import Web3RPCError
from web3.types import BlockData, FilterParams, LogReceipt, TxReceipt

from ledgers.common import AddressBook, payment_units
from ledgers.ethereum.keys import derive_addresses, derive_addresses_from_xpub
from ledgers.ethereum.node import Node, OverHttp, as_hex, cause, contract_address, require_int
from payg.errors import LedgerReorganised, LedgerUnavailable
from payg.ports import Deposit

log = logging.getLogger("payg.ledgers.ethereum")

TRANSFER_TOPIC = Web3.keccak(text="Transfer(address,address,uint256)").to_0x_hex()


@dataclass(frozen=True)
class BlockRef:
    number: int
    hash: str  # 0x-prefixed, lower case

    def cursor(self) -> str:
        return f"{self.number}:{self.hash}"


class ChainChanged(LedgerUnavailable):
    """The chain changed while it was being read (a reorganisation during the poll); read again next poll."""


class EthereumLedger(AddressBook, OverHttp):
    name = "ethereum"

    def __init__(self, w3: Web3, *, chain_id: int, mnemonic: str | None = None, xpub: str | None = None,
                 accounts: Mapping[str, int], confirmations: int, token: str | None = None, token_value: int = 1,
                 start_block: int | None = None,
                 max_blocks_per_poll: int = 500, log_chunk_blocks: int = 2000, endpoint: str = "",
                 check_balances: bool = True):
        """Builds the ledger without contacting the node: the controller must start while the node is down.
        `EthereumLedger.connect(rpc_url, timeout_s=..., **these)` builds it on an HTTP endpoint."""
        require_int("chain_id", chain_id, minimum=1)
        require_int("confirmations", confirmations, minimum=1)
        require_int("token_value", token_value, minimum=1)
        require_int("max_blocks_per_poll", max_blocks_per_poll, minimum=1)
        require_int("log_chunk_blocks", log_chunk_blocks, minimum=1)
        if start_block is not None:
            require_int("start_block", start_block, minimum=0)
        self.w3 = w3
        self.chain_id = chain_id
        self.confirmations = confirmations
        self.token = contract_address("token", token) if token is not None else None
        self.units_per_token = token_value  # wei (or token base units) per payg token
        self.start_block = start_block
        self.max_blocks_per_poll = max_blocks_per_poll
        self.log_chunk_blocks = log_chunk_blocks
        self._node = Node(w3, chain_id, endpoint)
        self.endpoint = self._node.endpoint
        if (mnemonic is None) == (xpub is None):
            raise ValueError("exactly one of mnemonic or xpub: the top-up addresses derive from one of them")
        addresses = (derive_addresses(mnemonic, accounts) if mnemonic is not None
                     else derive_addresses_from_xpub(xpub, accounts))  # type: ignore[arg-type]
        super().__init__(addresses, key=str.lower)
        self._floating_start: int | None = None
        self.check_balances = bool(check_balances) and self.token is None
        self._balances: tuple[str, dict[str, int]] | None = None  # (block hash, {address: wei}) at the last read

    def close(self) -> None:
        self._close_session()

    def payment_uri(self, socket_id: str, amount: int | None) -> str:
        """An EIP-681 URI: ether to the socket's address, or a transfer call on the token contract."""
        address = self.address_for(socket_id)
        units = None if amount is None else payment_units(amount, self.units_per_token)
        if self.token is None:
            uri = f"ethereum:{address}@{self.chain_id}"
            return uri if units is None else f"{uri}?value={units}"
        uri = f"ethereum:{self.token}@{self.chain_id}/transfer?address={address}"
        return uri if units is None else f"{uri}&uint256={units}"

    def deposits_since(self, cursor: str | None) -> tuple[list[Deposit], str | None]:
        after = _parse_cursor(cursor) if cursor is not None else None
        with self._node.errors():
            self._node.check_chain_id()
            head = self.w3.eth.block_number
            if after is not None:
                self._check_in_chain(after, head)
            final_head = head - self.confirmations + 1
            if after is not None:
                first = after.number + 1
            elif self.start_block is not None:
                first = self.start_block
            else:
                # Pinned at the first call: until a final block gives a cursor (a young chain, or a
                # node that has not seen `confirmations` blocks yet), the start must not float upwards
                # past payments made in the meantime.
                if self._floating_start is None:
                    self._floating_start = max(final_head, 0)
                first = self._floating_start
            last = min(final_head, first + self.max_blocks_per_poll - 1)
            if last < first:
                return [], cursor
            if self.token is None:
                deposits, end = self._read_native(first, last, after)
            else:
                deposits, end = self._read_token(first, last, after, head)
        return deposits, end.cursor()

    def _check_in_chain(self, ref: BlockRef, head: int) -> None:
        if ref.number > head:
            raise LedgerUnavailable(
                f"Ethereum node {self.endpoint} is at block {head}, behind the deposit cursor at block {ref.number}:"
                " it is still syncing, or it is not the node the cursor was read from")
        current = as_hex(self.w3.eth.get_block(ref.number)["hash"])
        if current != ref.hash:
            raise LedgerReorganised(
                f"chain {self.chain_id} was reorganised deeper than the {self.confirmations} confirmations configured:"
                f" block {ref.number} was {ref.hash} when the deposits up to it were credited, and is now {current}."
                f" Nothing more is credited from this ledger. An operator should check the deposits credited from"
                f" blocks up to {ref.number} against the chain (a block explorer), correct balances by hand if a"
                f" payment vanished, set the deposit cursor to a block of the current chain"
                f" with the controller stopped (payg cursor --set '<number>:<hash>'), and consider more confirmations")

    def _read_native(self, first: int, last: int, after: BlockRef | None) -> tuple[list[Deposit], BlockRef]:
        deposits: list[Deposit] = []
        sent: dict[str, int] = {}  # socket id -> wei its address paid out in these blocks (value and fee)
        parent = after.hash if after is not None else None
        before = after  # the block before the first one read, where the balance check starts
        if self.check_balances and before is None and first > 0:
            before = BlockRef(first - 1, as_hex(self.w3.eth.get_block(first - 1)["hash"]))
        for number in range(first, last + 1):
            block = self.w3.eth.get_block(number, full_transactions=True)
            block_hash = as_hex(block["hash"])
            if parent is not None and as_hex(block["parentHash"]) != parent:
                raise self._changed(f"block {number}")
            for tx in block["transactions"]:
                if isinstance(tx, bytes):  # a hash: the node ignored full_transactions
                    raise LedgerUnavailable(f"Ethereum node {self.endpoint}: block {number} came without its "
                                            "transactions")
                sender = self.socket_at(tx["from"]) if self.check_balances else None
                if sender is not None:
                    receipt = self.w3.eth.get_transaction_receipt(tx["hash"])
                    self._check_same_block(receipt, block_hash, number)
                    paid = receipt["gasUsed"] * receipt["effectiveGasPrice"] + _blob_fee(receipt)
                    sent[sender] = sent.get(sender, 0) + paid + (int(tx["value"]) if receipt["status"] == 1 else 0)
                socket_id = self.socket_at(tx["to"] or "")
                if socket_id is None or tx["value"] <= 0:
                    continue
                receipt = self.w3.eth.get_transaction_receipt(tx["hash"])
                self._check_same_block(receipt, block_hash, number)
                if receipt["status"] != 1:
                    log.info("transaction %s to socket %s failed: not a deposit", as_hex(tx["hash"]), socket_id)
                    continue
                deposits.append(Deposit(f"{self.chain_id}:{as_hex(tx['hash'])}:value", socket_id, int(tx["value"]),
                                        float(block["timestamp"])))
            parent = block_hash
        assert parent is not None
        if self.check_balances:
            deposits += self._unexplained(first, last, before, BlockRef(last, parent), deposits, sent,
                                          float(block["timestamp"]))
        return deposits, BlockRef(last, parent)

    def _unexplained(self, first: int, last: int, before: BlockRef | None, end: BlockRef, deposits: list[Deposit],
                     sent: dict[str, int], at: float) -> list[Deposit]:
        """What arrived at (or left) each socket address in blocks first..last that no transaction explains."""
        addresses = {socket_id: self.address_for(socket_id) for socket_id in self.socket_ids()}
        now = self._balances_at(end, addresses.values())
        known = self._balances
        self._balances = (end.hash, now)
        if before is None:
            return []
        if known is None or known[0] != before.hash:
            try:
                known = (before.hash, self._balances_at(before, addresses.values()))
            except Web3RPCError as exc:  # a node without the state of older blocks (not an archive node)
                log.info("balances at block %d not available (%s): no balance check for blocks %d..%d",
                         before.number, cause(exc), first, last)
                return []
        found = []
        for socket_id, address in addresses.items():
            paid_in = sum(d.amount for d in deposits if d.socket_id == socket_id)
            left = now[address] - known[1][address] - paid_in + sent.get(socket_id, 0)
            if left != 0:
                log.warning("%d wei at %s (socket %s) in blocks %d..%d that no transaction explains: not credited",
                            left, address, socket_id, first, last)
                found.append(Deposit(f"{self.chain_id}:{first}-{last}:{address.lower()}:balance", socket_id, left,
                                     at, unexplained=True))
        return found

    def _balances_at(self, block: BlockRef, addresses) -> dict[str, int]:
        """Each address's balance at one block, in one batch with the block itself, which must still be `block`
        (balances are asked by number, as every node takes them; the hash says it is the chain the blocks were
        read from)."""
        listed = list(addresses)
        with self.w3.batch_requests() as batch:
            batch.add(self.w3.eth.get_block(block.number))
            for address in listed:
                batch.add(self.w3.eth.get_balance(address, block_identifier=block.number))
            header, *answers = batch.execute()
        if as_hex(header.get("hash")) != block.hash:
            raise self._changed(f"the balances at block {block.number}")
        return {address: _wei(answer) for address, answer in zip(listed, answers, strict=True)}

    def _read_token(self, first: int, last: int, after: BlockRef | None,
                    head: int) -> tuple[list[Deposit], BlockRef]:
        end = BlockRef(last, as_hex(self.w3.eth.get_block(last)["hash"]))
        headers: dict[int, BlockData] = {}
        receipts: dict[str, TxReceipt] = {}
        deposits: list[tuple[tuple[int, int, int], Deposit]] = []
        for entry in self._transfer_logs(first, last):
            found = self._token_deposit(entry, headers, receipts)
            if found is not None:
                deposits.append(found)
        # The logs, the block headers and the end block must come from one chain: check that
        # the two ends did not move while the logs were read.
        if after is not None:
            self._check_in_chain(after, head)
        if as_hex(self.w3.eth.get_block(last)["hash"]) != end.hash:
            raise self._changed(f"blocks {first}..{last}")
        deposits.sort(key=lambda item: item[0])
        return [deposit for _, deposit in deposits], end

    def _token_deposit(self, entry: LogReceipt, headers: dict[int, BlockData],
                       receipts: dict[str, TxReceipt]) -> tuple[tuple[int, int, int], Deposit] | None:
        topics, data = entry["topics"], bytes(entry["data"])
        tx_hash = as_hex(entry["transactionHash"])
        if entry.get("removed") or len(topics) != 3 or len(data) != 32:
            log.warning("ignored a Transfer event of %s in %s that is not an ERC-20 transfer", self.token, tx_hash)
            return None
        socket_id = self.socket_at("0x" + bytes(topics[2])[-20:].hex())
        amount = int.from_bytes(data, "big")
        if socket_id is None or amount == 0:
            return None
        number, block_hash = int(entry["blockNumber"]), as_hex(entry["blockHash"])
        if number not in headers:
            headers[number] = self.w3.eth.get_block(number)
        if as_hex(headers[number]["hash"]) != block_hash:
            raise self._changed(f"block {number}")
        if tx_hash not in receipts:
            receipts[tx_hash] = self.w3.eth.get_transaction_receipt(tx_hash)
        receipt = receipts[tx_hash]
        self._check_same_block(receipt, block_hash, number)
        if receipt["status"] != 1:
            return None
        # Real nodes number logIndex within the block, eth-tester within the transaction: the
        # position in the receipt is the same everywhere and survives re-mining in another block.
        position = next((i for i, e in enumerate(receipt["logs"]) if e["logIndex"] == entry["logIndex"]), None)
        if position is None:
            raise self._changed(f"the receipt of {tx_hash} (it lacks log {entry['logIndex']} of eth_getLogs)")
        deposit = Deposit(f"{self.chain_id}:{tx_hash}:log{position}", socket_id, amount,
                          float(headers[number]["timestamp"]))
        return (number, int(entry["transactionIndex"]), position), deposit

    def _transfer_logs(self, first: int, last: int) -> list[LogReceipt]:
        """Transfer events to the sockets in [first, last], in chunks that halve while the node refuses them."""
        recipients = ["0x" + "00" * 12 + address[2:].lower() for address in self.addresses()]
        logs: list[LogReceipt] = []
        chunk = self.log_chunk_blocks
        start = first
        while start <= last:
            stop = min(last, start + chunk - 1)
            query: FilterParams = {"fromBlock": start, "toBlock": stop, "address": self.token,  # type: ignore
                                   "topics": [TRANSFER_TOPIC, None, recipients]}
            try:
                logs.extend(self.w3.eth.get_logs(query))
            except (Web3RPCError, requests.HTTPError) as exc:
                if stop == start:
                    raise self._node.unavailable(f"eth_getLogs failed even for the single block {start}:"
                                                 f" {cause(exc)}") from exc
                chunk = max(1, (stop - start + 1) // 2)
                log.info("eth_getLogs refused blocks %d..%d (%s); trying %d blocks at a time",
                         start, stop, cause(exc), chunk)
                continue
            start = stop + 1
        return logs

    def _check_same_block(self, receipt: TxReceipt, block_hash: str, number: int) -> None:
        if as_hex(receipt["blockHash"]) != block_hash:
            raise self._changed(f"block {number}")

    def _changed(self, what: str) -> ChainChanged:
        return ChainChanged(f"Ethereum chain {self.chain_id} changed while {what} was read from {self.endpoint};"
                            " it is read again at the next poll")


def _wei(balance: object) -> int:
    if not isinstance(balance, int) or isinstance(balance, bool):
        raise LedgerUnavailable(f"a balance that is not a whole number of wei: {balance!r}")
    return balance


def _blob_fee(receipt: Mapping[str, object]) -> int:
    """What a transaction paid for its blobs (EIP-4844; none but a blob transaction's receipt has the fields)."""
    used, price = receipt.get("blobGasUsed") or 0, receipt.get("blobGasPrice") or 0
    if not isinstance(used, (int, str)) or not isinstance(price, (int, str)):
        raise LedgerUnavailable(f"a receipt's blob gas is not a number: {used!r} at {price!r}")
    return int(used) * int(price)


def _parse_cursor(cursor: str) -> BlockRef:
    match = re.fullmatch(r"(\d+):(0x[0-9a-fA-F]{64})", cursor) if isinstance(cursor, str) else None
    if match is None:
        raise LedgerUnavailable(f"the stored Ethereum deposit cursor {cursor!r} is not '<block number>:<block hash>';"
                                " an operator should set it to a block of the chain (or clear it to start afresh)")
    return BlockRef(int(match.group(1)), match.group(2).lower())
