"""The controller's Ethereum keys, derived from its BIP-39 mnemonic at m/44'/60'/0'/<branch>/<index>.

Branch 0 holds the sockets' top-up addresses (EthereumLedger only watches them, it never signs; a
watch-only controller derives them from the account's xpub instead, `derive_addresses_from_xpub`);
branch 1 their trade keys (EthereumTrade signs with them), so that trade money is never mistaken for
a tenant's deposit. The phrase is never put in a message.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from eth_account import Account
from eth_utils import ValidationError

MAX_DERIVATION_INDEX = 2**31 - 1  # non-hardened BIP-32 child indexes
TOP_UP_BRANCH = 0
TRADE_BRANCH = 1


def derive_accounts(mnemonic: str, accounts: Mapping[str, int], branch: int) -> dict[str, Any]:
    """Socket id -> its key at m/44'/60'/0'/<branch>/<index>."""
    if not isinstance(mnemonic, str) or not mnemonic.strip():
        raise ValueError("mnemonic is empty: the controller needs the BIP-39 phrase its keys derive from")
    sockets_by_index = _indexes(accounts)
    Account.enable_unaudited_hdwallet_features()
    phrase = " ".join(mnemonic.split())
    keys = {}
    for index, socket_id in sorted(sockets_by_index.items()):
        try:
            keys[socket_id] = Account.from_mnemonic(phrase, account_path=f"m/44'/60'/0'/{branch}/{index}")
        except (ValidationError, ValueError):
            # The library's message quotes the phrase; this one must not.
            raise ValueError("mnemonic is not a valid BIP-39 phrase (unknown word, wrong number of words or"
                             " bad checksum)") from None
    return keys


def _indexes(accounts: Mapping[str, int]) -> dict[int, str]:
    """Derivation index -> socket id, checked: two sockets never share an address."""
    if not isinstance(accounts, Mapping) or not accounts:
        raise ValueError("accounts must map each socket id to a derivation index, and name at least one socket")
    sockets_by_index: dict[int, str] = {}
    for socket_id, index in accounts.items():
        if not isinstance(socket_id, str) or not socket_id:
            raise ValueError(f"accounts: socket ids are non-empty strings, got {socket_id!r}")
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index <= MAX_DERIVATION_INDEX:
            raise ValueError(f"accounts: socket {socket_id!r} has derivation index {index!r};"
                             f" expected an integer from 0 to {MAX_DERIVATION_INDEX}")
        if index in sockets_by_index:
            raise ValueError(f"accounts: sockets {sockets_by_index[index]!r} and {socket_id!r} share derivation"
                             f" index {index}, so they would share an address")
        sockets_by_index[index] = socket_id
    return sockets_by_index


def derive_addresses(mnemonic: str, accounts: Mapping[str, int]) -> dict[str, str]:
    """Socket id -> checksummed top-up address at m/44'/60'/0'/0/<index>."""
    return {socket_id: key.address for socket_id, key in derive_accounts(mnemonic, accounts, TOP_UP_BRANCH).items()}


def derive_addresses_from_xpub(xpub: str, accounts: Mapping[str, int]) -> dict[str, str]:
    """Socket id -> the same top-up address as `derive_addresses`, from the account's extended public key
    (m/44'/60'/0', as `payg xpub` prints it): child 0 (the top-up branch), then child <index>. A watch-only
    controller holds no key that can spend; a wrong xpub (another account) gives other addresses, which no
    check here can see: compare `payg address` with the wallet before showing an address to tenants."""
    from ledgers.ethereum.bip32 import XpubError, parse_xpub  # coincurve: only a watch-only controller needs it

    try:
        branch = parse_xpub(xpub, depth=3).child(TOP_UP_BRANCH)
    except XpubError as exc:
        raise ValueError(f"xpub is not the extended public key of an account (m/44'/60'/0'): {exc}") from None
    return {socket_id: branch.child(index).address() for index, socket_id in sorted(_indexes(accounts).items())}


def derive_trade_keys(mnemonic: str, accounts: Mapping[str, int]) -> dict[str, Any]:
    """Socket id -> its trade key at m/44'/60'/0'/1/<index>, never its top-up key (branch 0)."""
    return derive_accounts(mnemonic, accounts, TRADE_BRANCH)
