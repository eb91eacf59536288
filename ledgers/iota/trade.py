"""IotaTrade: the energy market and one-way payment channels on IOTA, enforced by the controllers.

IOTA (the Move-based network) runs no contract this project can deploy, so the
rules of payg/domain/market.py are enforced by the controllers, and money moves only as
real IOTA transfers made through an IotaWallet (ledgers/iota/wallet.py). One
IotaTrade implements both PeerTrade and PaymentChannel for the sockets of one
controller, composed of:

    envelope.py   the sockets' trade keys and the signed messages between controllers
    host.py       the market, on the controller that hosts it
    market.py     the market as this controller's sockets use it (two-phase buys)
    channels.py   payment channels
    peers.py      where a message goes (another controller through PeerLink, or this one)
    store.py      the SQLite file all of them keep their state in

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
escrow address (ChannelBook watches before each voucher, from a read that starts
after the voucher arrived), and never exceeds the latest voucher.
Every message is signed by its party's key, so a controller cannot act for a party
whose key it does not hold.

Time. Prices and expiries are judged by the host's clock, buys also by
checkpoint timestamps: host clocks and IOTA checkpoint time must agree within
CLOCK_TOLERANCE_S (run NTP); signed messages are refused beyond MAX_SKEW_S.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from ledgers.iota.channels import DEFAULT_GAS_RESERVE, Channels
from ledgers.iota.envelope import Envelopes, Parties, Wallet, integer, text
from ledgers.iota.host import RESERVATION_S, MarketHost
from ledgers.iota.market import MarketClient
from ledgers.iota.peers import Peers
from ledgers.iota.store import TradeStore
from payg.domain.market import (
    DEFAULT_CAPACITY_WH,
    DEFAULT_TAX_BPS,
    Advert,
    Channel,
    MarketInfo,
    Purchase,
    Voucher,
    positive,
)
from payg.errors import InvalidAmount, PaygError
from payg.ports import Clock, PeerLink

HOST_QUERIES = ("iota/market", "iota/role", "iota/advert-info", "iota/adverts", "iota/purchases")


class IotaTrade:
    """PeerTrade and PaymentChannel on IOTA for the sockets in `accounts` (socket id -> derivation index), with
    the optional roles EscrowWatch (`watch`), PeerDirectory (`add_peer`) and PeerMessages (`handle_peer_message`).

    peer_link: how messages reach other controllers (payg.ports.PeerLink).
    market_url: the hosting controller's base URL, or None if this controller hosts the market.
    peers: party address -> base URL of the controller that holds that party's keys (for channels).
    gas_reserve: nanos sent to a channel address beside the escrow, so that the settlement's gas never
    comes out of what the vouchers promise; what is left of it returns to the sender.
    reservation_s: how long the market (when hosted here) holds a buy's quote.
    """

    name = "iota"

    def __init__(self, wallet: Wallet, *, accounts: Mapping[str, int], store_path: str | Path, clock: Clock,
                 peer_link: PeerLink, market_url: str | None = None, peers: Mapping[str, str] | None = None,
                 gas_reserve: int = DEFAULT_GAS_RESERVE, reservation_s: int = RESERVATION_S):
        self.wallet = wallet
        self.clock = clock
        self.peer_link = peer_link
        self.market_url = market_url.rstrip("/") if market_url else None
        self.gas_reserve = integer(gas_reserve, "gas_reserve")
        self.reservation_s = positive(reservation_s, "reservation_s")
        self._parties = Parties(wallet, accounts)
        self._peers = Peers(peer_link, self._parties, peers, local=self.handle_peer_message)
        self.store_path = Path(store_path)
        self._store = TradeStore(self.store_path)
        self._envelopes = Envelopes(self._parties, self._store, clock)
        part = dict(wallet=wallet, parties=self._parties, envelopes=self._envelopes, peers=self._peers,
                    store=self._store, clock=clock)
        self._host = MarketHost(**part, reservation_s=self.reservation_s)
        self._market = MarketClient(**part, market_url=self.market_url)
        self._channels = Channels(**part, gas_reserve=self.gas_reserve)
        host, channels = self._host, self._channels
        self._handlers = {
            "iota/grant": host.grant, "iota/revoke": host.revoke, "iota/advert": host.advert,
            "iota/reserve": host.reserve, "iota/release": host.release, "iota/buy": host.buy,
            "iota/expire": host.expire, "iota/channel-open": channels.on_open, "iota/close": channels.on_close,
            "iota/channel-reclaimed": channels.on_reclaimed,
        }

    def shutdown(self) -> None:
        """Close the store (`close` is the channel operation)."""
        self._store.close()

    def party_for(self, socket_id: str) -> str:
        return self._parties.party_for(socket_id)

    def socket_for(self, party: str) -> str | None:
        return self._parties.socket_for(party)

    def now(self) -> int:
        return int(self.clock.now())

    @property
    def network(self) -> str:
        return self._envelopes.network

    def domain(self) -> str:
        """What vouchers are bound to besides their channel: the network (a channel id is its own address)."""
        return self._envelopes.voucher_domain()

    def channel_domain(self, channel_id: str) -> str:
        return self._envelopes.channel_domain(channel_id)

    def add_peer(self, party: str, base_url: str) -> None:
        self._peers.add(party, base_url)

    def sign_message(self, socket_id: str, kind: str, domain: str, fields: dict) -> dict:
        """A signed envelope for `kind` (ledgers/iota/envelope.py), acting as `socket_id`."""
        return self._envelopes.sign(socket_id, kind, domain, fields)

    def create_market(self, owner_socket: str, capacity_wh: int = DEFAULT_CAPACITY_WH,
                      tax_bps: int = DEFAULT_TAX_BPS) -> MarketInfo:
        """Host a market here, owned by `owner_socket`'s party (once per store)."""
        if self.market_url is not None:
            raise ValueError("this controller uses the market at " + self.market_url + "; it cannot host one")
        self._host.create(self.party_for(owner_socket), capacity_wh, tax_bps)
        return self.market()

    def market(self) -> MarketInfo:
        return self._market.market()

    def role_of(self, party: str) -> str:
        return self._market.role_of(party)

    def grant(self, as_socket: str, party: str, role: str) -> None:
        self._market.grant(as_socket, party, role)

    def revoke(self, as_socket: str, party: str) -> None:
        self._market.revoke(as_socket, party)

    def post_advert(self, as_socket: str, energy_wh: int, min_price_per_wh: int) -> Advert:
        return self._market.post_advert(as_socket, energy_wh, min_price_per_wh)

    def advert(self, advert_id: str) -> Advert:
        return self._market.advert(advert_id)

    def adverts(self) -> list[Advert]:
        return self._market.adverts()

    def purchases(self) -> list[Purchase]:
        """Every purchase recorded by the market, oldest first."""
        return self._market.purchases()

    def buy(self, as_socket: str, advert_id: str, energy_wh: int, max_price_per_wh: int | None = None) -> Purchase:
        return self._market.buy(as_socket, advert_id, energy_wh, max_price_per_wh)

    def resubmit_pending(self) -> list[Purchase]:
        """Submit again the buys paid but not acknowledged by the market (a crash or an outage in between)."""
        return self._market.resubmit_pending()

    def expire(self, advert_id: str) -> int:
        return self._market.expire(advert_id)

    def withdraw(self, as_socket: str) -> int:
        return self._market.withdraw(as_socket)

    def open_channel(self, as_socket: str, recipient: str, escrow: int, expires_at: int) -> Channel:
        return self._channels.open_channel(as_socket, recipient, escrow, expires_at)

    def top_up(self, as_socket: str, channel_id: str, amount: int, expires_at: int) -> Channel:
        return self._channels.top_up(as_socket, channel_id, amount, expires_at)

    def channel(self, channel_id: str) -> Channel:
        return self._channels.channel(channel_id)

    def channels(self) -> list[Channel]:
        return self._channels.channels()

    def channel_transactions(self, channel_id: str) -> list[str]:
        """Digests of the transactions this controller made or saw for the channel (open, top-ups, settlement)."""
        return self._channels.channel_transactions(channel_id)

    def sign_voucher(self, as_socket: str, channel_id: str, amount: int) -> Voucher:
        return self._channels.sign_voucher(as_socket, channel_id, amount)

    def check_voucher(self, voucher: Voucher, channel_id: str) -> Channel:
        return self._channels.check_voucher(voucher, channel_id)

    def accept_voucher(self, voucher: Voucher, channel_id: str) -> Channel:
        """check_voucher, then refuse a voucher not above the last one accepted, and keep it (recipient side)."""
        return self._channels.accept_voucher(voucher, channel_id)

    def last_voucher(self, channel_id: str) -> Voucher | None:
        return self._channels.last_voucher(channel_id)

    def close(self, as_socket: str, channel_id: str, voucher: Voucher) -> Channel:
        return self._channels.close(as_socket, channel_id, voucher)

    def reclaim(self, as_socket: str, channel_id: str) -> Channel:
        return self._channels.reclaim(as_socket, channel_id)

    def watch(self, channel_id: str) -> dict:
        """The recipient's look at the channel's escrow on the ledger (ledgers/iota/channels.py)."""
        return self._channels.watch(channel_id)

    def handle_peer_message(self, kind: str, payload: dict) -> dict:
        """Answer `POST /api/peer/<kind>` from another controller. Raises payg errors (the web layer answers them
        with payg.errors.error_reply); a malformed message is InvalidAmount (HTTP 400), whatever field is wrong."""
        try:
            return self._route(kind, payload)
        except PaygError:
            raise
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidAmount(f"{kind}: bad message: {exc}") from None

    def _route(self, kind: str, payload: dict) -> dict:
        if not isinstance(payload, dict):
            raise ValueError("a peer message is a JSON object")
        if kind in self._handlers:
            return self._handlers[kind](payload)
        if kind in HOST_QUERIES:
            return self._host.query(kind, payload)
        if kind == "iota/channel":
            return self.channel(text(payload.get("channel_id"), "channel_id")).as_dict()
        raise ValueError(f"unknown peer message kind {kind!r}")
