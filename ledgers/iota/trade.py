"""IotaTrade: the energy market and one-way payment channels on IOTA, enforced by the controllers.

IOTA (the Move-based network) runs no contract this project can deploy, so the
rules of payg/trade.py are enforced by the controllers, and money moves only as
real IOTA transfers made through an IotaWallet (ledgers/iota_wallet.py). One
IotaTrade implements both PeerTrade and PaymentChannel for the sockets of one
controller.

Keys. Socket i (its index in `accounts`, the wallet account number) trades with
its own party key, never with its top-up key, so trade money is never taken for
a tenant's deposit:

    m/44'/4218'/{i}'/0'/0'    top-up address (ledgers/iota.py)
    m/44'/4218'/{i}'/1'/0'    trade party: signs messages and vouchers, pays buys, funds channels
    m/44'/4218'/{i}'/2'/{n}'  escrow address of the socket's n-th payment channel

n comes from a counter in the store that is incremented (and committed) before
the channel's escrow is sent, so a channel address, which is also the channel's
id, is never used twice, even across a crash.

The market. One controller hosts the market (`market_url=None`, then
`create_market`); the others reach it at `market_url`. The host keeps the roles
(and which regulator admitted each producer or consumer), the adverts, the
reservations and the purchases in its store, and judges every price and expiry
by its own clock (`now()`). Its domain is `iota:{network}:{market_id}`, network
being the node's chain identifier and market_id 32 random hex digits chosen when
the market is created.

Signed messages. Every message that acts (POST /api/peer/iota/<kind>) is a JSON envelope

    {"message": {"kind", "network", "domain", "party", "at", "nonce", ...fields},
     "public_key": hex, "signature": hex}

signed with the acting party's Ed25519 key over MESSAGE_TAG + the canonical
encoding of "message" (JSON, keys sorted, no spaces, ASCII). The receiver checks
the kind against the endpoint, the network against its node's, the domain
(the market's, or `iota:{network}:{channel_id}` for a channel), that the party is address_of(public_key), the signature,
that `at` is within MAX_SKEW_S of its clock, and that the (party, nonce) pair
was never seen: a message cannot be replayed, reused for another operation,
another market, channel or network. Failures are NotAuthorised.

Buys are two-phase, so that a refusal moves nothing. The consumer's controller
(1) checks role, expiry, energy, price limit and its balance against a quote,
(2) asks the host for a reservation ("iota/reserve": the host checks the same
again and holds the energy at the quoted price; payments checkpointed before
`expires_at` = min(now + RESERVATION_S, the advert's expiry) are honoured, and the
energy stays held SUBMIT_GRACE_S longer for the digest to arrive), (3) checks its
balance again and pays the producer's share and the tax to the regulator in ONE
transaction (never when less than MIN_PAY_WINDOW_S of the reservation is left),
(4) submits the digest ("iota/buy"). The host reads the transaction from the
ledger: successful, checkpointed, sent by the consumer's party, paying at least
the quoted amounts to the producer and the regulator, its checkpoint time within
the reservation, the digest not used by another purchase; only then is the
Purchase recorded, with purchase_id = the digest. A refusal at (1)-(3) happens
before any transfer, and the reservation is released. A paid buy whose answer
was lost is kept (pending_buys) and submitted again by the next buy or by
`resubmit_pending`. The tax goes to the regulator who admitted the producer if
it is still a regulator, else to the owner. `withdraw` returns 0: buys pay the
parties directly, the market never holds money.

Channels. channel_id = the channel's own escrow address. open: the sender's
controller sends escrow + gas_reserve from the sender's party address to that
address, then announces the channel to the recipient's controller
("iota/channel-open", signed by the sender), which checks on the ledger that the
address holds at least the escrow (the announcement is retried with the next
voucher if the recipient was unreachable). top_up adds to the same address, keeps
or extends the expiry and is announced the same way. A voucher is the sender's
party signature over VOUCHER_TAG + canonical {"channel_id", "amount", "domain"}
with domain = `domain()` = `iota:{network}`: the channel id names the channel
(an address is never reused), the domain the network. check_voucher refuses, in
this order: WrongChannel, WrongDomain, UnknownChannel, ChannelClosed,
ChannelExpired, AboveEscrow, BadSignature; accept_voucher adds VoucherReplayed
(not above the last accepted). close (recipient only, before expiry): the
sender's controller, the only one holding the channel key, marks the channel
closed, pays the voucher's amount from the channel address to the recipient, then
sweeps the rest (escrow - amount + gas reserve - gas) back to the sender: two
transactions, both paid from the gas reserve, never from the escrow. When the
sender is another controller, the recipient's controller posts the voucher to it
("iota/close", signed by the recipient) and checks the payment on the ledger
(sent from the channel address, at least the voucher's amount to the recipient).
reclaim (sender only, after expiry): the channel address is swept back to the
sender and the recipient's controller is told ("iota/channel-reclaimed").
`watch` (recipient): the channel address holding less than the latest voucher
accepted means the sender's controller moved the escrow away; it is flagged.

Trust. The ledger enforces none of the market or channel rules: the controllers
do, each for what it holds. The market host keeps the roles, adverts and
purchases and judges prices and expiries; everyone trusts it to apply the rules
(it could refuse a buy or admit a party it should not) but it never holds
anyone's money: a buy is one transfer from the consumer to the producer and the
regulator that the consumer's own controller makes, after checking the amounts
against its own quote, and the host records a purchase only against that
transfer on the ledger. The consumer trusts the host to record the purchase it
paid for (the digest is its receipt). A channel recipient trusts the sender's
controller, which alone holds the escrow key, to settle: nothing on the ledger
stops that controller from moving the escrow away. The recipient's loss is
bounded by what it delivers against vouchers between two `watch` checks of the
escrow address (one Wh if it checks before each Wh), and never exceeds the latest
voucher. Every message is signed by its party's key, so a controller cannot act
for a party whose key it does not hold.

Time. Prices and expiries are judged by the host's clock, buys also by
checkpoint timestamps: host clocks and IOTA checkpoint time must agree within
CLOCK_TOLERANCE_S (run NTP); signed messages are refused beyond MAX_SKEW_S.
"""

from __future__ import annotations

import json
import logging
import secrets
import sqlite3
import threading
import urllib.error
import urllib.request
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import payg.errors as errors
from ledgers.iota.sdk import MAX_INDEX, normalise_address
from payg.ports import Clock
from payg.ports import PeerLink
from payg.errors import (AboveEscrow, AdvertExpired, AdvertNotExpired, BadSignature, ChannelClosed,
                         ChannelExpired, ChannelNotExpired, ExpiryNotExtended, InsufficientFunds, InvalidAmount,
                         LedgerUnavailable, NotAuthorised, NotEnoughEnergy, PaygError, RoleConflict, TradeRefused,
                         UnknownAdvert, UnknownChannel, UnknownSocket, VoucherReplayed, WrongChannel, WrongDomain)
from payg.domain.market import (Advert, CLOSED, CONSUMER, Channel, DEFAULT_CAPACITY_WH, DEFAULT_TAX_BPS,
                                MAX_CAPACITY_WH, MAX_TAX_BPS, MIN_CAPACITY_WH, MarketInfo, NO_ROLE, OPEN, OWNER,
                                PRODUCER, Purchase, RECLAIMED, REGULATOR, Voucher, check_capacity, is_expired,
                                positive)

log = logging.getLogger("payg.ledgers.iota_trade")

PARTY_PATH = "m/44'/4218'/{index}'/1'/0'"
CHANNEL_PATH = "m/44'/4218'/{index}'/2'/{n}'"
MESSAGE_TAG = b"payg/iota/message/v1\n"
VOUCHER_TAG = b"payg/iota/voucher/v1\n"
MAX_SKEW_S = 300           # a signed message older or newer than this is refused
RESERVATION_S = 120        # a buy's quote holds for payments checkpointed within this long
SUBMIT_GRACE_S = 60        # ... and its energy stays held this much longer, for the digest to arrive
MIN_PAY_WINDOW_S = 10      # the consumer does not pay into a reservation about to lapse
CLOCK_TOLERANCE_S = 30     # checkpoint time vs the host's clock
DEFAULT_GAS_RESERVE = 30_000_000  # nanos put in a channel address beside the escrow, to pay its settlement gas

RESERVED = "reserved"
BOUGHT = "bought"
RELEASED = "released"

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS roles (
    party TEXT PRIMARY KEY, role TEXT NOT NULL, granted_by TEXT NOT NULL, at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS adverts (
    advert_id TEXT PRIMARY KEY, producer TEXT NOT NULL, energy_wh INTEGER NOT NULL,
    sold_wh INTEGER NOT NULL DEFAULT 0, returned_wh INTEGER NOT NULL DEFAULT 0,
    min_price_per_wh INTEGER NOT NULL, posted_at INTEGER NOT NULL, returned INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS reservations (
    reservation_id TEXT PRIMARY KEY, advert_id TEXT NOT NULL, consumer TEXT NOT NULL, producer TEXT NOT NULL,
    regulator TEXT NOT NULL, energy_wh INTEGER NOT NULL, price_per_wh INTEGER NOT NULL,
    producer_amount INTEGER NOT NULL, tax_amount INTEGER NOT NULL, created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL, state TEXT NOT NULL, purchase_id TEXT);
CREATE TABLE IF NOT EXISTS purchases (
    purchase_id TEXT PRIMARY KEY, reservation_id TEXT NOT NULL UNIQUE, advert_id TEXT NOT NULL,
    consumer TEXT NOT NULL, producer TEXT NOT NULL, energy_wh INTEGER NOT NULL, price_per_wh INTEGER NOT NULL,
    producer_amount INTEGER NOT NULL, tax_amount INTEGER NOT NULL, regulator TEXT NOT NULL, at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS nonces (party TEXT NOT NULL, nonce TEXT NOT NULL, at INTEGER NOT NULL,
    PRIMARY KEY (party, nonce));
CREATE TABLE IF NOT EXISTS channels (
    channel_id TEXT PRIMARY KEY, sender TEXT NOT NULL, recipient TEXT NOT NULL, sender_public_key TEXT NOT NULL,
    escrow INTEGER NOT NULL, expires_at INTEGER NOT NULL, state TEXT NOT NULL, paid INTEGER NOT NULL DEFAULT 0,
    socket TEXT, n INTEGER, opened_at INTEGER NOT NULL, announced INTEGER NOT NULL DEFAULT 1,
    last_amount INTEGER NOT NULL DEFAULT 0, last_signature TEXT, broken INTEGER NOT NULL DEFAULT 0,
    digests TEXT NOT NULL DEFAULT '[]');
CREATE TABLE IF NOT EXISTS pending_buys (
    reservation_id TEXT PRIMARY KEY, socket TEXT NOT NULL, digest TEXT NOT NULL, at INTEGER NOT NULL);
"""


class Wallet(Protocol):
    """What IotaTrade needs of ledgers/iota_wallet.IotaWallet."""

    def address(self, path: str) -> str: ...
    def public_key(self, path: str) -> str: ...
    def sign(self, path: str, message: bytes) -> str: ...
    def verify(self, public_key_hex: str, message: bytes, signature_hex: str) -> bool: ...
    def address_of(self, public_key_hex: str) -> str: ...
    def balance(self, address: str) -> int: ...
    def send(self, path: str, outputs: list[tuple[str, int]]) -> str: ...
    def sweep(self, path: str, to: str) -> tuple[str, int]: ...
    def transaction(self, digest: str) -> dict: ...
    def network(self) -> str: ...


def canonical(obj: Any) -> bytes:
    """The bytes that are signed: JSON with sorted keys, no whitespace, ASCII only."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def voucher_bytes(channel_id: str, amount: int, domain: str) -> bytes:
    return VOUCHER_TAG + canonical({"channel_id": channel_id, "amount": amount, "domain": domain})


def message_bytes(message: dict) -> bytes:
    return MESSAGE_TAG + canonical(message)


def party_path(index: int) -> str:
    return PARTY_PATH.format(index=index)


def channel_path(index: int, n: int) -> str:
    return CHANNEL_PATH.format(index=index, n=n)


def peer_error_reply(exc: BaseException) -> tuple[int, dict]:
    """The HTTP status and JSON body a peer endpoint answers an error with (the client maps it back)."""
    if isinstance(exc, TradeRefused):
        return 409, {"error": type(exc).__name__, "message": str(exc)}
    if isinstance(exc, LedgerUnavailable):
        return 503, {"error": type(exc).__name__, "message": str(exc)}
    if isinstance(exc, (InvalidAmount, UnknownSocket)):
        return 400, {"error": type(exc).__name__, "message": str(exc)}
    if isinstance(exc, (ValueError, KeyError, TypeError)):
        return 400, {"error": "ValueError", "message": str(exc)}
    return 500, {"error": "InternalError", "message": type(exc).__name__}


def error_from_reply(name: str, message: str) -> Exception:
    """The payg error a peer's error reply names (ValueError for bad input, LedgerUnavailable otherwise)."""
    return errors.error_from_reply(0, {"error": name, "message": message})


def _int(value: Any, what: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidAmount(f"{what} must be an integer >= {minimum}, got {value!r}")
    return value


def _str(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty string, got {value!r}")
    return value


def _address(value: Any, what: str) -> str:
    try:
        return normalise_address(value)
    except ValueError:
        raise ValueError(f"{what} is not an IOTA address: {value!r}") from None


def _seconds(timestamp: Any) -> float:
    """A transaction's checkpoint time in unix seconds (ISO-8601 text, or a number of ms or s)."""
    if isinstance(timestamp, str):
        try:
            return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()
        except ValueError:
            raise LedgerUnavailable(f"transaction timestamp {timestamp!r} is not a date") from None
    if isinstance(timestamp, (int, float)) and not isinstance(timestamp, bool):
        return timestamp / 1000 if timestamp > 10**11 else float(timestamp)
    raise LedgerUnavailable(f"transaction timestamp {timestamp!r} is not a date")


class IotaTrade:
    """PeerTrade and PaymentChannel on IOTA for the sockets in `accounts` (socket id -> derivation index).

    market_url: the hosting controller's base URL, or None if this controller hosts the market.
    peers: party address -> base URL of the controller that holds that party's keys (for channels).
    peer_link: how messages reach other controllers (payg.ports.PeerLink); by default urllib, with
    error replies turned back into the payg error the peer raised.
    gas_reserve: nanos sent to a channel address beside the escrow, so that the settlement's gas never
    comes out of what the vouchers promise; what is left of it returns to the sender.
    """

    name = "iota"

    def __init__(self, wallet: Wallet, *, accounts: Mapping[str, int], store_path: str | Path, clock: Clock,
                 market_url: str | None = None, peers: Mapping[str, str] | None = None,
                 http_timeout_s: float = 10.0, gas_reserve: int = DEFAULT_GAS_RESERVE,
                 reservation_s: int = RESERVATION_S, peer_link: PeerLink | None = None):
        self.wallet = wallet
        self.clock = clock
        self.market_url = market_url.rstrip("/") if market_url else None
        self.peer_link = peer_link
        self.http_timeout_s = float(http_timeout_s)
        self.gas_reserve = _int(gas_reserve, "gas_reserve")
        self.reservation_s = positive(reservation_s, "reservation_s")
        self._peers = {_address(party, "peer party"): url.rstrip("/") for party, url in (peers or {}).items()}
        if not isinstance(accounts, Mapping) or not accounts:
            raise ValueError("accounts must map socket ids to derivation indexes")
        self._index: dict[str, int] = {}
        self._party: dict[str, str] = {}
        self._public_key: dict[str, str] = {}
        for socket_id, index in accounts.items():
            if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index <= MAX_INDEX:
                raise ValueError(f"socket {socket_id!r}: derivation index must be an integer from 0 to {MAX_INDEX}")
            if index in self._index.values():
                raise ValueError(f"socket {socket_id!r}: derivation index {index} is used twice")
            self._index[socket_id] = index
            self._party[socket_id] = _address(wallet.address(party_path(index)), "party address")
            self._public_key[socket_id] = wallet.public_key(party_path(index))
        self._socket_of = {party: socket_id for socket_id, party in self._party.items()}
        self._network: str | None = None
        self._market_domain_cache: str | None = None
        self._lock = threading.RLock()
        self.store_path = Path(store_path)
        self._db = sqlite3.connect(str(self.store_path), isolation_level=None, check_same_thread=False, timeout=30)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)

    # ---- basics ---------------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Close the store (`close` is the channel operation)."""
        with self._lock:
            self._db.close()

    def party_for(self, socket_id: str) -> str:
        try:
            return self._party[socket_id]
        except KeyError:
            raise UnknownSocket(socket_id) from None

    def socket_for(self, party: str) -> str | None:
        try:
            return self._socket_of.get(normalise_address(party))
        except ValueError:
            return None

    def now(self) -> int:
        return int(self.clock.now())

    @property
    def network(self) -> str:
        if self._network is None:
            self._network = self.wallet.network()
        return self._network

    def domain(self) -> str:
        """What vouchers are bound to besides their channel: the network (a channel id is its own address)."""
        return f"iota:{self.network}"

    def channel_domain(self, channel_id: str) -> str:
        """What messages about one channel are bound to."""
        return f"iota:{self.network}:{channel_id}"

    def add_peer(self, party: str, base_url: str) -> None:
        self._peers[_address(party, "peer party")] = base_url.rstrip("/")

    def _tx(self):
        return _Transaction(self._db)

    def _meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def _next(self, name: str) -> int:
        """The next value of a persisted counter (call inside a transaction)."""
        row = self._db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        value = row[0] if row else 0
        self._db.execute("INSERT OR REPLACE INTO counters (name, value) VALUES (?, ?)", (name, value + 1))
        return value

    # ---- signed messages ------------------------------------------------------------------------

    def sign_message(self, socket_id: str, kind: str, domain: str, fields: dict) -> dict:
        """A signed envelope for `kind` (format in the module docstring), acting as `socket_id`."""
        message = {**fields, "kind": kind, "network": self.network, "domain": domain,
                   "party": self.party_for(socket_id), "at": self.now(), "nonce": secrets.token_hex(16)}
        signature = self.wallet.sign(party_path(self._index[socket_id]), message_bytes(message))
        return {"message": message, "public_key": self._public_key[socket_id], "signature": signature}

    def _open_envelope(self, envelope: Any, kind: str) -> dict:
        """The message, unverified (to find which domain it claims); bad shapes are ValueError."""
        if not isinstance(envelope, dict):
            raise ValueError("a signed message is an object with message, public_key and signature")
        message = envelope.get("message")
        if not isinstance(message, dict):
            raise ValueError("a signed message needs a 'message' object")
        if message.get("kind") != kind:
            raise NotAuthorised(f"message of kind {message.get('kind')!r} sent as {kind!r}")
        return message

    def _verify(self, envelope: dict, kind: str, domain: str) -> dict:
        message = self._open_envelope(envelope, kind)
        public_key, signature = envelope.get("public_key"), envelope.get("signature")
        if not isinstance(public_key, str) or not isinstance(signature, str):
            raise NotAuthorised("a signed message needs public_key and signature strings")
        if message.get("network") != self.network:
            raise NotAuthorised(f"message signed for network {message.get('network')!r}, this is {self.network!r}")
        if message.get("domain") != domain:
            raise NotAuthorised(f"message signed for {message.get('domain')!r}, not {domain!r}")
        party = _address(message.get("party"), "party")
        try:
            signer = normalise_address(self.wallet.address_of(public_key))
        except (ValueError, PaygError):
            raise NotAuthorised("the message's public key is not an Ed25519 key") from None
        if signer != party:
            raise NotAuthorised(f"the message's public key belongs to {signer}, not to the party {party}")
        try:
            valid = self.wallet.verify(public_key, message_bytes(message), signature)
        except (ValueError, PaygError):
            valid = False
        if not valid:
            raise NotAuthorised(f"{kind}: the signature does not match the message and the party {party}")
        at, nonce = message.get("at"), message.get("nonce")
        if isinstance(at, bool) or not isinstance(at, int) or not isinstance(nonce, str) or not 16 <= len(nonce) <= 128:
            raise NotAuthorised(f"{kind}: a signed message needs an integer 'at' and a nonce")
        now = self.now()
        if abs(now - at) > MAX_SKEW_S:
            raise NotAuthorised(f"{kind}: signed at {at}, {now - at:+d} s from now: too old or from the future")
        with self._lock, self._tx():
            self._db.execute("DELETE FROM nonces WHERE at < ?", (now - 2 * MAX_SKEW_S,))
            try:
                self._db.execute("INSERT INTO nonces (party, nonce, at) VALUES (?, ?, ?)", (party, nonce, at))
            except sqlite3.IntegrityError:
                raise NotAuthorised(f"{kind}: this message (nonce {nonce}) was already received") from None
        message["party"] = party
        return message

    # ---- transport ------------------------------------------------------------------------------

    def _call(self, base_url: str | None, kind: str, payload: dict) -> dict:
        """`kind` at the controller at base_url, or at this one (None), through the same JSON form."""
        if base_url is None:
            local = json.loads(json.dumps(payload))
            return json.loads(json.dumps(self.handle_peer_message(kind, local)))
        if self.peer_link is not None:
            return self.peer_link.post(base_url, kind, payload)
        request = urllib.request.Request(f"{base_url}/api/peer/{kind}", data=json.dumps(payload).encode(),
                                         headers={"content-type": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.http_timeout_s) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            try:
                body = json.loads(exc.read())
                name, message = body["error"], body.get("message", "")
            except (ValueError, KeyError, TypeError):
                raise LedgerUnavailable(f"controller {base_url}: {kind}: HTTP {exc.code}") from None
            raise error_from_reply(str(name), str(message)) from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise LedgerUnavailable(f"controller {base_url}: {kind}: {exc}") from None

    def _market(self, kind: str, payload: dict) -> dict:
        return self._call(self.market_url, kind, payload)

    def _peer_url(self, party: str) -> str | None:
        """None when this controller holds the party's key."""
        if party in self._socket_of:
            return None
        try:
            return self._peers[party]
        except KeyError:
            raise NotAuthorised(f"no controller is known for party {party}: add it to peers") from None

    # ---- the market: host side ------------------------------------------------------------------

    def create_market(self, owner_socket: str, capacity_wh: int = DEFAULT_CAPACITY_WH,
                      tax_bps: int = DEFAULT_TAX_BPS) -> MarketInfo:
        """Host a market here, owned by `owner_socket`'s party (once per store)."""
        if self.market_url is not None:
            raise ValueError("this controller uses the market at " + self.market_url + "; it cannot host one")
        owner = self.party_for(owner_socket)
        capacity_wh = positive(capacity_wh, "capacity_wh")
        if not MIN_CAPACITY_WH <= capacity_wh <= MAX_CAPACITY_WH:
            raise InvalidAmount(f"capacity_wh must be from {MIN_CAPACITY_WH} to {MAX_CAPACITY_WH}, got {capacity_wh}")
        if isinstance(tax_bps, bool) or not isinstance(tax_bps, int) or not 0 <= tax_bps <= MAX_TAX_BPS:
            raise InvalidAmount(f"tax_bps must be an integer from 0 to {MAX_TAX_BPS}, got {tax_bps!r}")
        with self._lock, self._tx():
            if self._meta("market_id") is not None:
                raise ValueError(f"{self.store_path} already hosts market {self._meta('market_id')}")
            for key, value in (("market_id", secrets.token_hex(16)), ("owner", owner),
                               ("capacity_wh", capacity_wh), ("tax_bps", tax_bps), ("created_at", self.now())):
                self._db.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (key, str(value)))
            self._db.execute("INSERT INTO roles (party, role, granted_by, at) VALUES (?, ?, ?, ?)",
                             (owner, OWNER, owner, self.now()))
        return self.market()

    def _hosted(self) -> tuple[str, str, int, int]:
        market_id = self._meta("market_id")
        if market_id is None:
            raise UnknownAdvert("this controller hosts no market (create_market first)")
        return market_id, self._meta("owner"), int(self._meta("capacity_wh")), int(self._meta("tax_bps"))

    def _market_domain(self) -> str:
        return f"iota:{self.network}:{self._hosted()[0]}"

    def _role(self, party: str) -> str:
        row = self._db.execute("SELECT role FROM roles WHERE party = ?", (party,)).fetchone()
        return row[0] if row else NO_ROLE

    def _held_wh(self, advert_id: str, now: int) -> int:
        row = self._db.execute("SELECT COALESCE(SUM(energy_wh), 0) FROM reservations "
                               "WHERE advert_id = ? AND state = ? AND expires_at > ?",
                               (advert_id, RESERVED, now - SUBMIT_GRACE_S)).fetchone()
        return row[0]

    def _advert_row(self, advert_id: Any) -> sqlite3.Row:
        row = self._db.execute("SELECT * FROM adverts WHERE advert_id = ?", (str(advert_id),)).fetchone()
        if row is None:
            raise UnknownAdvert(f"no advert {advert_id!r} on this market")
        return row

    def _advert_of(self, row: sqlite3.Row, now: int) -> Advert:
        if row["returned"]:
            remaining = 0
        else:
            remaining = row["energy_wh"] - row["sold_wh"] - self._held_wh(row["advert_id"], now)
        return Advert(row["advert_id"], row["producer"], row["energy_wh"], max(0, remaining),
                      row["min_price_per_wh"], row["posted_at"])

    def _advertised_wh(self, now: int) -> int:
        """Energy in adverts that are neither expired nor sold (held energy is still advertised)."""
        total = 0
        for row in self._db.execute("SELECT * FROM adverts WHERE returned = 0"):
            if not is_expired(row["posted_at"], now):
                total += row["energy_wh"] - row["sold_wh"]
        return total

    def _market_info(self) -> dict:
        market_id, owner, capacity_wh, tax_bps = self._hosted()
        return MarketInfo(owner, capacity_wh, self._advertised_wh(self.now()), tax_bps,
                          f"iota:{self.network}:{market_id}").__dict__

    def _host_grant(self, envelope: dict) -> dict:
        message = self._verify(envelope, "iota/grant", self._market_domain())
        actor, target = message["party"], _address(message.get("target"), "target party")
        role = message.get("role")
        if role not in (REGULATOR, PRODUCER, CONSUMER):
            raise ValueError(f"role must be regulator, producer or consumer, got {role!r}")
        with self._lock, self._tx():
            needed = OWNER if role == REGULATOR else REGULATOR
            if self._role(actor) != needed:
                raise NotAuthorised(f"{actor} is {self._role(actor)}: only the {needed} grants {role}")
            held = self._role(target)
            if held != NO_ROLE:
                raise RoleConflict(f"{target} already holds the role {held}; a party holds one role")
            self._db.execute("INSERT INTO roles (party, role, granted_by, at) VALUES (?, ?, ?, ?)",
                             (target, role, actor, self.now()))
        return {"party": target, "role": role}

    def _host_revoke(self, envelope: dict) -> dict:
        message = self._verify(envelope, "iota/revoke", self._market_domain())
        actor, target = message["party"], _address(message.get("target"), "target party")
        with self._lock, self._tx():
            held = self._role(target)
            if held == NO_ROLE:
                raise RoleConflict(f"{target} holds no role")
            if held == OWNER:
                raise NotAuthorised("the owner's role cannot be revoked")
            needed = OWNER if held == REGULATOR else REGULATOR
            if self._role(actor) != needed:
                raise NotAuthorised(f"{actor} is {self._role(actor)}: only the {needed} revokes a {held}")
            self._db.execute("DELETE FROM roles WHERE party = ?", (target,))
        return {"party": target, "role": NO_ROLE}

    def _host_advert(self, envelope: dict) -> dict:
        message = self._verify(envelope, "iota/advert", self._market_domain())
        producer = message["party"]
        energy_wh = positive(message.get("energy_wh"), "energy_wh")
        min_price = positive(message.get("min_price_per_wh"), "min_price_per_wh")
        with self._lock, self._tx():
            if self._role(producer) != PRODUCER:
                raise NotAuthorised(f"{producer} is {self._role(producer)}: only a producer posts adverts")
            now = self.now()
            check_capacity(self._advertised_wh(now), energy_wh, self._hosted()[2])
            advert_id = str(self._next("advert") + 1)
            self._db.execute("INSERT INTO adverts (advert_id, producer, energy_wh, min_price_per_wh, posted_at) "
                             "VALUES (?, ?, ?, ?, ?)", (advert_id, producer, energy_wh, min_price, now))
            return self._advert_of(self._advert_row(advert_id), now).as_dict(now)

    def _tax_regulator(self, producer: str) -> str:
        owner = self._hosted()[1]
        row = self._db.execute("SELECT granted_by FROM roles WHERE party = ?", (producer,)).fetchone()
        if row is not None and self._role(row[0]) == REGULATOR:
            return row[0]
        return owner

    def _host_reserve(self, envelope: dict) -> dict:
        message = self._verify(envelope, "iota/reserve", self._market_domain())
        consumer = message["party"]
        energy_wh = positive(message.get("energy_wh"), "energy_wh")
        limit = message.get("max_price_per_wh")
        if limit is not None:
            limit = positive(limit, "max_price_per_wh")
        with self._lock, self._tx():
            if self._role(consumer) != CONSUMER:
                raise NotAuthorised(f"{consumer} is {self._role(consumer)}: only a consumer buys")
            now = self.now()
            advert = self._advert_of(self._advert_row(message.get("advert_id")), now)
            price, share, tax = advert.quote(energy_wh, now, self._hosted()[3], limit)
            regulator = self._tax_regulator(advert.producer)
            reservation_id = secrets.token_hex(16)
            expires_at = min(now + self.reservation_s, advert.expires_at)
            self._db.execute(
                "INSERT INTO reservations (reservation_id, advert_id, consumer, producer, regulator, energy_wh, "
                "price_per_wh, producer_amount, tax_amount, created_at, expires_at, state) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (reservation_id, advert.advert_id, consumer, advert.producer, regulator, energy_wh, price, share,
                 tax, now, expires_at, RESERVED))
        return {"reservation_id": reservation_id, "advert_id": advert.advert_id, "consumer": consumer,
                "producer": advert.producer, "regulator": regulator, "energy_wh": energy_wh,
                "price_per_wh": price, "producer_amount": share, "tax_amount": tax, "created_at": now,
                "expires_at": expires_at}

    def _host_release(self, envelope: dict) -> dict:
        message = self._verify(envelope, "iota/release", self._market_domain())
        with self._lock, self._tx():
            self._db.execute("UPDATE reservations SET state = ? WHERE reservation_id = ? AND consumer = ? "
                             "AND state = ?", (RELEASED, message.get("reservation_id"), message["party"], RESERVED))
        return {"released": True}

    def _host_buy(self, envelope: dict) -> dict:
        message = self._verify(envelope, "iota/buy", self._market_domain())
        digest = _str(message.get("digest"), "digest")
        with self._lock:
            existing = self._db.execute("SELECT * FROM purchases WHERE purchase_id = ?", (digest,)).fetchone()
            if existing is not None:
                if existing["reservation_id"] == message.get("reservation_id") \
                        and existing["consumer"] == message["party"]:
                    return dict(existing)  # the same buy submitted again (a retry after a lost reply)
                raise NotAuthorised(f"transaction {digest} already paid for purchase {existing['purchase_id']}")
            r = self._db.execute("SELECT * FROM reservations WHERE reservation_id = ?",
                                 (message.get("reservation_id"),)).fetchone()
            if r is None or r["consumer"] != message["party"]:
                raise UnknownAdvert(f"no reservation {message.get('reservation_id')!r} for {message['party']}")
            if r["state"] != RESERVED:
                raise NotAuthorised(f"reservation {r['reservation_id']} is {r['state']}")
            self._check_payment(digest, r)
            now = self.now()
            if now >= r["expires_at"] + SUBMIT_GRACE_S:
                # Paid in time but submitted late: its energy was no longer held; sell it only if still there.
                advert = self._advert_row(r["advert_id"])
                held = self._held_wh(r["advert_id"], now)
                if advert["energy_wh"] - advert["sold_wh"] - held < r["energy_wh"]:
                    raise NotEnoughEnergy(f"reservation {r['reservation_id']} was submitted {now - r['expires_at']} s"
                                          f" after it lapsed and its energy was sold meanwhile")
            with self._tx():
                self._db.execute("UPDATE reservations SET state = ?, purchase_id = ? WHERE reservation_id = ?",
                                 (BOUGHT, digest, r["reservation_id"]))
                advert = self._advert_row(r["advert_id"])
                if advert["returned"]:
                    # Paid within the reservation but submitted after the unsold energy was returned.
                    self._db.execute("UPDATE adverts SET returned_wh = returned_wh - ? WHERE advert_id = ?",
                                     (r["energy_wh"], r["advert_id"]))
                self._db.execute("UPDATE adverts SET sold_wh = sold_wh + ? WHERE advert_id = ?",
                                 (r["energy_wh"], r["advert_id"]))
                purchase = Purchase(digest, r["advert_id"], r["consumer"], r["producer"], r["energy_wh"],
                                    r["price_per_wh"], r["producer_amount"], r["tax_amount"], r["regulator"], now)
                self._db.execute(
                    "INSERT INTO purchases (purchase_id, reservation_id, advert_id, consumer, producer, energy_wh, "
                    "price_per_wh, producer_amount, tax_amount, regulator, at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (digest, r["reservation_id"], r["advert_id"], r["consumer"], r["producer"], r["energy_wh"],
                     r["price_per_wh"], r["producer_amount"], r["tax_amount"], r["regulator"], now))
        return {**purchase.as_dict(), "reservation_id": r["reservation_id"]}

    def _check_payment(self, digest: str, r: sqlite3.Row) -> None:
        """The buy's transaction, read from the ledger, pays what the reservation quoted, in time."""
        try:
            tx = self.wallet.transaction(digest)
        except (TradeRefused, LedgerUnavailable):
            raise
        except PaygError as exc:  # no such transaction
            raise InsufficientFunds(f"transaction {digest}: {exc}: nothing was paid") from None
        if not tx.get("success"):
            raise InsufficientFunds(f"transaction {digest} failed on the ledger: nothing was paid")
        if tx.get("checkpoint") is None:
            raise LedgerUnavailable(f"transaction {digest} is not in a checkpoint yet")
        sender = _address(tx.get("sender"), "transaction sender")
        if sender != r["consumer"]:
            raise NotAuthorised(f"transaction {digest} was sent by {sender}, not by the consumer {r['consumer']}")
        changes = {normalise_address(a): int(v) for a, v in (tx.get("changes") or {}).items()}
        if changes.get(r["producer"], 0) < r["producer_amount"]:
            raise InsufficientFunds(f"transaction {digest} pays the producer {changes.get(r['producer'], 0)}, "
                                    f"not {r['producer_amount']}")
        if r["tax_amount"] and changes.get(r["regulator"], 0) < r["tax_amount"]:
            raise InsufficientFunds(f"transaction {digest} pays the regulator {changes.get(r['regulator'], 0)}, "
                                    f"not the tax {r['tax_amount']}")
        at = _seconds(tx.get("timestamp"))
        if not r["created_at"] - CLOCK_TOLERANCE_S <= at < r["expires_at"]:
            raise NotAuthorised(f"transaction {digest} at {at:.0f} is outside the reservation "
                                f"[{r['created_at']}, {r['expires_at']})")

    def _host_expire(self, payload: dict) -> dict:
        with self._lock, self._tx():
            row = self._advert_row(payload.get("advert_id"))
            now = self.now()
            if not is_expired(row["posted_at"], now):
                raise AdvertNotExpired(f"advert {row['advert_id']} expires at {row['posted_at'] + 3 * 3600}")
            if row["returned"]:
                return {"returned_wh": 0}
            returned = row["energy_wh"] - row["sold_wh"]
            self._db.execute("UPDATE adverts SET returned = 1, returned_wh = ? WHERE advert_id = ?",
                             (returned, row["advert_id"]))
        return {"returned_wh": returned}

    def _host_query(self, kind: str, payload: dict) -> dict:
        with self._lock:
            now = self.now()
            if kind == "iota/market":
                return self._market_info()
            self._hosted()
            if kind == "iota/role":
                return {"role": self._role(_address(payload.get("party"), "party"))}
            if kind == "iota/advert-info":
                return self._advert_of(self._advert_row(payload.get("advert_id")), now).as_dict(now)
            if kind == "iota/purchases":
                rows = self._db.execute("SELECT * FROM purchases ORDER BY at, purchase_id").fetchall()
                return {"purchases": [{k: row[k] for k in row.keys() if k != "reservation_id"} for row in rows]}
            if kind == "iota/adverts":
                rows = self._db.execute("SELECT * FROM adverts WHERE returned = 0 ORDER BY posted_at, "
                                        "CAST(advert_id AS INTEGER)").fetchall()
                adverts = [self._advert_of(row, now) for row in rows]
                return {"adverts": [a.as_dict(now) for a in adverts if a.is_open(now)]}
        raise ValueError(f"unknown query {kind!r}")

    # ---- the market: PeerTrade ------------------------------------------------------------------

    def _domain_of_market(self) -> str:
        if self._market_domain_cache is None:
            self._market_domain_cache = self._market("iota/market", {})["domain"]
        return self._market_domain_cache

    def market(self) -> MarketInfo:
        return MarketInfo(**self._market("iota/market", {}))

    def role_of(self, party: str) -> str:
        return self._market("iota/role", {"party": _address(party, "party")})["role"]

    def grant(self, as_socket: str, party: str, role: str) -> None:
        self._market("iota/grant", self.sign_message(as_socket, "iota/grant", self._domain_of_market(),
                                              {"target": _address(party, "party"), "role": role}))

    def revoke(self, as_socket: str, party: str) -> None:
        self._market("iota/revoke", self.sign_message(as_socket, "iota/revoke", self._domain_of_market(),
                                               {"target": _address(party, "party")}))

    def post_advert(self, as_socket: str, energy_wh: int, min_price_per_wh: int) -> Advert:
        positive(energy_wh, "energy_wh")
        positive(min_price_per_wh, "min_price_per_wh")
        reply = self._market("iota/advert", self.sign_message(as_socket, "iota/advert", self._domain_of_market(),
                                                       {"energy_wh": energy_wh, "min_price_per_wh": min_price_per_wh}))
        return _advert(reply)

    def advert(self, advert_id: str) -> Advert:
        return _advert(self._market("iota/advert-info", {"advert_id": str(advert_id)}))

    def adverts(self) -> list[Advert]:
        return [_advert(a) for a in self._market("iota/adverts", {})["adverts"]]

    def purchases(self) -> list[Purchase]:
        """Every purchase recorded by the market, oldest first."""
        return [Purchase(**p) for p in self._market("iota/purchases", {})["purchases"]]

    def expire(self, advert_id: str) -> int:
        return self._market("iota/expire", {"advert_id": str(advert_id)})["returned_wh"]

    def withdraw(self, as_socket: str) -> int:
        self.party_for(as_socket)
        return 0  # every buy paid the producer and the regulator directly: the market owes nothing

    def buy(self, as_socket: str, advert_id: str, energy_wh: int, max_price_per_wh: int | None = None) -> Purchase:
        consumer = self.party_for(as_socket)
        positive(energy_wh, "energy_wh")
        if max_price_per_wh is not None:
            positive(max_price_per_wh, "max_price_per_wh")
        self.resubmit_pending()
        info = self.market()
        domain = info.domain
        # A quote first, so that a consumer who cannot pay is refused before anything is held.
        advert = self.advert(advert_id)
        if self.role_of(consumer) != CONSUMER:
            raise NotAuthorised(f"{consumer} is {self.role_of(consumer)}: only a consumer buys")
        _, share, tax = advert.quote(energy_wh, self.now(), info.tax_bps, max_price_per_wh)
        self._check_balance(consumer, share + tax)
        reservation = self._market("iota/reserve", self.sign_message(as_socket, "iota/reserve", domain, {
            "advert_id": str(advert_id), "energy_wh": energy_wh, "max_price_per_wh": max_price_per_wh}))
        rid = reservation["reservation_id"]
        outputs = [(_address(reservation["producer"], "producer"), _int(reservation["producer_amount"], "share", 1))]
        if reservation["tax_amount"]:
            outputs.append((_address(reservation["regulator"], "regulator"), _int(reservation["tax_amount"], "tax")))
        try:
            if reservation["consumer"] != consumer or reservation["energy_wh"] != energy_wh \
                    or (max_price_per_wh is not None and reservation["price_per_wh"] > max_price_per_wh):
                raise LedgerUnavailable(f"the market answered a reservation that is not the one asked: {reservation}")
            if reservation["expires_at"] - self.now() < MIN_PAY_WINDOW_S:
                raise AdvertExpired(f"advert {advert_id} expires at {reservation['expires_at']}: too soon to pay "
                                    "and have the payment checkpointed before it")
            self._check_balance(consumer, sum(amount for _, amount in outputs))
            digest = self.wallet.send(party_path(self._index[as_socket]), outputs)
        except BaseException as exc:
            sent = getattr(exc, "digest", None)
            if isinstance(sent, str) and sent:
                # The transaction was built and may be on the ledger: keep it for the market to judge.
                self._remember_pending(rid, as_socket, sent)
                raise
            try:
                self._market("iota/release", self.sign_message(as_socket, "iota/release", domain,
                                                               {"reservation_id": rid}))
            except PaygError as release_error:
                log.warning("could not release reservation %s: %s (it lapses by itself)", rid, release_error)
            raise
        self._remember_pending(rid, as_socket, digest)
        return self._submit(as_socket, rid, digest, domain)

    def _remember_pending(self, reservation_id: str, socket_id: str, digest: str) -> None:
        with self._lock, self._tx():
            self._db.execute("INSERT OR REPLACE INTO pending_buys (reservation_id, socket, digest, at) "
                             "VALUES (?, ?, ?, ?)", (reservation_id, socket_id, digest, self.now()))

    def _submit(self, as_socket: str, reservation_id: str, digest: str, domain: str | None = None) -> Purchase:
        domain = domain or self._domain_of_market()
        reply = self._market("iota/buy", self.sign_message(as_socket, "iota/buy", domain,
                                                    {"reservation_id": reservation_id, "digest": digest}))
        with self._lock, self._tx():
            self._db.execute("DELETE FROM pending_buys WHERE reservation_id = ?", (reservation_id,))
        reply.pop("reservation_id", None)
        return Purchase(**reply)

    def resubmit_pending(self) -> list[Purchase]:
        """Submit again the buys paid but not acknowledged by the market (a crash or an outage in between)."""
        with self._lock:
            pending = self._db.execute("SELECT * FROM pending_buys ORDER BY at").fetchall()
        done = []
        for row in pending:
            try:
                done.append(self._submit(row["socket"], row["reservation_id"], row["digest"]))
            except TradeRefused as exc:
                log.error("the market refused paid buy %s (transaction %s): %s", row["reservation_id"],
                          row["digest"], exc)
                with self._lock, self._tx():
                    self._db.execute("DELETE FROM pending_buys WHERE reservation_id = ?", (row["reservation_id"],))
        return done

    def _check_balance(self, party: str, amount: int) -> None:
        balance = self.wallet.balance(party)
        if balance < amount:
            raise InsufficientFunds(f"{party} holds {balance} nanos, {amount} needed (plus gas)")

    # ---- channels -------------------------------------------------------------------------------

    def _channel_row(self, channel_id: Any) -> sqlite3.Row:
        row = self._db.execute("SELECT * FROM channels WHERE channel_id = ?", (str(channel_id),)).fetchone()
        if row is None:
            raise UnknownChannel(f"no payment channel {channel_id!r}")
        return row

    @staticmethod
    def _channel_of(row: sqlite3.Row) -> Channel:
        return Channel(row["channel_id"], row["sender"], row["recipient"], row["escrow"], row["expires_at"],
                       row["state"], row["paid"], row["channel_id"])

    def channel(self, channel_id: str) -> Channel:
        with self._lock:
            return self._channel_of(self._channel_row(channel_id))

    def channels(self) -> list[Channel]:
        with self._lock:
            return [self._channel_of(row) for row in
                    self._db.execute("SELECT * FROM channels ORDER BY opened_at, channel_id")]

    def _add_digest(self, channel_id: str, digest: str) -> None:
        row = self._channel_row(channel_id)
        digests = json.loads(row["digests"]) + [digest]
        self._db.execute("UPDATE channels SET digests = ? WHERE channel_id = ?", (json.dumps(digests), channel_id))

    def channel_transactions(self, channel_id: str) -> list[str]:
        """Digests of the transactions this controller made or saw for the channel (open, top-ups, settlement)."""
        with self._lock:
            return json.loads(self._channel_row(channel_id)["digests"])

    def open_channel(self, as_socket: str, recipient: str, escrow: int, expires_at: int) -> Channel:
        sender = self.party_for(as_socket)
        recipient = _address(recipient, "recipient")
        positive(escrow, "escrow")
        expires_at = _int(expires_at, "expires_at")
        if recipient == sender:
            raise NotAuthorised("a channel's recipient is another party than its sender")
        now = self.now()
        if expires_at <= now:
            raise ChannelExpired(f"expiry {expires_at} is not after now ({now})")
        peer = self._peer_url(recipient)
        self._check_balance(sender, escrow + self.gas_reserve)
        index = self._index[as_socket]
        # The counter and the channel are committed before any transfer: an id is never reused, and a crash
        # after the escrow left still finds the channel (its sender can reclaim it after expiry).
        with self._lock, self._tx():
            n = self._next(f"channel:{index}")
            address = _address(self.wallet.address(channel_path(index, n)), "channel address")
            self._db.execute(
                "INSERT INTO channels (channel_id, sender, recipient, sender_public_key, escrow, expires_at, state, "
                "socket, n, opened_at, announced) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (address, sender, recipient, self._public_key[as_socket], escrow, expires_at, OPEN, as_socket, n,
                 now, 0 if peer else 1))
        try:
            digest = self.wallet.send(party_path(index), [(address, escrow + self.gas_reserve)])
        except BaseException as exc:
            sent = getattr(exc, "digest", None)
            with self._lock, self._tx():
                if isinstance(sent, str) and sent:  # built and maybe executed: keep the channel to reclaim
                    self._add_digest(address, sent)
                else:  # refused or failed before sending: nothing moved
                    self._db.execute("DELETE FROM channels WHERE channel_id = ?", (address,))
            raise
        with self._lock, self._tx():
            self._add_digest(address, digest)
        if peer is not None:
            self._announce(address)
        return self.channel(address)

    def _announce(self, channel_id: str) -> bool:
        """Tell the recipient's controller about the channel (open or top-up); False if it could not be told."""
        with self._lock:
            row = self._channel_row(channel_id)
        try:
            self._call(self._peer_url(row["recipient"]), "iota/channel-open", self.sign_message(
                row["socket"], "iota/channel-open", self.channel_domain(channel_id),
                {"channel_id": channel_id, "recipient": row["recipient"], "escrow": row["escrow"],
                 "expires_at": row["expires_at"], "digests": json.loads(row["digests"])}))
        except LedgerUnavailable as exc:
            log.warning("channel %s: the recipient's controller was not told (%s); retried with the next voucher",
                        channel_id, exc)
            return False
        with self._lock, self._tx():
            self._db.execute("UPDATE channels SET announced = 1 WHERE channel_id = ?", (channel_id,))
        return True

    def _peer_channel_open(self, envelope: dict) -> dict:
        claimed = self._open_envelope(envelope, "iota/channel-open")
        channel_id = _address(claimed.get("channel_id"), "channel_id")
        message = self._verify(envelope, "iota/channel-open", self.channel_domain(channel_id))
        sender, recipient = message["party"], _address(message.get("recipient"), "recipient")
        escrow = positive(message.get("escrow"), "escrow")
        expires_at = _int(message.get("expires_at"), "expires_at")
        if recipient not in self._socket_of:
            raise NotAuthorised(f"{recipient} is not a party of this controller")
        with self._lock:
            row = self._db.execute("SELECT * FROM channels WHERE channel_id = ?", (channel_id,)).fetchone()
            if row is not None:
                if row["sender"] != sender or row["recipient"] != recipient:
                    raise NotAuthorised(f"channel {channel_id} is already known with other parties")
                if row["state"] != OPEN:
                    raise ChannelClosed(f"channel {channel_id} is {row['state']}")
                if expires_at < row["expires_at"]:
                    raise ExpiryNotExtended(f"channel {channel_id} expires at {row['expires_at']}, not earlier")
                if escrow < row["escrow"]:
                    raise InvalidAmount(f"channel {channel_id} holds {row['escrow']}; an escrow never shrinks")
            elif expires_at <= self.now():
                raise ChannelExpired(f"channel {channel_id} expired at {expires_at}")
        on_ledger = self.wallet.balance(channel_id)
        if on_ledger < escrow:
            raise InsufficientFunds(f"channel address {channel_id} holds {on_ledger} nanos, not the escrow {escrow}")
        digests = [d for d in message.get("digests") or [] if isinstance(d, str)]
        with self._lock, self._tx():
            if row is None:
                self._db.execute(
                    "INSERT INTO channels (channel_id, sender, recipient, sender_public_key, escrow, expires_at, "
                    "state, opened_at, digests) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (channel_id, sender, recipient, envelope["public_key"], escrow, expires_at, OPEN, self.now(),
                     json.dumps(digests)))
            elif row["socket"] is None:  # we are only the recipient: take the sender's word on the expiry
                self._db.execute("UPDATE channels SET escrow = ?, expires_at = ?, digests = ? WHERE channel_id = ?",
                                 (escrow, expires_at, json.dumps(digests), channel_id))
        return self.channel(channel_id).as_dict()

    def top_up(self, as_socket: str, channel_id: str, amount: int, expires_at: int) -> Channel:
        sender = self.party_for(as_socket)
        amount = _int(amount, "amount")
        expires_at = _int(expires_at, "expires_at")
        with self._lock:
            row = self._channel_row(channel_id)
            if row["sender"] != sender or row["socket"] != as_socket:
                raise NotAuthorised(f"only the sender {row['sender']} tops up channel {channel_id}")
            if row["state"] != OPEN:
                raise ChannelClosed(f"channel {channel_id} is {row['state']}")
            if self.now() >= row["expires_at"]:
                raise ChannelExpired(f"channel {channel_id} expired at {row['expires_at']}")
            if expires_at < row["expires_at"]:
                raise ExpiryNotExtended(f"channel {channel_id} expires at {row['expires_at']}; "
                                        f"{expires_at} would shorten it")
            peer = self._peer_url(row["recipient"])
            if amount:
                self._check_balance(sender, amount)
                digest = self.wallet.send(party_path(self._index[as_socket]), [(row["channel_id"], amount)])
            with self._tx():
                self._db.execute("UPDATE channels SET escrow = escrow + ?, expires_at = ?, announced = ? "
                                 "WHERE channel_id = ?", (amount, expires_at, 0 if peer else 1, channel_id))
                if amount:
                    self._add_digest(channel_id, digest)
        if peer is not None:
            self._announce(channel_id)
        return self.channel(channel_id)

    def sign_voucher(self, as_socket: str, channel_id: str, amount: int) -> Voucher:
        positive(amount, "amount")
        channel_id = _address(channel_id, "channel_id")
        domain = self.domain()
        signature = self.wallet.sign(party_path(self._index[self._known_socket(as_socket)]),
                                     voucher_bytes(channel_id, amount, domain))
        with self._lock:
            row = self._db.execute("SELECT announced, socket FROM channels WHERE channel_id = ?",
                                   (channel_id,)).fetchone()
        if row is not None and not row["announced"] and row["socket"] == as_socket:
            self._announce(channel_id)
        return Voucher(channel_id, amount, domain, signature)

    def _known_socket(self, socket_id: str) -> str:
        self.party_for(socket_id)
        return socket_id

    def check_voucher(self, voucher: Voucher, channel_id: str) -> Channel:
        if voucher.channel_id != channel_id:
            raise WrongChannel(f"the voucher is for channel {voucher.channel_id}, not {channel_id}")
        if voucher.domain != self.domain():
            raise WrongDomain(f"the voucher was signed for {voucher.domain!r}, not {self.domain()!r}")
        with self._lock:
            row = self._channel_row(channel_id)
        if row["state"] != OPEN:
            raise ChannelClosed(f"channel {channel_id} is {row['state']}")
        if self.now() >= row["expires_at"]:
            raise ChannelExpired(f"channel {channel_id} expired at {row['expires_at']}")
        if isinstance(voucher.amount, bool) or not isinstance(voucher.amount, int) or voucher.amount <= 0:
            raise InvalidAmount(f"a voucher's amount is a positive integer, got {voucher.amount!r}")
        if voucher.amount > row["escrow"]:
            raise AboveEscrow(f"the voucher promises {voucher.amount}, channel {channel_id} holds {row['escrow']}")
        try:
            valid = self.wallet.verify(row["sender_public_key"],
                                       voucher_bytes(voucher.channel_id, voucher.amount, voucher.domain),
                                       voucher.signature)
        except (ValueError, PaygError):
            valid = False
        if not valid:
            raise BadSignature(f"the voucher on channel {channel_id} is not signed by its sender {row['sender']}")
        return self._channel_of(row)

    def accept_voucher(self, voucher: Voucher, channel_id: str) -> Channel:
        """check_voucher, then refuse a voucher not above the last one accepted, and keep it (recipient side)."""
        channel = self.check_voucher(voucher, channel_id)
        with self._lock, self._tx():
            row = self._channel_row(channel_id)
            if voucher.amount <= row["last_amount"]:
                raise VoucherReplayed(f"channel {channel_id}: {voucher.amount} is not above the last voucher "
                                      f"accepted ({row['last_amount']})")
            self._db.execute("UPDATE channels SET last_amount = ?, last_signature = ? WHERE channel_id = ?",
                             (voucher.amount, voucher.signature, channel_id))
        return channel

    def last_voucher(self, channel_id: str) -> Voucher | None:
        with self._lock:
            row = self._channel_row(channel_id)
        if not row["last_amount"]:
            return None
        return Voucher(channel_id, row["last_amount"], self.domain(), row["last_signature"])

    def close(self, as_socket: str, channel_id: str, voucher: Voucher) -> Channel:
        recipient = self.party_for(as_socket)
        with self._lock:
            row = self._channel_row(channel_id)
            if row["recipient"] != recipient:
                raise NotAuthorised(f"only the recipient {row['recipient']} closes channel {channel_id}")
            self.check_voucher(voucher, channel_id)
            if row["socket"] is not None:  # this controller holds the channel key
                return self._settle(row, voucher)[0]
        reply = self._call(self._peer_url(row["sender"]), "iota/close", self.sign_message(
            as_socket, "iota/close", self.channel_domain(channel_id),
            {"channel_id": channel_id, "voucher": voucher.as_dict()}))
        payment = _str(reply.get("payment"), "payment digest")
        tx = self.wallet.transaction(payment)
        changes = {normalise_address(a): int(v) for a, v in (tx.get("changes") or {}).items()}
        if not tx.get("success") or _address(tx.get("sender"), "sender") != channel_id \
                or changes.get(recipient, 0) < voucher.amount:
            raise LedgerUnavailable(f"channel {channel_id}: the sender's controller answered transaction {payment}, "
                                    f"which does not pay {voucher.amount} to {recipient} from the channel")
        with self._lock, self._tx():
            self._db.execute("UPDATE channels SET state = ?, paid = ? WHERE channel_id = ?",
                             (CLOSED, voucher.amount, channel_id))
            for digest in reply.get("digests", [payment]):
                self._add_digest(channel_id, digest)
        return self.channel(channel_id)

    def _peer_close(self, envelope: dict) -> dict:
        claimed = self._open_envelope(envelope, "iota/close")
        channel_id = _address(claimed.get("channel_id"), "channel_id")
        message = self._verify(envelope, "iota/close", self.channel_domain(channel_id))
        voucher_data = message.get("voucher")
        if not isinstance(voucher_data, dict):
            raise ValueError("iota/close needs a voucher")
        voucher = Voucher.from_dict(voucher_data)
        with self._lock:
            row = self._channel_row(channel_id)
            if row["socket"] is None:
                raise NotAuthorised(f"this controller does not hold channel {channel_id}'s key")
            if message["party"] != row["recipient"]:
                raise NotAuthorised(f"only the recipient {row['recipient']} closes channel {channel_id}")
            self.check_voucher(voucher, channel_id)
            _, payment, swept = self._settle(row, voucher)
        return {"payment": payment, "digests": [payment, swept]}

    def _settle(self, row: sqlite3.Row, voucher: Voucher) -> tuple[Channel, str, str]:
        """Pay the voucher to the recipient from the channel address, then sweep the rest to the sender.

        Two transactions (IotaWallet.send cannot say "the rest, less gas, to X" beside a fixed output); both
        are paid from the gas reserve, never from the escrow. The channel is marked closed before anything
        moves, so a crash or a retry can never pay it twice; a send refused before sending reopens it."""
        channel_id, path = row["channel_id"], channel_path(self._index[row["socket"]], row["n"])
        with self._tx():
            self._db.execute("UPDATE channels SET state = ?, paid = ?, last_amount = MAX(last_amount, ?), "
                             "last_signature = ? WHERE channel_id = ?",
                             (CLOSED, voucher.amount, voucher.amount, voucher.signature, channel_id))
        try:
            pay = self.wallet.send(path, [(row["recipient"], voucher.amount)])
        except TradeRefused:
            with self._tx():
                self._db.execute("UPDATE channels SET state = ?, paid = 0, last_amount = ?, last_signature = ? "
                                 "WHERE channel_id = ?", (OPEN, row["last_amount"], row["last_signature"],
                                                          channel_id))
            raise
        with self._tx():
            self._add_digest(channel_id, pay)
        swept, _ = self.wallet.sweep(path, row["sender"])
        with self._tx():
            self._add_digest(channel_id, swept)
        return self.channel(channel_id), pay, swept

    def reclaim(self, as_socket: str, channel_id: str) -> Channel:
        sender = self.party_for(as_socket)
        with self._lock:
            row = self._channel_row(channel_id)
            if row["sender"] != sender or row["socket"] != as_socket:
                raise NotAuthorised(f"only the sender {row['sender']} reclaims channel {channel_id}")
            if row["state"] != OPEN:
                raise ChannelClosed(f"channel {channel_id} is {row['state']}")
            if self.now() < row["expires_at"]:
                raise ChannelNotExpired(f"channel {channel_id} expires at {row['expires_at']} (now {self.now()})")
            with self._tx():
                self._db.execute("UPDATE channels SET state = ? WHERE channel_id = ?", (RECLAIMED, channel_id))
            digest, _ = self.wallet.sweep(channel_path(self._index[as_socket], row["n"]), sender)
            with self._tx():
                self._add_digest(channel_id, digest)
        peer = self._peers.get(row["recipient"]) if row["recipient"] not in self._socket_of else None
        if peer is not None:
            try:
                self._call(peer, "iota/channel-reclaimed", self.sign_message(
                    as_socket, "iota/channel-reclaimed", self.channel_domain(channel_id),
                    {"channel_id": channel_id, "digest": digest}))
            except PaygError as exc:
                log.warning("channel %s reclaimed; the recipient's controller was not told: %s", channel_id, exc)
        return self.channel(channel_id)

    def _peer_reclaimed(self, envelope: dict) -> dict:
        claimed = self._open_envelope(envelope, "iota/channel-reclaimed")
        channel_id = _address(claimed.get("channel_id"), "channel_id")
        message = self._verify(envelope, "iota/channel-reclaimed", self.channel_domain(channel_id))
        with self._lock, self._tx():
            row = self._channel_row(channel_id)
            if message["party"] != row["sender"]:
                raise NotAuthorised(f"only the sender {row['sender']} reclaims channel {channel_id}")
            if self.now() + CLOCK_TOLERANCE_S < row["expires_at"]:
                raise ChannelNotExpired(f"channel {channel_id} expires at {row['expires_at']}")
            self._db.execute("UPDATE channels SET state = ? WHERE channel_id = ? AND state = ?",
                             (RECLAIMED, channel_id, OPEN))
        return self.channel(channel_id).as_dict()

    def watch(self, channel_id: str) -> dict:
        """The recipient's check of the escrow on the ledger. `broken` (kept) when the channel address holds
        less than the latest voucher accepted: the sender's controller moved the escrow away."""
        with self._lock:
            row = self._channel_row(channel_id)
        balance = self.wallet.balance(channel_id)
        owed = row["last_amount"]
        broken = row["state"] == OPEN and balance < owed
        if broken and not row["broken"]:
            log.error("channel %s: its address holds %d nanos, less than the %d the latest voucher promises",
                      channel_id, balance, owed)
            with self._lock, self._tx():
                self._db.execute("UPDATE channels SET broken = 1 WHERE channel_id = ?", (channel_id,))
        return {"channel_id": channel_id, "balance": balance, "escrow": row["escrow"], "owed": owed,
                "broken": bool(broken or row["broken"])}

    # ---- peer endpoint --------------------------------------------------------------------------

    def handle_peer_message(self, kind: str, payload: dict) -> dict:
        """Answer `POST /api/peer/<kind>` from another controller. Raises payg errors (see peer_error_reply);
        a malformed message is InvalidAmount (HTTP 400), whatever field is wrong."""
        try:
            return self._handle(kind, payload)
        except PaygError:
            raise
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidAmount(f"{kind}: bad message: {exc}") from None

    def _handle(self, kind: str, payload: dict) -> dict:
        if not isinstance(payload, dict):
            raise ValueError("a peer message is a JSON object")
        handlers = {
            "iota/grant": self._host_grant, "iota/revoke": self._host_revoke, "iota/advert": self._host_advert,
            "iota/reserve": self._host_reserve, "iota/release": self._host_release, "iota/buy": self._host_buy,
            "iota/channel-open": self._peer_channel_open, "iota/close": self._peer_close,
            "iota/channel-reclaimed": self._peer_reclaimed,
        }
        if kind in handlers:
            return handlers[kind](payload)
        if kind == "iota/expire":
            return self._host_expire(payload)
        if kind in ("iota/market", "iota/role", "iota/advert-info", "iota/adverts", "iota/purchases"):
            return self._host_query(kind, payload)
        if kind == "iota/channel":
            return self.channel(_str(payload.get("channel_id"), "channel_id")).as_dict()
        raise ValueError(f"unknown peer message kind {kind!r}")


def _advert(d: dict) -> Advert:
    return Advert(str(d["advert_id"]), d["producer"], d["energy_wh"], d["remaining_wh"], d["min_price_per_wh"],
                  d["posted_at"])


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error); nested uses join the outer transaction."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db
        self.outer = False

    def __enter__(self):
        if not self.db.in_transaction:
            self.db.execute("BEGIN IMMEDIATE")
            self.outer = True
        return self

    def __exit__(self, exc_type, exc, tb):
        if self.outer:
            self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")
        return False
