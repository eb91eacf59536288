"""Deploying the market and the channel manager (`payg trade deploy`).

The market's owner is the deployer: the owner socket's trade key (m/44'/60'/0'/1/<index>), which must
hold ether for the gas. Compiling needs the `vyper` package, imported only here.
"""

from __future__ import annotations

from dataclasses import dataclass

from eth_account import Account
from web3 import Web3
from web3.exceptions import Web3RPCError

from ledgers.ethereum.contracts import DEFAULT_EVM_VERSION, compile_contract
from ledgers.ethereum.keys import derive_trade_keys
from ledgers.ethereum.node import REFUSED_FOR_FUNDS, Node, http_web3, require_int, rpc_message
from payg.errors import InsufficientFunds


@dataclass(frozen=True)
class Deployment:
    deployer: str  # the market's owner
    market: str
    channels: str


def deploy_contracts(w3: Web3, deployer_private_key: bytes | str, *, capacity_wh: int, tax_bps: int,
                     evm_version: str = DEFAULT_EVM_VERSION, gas_limit: int = 3_000_000,
                     priority_fee_wei: int | None = None) -> tuple[str, str]:
    """Compiles and deploys the market (owner: the deployer) and the channel manager; their addresses.

    Each deployment waits for its receipt and must succeed.
    """
    contracts = _compiled(capacity_wh, tax_bps, evm_version)
    return _deploy(w3, deployer_private_key, contracts, gas_limit=gas_limit, priority_fee_wei=priority_fee_wei)


def deploy_as_owner(rpc_url: str, *, timeout_s: float, chain_id: int, mnemonic: str, owner_index: int,
                    capacity_wh: int, tax_bps: int, evm_version: str = DEFAULT_EVM_VERSION) -> Deployment:
    """Deploys both contracts with the trade key at m/44'/60'/0'/1/<owner_index> through the node at `rpc_url`.

    ValueError for a bad phrase or setting; RuntimeError if the compiler is missing or a deployment
    reverts; InsufficientFunds if the deployer cannot pay the gas; WrongChain if the node serves another
    chain; LedgerUnavailable for any other node trouble.
    """
    key = derive_trade_keys(mnemonic, {"owner": owner_index})["owner"]
    contracts = _compiled(capacity_wh, tax_bps, evm_version)  # a bad setting or compiler is not the node's fault
    w3, session = http_web3(rpc_url, timeout_s)
    try:
        node = Node(w3, chain_id, rpc_url)
        with node.errors():
            node.check_chain_id()
            try:
                market, channels = _deploy(w3, key.key, contracts)
            except Web3RPCError as exc:
                if not REFUSED_FOR_FUNDS.search(rpc_message(exc)):
                    raise
                raise InsufficientFunds(f"the deployer {key.address} cannot pay the gas: send it ether first") from None
    finally:
        session.close()
    return Deployment(key.address, market, channels)


def _compiled(capacity_wh: int, tax_bps: int, evm_version: str) -> list[tuple[str, list, str, tuple]]:
    """(name, ABI, bytecode, constructor arguments) of the market and the channel manager."""
    require_int("capacity_wh", capacity_wh, minimum=1)
    require_int("tax_bps", tax_bps, minimum=0)
    return [(name, *compile_contract(name, evm_version), args)
            for name, args in (("market", (capacity_wh, tax_bps)), ("channels", ()))]


def _deploy(w3: Web3, deployer_private_key: bytes | str, contracts: list[tuple[str, list, str, tuple]], *,
            gas_limit: int = 3_000_000, priority_fee_wei: int | None = None) -> tuple[str, str]:
    deployer = Account.from_key(deployer_private_key)
    chain_id = w3.eth.chain_id
    addresses = []
    for name, abi, bytecode, args in contracts:
        block = w3.eth.get_block("latest")
        tip = priority_fee_wei if priority_fee_wei is not None else int(w3.eth.max_priority_fee)
        tx = w3.eth.contract(abi=abi, bytecode=bytecode).constructor(*args).build_transaction({
            "from": deployer.address, "nonce": w3.eth.get_transaction_count(deployer.address, "pending"),
            "chainId": chain_id, "gas": gas_limit, "maxPriorityFeePerGas": tip,
            "maxFeePerGas": 2 * int(block.get("baseFeePerGas", 0) or 0) + tip})
        signed = deployer.sign_transaction(tx)
        receipt = w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(signed.raw_transaction))
        deployed = receipt.get("contractAddress")
        if receipt["status"] != 1 or not deployed:
            raise RuntimeError(f"deploying {name}.vy failed (transaction {receipt['transactionHash'].hex()}):"
                               " check the constructor arguments (capacity 1000..1000000 Wh, tax at most 10000 bps)"
                               " and the EVM version the chain supports")
        addresses.append(Web3.to_checksum_address(deployed))
    market, channels = addresses
    return market, channels
