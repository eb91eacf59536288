"""`payg xpub`: the account's extended public key (m/44'/60'/0') from the mnemonic, on the machine that may
hold the mnemonic (not the controller), so that a watch-only controller needs only this xpub ([ledger] xpub).
Composition layer: the CLI may not import the Ethereum adapter, it asks its Wiring, which calls this."""

from __future__ import annotations

from payg.adapters.secrets import read_secret
from payg.domain.settings import SecretRef
from payg.errors import ConfigError


def account_xpub(ref: SecretRef) -> str:
    """The xpub of m/44'/60'/0' for the mnemonic `ref` names (no passphrase, as the controller derives).
    Raises ConfigError when the secret is missing or not a BIP-39 phrase; the phrase is never quoted."""
    try:
        from eth_account.hdaccount import seed_from_mnemonic

        from ledgers.ethereum.bip32 import account_xpub as derive
    except ImportError as exc:
        raise ConfigError("payg xpub", ref.key, f"the Ethereum packages (pip install 'payg[ethereum]'; {exc})") \
            from None
    phrase = " ".join(read_secret(ref, "payg xpub").split())
    try:
        seed = seed_from_mnemonic(phrase, "")
    except Exception:  # eth_utils.ValidationError and ValueError; their messages quote the phrase
        raise ConfigError("payg xpub", ref.key, "a valid BIP-39 phrase (unknown word, wrong number of words or"
                          " bad checksum)") from None
    return derive(seed).serialize()
