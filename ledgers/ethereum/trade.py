"""EthereumTrade: the energy market and the payment channels on an EVM chain, through two contracts.

The rules live in the contracts (contracts/market.vy and channels.vy), with the formulas of
payg/domain/market.py; this class sends the transactions, reads the state back and verifies vouchers
off-chain with the contract's own EIP-712 rules. The market operations are here, the channel ones in
channels.py, the keys and transactions they share in client.py.

Buys. The buy is paid exactly at the price the advert has when the transaction is expected in a block
(one second after the latest block) and that price is sent as the buyer's limit: if the price steps
up before it is mined, the buy is refused with PriceAboveLimit and nothing moves.
"""

from __future__ import annotations

from web3 import Web3
from web3.logs import DISCARD

from ledgers.ethereum.abi import MAX_SWEEP, ROLE_CODES, ROLE_NAMES
from ledgers.ethereum.channels import EthereumChannels
from ledgers.ethereum.client import id_number, party_address
from ledgers.ethereum.node import as_hex
from payg.domain.market import (
    CONSUMER,
    NO_ROLE,
    OWNER,
    PRODUCER,
    REGULATOR,
    Advert,
    MarketInfo,
    Purchase,
    check_capacity,
    is_expired,
    positive,
)
from payg.errors import AdvertNotExpired, LedgerUnavailable, NotAuthorised, UnknownAdvert


class EthereumTrade(EthereumChannels):
    """PeerTrade and PaymentChannel on an EVM chain (see the module docstring)."""

    def market(self) -> MarketInfo:
        with self._node.errors():
            self._node.check_chain_id()
            now = self._next_block_time()
            advertised = self._market.functions.advertisedWh().call()
            unreturned = sum(wh for _, wh in self._expired_unreturned(now))
            return MarketInfo(owner=self._owner(), capacity_wh=self._immutable("CAPACITY_WH"),
                              advertised_wh=advertised - unreturned, tax_bps=self._immutable("TAX_BPS"),
                              domain=f"ethereum:{self.chain_id}:{self.market_address}")

    def role_of(self, party: str) -> str:
        address = party_address(party)
        with self._node.errors():
            self._node.check_chain_id()
            if address == self._owner():
                return OWNER
            return ROLE_NAMES.get(self._market.functions.roleOf(address).call(), NO_ROLE)

    def grant(self, as_socket: str, party: str, role: str) -> None:
        if role not in (REGULATOR, PRODUCER, CONSUMER):
            if role in (OWNER, NO_ROLE):
                raise NotAuthorised(f"the role {role!r} cannot be granted: the market's owner is its deployer")
            raise ValueError(f"unknown role {role!r}: one of {REGULATOR}, {PRODUCER}, {CONSUMER}")
        self._transact(as_socket, self._market.functions.grant(party_address(party), ROLE_CODES[role]))

    def revoke(self, as_socket: str, party: str) -> None:
        self._transact(as_socket, self._market.functions.revoke(party_address(party)))

    def post_advert(self, as_socket: str, energy_wh: int, min_price_per_wh: int) -> Advert:
        positive(energy_wh, "energy_wh")
        positive(min_price_per_wh, "min_price_per_wh")
        account = self._account(as_socket)
        with self._node.errors():
            self._node.check_chain_id()
            sweep: list[int] = []
            advertised = self._market.functions.advertisedWh().call()
            capacity = self._immutable("CAPACITY_WH")
            if advertised + energy_wh > capacity:
                # Expired adverts still count until their energy is returned: return them in the same
                # transaction, the oldest first, as many as the capacity needs.
                unreturned = self._expired_unreturned(self._next_block_time())
                check_capacity(advertised - sum(wh for _, wh in unreturned), energy_wh, capacity)
                for advert_id, wh in unreturned:
                    if advertised + energy_wh <= capacity or len(sweep) == MAX_SWEEP:
                        break
                    sweep.append(advert_id)
                    advertised -= wh
        receipt = self._transact(account, self._market.functions.postAdvert(energy_wh, min_price_per_wh, sweep))
        posted = self._market.events.AdvertPosted().process_receipt(receipt, errors=DISCARD)
        if len(posted) != 1:
            raise LedgerUnavailable(f"Ethereum node {self.endpoint}: the receipt of a postAdvert transaction"
                                    " has no AdvertPosted event: is the market address right?")
        return self.advert(str(posted[0]["args"]["advert_id"]))

    def advert(self, advert_id: str) -> Advert:
        number = id_number(advert_id, UnknownAdvert, "advert")
        with self._node.errors():
            self._node.check_chain_id()
            advert = self._read_advert(number)
        if advert is None:
            raise UnknownAdvert(f"no advert {advert_id!r} on market {self.market_address}")
        return advert

    def adverts(self) -> list[Advert]:
        with self._node.errors():
            self._node.check_chain_id()
            now = self._next_block_time()
            found: list[Advert] = []
            number = self._market.functions.lastAdvertId().call()
            # Ids grow with time: stop at the first advert posted before the oldest one still open.
            while number > self._settled_upto:
                advert = self._read_advert(number)
                if advert is None or is_expired(advert.posted_at, now):
                    break
                if advert.remaining_wh > 0:
                    found.append(advert)
                number -= 1
        return found[::-1]

    def buy(self, as_socket: str, advert_id: str, energy_wh: int,
            max_price_per_wh: int | None = None) -> Purchase:
        positive(energy_wh, "energy_wh")
        if max_price_per_wh is not None:
            positive(max_price_per_wh, "max_price_per_wh")
        account = self._account(as_socket)
        advert = self.advert(advert_id)
        with self._node.errors():
            role = self._market.functions.roleOf(account.address).call()
            if ROLE_NAMES.get(role) != CONSUMER:
                raise NotAuthorised(f"socket {as_socket!r} ({account.address}) is not a consumer on this market")
            price, share, tax = advert.quote(energy_wh, self._next_block_time(), self._immutable("TAX_BPS"),
                                             max_price_per_wh)
        call = self._market.functions.buy(int(advert.advert_id), energy_wh, price)
        receipt = self._transact(account, call, value=share + tax)
        events = self._market.events.Bought().process_receipt(receipt, errors=DISCARD)
        if len(events) != 1:
            raise LedgerUnavailable(f"Ethereum node {self.endpoint}: the receipt of a buy has no Bought event")
        args = events[0]["args"]
        return Purchase(purchase_id=as_hex(receipt["transactionHash"]), advert_id=advert.advert_id,
                        consumer=account.address, producer=Web3.to_checksum_address(args["producer"]),
                        energy_wh=args["energy_wh"], price_per_wh=args["price_per_wh"],
                        producer_amount=args["producer_amount"], tax_amount=args["tax_amount"],
                        regulator=Web3.to_checksum_address(args["regulator"]), at=self._block_time(receipt))

    def expire(self, advert_id: str) -> int:
        advert = self.advert(advert_id)
        with self._node.errors():
            now = self._next_block_time()
        if not is_expired(advert.posted_at, now):
            raise AdvertNotExpired(f"advert {advert_id} expires at {advert.expires_at}; it is {now - 1} now")
        if advert.remaining_wh == 0:
            return 0
        # Anyone may return an expired advert's energy: the producer's key if it is ours, else the first socket's.
        socket_id = self.socket_of(advert.producer) or next(iter(self._keys))
        receipt = self._transact(socket_id, self._market.functions.expire(int(advert.advert_id)))
        returned = self._market.events.AdvertReturned().process_receipt(receipt, errors=DISCARD)
        return sum(event["args"]["energy_wh"] for event in returned)

    def withdraw(self, as_socket: str) -> int:
        """Pulls what the market owes the socket's party, and any close refund the channel manager holds for it."""
        account = self._account(as_socket)
        total = 0
        for contract in (self._market, self._channels):
            with self._node.errors():
                self._node.check_chain_id()
                owed = contract.functions.owed(account.address).call()
            if owed > 0:
                self._transact(account, contract.functions.withdraw())
                total += owed
        return total

    def _read_advert(self, number: int) -> Advert | None:
        producer, energy, remaining, min_price, posted_at = self._market.functions.advert(number).call()
        if int(producer, 16) == 0:
            return None
        self._adverts[number] = (Web3.to_checksum_address(producer), energy, min_price, posted_at)
        return Advert(str(number), Web3.to_checksum_address(producer), energy, remaining, min_price, posted_at)

    def _expired_unreturned(self, now: int) -> list[tuple[int, int]]:
        """(id, Wh) of the expired adverts whose unsold energy is not returned yet, oldest first."""
        found = []
        last = self._market.functions.lastAdvertId().call()
        settled = True
        for number in range(self._settled_upto + 1, last + 1):
            known = self._adverts.get(number)
            if known is not None and not is_expired(known[3], now):
                break  # this one and every later one are still open
            advert = self._read_advert(number)
            if advert is None or not is_expired(advert.posted_at, now):
                break
            if advert.remaining_wh > 0:
                found.append((number, advert.remaining_wh))
                settled = False
            elif settled:
                self._settled_upto = number
        return found

    def _owner(self) -> str:
        return Web3.to_checksum_address(self._immutable("owner"))
