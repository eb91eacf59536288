"""The Vyper contracts of the Ethereum backend (market.vy, channels.vy), compiled in-process.

The `vyper` package (a dev/ethereum dependency) is imported only when a contract is compiled,
so that importing this package costs nothing on a controller that never deploys.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

CONTRACTS_DIR = Path(__file__).resolve().parent
CONTRACT_NAMES = ("market", "channels")
# prague: the default (PUSH0, transient storage for @nonreentrant, MCOPY); paris: chains without
# PUSH0 or transient storage (the reentrancy lock then lives in storage and costs more gas).
EVM_VERSIONS = ("prague", "cancun", "shanghai", "paris")
DEFAULT_EVM_VERSION = "prague"

_cache: dict[tuple[str, str, str], tuple[list, str]] = {}
_lock = threading.Lock()


def source_of(name: str) -> str:
    if name not in CONTRACT_NAMES:
        raise ValueError(f"unknown contract {name!r}: the contracts are {', '.join(CONTRACT_NAMES)}")
    return (CONTRACTS_DIR / f"{name}.vy").read_text()


def compile_contract(name: str, evm_version: str = DEFAULT_EVM_VERSION) -> tuple[list, str]:
    """(ABI, deployment bytecode as 0x hex) of ledgers/ethereum/contracts/<name>.vy for `evm_version`.

    Cached per (name, evm_version, source hash): an edited source is compiled again.
    """
    if evm_version not in EVM_VERSIONS:
        raise ValueError(f"unknown or unsupported EVM version {evm_version!r}: expected one of"
                         f" {', '.join(EVM_VERSIONS)} ({DEFAULT_EVM_VERSION} by default; paris for chains"
                         " without PUSH0)")
    source = source_of(name)
    key = (name, evm_version, hashlib.sha256(source.encode()).hexdigest())
    with _lock:
        if key not in _cache:
            try:
                from vyper.compiler import compile_code
                from vyper.compiler.settings import Settings
            except ImportError as exc:
                raise RuntimeError("compiling the payg contracts needs the `vyper` package (pip install"
                                   " 'vyper==0.4.3', part of payg's dev dependencies)") from exc
            out = compile_code(source, contract_path=f"{name}.vy", output_formats=["abi", "bytecode"],
                               settings=Settings(evm_version=evm_version))
            _cache[key] = (out["abi"], out["bytecode"])
        abi, bytecode = _cache[key]
    return list(abi), bytecode
