"""The Vyper contracts of the Ethereum backend (market.vy, channels.vy), compiled in-process.

The `vyper` package (a dev/ethereum dependency) is imported only when a contract is compiled,
so that importing this package costs nothing on a controller that never deploys.

With PAYG_CONTRACT_CACHE set to a directory, compiled contracts are also kept there, one JSON file per
compiler version, EVM version and source hash, so that other processes compile each one once: the
test workers set it (each compile takes a second or more of CPU, and every worker deployed all of them).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import threading
from pathlib import Path

CONTRACTS_DIR = Path(__file__).resolve().parent
CONTRACT_NAMES = ("market", "channels")
# prague: the default (PUSH0, transient storage for @nonreentrant, MCOPY); paris: chains without
# PUSH0 or transient storage (the reentrancy lock then lives in storage and costs more gas).
EVM_VERSIONS = ("prague", "cancun", "shanghai", "paris")
DEFAULT_EVM_VERSION = "prague"

CACHE_ENV = "PAYG_CONTRACT_CACHE"  # a directory: compiled contracts shared between processes (see the module doc)

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
    return compile_source(source_of(name), f"{name}.vy", evm_version)


def compile_source(source: str, contract_path: str, evm_version: str | None = None) -> tuple[list, str]:
    """(ABI, deployment bytecode) of a Vyper source; `evm_version` None: the compiler's default."""
    key = (contract_path, evm_version or "", hashlib.sha256(source.encode()).hexdigest())
    with _lock:
        if key not in _cache:
            cache_dir = os.environ.get(CACHE_ENV)
            _cache[key] = (_compile(source, contract_path, evm_version) if not cache_dir
                           else _compile_shared(Path(cache_dir), key, source, contract_path, evm_version))
        abi, bytecode = _cache[key]
    return list(abi), bytecode


def _compile(source: str, contract_path: str, evm_version: str | None) -> tuple[list, str]:
    try:
        from vyper.compiler import compile_code
        from vyper.compiler.settings import Settings
    except ImportError as exc:
        raise RuntimeError("compiling the payg contracts needs the `vyper` package (pip install"
                           " 'vyper==0.4.3', part of payg's dev dependencies)") from exc
    out = compile_code(source, contract_path=contract_path, output_formats=["abi", "bytecode"],
                       settings=Settings(evm_version=evm_version) if evm_version else None)
    return out["abi"], out["bytecode"]


def _compile_shared(cache_dir: Path, key: tuple[str, str, str], source: str, contract_path: str,
                    evm_version: str | None) -> tuple[list, str]:
    """Compiled once across processes: the first takes the key's lock and compiles, the others wait and read."""
    from importlib.metadata import version  # not `import vyper`: a kept contract needs no compiler loaded

    vyper_version = version("vyper")
    cache_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{Path(contract_path).stem}-{evm_version or 'default'}-vyper{vyper_version}-{key[2][:16]}"
    path = cache_dir / f"{stem}.json"
    with open(cache_dir / f"{stem}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if path.is_file():
            kept = json.loads(path.read_text())
            return kept["abi"], kept["bytecode"]
        abi, bytecode = _compile(source, contract_path, evm_version)
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        partial.write_text(json.dumps({"abi": abi, "bytecode": bytecode}))
        partial.replace(path)
        return abi, bytecode
