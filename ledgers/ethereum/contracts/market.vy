# pragma version ~=0.4.3
# pragma optimize gas
"""
@title payg energy market
@notice Sell adverts of energy (Wh) between producers and consumers admitted by regulators.
        The rules are those of payg/trade.py, with the same integer formulas:
        - price per Wh = min_price * (100 + 10 * full hours since posting) // 100;
        - an advert expires 3 hours after posting (block.timestamp >= posted + 3 h);
        - the energy in adverts neither sold nor returned never exceeds the grid capacity;
        - a buy pays the producer energy * price and a tax of that * tax_bps // 10_000 to the
          regulator who admitted the producer (to the owner once that regulator is gone).
        Payments are pulled: a buy only credits `owed`, and each party calls withdraw().
        Nothing here calls another contract except withdraw(), which pays its caller.
@dev Storage is packed by hand (Vyper does not pack):
     _counters          last advert id (bits 0-127) | Wh advertised, not sold or returned (128-254)
                        | a marker bit (255), so that the slot is never zero again after deployment
     _owed[party]       1 + what the market owes the party, once the party was given a role: a slot
                        that never returns to zero spares each sale the 20k gas of a new slot
     _roles[party]      role (bits 0-7) | the regulator who admitted a producer or consumer (8-167)
     _adverts[id]       producer (bits 0-159) | posted at (160-199) | Wh remaining (200-255)
     _terms[id]         minimum price per Wh (bits 0-127) | Wh posted (128-255)
"""

REGULATOR: constant(uint256) = 1
PRODUCER: constant(uint256) = 2
CONSUMER: constant(uint256) = 3

HOUR: constant(uint256) = 3600
LIFETIME: constant(uint256) = 3 * HOUR
MIN_CAPACITY_WH: constant(uint256) = 1_000
MAX_CAPACITY_WH: constant(uint256) = 1_000_000
MAX_TAX_BPS: constant(uint256) = 10_000

MASK40: constant(uint256) = 2**40 - 1
MASK128: constant(uint256) = 2**128 - 1
MASK160: constant(uint256) = 2**160 - 1
MASK200: constant(uint256) = 2**200 - 1
MASK127: constant(uint256) = 2**127 - 1
MARKER: constant(uint256) = 2**255
MAX_SWEEP: constant(uint256) = 32

event RoleGranted:
    party: indexed(address)
    role: uint256
    by: indexed(address)

event RoleRevoked:
    party: indexed(address)
    role: uint256
    by: indexed(address)

event AdvertPosted:
    advert_id: indexed(uint256)
    producer: indexed(address)
    energy_wh: uint256
    min_price_per_wh: uint256
    posted_at: uint256

event Bought:
    advert_id: indexed(uint256)
    consumer: indexed(address)
    producer: indexed(address)
    energy_wh: uint256
    price_per_wh: uint256
    producer_amount: uint256
    tax_amount: uint256
    regulator: address

event AdvertReturned:
    advert_id: indexed(uint256)
    energy_wh: uint256

event Withdrawn:
    party: indexed(address)
    amount: uint256

owner: public(address)
CAPACITY_WH: public(immutable(uint256))
TAX_BPS: public(immutable(uint256))
DEPLOYED_BLOCK: public(immutable(uint256))

_counters: uint256
_roles: HashMap[address, uint256]
_adverts: HashMap[uint256, uint256]
_terms: HashMap[uint256, uint256]
_owed: HashMap[address, uint256]


@deploy
def __init__(capacity_wh: uint256, tax_bps: uint256):
    assert capacity_wh >= MIN_CAPACITY_WH and capacity_wh <= MAX_CAPACITY_WH, "invalid capacity"
    assert tax_bps <= MAX_TAX_BPS, "invalid tax"
    self.owner = msg.sender
    CAPACITY_WH = capacity_wh
    TAX_BPS = tax_bps
    DEPLOYED_BLOCK = block.number
    self._counters = MARKER
    self._owed[msg.sender] = 1


# -- roles -----------------------------------------------------------------------------

@external
def grant(party: address, role: uint256):
    """
    @notice The owner grants REGULATOR (1); a regulator grants PRODUCER (2) or CONSUMER (3).
            A party holds one role at most, and the owner none.
    """
    if role == REGULATOR:
        assert msg.sender == self.owner, "not authorised"
    else:
        assert role == PRODUCER or role == CONSUMER, "invalid role"
        assert self._roles[msg.sender] & 255 == REGULATOR, "not authorised"
    assert party != empty(address), "invalid party"
    assert party != self.owner and self._roles[party] == 0, "role conflict"
    self._roles[party] = role | (convert(msg.sender, uint256) << 8)
    if self._owed[party] == 0:
        self._owed[party] = 1
    log RoleGranted(party=party, role=role, by=msg.sender)


@external
def revoke(party: address):
    """@notice The owner removes a regulator; a regulator removes a producer or a consumer."""
    role: uint256 = self._roles[party] & 255
    assert role != 0, "no role"
    if role == REGULATOR:
        assert msg.sender == self.owner, "not authorised"
    else:
        assert self._roles[msg.sender] & 255 == REGULATOR, "not authorised"
    self._roles[party] = 0
    log RoleRevoked(party=party, role=role, by=msg.sender)


@view
@external
def roleOf(party: address) -> uint256:
    """@notice 0 none, 1 regulator, 2 producer, 3 consumer (the owner holds no other role)."""
    return self._roles[party] & 255


@view
@external
def admittedBy(party: address) -> address:
    return convert(self._roles[party] >> 8, address)


# -- adverts ---------------------------------------------------------------------------

@internal
def _return_unsold(advert_id: uint256) -> uint256:
    """Marks an expired advert's unsold energy returned; the Wh returned (0 if none or not expired)."""
    packed: uint256 = self._adverts[advert_id]
    remaining: uint256 = packed >> 200
    if remaining == 0 or block.timestamp < ((packed >> 160) & MASK40) + LIFETIME:
        return 0
    self._adverts[advert_id] = packed & MASK200
    log AdvertReturned(advert_id=advert_id, energy_wh=remaining)
    return remaining


@external
def postAdvert(energy_wh: uint256, min_price_per_wh: uint256, sweep: DynArray[uint256, MAX_SWEEP]) -> uint256:
    """
    @notice Producer only. Returns the unsold energy of the expired adverts listed in `sweep` (ids
            that are unknown, unexpired or already returned are skipped), then posts the advert
            if the grid capacity allows. Returns the advert id (sequential from 1).
    """
    assert self._roles[msg.sender] & 255 == PRODUCER, "not authorised"
    assert energy_wh > 0 and min_price_per_wh > 0 and min_price_per_wh <= MASK128, "invalid amount"
    counters: uint256 = self._counters
    advertised: uint256 = (counters >> 128) & MASK127
    for swept: uint256 in sweep:
        advertised -= self._return_unsold(swept)
    assert advertised + energy_wh <= CAPACITY_WH, "capacity exceeded"
    advert_id: uint256 = (counters & MASK128) + 1
    self._counters = MARKER | ((advertised + energy_wh) << 128) | advert_id
    self._adverts[advert_id] = convert(msg.sender, uint256) | (block.timestamp << 160) | (energy_wh << 200)
    self._terms[advert_id] = min_price_per_wh | (energy_wh << 128)
    log AdvertPosted(advert_id=advert_id, producer=msg.sender, energy_wh=energy_wh,
                     min_price_per_wh=min_price_per_wh, posted_at=block.timestamp)
    return advert_id


@external
def expire(advert_id: uint256) -> uint256:
    """@notice Anyone, once the advert has expired: returns its unsold energy (frees grid capacity)."""
    packed: uint256 = self._adverts[advert_id]
    assert packed != 0, "unknown advert"
    assert block.timestamp >= ((packed >> 160) & MASK40) + LIFETIME, "advert not expired"
    returned: uint256 = self._return_unsold(advert_id)
    if returned != 0:
        self._counters -= returned << 128
    return returned


@external
@payable
def buy(advert_id: uint256, energy_wh: uint256, max_price_per_wh: uint256):
    """
    @notice Consumer only. Pays energy * price to the producer and the tax to the regulator, both
            credited to `owed`. msg.value must cover both; anything above is credited back to the
            buyer in `owed` (so a buy sent just before a price step can be paid exactly).
            Refused if the price now is above `max_price_per_wh`.
    """
    assert self._roles[msg.sender] & 255 == CONSUMER, "not authorised"
    packed: uint256 = self._adverts[advert_id]
    assert packed != 0, "unknown advert"
    posted: uint256 = (packed >> 160) & MASK40
    assert block.timestamp < posted + LIFETIME, "advert expired"
    assert energy_wh > 0, "invalid amount"
    assert energy_wh <= packed >> 200, "not enough energy"
    price: uint256 = (self._terms[advert_id] & MASK128) * (100 + 10 * ((block.timestamp - posted) // HOUR)) // 100
    assert price <= max_price_per_wh, "price above limit"
    cost: uint256 = energy_wh * price
    tax: uint256 = cost * TAX_BPS // 10_000
    assert msg.value >= cost + tax, "insufficient payment"
    self._adverts[advert_id] = packed - (energy_wh << 200)
    self._counters -= energy_wh << 128
    producer: address = convert(packed & MASK160, address)
    self._credit(producer, cost)
    regulator: address = convert(self._roles[producer] >> 8, address)
    if self._roles[regulator] & 255 != REGULATOR:
        regulator = self.owner
    if tax != 0:
        self._credit(regulator, tax)
    excess: uint256 = msg.value - cost - tax
    if excess != 0:
        self._credit(msg.sender, excess)
    log Bought(advert_id=advert_id, consumer=msg.sender, producer=producer, energy_wh=energy_wh,
               price_per_wh=price, producer_amount=cost, tax_amount=tax, regulator=regulator)


@view
@external
def advert(advert_id: uint256) -> (address, uint256, uint256, uint256, uint256):
    """@notice (producer, energy posted, energy remaining, minimum price per Wh, posted at); zeros if unknown."""
    packed: uint256 = self._adverts[advert_id]
    terms: uint256 = self._terms[advert_id]
    return (convert(packed & MASK160, address), terms >> 128, packed >> 200, terms & MASK128,
            (packed >> 160) & MASK40)


@view
@external
def lastAdvertId() -> uint256:
    return self._counters & MASK128


@view
@external
def advertisedWh() -> uint256:
    """@notice Wh in adverts neither sold nor returned (expired adverts count until returned)."""
    return (self._counters >> 128) & MASK127


@view
@external
def priceNow(advert_id: uint256) -> uint256:
    packed: uint256 = self._adverts[advert_id]
    assert packed != 0, "unknown advert"
    posted: uint256 = (packed >> 160) & MASK40
    return (self._terms[advert_id] & MASK128) * (100 + 10 * ((block.timestamp - posted) // HOUR)) // 100


# -- pull payments ---------------------------------------------------------------------

@internal
def _credit(party: address, amount: uint256):
    held: uint256 = self._owed[party]
    if held == 0:
        held = 1
    self._owed[party] = held + amount


@view
@external
def owed(party: address) -> uint256:
    """@notice What the market owes `party` (withdraw() pays it)."""
    held: uint256 = self._owed[party]
    if held == 0:
        return 0
    return held - 1


@external
@nonreentrant
def withdraw() -> uint256:
    """@notice Pays the caller everything the market owes it; returns the amount (0 if nothing)."""
    held: uint256 = self._owed[msg.sender]
    if held <= 1:
        return 0
    self._owed[msg.sender] = 1
    amount: uint256 = held - 1
    raw_call(msg.sender, b"", value=amount)
    log Withdrawn(party=msg.sender, amount=amount)
    return amount
