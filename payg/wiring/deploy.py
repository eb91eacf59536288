"""`payg deploy`: the trade contracts deployed from the owner socket's account (the CLI's wiring)."""

from __future__ import annotations

from payg.domain.settings import Config, EthereumLedgerConfig
from payg.errors import DeployFailed


def deploy_contracts(config: Config, owner_index: int):
    from payg.adapters.secrets import read_secret

    try:
        from ledgers.ethereum import WrongChain, deploy_as_owner
    except ImportError as exc:
        raise DeployFailed(f"deploying needs the ethereum extra and vyper (pip install 'payg[ethereum]' vyper):"
                           f" {exc}") from None
    c, tc = config.ledger, config.trade
    if not isinstance(c, EthereumLedgerConfig):
        raise DeployFailed(f"deploying needs the ethereum backend, not {c.backend}")
    if c.mnemonic is None:  # a watch-only controller (xpub) holds no key to deploy from
        raise DeployFailed("deploying needs the mnemonic ([ledger] mnemonic_env or mnemonic_file): a watch-only "
                           "controller (xpub) cannot sign; deploy from a machine that holds the phrase")
    mnemonic = read_secret(c.mnemonic, str(config.path))
    try:
        return deploy_as_owner(c.rpc_url, timeout_s=c.request_timeout_s, chain_id=c.chain_id, mnemonic=mnemonic,
                               owner_index=owner_index, capacity_wh=tc.capacity_wh, tax_bps=tc.tax_bps,
                               evm_version=tc.evm_version)
    except WrongChain as exc:
        raise DeployFailed(f"the node at ledger.rpc_url serves chain {exc.served}, not {exc.configured}") from None
    except Exception as exc:  # node, key or compiler trouble: say which, without a traceback
        raise DeployFailed(f"deployment failed: {type(exc).__name__}: {exc}") from None
