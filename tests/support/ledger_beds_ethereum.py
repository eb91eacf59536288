"""The Ethereum bed for the ledger conformance suite: a real EVM behind JSON-RPC on 127.0.0.1.

Two flavours: ether to the socket addresses ("ethereum"), and transfers of a test
ERC-20 with 6 decimals ("ethereum-erc20").
"""

from __future__ import annotations

from eth_utils import keccak, to_checksum_address

from ledgers.ethereum import EthereumLedger
from tests.support.evm_node import EvmNode, Token
from tests.support.ledger_beds import LedgerBed

# The well-known development phrase of Hardhat and Foundry: test funds only, never real money.
TEST_MNEMONIC = "test test test test test test test test test test test junk"


class EthereumBed(LedgerBed):
    CONFIRMATIONS = 3

    def __init__(self, erc20: bool = False):
        self.erc20 = erc20
        self.name = "ethereum-erc20" if erc20 else "ethereum"
        # 10**12 wei (a millionth of an ether) per token; 10**3 base units (a thousandth) of a 6-decimals token.
        self.units_per_token = 10**3 if erc20 else 10**12
        self.node = EvmNode()
        self.node.start()
        self.token: Token | None = self.node.deploy_token(decimals=6) if erc20 else None
        self.start_block = self.node.block_number + 1  # every payment the bed makes comes after this
        self._opened: list[EthereumLedger] = []

    def open(self, accounts: dict[str, int], **overrides: object) -> EthereumLedger:
        settings: dict[str, object] = {
            "chain_id": self.node.chain_id, "mnemonic": TEST_MNEMONIC, "accounts": accounts,
            "confirmations": self.CONFIRMATIONS, "token": self.token.address if self.token else None,
            "token_value": self.units_per_token, "start_block": self.start_block, "timeout_s": 5.0,
            **overrides}
        ledger = EthereumLedger.connect(self.node.rpc_url, **settings)  # type: ignore[arg-type]
        funded = {a.lower() for a in self.node.accounts}
        assert not any(ledger.address_for(s).lower() in funded for s in accounts), \
            "a socket address is a funded test account"
        self._opened.append(ledger)
        return ledger

    def pay(self, address: str, units: int) -> None:
        if self.token is None:
            self.node.send_value(address, units)
        else:
            self.node.token_transfer(self.token, address, units)

    def pay_many(self, payments: list[tuple[str, int]]) -> None:
        if self.token is None:
            self.node.send_values(payments)
        else:
            self.node.token_transfers(self.token, payments)

    def finalize(self) -> None:
        # The newest payment has one confirmation (its own block): this many more make it final.
        self.node.mine(self.CONFIRMATIONS - 1)

    def foreign_address(self) -> str:
        return to_checksum_address(keccak(b"payg: nobody's address")[-20:])

    def break_node(self) -> None:
        self.node.stop()

    def heal_node(self) -> None:
        self.node.start()

    def close(self) -> None:
        for ledger in self._opened:
            ledger.close()
        self.node.stop()

