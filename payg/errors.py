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


class JournalError(PaygError):
    """The journal holds something its own rules forbid (a damaged or hand-edited file): nothing was written."""


class DataDirBusy(PaygError):
    """Another controller holds the data directory (two would bill the same meters twice)."""


class DeployFailed(PaygError):
    """Contracts could not be deployed: the node, the key or the compiler refused; the message says which."""


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

    digest: str | None = None  # a transfer's transaction, when it was built before the failure (ledgers/iota)


class LedgerReorganised(LedgerUnavailable):
    """The chain no longer contains the block the deposit cursor points at: a reorganisation deeper
    than the configured confirmations. Nothing is credited until an operator has looked."""


class Unreachable(PaygError):
    """Nothing usable came back over HTTP: the host did not answer, timed out, or did not answer JSON.
    `refused`: the connection was refused, so nothing listens there (a controller that is not running)."""

    def __init__(self, message: str, refused: bool = False):
        super().__init__(message)
        self.refused = refused


class UnknownSocket(PaygError):
    """A socket id that is not configured."""

    def __init__(self, socket_id: str):
        self.socket_id = socket_id
        super().__init__(f"unknown socket {socket_id!r}")


class InvalidAmount(PaygError):
    """An amount that is not a positive integer in the ledger's smallest unit."""


class TradeRefused(PaygError):
    """A market or channel operation broke a rule. Nothing moved: no funds, no energy, no state."""


class NotAuthorised(TradeRefused):
    """The acting party does not hold the role the operation needs (or is not the channel's party)."""


class RoleConflict(TradeRefused):
    """A party would hold both producer and consumer, or a role it already holds."""


class UnknownAdvert(TradeRefused):
    """No advert with that id on this market."""


class AdvertExpired(TradeRefused):
    """The advert is 3 hours old or older: it can no longer be bought."""


class AdvertNotExpired(TradeRefused):
    """Unsold energy returns only once the advert has expired."""


class NotEnoughEnergy(TradeRefused):
    """A buy asks for more energy than the advert has left."""


class CapacityExceeded(TradeRefused):
    """The advert would take the energy advertised on the grid above its capacity."""


class InsufficientFunds(TradeRefused):
    """The payer cannot pay the whole amount (for a buy: the producer's share and the tax)."""


class PriceAboveLimit(TradeRefused):
    """The advert's current price is above the most the buyer said it would pay."""


class UnknownChannel(TradeRefused):
    """No payment channel with that id."""


class ChannelClosed(TradeRefused):
    """The channel was already closed or reclaimed; its id is never reused."""


class ChannelExpired(TradeRefused):
    """The channel's expiry has passed: only the sender can act now (reclaim)."""


class ChannelNotExpired(TradeRefused):
    """The sender can reclaim only after the channel's expiry."""


class ExpiryNotExtended(TradeRefused):
    """A top-up may only keep or extend a channel's expiry, never shorten it."""


class VoucherRejected(TradeRefused):
    """A voucher was refused. Subclasses say why."""


class BadSignature(VoucherRejected):
    """Not signed by the channel's sender: forged, malleated (high s), or recovering to no address."""


class WrongChannel(VoucherRejected):
    """The voucher is for another channel than the one it was presented for."""


class WrongDomain(VoucherRejected):
    """The voucher was signed for another chain, contract or network."""


class AboveEscrow(VoucherRejected):
    """The voucher's cumulative amount is more than the channel holds."""


class VoucherReplayed(VoucherRejected):
    """The voucher's cumulative amount is not above the last one accepted on this channel."""


def error_reply(exc: BaseException) -> tuple[int, dict]:
    """The HTTP status and JSON body that answer `exc` to another controller or a `payg` command:
    {"error": the payg error's class name, "message": ...}, so the caller can raise the same error again."""
    if isinstance(exc, TradeRefused):
        return 409, {"error": type(exc).__name__, "message": str(exc)}
    if isinstance(exc, UnknownSocket):
        return 404, {"error": type(exc).__name__, "message": str(exc)}
    if isinstance(exc, (InvalidAmount, LedgerUnavailable)):
        return (400 if isinstance(exc, InvalidAmount) else 503), {"error": type(exc).__name__, "message": str(exc)}
    if isinstance(exc, (ValueError, KeyError, TypeError)):
        return 400, {"error": "ValueError", "message": str(exc)}
    return 500, {"error": "InternalError", "message": type(exc).__name__}


def error_from_reply(status: int, body: object) -> Exception:
    """The error an error reply names (see error_reply), raised again on this side: the payg error of that
    name, ValueError for bad input, LedgerUnavailable for anything else."""
    body = body if isinstance(body, dict) else {}
    name = str(body.get("error", ""))
    message = str(body.get("message", f"HTTP {status}"))
    cls = globals().get(name)
    if isinstance(cls, type) and issubclass(cls, PaygError) and cls is not ConfigError:
        return cls(message)
    if name == "ValueError":
        return ValueError(message)
    return LedgerUnavailable(f"peer answered HTTP {status}: {name or 'error'}: {message}")


class CodeRefused(PaygError):
    """A top-up code that books nothing; `reason` is "used", "invalid", "unsupported" or "locked"."""

    def __init__(self, message: str, reason: str = "invalid"):
        super().__init__(message)
        self.reason = reason
