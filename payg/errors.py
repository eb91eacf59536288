"""Domain error types. Adapters translate library errors into these."""


class PaygError(Exception):
    """Base class for every error payg raises on purpose."""


class ConfigError(PaygError):
    """A configuration file is invalid. The message names the file, the key and what was expected."""

    def __init__(self, file: str, key: str, expected: str, got: object = None, *, has_got: bool = False):
        self.file = file
        self.key = key
        self.expected = expected
        detail = f"{file}: {key}: expected {expected}"
        if has_got:
            detail += f", got {got!r}"
        super().__init__(detail)


class MeterUnavailable(PaygError):
    """A meter could not be read. Never answered with an old value."""


class MeterTimeout(MeterUnavailable):
    """Nothing answered within the timeout (a silent or absent slave)."""


class PortUnavailable(MeterUnavailable):
    """The serial port itself failed (unplugged adapter, no permission): no meter on it can answer."""


class RelayError(PaygError):
    """A relay could not be switched."""


class LedgerUnavailable(PaygError):
    """The ledger (node, RPC endpoint, local ledger file) could not be reached or answered badly."""


class LedgerReorganised(LedgerUnavailable):
    """The chain no longer contains the block the deposit cursor points at: a reorganisation deeper
    than the configured confirmations. Nothing is credited until an operator has looked."""


class UnknownSocket(PaygError):
    """A socket id that is not configured."""

    def __init__(self, socket_id: str):
        self.socket_id = socket_id
        super().__init__(f"unknown socket {socket_id!r}")


class InvalidAmount(PaygError):
    """An amount that is not a positive integer in the ledger's smallest unit."""
