"""MockTrade: the market and payment channels on the mock ledger, for running and testing without keys.

It lives in the mock ledger's SQLite file, so several controllers on one machine
(pointing `[ledger.mock] path` at the same file) trade with each other. Every rule
of payg/domain/market.py is enforced here, in one SQLite transaction per operation, so a
refused operation moves nothing. There is no cryptography worth the name: a
voucher's signature is an HMAC under a key anyone can derive from the sender's
address. It binds a voucher to its channel, amount and mock ledger (so the
refusals behave as on the real ledgers) but protects against nobody.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Iterable
from pathlib import Path

from ledgers.mock.store import MockFile
from payg.domain import market as rules
from payg.domain.market import Advert, Channel, MarketInfo, Purchase, Voucher
from payg.errors import (
    AboveEscrow,
    AdvertNotExpired,
    BadSignature,
    ChannelClosed,
    ChannelExpired,
    ChannelNotExpired,
    ExpiryNotExtended,
    InsufficientFunds,
    InvalidAmount,
    NotAuthorised,
    RoleConflict,
    UnknownAdvert,
    UnknownChannel,
    UnknownSocket,
    WrongChannel,
    WrongDomain,
)
from payg.ports import Clock

SCHEMA = """
CREATE TABLE IF NOT EXISTS trade_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS wallets (address TEXT PRIMARY KEY, balance INTEGER NOT NULL CHECK (balance >= 0));
CREATE TABLE IF NOT EXISTS roles (party TEXT PRIMARY KEY, role TEXT NOT NULL, granted_by TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS adverts (
    id INTEGER PRIMARY KEY AUTOINCREMENT, producer TEXT NOT NULL, energy_wh INTEGER NOT NULL,
    remaining_wh INTEGER NOT NULL, min_price INTEGER NOT NULL, posted_at INTEGER NOT NULL,
    returned INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS purchases (
    id TEXT PRIMARY KEY, advert_id INTEGER NOT NULL, consumer TEXT NOT NULL, producer TEXT NOT NULL,
    energy_wh INTEGER NOT NULL, price INTEGER NOT NULL, producer_amount INTEGER NOT NULL,
    tax_amount INTEGER NOT NULL, regulator TEXT NOT NULL, at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS channels (
    id INTEGER PRIMARY KEY AUTOINCREMENT, sender TEXT NOT NULL, recipient TEXT NOT NULL,
    escrow INTEGER NOT NULL, expires_at INTEGER NOT NULL, state TEXT NOT NULL, paid INTEGER NOT NULL DEFAULT 0);
"""

MAX_AMOUNT = 2**62
ADVERT_COLUMNS = "id, producer, energy_wh, remaining_wh, min_price, posted_at"  # Advert's fields, in order
CHANNEL_COLUMNS = "id, sender, recipient, escrow, expires_at, state, paid"  # Channel's fields, in order


def mock_party(socket_id: str) -> str:
    return "mock1" + hashlib.sha256(b"payg-mock-party:" + socket_id.encode()).hexdigest()[:40]


def _key(party: str) -> bytes:
    return hashlib.sha256(b"payg-mock-key:" + party.encode()).digest()


def _voucher_mac(party: str, domain: str, channel_id: str, amount: int) -> str:
    return hmac.new(_key(party), f"{domain}|{channel_id}|{amount}".encode(), hashlib.sha256).hexdigest()


def _amount(value: object, what: str, *, zero_ok: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0 or (value == 0 and not zero_ok):
        raise InvalidAmount(f"{what} must be a {'non-negative' if zero_ok else 'positive'} integer, got {value!r}")
    if value > MAX_AMOUNT:
        raise InvalidAmount(f"{what} {value} is too large for the mock ledger")
    return value


def _by_id(c, table: str, columns: str, item_id: object) -> tuple | None:
    """The row of `table` whose id is `item_id` (ids are decimal numbers), or None."""
    digits = str(item_id)
    if not digits.isdigit():
        return None
    return c.execute(f"SELECT {columns} FROM {table} WHERE id = ?", (int(digits),)).fetchone()


def _advert(row: tuple) -> Advert:
    advert_id, *rest = row
    return Advert(str(advert_id), *rest)


class MockTrade:
    name = "mock"

    def __init__(self, path: str | Path, clock: Clock, socket_ids: Iterable[str], *,
                 capacity_wh: int = rules.DEFAULT_CAPACITY_WH, tax_bps: int = rules.DEFAULT_TAX_BPS,
                 owner_socket: str | None = None):
        self.path = Path(path)
        self.clock = clock
        self._parties = {socket_id: mock_party(socket_id) for socket_id in socket_ids}
        self._file = MockFile(self.path, SCHEMA)
        with self._file.transaction() as c:
            meta = dict(c.execute("SELECT key, value FROM trade_meta").fetchall())
            if "market_id" not in meta:
                # the first controller to open the file creates the market; later ones join it
                if not rules.MIN_CAPACITY_WH <= capacity_wh <= rules.MAX_CAPACITY_WH:
                    raise InvalidAmount(f"grid capacity must be {rules.MIN_CAPACITY_WH}..{rules.MAX_CAPACITY_WH} Wh,"
                                        f" got {capacity_wh}")
                if not 0 <= tax_bps <= rules.MAX_TAX_BPS:
                    raise InvalidAmount(f"tax must be 0..{rules.MAX_TAX_BPS} basis points, got {tax_bps}")
                owner = self._party(owner_socket) if owner_socket else ""
                meta = {"market_id": uuid.uuid4().hex[:16], "capacity_wh": str(capacity_wh),
                        "tax_bps": str(tax_bps), "owner": owner}
                c.executemany("INSERT INTO trade_meta (key, value) VALUES (?, ?)", meta.items())
                if owner:
                    c.execute("INSERT INTO roles (party, role, granted_by) VALUES (?, ?, '')", (owner, rules.OWNER))
        self._market_id = meta["market_id"]
        self._capacity_wh = int(meta["capacity_wh"])
        self._tax_bps = int(meta["tax_bps"])

    def shutdown(self) -> None:
        """Release the file (`close` is the channel operation)."""
        self._file.close()

    def _party(self, socket_id: str) -> str:
        try:
            return self._parties[socket_id]
        except KeyError:
            raise UnknownSocket(socket_id) from None

    def party_for(self, socket_id: str) -> str:
        return self._party(socket_id)

    def now(self) -> int:
        return int(self.clock.now())

    def domain(self) -> str:
        return f"mock:{self._market_id}"


    def fund(self, party: str, amount: int) -> None:
        """Mint `amount` into a party's wallet (the mock ledger's faucet)."""
        _amount(amount, "amount")
        with self._file.transaction() as c:
            self._move(c, None, party, amount)

    def balance(self, party: str) -> int:
        with self._file.transaction() as c:
            return self._balance(c, party)

    @staticmethod
    def _balance(c, party: str) -> int:
        row = c.execute("SELECT balance FROM wallets WHERE address = ?", (party,)).fetchone()
        return row[0] if row else 0

    def _move(self, c, src: str | None, dst: str | None, amount: int) -> None:
        if amount == 0:
            return
        if src is not None:
            have = self._balance(c, src)
            if have < amount:
                raise InsufficientFunds(f"{src} has {have}, needs {amount}")
            c.execute("UPDATE wallets SET balance = balance - ? WHERE address = ?", (amount, src))
        if dst is not None:
            if self._balance(c, dst) + amount > MAX_AMOUNT:
                raise InvalidAmount(f"{dst} would hold more than the mock ledger counts")
            c.execute("INSERT INTO wallets (address, balance) VALUES (?, ?) ON CONFLICT(address) DO UPDATE"
                      " SET balance = balance + excluded.balance", (dst, amount))


    def market(self) -> MarketInfo:
        with self._file.transaction() as c:
            owner = c.execute("SELECT value FROM trade_meta WHERE key = 'owner'").fetchone()[0]
            return MarketInfo(owner, self._capacity_wh, self._advertised(c, self.now()), self._tax_bps,
                              self.domain())

    @staticmethod
    def _role(c, party: str) -> str:
        row = c.execute("SELECT role FROM roles WHERE party = ?", (party,)).fetchone()
        return row[0] if row else rules.NO_ROLE

    def role_of(self, party: str) -> str:
        with self._file.transaction() as c:
            return self._role(c, party)

    def _require(self, c, party: str, *roles: str) -> None:
        role = self._role(c, party)
        if role not in roles:
            raise NotAuthorised(f"{party} is {role}; this needs {' or '.join(roles)}")

    def _require_authority(self, c, actor: str, role: str, refusal: str) -> None:
        """The owner grants and revokes regulators; regulators grant and revoke producers and consumers."""
        if role == rules.REGULATOR:
            self._require(c, actor, rules.OWNER)
        elif role in (rules.PRODUCER, rules.CONSUMER):
            self._require(c, actor, rules.REGULATOR)
        else:
            raise NotAuthorised(refusal)

    def grant(self, as_socket: str, party: str, role: str) -> None:
        actor = self._party(as_socket)
        with self._file.transaction() as c:
            self._require_authority(c, actor, role, f"role {role!r} cannot be granted")
            held = self._role(c, party)
            if held != rules.NO_ROLE:
                raise RoleConflict(f"{party} already holds {held}")
            c.execute("INSERT INTO roles (party, role, granted_by) VALUES (?, ?, ?)", (party, role, actor))

    def revoke(self, as_socket: str, party: str) -> None:
        actor = self._party(as_socket)
        with self._file.transaction() as c:
            held = self._role(c, party)
            self._require_authority(c, actor, held, f"{party} holds {held}, which cannot be revoked")
            c.execute("DELETE FROM roles WHERE party = ?", (party,))


    def _advertised(self, c, now: int) -> int:
        row = c.execute("SELECT COALESCE(SUM(remaining_wh), 0) FROM adverts WHERE posted_at > ?",
                        (now - rules.ADVERT_LIFETIME_S,)).fetchone()
        return row[0]

    def post_advert(self, as_socket: str, energy_wh: int, min_price_per_wh: int) -> Advert:
        producer = self._party(as_socket)
        _amount(energy_wh, "energy_wh")
        _amount(min_price_per_wh, "min_price_per_wh")
        now = self.now()
        with self._file.transaction() as c:
            self._require(c, producer, rules.PRODUCER)
            rules.check_capacity(self._advertised(c, now), energy_wh, self._capacity_wh)
            cur = c.execute("INSERT INTO adverts (producer, energy_wh, remaining_wh, min_price, posted_at)"
                            " VALUES (?, ?, ?, ?, ?)", (producer, energy_wh, energy_wh, min_price_per_wh, now))
            return Advert(str(cur.lastrowid), producer, energy_wh, energy_wh, min_price_per_wh, now)

    def _load_advert(self, c, advert_id: str) -> Advert:
        row = _by_id(c, "adverts", ADVERT_COLUMNS, advert_id)
        if row is None:
            raise UnknownAdvert(f"no advert {advert_id!r} on {self.domain()}")
        return _advert(row)

    def advert(self, advert_id: str) -> Advert:
        with self._file.transaction() as c:
            return self._load_advert(c, advert_id)

    def adverts(self) -> list[Advert]:
        now = self.now()
        with self._file.transaction() as c:
            rows = c.execute(f"SELECT {ADVERT_COLUMNS} FROM adverts WHERE remaining_wh > 0 AND posted_at > ?"
                             " ORDER BY id", (now - rules.ADVERT_LIFETIME_S,)).fetchall()
        return [_advert(r) for r in rows]

    def buy(self, as_socket: str, advert_id: str, energy_wh: int, max_price_per_wh: int | None = None) -> Purchase:
        consumer = self._party(as_socket)
        now = self.now()
        with self._file.transaction() as c:
            self._require(c, consumer, rules.CONSUMER)
            advert = self._load_advert(c, advert_id)
            price, share, tax = advert.quote(energy_wh, now, self._tax_bps, max_price_per_wh)
            regulator = self._tax_collector(c, advert.producer)
            if self._balance(c, consumer) < share + tax:
                raise InsufficientFunds(f"{consumer} has {self._balance(c, consumer)}, the buy costs"
                                        f" {share} + {tax} tax")
            self._move(c, consumer, advert.producer, share)
            self._move(c, consumer, regulator, tax)
            c.execute("UPDATE adverts SET remaining_wh = remaining_wh - ? WHERE id = ?", (energy_wh, int(advert_id)))
            purchase = Purchase("mock-buy-" + uuid.uuid4().hex, advert.advert_id, consumer, advert.producer,
                                energy_wh, price, share, tax, regulator, now)
            c.execute("INSERT INTO purchases VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                      (purchase.purchase_id, int(advert_id), consumer, advert.producer, energy_wh, price, share, tax,
                       regulator, now))
            return purchase

    def _tax_collector(self, c, producer: str) -> str:
        row = c.execute("SELECT granted_by FROM roles WHERE party = ?", (producer,)).fetchone()
        regulator = row[0] if row else ""
        if regulator and self._role(c, regulator) == rules.REGULATOR:
            return regulator
        return c.execute("SELECT value FROM trade_meta WHERE key = 'owner'").fetchone()[0]

    def expire(self, advert_id: str) -> int:
        now = self.now()
        with self._file.transaction() as c:
            advert = self._load_advert(c, advert_id)
            if not rules.is_expired(advert.posted_at, now):
                raise AdvertNotExpired(f"advert {advert_id} expires at {advert.expires_at}")
            c.execute("UPDATE adverts SET remaining_wh = 0, returned = returned + ? WHERE id = ?",
                      (advert.remaining_wh, int(advert_id)))
            return advert.remaining_wh

    def withdraw(self, as_socket: str) -> int:
        self._party(as_socket)
        return 0  # the mock market pays producers and regulators directly: nothing is ever owed


    def _load_channel(self, c, channel_id: str) -> Channel:
        row = _by_id(c, "channels", CHANNEL_COLUMNS, channel_id)
        if row is None:
            raise UnknownChannel(f"no channel {channel_id!r} on {self.domain()}")
        channel_number, *rest = row
        return Channel(str(channel_number), *rest)

    def channel(self, channel_id: str) -> Channel:
        with self._file.transaction() as c:
            return self._load_channel(c, channel_id)

    def open_channel(self, as_socket: str, recipient: str, escrow: int, expires_at: int) -> Channel:
        sender = self._party(as_socket)
        _amount(escrow, "escrow")
        now = self.now()
        if not isinstance(expires_at, int) or expires_at <= now:
            raise ChannelExpired(f"a channel must expire after now ({now}), got {expires_at!r}")
        if not recipient or recipient == sender:
            raise NotAuthorised("a channel needs a recipient other than its sender")
        with self._file.transaction() as c:
            self._move(c, sender, None, escrow)
            cur = c.execute("INSERT INTO channels (sender, recipient, escrow, expires_at, state)"
                            " VALUES (?, ?, ?, ?, ?)",
                            (sender, recipient, escrow, expires_at, rules.OPEN))
            return Channel(str(cur.lastrowid), sender, recipient, escrow, expires_at)

    def _open(self, c, channel_id: str) -> Channel:
        ch = self._load_channel(c, channel_id)
        if ch.state != rules.OPEN:
            raise ChannelClosed(f"channel {channel_id} is {ch.state}")
        return ch

    def top_up(self, as_socket: str, channel_id: str, amount: int, expires_at: int) -> Channel:
        sender = self._party(as_socket)
        _amount(amount, "amount", zero_ok=True)
        with self._file.transaction() as c:
            ch = self._open(c, channel_id)
            if ch.sender != sender:
                raise NotAuthorised(f"only the sender of channel {channel_id} tops it up")
            if self.now() >= ch.expires_at:
                raise ChannelExpired(f"channel {channel_id} expired at {ch.expires_at}")
            if not isinstance(expires_at, int) or expires_at < ch.expires_at:
                raise ExpiryNotExtended(f"channel {channel_id} expires at {ch.expires_at};"
                                        f" {expires_at!r} would shorten it")
            self._move(c, sender, None, amount)
            c.execute("UPDATE channels SET escrow = escrow + ?, expires_at = ? WHERE id = ?",
                      (amount, expires_at, int(channel_id)))
            return self._load_channel(c, channel_id)

    def sign_voucher(self, as_socket: str, channel_id: str, amount: int) -> Voucher:
        sender = self._party(as_socket)
        _amount(amount, "amount")
        return Voucher(str(channel_id), amount, self.domain(),
                       _voucher_mac(sender, self.domain(), str(channel_id), amount))

    def _check(self, c, voucher: Voucher, channel_id: str) -> Channel:
        if voucher.channel_id != str(channel_id):
            raise WrongChannel(f"voucher for channel {voucher.channel_id} presented for channel {channel_id}")
        if voucher.domain != self.domain():
            raise WrongDomain(f"voucher signed for {voucher.domain}, this is {self.domain()}")
        ch = self._open(c, channel_id)
        if self.now() >= ch.expires_at:
            raise ChannelExpired(f"channel {channel_id} expired at {ch.expires_at}")
        expected = _voucher_mac(ch.sender, voucher.domain, voucher.channel_id, voucher.amount)
        if not hmac.compare_digest(expected, str(voucher.signature)):
            raise BadSignature(f"voucher on channel {channel_id} is not signed by its sender")
        if voucher.amount > ch.escrow:
            raise AboveEscrow(f"voucher for {voucher.amount}, channel {channel_id} holds {ch.escrow}")
        return ch

    def check_voucher(self, voucher: Voucher, channel_id: str) -> Channel:
        with self._file.transaction() as c:
            return self._check(c, voucher, channel_id)

    def close(self, as_socket: str, channel_id: str, voucher: Voucher) -> Channel:
        actor = self._party(as_socket)
        with self._file.transaction() as c:
            ch = self._open(c, channel_id)
            if ch.recipient != actor:
                raise NotAuthorised(f"only the recipient of channel {channel_id} closes it")
            self._check(c, voucher, channel_id)
            self._move(c, None, ch.recipient, voucher.amount)
            self._move(c, None, ch.sender, ch.escrow - voucher.amount)
            c.execute("UPDATE channels SET state = ?, paid = ? WHERE id = ?", (rules.CLOSED, voucher.amount,
                                                                               int(channel_id)))
            return self._load_channel(c, channel_id)

    def reclaim(self, as_socket: str, channel_id: str) -> Channel:
        actor = self._party(as_socket)
        with self._file.transaction() as c:
            ch = self._open(c, channel_id)
            if ch.sender != actor:
                raise NotAuthorised(f"only the sender of channel {channel_id} reclaims it")
            if self.now() < ch.expires_at:
                raise ChannelNotExpired(f"channel {channel_id} expires at {ch.expires_at}")
            self._move(c, None, ch.sender, ch.escrow)
            c.execute("UPDATE channels SET state = ? WHERE id = ?", (rules.RECLAIMED, int(channel_id)))
            return self._load_channel(c, channel_id)
