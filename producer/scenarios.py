"""Fraud stories: short, labelled sequences of transactions on one card (or a few).

Each story is planned when it starts: the generator picks a card that no other story owns and
whose holder is at home, draws the story's parameters from the ranges below (so no detector can
key on one exact value) and schedules its transactions on the simulation clock. The genuine
transactions a story needs (the holder's last use at home, the visit to a breached merchant)
are scheduled unlabelled; everything the fraudster does is labelled with the story's id.

The ranges are documented in ``docs/producer.md``; change them here and there together.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from itertools import accumulate

from fraudwatch.geo import haversine_km
from producer.population import Card, Merchant, Population
from producer.records import CardState, Planned
from producer.world import CITIES, cash_unit, offset_km

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
# The contract's upper bound on an amount (fraudwatch/contract.py, Transaction.amount).
MAX_AMOUNT = 1_000_000_000.0

Range = tuple[float, float]
IntRange = tuple[int, int]

CNP = "card_not_present"
CP = "card_present"


def _mean(r: IntRange) -> float:
    return (r[0] + r[1]) / 2


@dataclass(frozen=True, slots=True)
class CardTestingParams:
    """Tiny CNP authorizations at one low-friction merchant, then cash-out purchases."""

    tests: IntRange = (3, 15)
    test_amount_eur: Range = (0.5, 2.0)
    # Share of stories that open with a 0.00 account verification instead of a tiny charge
    # (a card tester's cheapest check; drawn from StoryKit.extra_rng).
    zero_auth_share: float = 0.3
    test_gap_s: Range = (3.0, 60.0)
    pause_min: Range = (5.0, 360.0)
    cashouts: IntRange = (1, 3)
    cashout_multiple: Range = (5.0, 25.0)  # of the card's median amount
    cashout_min_eur: float = 200.0
    cashout_gap_min: Range = (1.0, 20.0)

    @property
    def expected_fraud_txns(self) -> float:
        return _mean(self.tests) + _mean(self.cashouts)


@dataclass(frozen=True, slots=True)
class AccountTakeoverParams:
    """A fast run of CNP purchases far above the card's habit at high-resale merchants."""

    purchases: IntRange = (4, 12)
    amount_multiple: Range = (3.0, 12.0)
    amount_min_eur: float = 100.0
    gap_s: Range = (30.0, 480.0)
    foreign_share: float = 0.5

    @property
    def expected_fraud_txns(self) -> float:
        return _mean(self.purchases)


@dataclass(frozen=True, slots=True)
class ImpossibleTravelParams:
    """A genuine card-present use at home, then the stolen card used in person far away."""

    min_distance_km: float = 1500.0
    min_speed_kmh: float = 1200.0  # the far use comes sooner than this speed allows
    min_delay_min: float = 10.0
    extra_uses: IntRange = (0, 3)
    extra_gap_min: Range = (5.0, 60.0)
    amount_multiple: Range = (2.0, 8.0)
    amount_min_eur: float = 100.0
    atm_eur: Range = (200.0, 800.0)

    @property
    def expected_fraud_txns(self) -> float:
        return 1 + _mean(self.extra_uses)


@dataclass(frozen=True, slots=True)
class AmountSpikeParams:
    """One or two purchases many times the card's usual amount, at a normal place."""

    purchases: IntRange = (1, 2)
    amount_multiple: Range = (8.0, 40.0)
    amount_min_eur: float = 250.0
    gap_min: Range = (5.0, 180.0)

    @property
    def expected_fraud_txns(self) -> float:
        return _mean(self.purchases)


@dataclass(frozen=True, slots=True)
class CnpForeignParams:
    """Online purchases from a country the card is never used in."""

    purchases: IntRange = (1, 5)
    amount_multiple: Range = (1.0, 6.0)
    amount_min_eur: float = 30.0
    gap_min: Range = (2.0, 90.0)

    @property
    def expected_fraud_txns(self) -> float:
        return _mean(self.purchases)


@dataclass(frozen=True, slots=True)
class CompromisedMerchantParams:
    """Several local cards visit one breached merchant; each is defrauded hours later."""

    victims: IntRange = (3, 8)
    visit_window_min: Range = (30.0, 360.0)
    delay_h: Range = (2.0, 36.0)  # from a victim's visit to its first fraudulent use
    uses_per_victim: IntRange = (1, 3)
    use_gap_min: Range = (10.0, 180.0)
    amount_multiple: Range = (2.0, 8.0)
    amount_min_eur: float = 80.0
    counterfeit_share: float = 0.5  # cloned card used in person elsewhere; else used online
    counterfeit_min_km: float = 300.0  # a clone is used at least this far from home

    @property
    def expected_fraud_txns(self) -> float:
        return _mean(self.victims) * _mean(self.uses_per_victim)


@dataclass(frozen=True, slots=True)
class ScenarioProfile:
    """One set of parameter ranges for every scenario (``--scenario-profile``)."""

    name: str
    card_testing: CardTestingParams = field(default_factory=CardTestingParams)
    account_takeover: AccountTakeoverParams = field(default_factory=AccountTakeoverParams)
    impossible_travel: ImpossibleTravelParams = field(default_factory=ImpossibleTravelParams)
    amount_spike: AmountSpikeParams = field(default_factory=AmountSpikeParams)
    cnp_foreign: CnpForeignParams = field(default_factory=CnpForeignParams)
    compromised_merchant: CompromisedMerchantParams = field(
        default_factory=CompromisedMerchantParams
    )

    def expected_fraud_txns(self, scenario: str) -> float:
        """Mean fraudulent records one story of ``scenario`` makes under these ranges."""
        return float(getattr(self, scenario).expected_fraud_txns)


DEFAULT_PROFILE = ScenarioProfile("default")
# The same stories, played more cautiously and more slowly: fewer and slower card tests with
# slightly larger amounts, smaller amount multiples, takeovers spread over longer gaps, clones
# used closer to home, compromised cards defrauded days later. The rules were written with the
# default ranges in view; this profile tells how much of their catch depends on those exact
# ranges (docs/evaluation.md). Every change from the default is listed in docs/producer.md.
SHIFTED_PROFILE = ScenarioProfile(
    "shifted",
    card_testing=CardTestingParams(
        tests=(2, 6),
        test_amount_eur=(1.0, 4.0),
        test_gap_s=(60.0, 900.0),
        pause_min=(30.0, 1440.0),
        cashouts=(1, 2),
        cashout_multiple=(3.0, 10.0),
        cashout_min_eur=80.0,
        cashout_gap_min=(10.0, 120.0),
    ),
    account_takeover=AccountTakeoverParams(
        purchases=(3, 8),
        amount_multiple=(2.0, 6.0),
        amount_min_eur=60.0,
        gap_s=(180.0, 1800.0),
        foreign_share=0.3,
    ),
    impossible_travel=ImpossibleTravelParams(
        min_distance_km=500.0,
        min_speed_kmh=1000.0,
        min_delay_min=20.0,
        extra_uses=(0, 2),
        extra_gap_min=(20.0, 180.0),
        amount_multiple=(1.5, 5.0),
        amount_min_eur=60.0,
        atm_eur=(100.0, 400.0),
    ),
    amount_spike=AmountSpikeParams(
        amount_multiple=(4.0, 12.0),
        amount_min_eur=120.0,
        gap_min=(30.0, 480.0),
    ),
    cnp_foreign=CnpForeignParams(
        purchases=(1, 3),
        amount_multiple=(0.5, 3.0),
        amount_min_eur=15.0,
        gap_min=(10.0, 360.0),
    ),
    compromised_merchant=CompromisedMerchantParams(
        visit_window_min=(60.0, 720.0),
        delay_h=(12.0, 96.0),
        uses_per_victim=(1, 2),
        use_gap_min=(30.0, 480.0),
        amount_multiple=(1.5, 5.0),
        amount_min_eur=50.0,
        counterfeit_share=0.3,
        counterfeit_min_km=150.0,
    ),
)
PROFILES = {p.name: p for p in (DEFAULT_PROFILE, SHIFTED_PROFILE)}

CARD_TESTING = DEFAULT_PROFILE.card_testing
ACCOUNT_TAKEOVER = DEFAULT_PROFILE.account_takeover
IMPOSSIBLE_TRAVEL = DEFAULT_PROFILE.impossible_travel
AMOUNT_SPIKE = DEFAULT_PROFILE.amount_spike
CNP_FOREIGN = DEFAULT_PROFILE.cnp_foreign
COMPROMISED_MERCHANT = DEFAULT_PROFILE.compromised_merchant

_TESTER_CATEGORIES = ("charity", "digital media", "digital games", "subscription")
_CASHOUT_ONLINE = ("online electronics", "money transfer", "gambling", "online marketplace")
_FAR_CP_CATEGORIES = ("ATM cash", "electronics", "jewellery", "department store", "clothing")
_BIG_TICKET_CP = ("electronics", "jewellery", "department store", "home supply")
_BIG_TICKET_CNP = ("online electronics", "airline", "travel agency")
_FOREIGN_ONLINE = ("online marketplace", "online electronics", "digital media", "gambling")
_SKIMMED_AT = ("fuel", "restaurant", "bar", "grocery", "misc retail", "fast food")

Planned_ = tuple[int, Planned]  # (event time in epoch ms, what happens)


class StoryKit:
    """What stories may use: the run's random source, the population and the holders' state."""

    def __init__(
        self,
        rng: random.Random,
        population: Population,
        states: list[CardState],
        speedup: float = 1.0,
        profile: ScenarioProfile = DEFAULT_PROFILE,
        amount_scale: float = 1.0,
        extra_rng: random.Random | None = None,
    ) -> None:
        self.rng = rng
        # Draws for behaviour added after ``rng``'s sequence was fixed (zero-amount card
        # tests): taking them from ``rng`` would change every later record of an existing seed.
        self.extra_rng = extra_rng if extra_rng is not None else random.Random("fraudwatch-extra")  # noqa: S311
        self.profile = profile  # the parameter ranges stories draw from
        self.amount_scale = amount_scale  # --amount-scale: every amount, genuine or not
        self.population = population
        self.states = states
        self.speedup = speedup  # the simulator compresses story times by this; so does own()
        self._now = 0
        merchants = population.merchants
        self._cities_with_shops = population.cities_with_merchants()
        self._fraud_cities = [i for i in self._cities_with_shops if CITIES[i].fraud_weight > 0]
        self._fraud_cum = list(accumulate(CITIES[i].fraud_weight for i in self._fraud_cities))
        self._online_by_category: dict[str, list[Merchant]] = {}
        for i in population.online_merchants:
            self._online_by_category.setdefault(merchants[i].category, []).append(merchants[i])

    # --- cards --------------------------------------------------------------------------
    def free_card(self, now: int, cards: Sequence[int] | None = None) -> Card | None:
        """A card no story owns whose holder is at home (from ``cards`` if given)."""
        population = self.population
        pool = cards if cards is not None else range(len(population.cards))
        for _ in range(50):
            idx = pool[self.rng.randrange(len(pool))]
            st = self.states[idx]
            if st.busy_until <= now and st.trip_until == 0:
                return population.cards[idx]
        return None

    def begin(self, now: int) -> None:
        """A story starts planning at ``now``."""
        self._now = now

    def own(self, card: Card, until: int) -> None:
        """Mark ``card`` as part of a story until ``until`` (no other story, no trips)."""
        st = self.states[card.index]
        if self.speedup != 1.0 and until > self._now:
            until = self._now + int((until - self._now) / self.speedup)
        st.busy_until = max(st.busy_until, until)

    # --- places -------------------------------------------------------------------------
    def fraud_city(self, exclude_country: str) -> int:
        """A city fraud is routed through, outside ``exclude_country``."""
        for _ in range(20):
            i = self._fraud_cities[
                bisect.bisect(self._fraud_cum, self.rng.random() * self._fraud_cum[-1])
            ]
            if CITIES[i].country != exclude_country:
                return i
        return next(i for i in self._fraud_cities if CITIES[i].country != exclude_country)

    def domestic_city(self, country: str, exclude: int) -> int:
        """Another city with shops in ``country`` (the same city if it has no other)."""
        options = [
            i for i in self._cities_with_shops if CITIES[i].country == country and i != exclude
        ]
        return options[self.rng.randrange(len(options))] if options else exclude

    def far_city(self, lat: float, lon: float, min_km: float) -> tuple[int, float]:
        """A city with shops at least ``min_km`` from (lat, lon), and its distance."""
        options = []
        for i in self._cities_with_shops:
            c = CITIES[i]
            d = haversine_km(lat, lon, c.latitude, c.longitude)
            if d >= min_km:
                options.append((i, d, c.travel_weight + c.fraud_weight + 0.1))
        cum = list(accumulate(w for _, _, w in options))
        i, d, _ = options[bisect.bisect(cum, self.rng.random() * cum[-1])]
        return i, d

    def ip_location(self, city_idx: int) -> tuple[float, float]:
        """Where an IP address in ``city_idx`` geolocates (city level)."""
        c = CITIES[city_idx]
        lat, lon = offset_km(
            c.latitude,
            c.longitude,
            self.rng.gauss(0.0, c.radius_km * 0.5),
            self.rng.gauss(0.0, c.radius_km * 0.5),
        )
        return round(lat, 3), round(lon, 3)

    # --- merchants ----------------------------------------------------------------------
    def shop_in(self, city_idx: int, categories: Sequence[str]) -> Merchant:
        """A physical merchant in ``city_idx``, of one of ``categories`` when there is one."""
        merchants = self.population.merchants
        local = self.population.physical_by_city[city_idx]
        preferred = [m for m in local if merchants[m].category in categories]
        pool = preferred or list(local)
        return merchants[pool[self.rng.randrange(len(pool))]]

    def web_shop(self, categories: Sequence[str]) -> Merchant:
        """An online merchant of one of ``categories`` (any online merchant if none)."""
        pool = [m for c in categories for m in self._online_by_category.get(c, ())]
        if not pool:
            merchants = self.population.merchants
            pool = [merchants[i] for i in self.population.online_merchants]
        return pool[self.rng.randrange(len(pool))]

    # --- amounts ------------------------------------------------------------------------
    def price(self, merchant: Merchant, eur: float) -> float:
        """``eur`` times ``--amount-scale`` in the merchant's currency, as a card amount.

        Rounded to the currency's minor unit (ATM: whole notes), at least one unit and at most
        the contract's limit. Genuine and story amounts all come through here.
        """
        local = eur * merchant.eur_rate * self.amount_scale
        if merchant.mcc == "6011":
            unit = cash_unit(merchant.currency)
            amount = float(max(unit, round(local / unit) * unit))
        else:
            amount = round(local, merchant.decimals)
            if amount <= 0:
                amount = 10.0**-merchant.decimals
        return amount if amount <= MAX_AMOUNT else MAX_AMOUNT

    def usual_eur(self, card: Card, merchant: Merchant) -> float:
        """An amount this card typically spends at this kind of merchant."""
        return (
            card.median_amount_eur
            * merchant.amount_scale
            * math.exp(self.rng.gauss(0.0, card.amount_sigma))
        )

    def above_habit(
        self, card: Card, multiple: Range, minimum: float, maximum: float = math.inf
    ) -> float:
        """An EUR amount ``multiple`` times the card's median, within [minimum, maximum]."""
        return min(maximum, max(minimum, card.median_amount_eur * self.uniform(multiple)))

    def uniform(self, r: Range) -> float:
        return self.rng.uniform(r[0], r[1])

    def randint(self, r: IntRange) -> int:
        return self.rng.randint(r[0], r[1])

    def home_visit(self, card: Card, merchant: Merchant | None = None) -> Planned:
        """A genuine card-present purchase near home (unlabelled)."""
        if merchant is None:
            st = self.states[card.index]
            favourites = card.favourite_merchants
            if st.last_cp_merchant >= 0 and st.trip_until == 0:
                merchant = self.population.merchants[st.last_cp_merchant]
            else:
                merchant = self.population.merchants[
                    favourites[self.rng.randrange(len(favourites))]
                ]
        return Planned(
            card,
            merchant,
            CP,
            self.price(merchant, self.usual_eur(card, merchant)),
            merchant.latitude,
            merchant.longitude,
            merchant.country,
            None,
        )


def _fraud(
    kit: StoryKit,
    card: Card,
    merchant: Merchant,
    eur: float,
    story: tuple[str, str],
    ip_city: int | None = None,
) -> Planned:
    """A fraudulent purchase: in person at ``merchant``, or online from ``ip_city``."""
    if merchant.online:
        lat, lon = kit.ip_location(ip_city if ip_city is not None else merchant.city)
        country = CITIES[ip_city if ip_city is not None else merchant.city].country
        return Planned(card, merchant, CNP, kit.price(merchant, eur), lat, lon, country, story)
    return Planned(
        card,
        merchant,
        CP,
        kit.price(merchant, eur),
        merchant.latitude,
        merchant.longitude,
        merchant.country,
        story,
    )


def plan_card_testing(kit: StoryKit, now: int, story_id: str) -> list[Planned_] | None:
    p = kit.profile.card_testing
    card = kit.free_card(now)
    if card is None:
        return None
    story = (story_id, "card_testing")
    rng = kit.rng
    if rng.random() < 0.6:
        origin = kit.fraud_city(card.country)
    else:
        origin = kit.domestic_city(card.country, card.home_city)
    tester = kit.web_shop(_TESTER_CATEGORIES)
    plan: list[Planned_] = []
    t = now
    for _ in range(kit.randint(p.tests)):
        plan.append((t, _fraud(kit, card, tester, kit.uniform(p.test_amount_eur), story, origin)))
        t += int(kit.uniform(p.test_gap_s) * 1000)
    if kit.extra_rng.random() < p.zero_auth_share:
        # The first check is an account verification: an authorization for 0.00.
        first_at, first = plan[0]
        plan[0] = (first_at, replace(first, amount=0.0))
    t += int(kit.uniform(p.pause_min) * MINUTE_MS)
    for _ in range(kit.randint(p.cashouts)):
        shop = kit.web_shop(_CASHOUT_ONLINE)
        eur = kit.above_habit(card, p.cashout_multiple, p.cashout_min_eur, 5000.0)
        plan.append((t, _fraud(kit, card, shop, eur, story, origin)))
        t += int(kit.uniform(p.cashout_gap_min) * MINUTE_MS)
    kit.own(card, t + HOUR_MS)
    return plan


def plan_account_takeover(kit: StoryKit, now: int, story_id: str) -> list[Planned_] | None:
    p = kit.profile.account_takeover
    card = kit.free_card(now)
    if card is None:
        return None
    story = (story_id, "account_takeover")
    if kit.rng.random() < p.foreign_share:
        origin = kit.fraud_city(card.country)
    else:
        origin = kit.domestic_city(card.country, card.home_city)
    plan: list[Planned_] = []
    t = now
    for _ in range(kit.randint(p.purchases)):
        shop = kit.web_shop(_CASHOUT_ONLINE)
        eur = kit.above_habit(card, p.amount_multiple, p.amount_min_eur, 4000.0)
        plan.append((t, _fraud(kit, card, shop, eur, story, origin)))
        t += int(kit.uniform(p.gap_s) * 1000)
    kit.own(card, t + HOUR_MS)
    return plan


def plan_impossible_travel(kit: StoryKit, now: int, story_id: str) -> list[Planned_] | None:
    p = kit.profile.impossible_travel
    card = kit.free_card(now)
    if card is None:
        return None
    story = (story_id, "impossible_travel")
    at_home = kit.home_visit(card)
    plan: list[Planned_] = [(now, at_home)]
    city, _ = kit.far_city(at_home.latitude, at_home.longitude, p.min_distance_km)
    t = now
    for i in range(1 + kit.randint(p.extra_uses)):
        shop = kit.shop_in(city, _FAR_CP_CATEGORIES)
        if i == 0:
            # The first use abroad comes sooner than any flight could get there.
            distance = haversine_km(
                at_home.latitude, at_home.longitude, shop.latitude, shop.longitude
            )
            latest_h = distance / p.min_speed_kmh
            t += int(kit.uniform((p.min_delay_min / 60, latest_h)) * HOUR_MS)
        else:
            t += int(kit.uniform(p.extra_gap_min) * MINUTE_MS)
        if shop.category == "ATM cash":
            eur = kit.uniform(p.atm_eur)
        else:
            eur = kit.above_habit(card, p.amount_multiple, p.amount_min_eur)
        plan.append((t, _fraud(kit, card, shop, eur, story)))
    kit.own(card, t + HOUR_MS)
    return plan


def plan_amount_spike(kit: StoryKit, now: int, story_id: str) -> list[Planned_] | None:
    p = kit.profile.amount_spike
    card = kit.free_card(now)
    if card is None:
        return None
    story = (story_id, "amount_spike")
    plan: list[Planned_] = []
    t = now
    for _ in range(kit.randint(p.purchases)):
        local = [
            m
            for m in kit.population.physical_by_city[card.home_city]
            if kit.population.merchants[m].category in _BIG_TICKET_CP
        ]
        if local and kit.rng.random() < 0.5:
            shop = kit.population.merchants[local[kit.rng.randrange(len(local))]]
            origin = None
        else:
            shop = kit.web_shop(_BIG_TICKET_CNP)
            origin = card.home_city
        eur = kit.above_habit(card, p.amount_multiple, p.amount_min_eur, 20000.0)
        planned = _fraud(kit, card, shop, eur, story, origin)
        if origin is not None:  # online from the holder's usual connection
            planned = Planned(
                card, shop, CNP, planned.amount, card.ip_lat, card.ip_lon, card.country, story,
            )  # fmt: skip
        plan.append((t, planned))
        t += int(kit.uniform(p.gap_min) * MINUTE_MS)
    kit.own(card, t + HOUR_MS)
    return plan


def plan_cnp_foreign(kit: StoryKit, now: int, story_id: str) -> list[Planned_] | None:
    p = kit.profile.cnp_foreign
    card = kit.free_card(now)
    if card is None:
        return None
    story = (story_id, "cnp_foreign")
    origin = kit.fraud_city(card.country)
    plan: list[Planned_] = []
    t = now
    for _ in range(kit.randint(p.purchases)):
        shop = kit.web_shop(_FOREIGN_ONLINE)
        eur = kit.above_habit(card, p.amount_multiple, p.amount_min_eur)
        plan.append((t, _fraud(kit, card, shop, eur, story, origin)))
        t += int(kit.uniform(p.gap_min) * MINUTE_MS)
    kit.own(card, t + HOUR_MS)
    return plan


def plan_compromised_merchant(kit: StoryKit, now: int, story_id: str) -> list[Planned_] | None:
    p = kit.profile.compromised_merchant
    population = kit.population
    first = kit.free_card(now)
    if first is None:
        return None
    neighbours = population.cards_by_city[first.home_city]
    victims: list[Card] = [first]
    wanted = kit.randint(p.victims)
    for _ in range(wanted * 5):
        if len(victims) >= wanted:
            break
        card = kit.free_card(now, neighbours)
        if card is not None and card not in victims:
            victims.append(card)
    if len(victims) < p.victims[0]:
        return None
    story = (story_id, "compromised_merchant")
    breached = kit.shop_in(first.home_city, _SKIMMED_AT)
    window = int(kit.uniform(p.visit_window_min) * MINUTE_MS)
    counterfeit = kit.rng.random() < p.counterfeit_share
    plan: list[Planned_] = []
    for card in victims:
        visit = now + kit.rng.randrange(window + 1)
        plan.append((visit, kit.home_visit(card, breached)))
        t = visit + int(kit.uniform(p.delay_h) * HOUR_MS)
        origin = kit.fraud_city(card.country) if not counterfeit else -1
        far = -1
        if counterfeit:
            far, _ = kit.far_city(card.home_lat, card.home_lon, p.counterfeit_min_km)
        for _ in range(kit.randint(p.uses_per_victim)):
            eur = kit.above_habit(card, p.amount_multiple, p.amount_min_eur)
            if counterfeit:
                shop = kit.shop_in(far, _FAR_CP_CATEGORIES)
                plan.append((t, _fraud(kit, card, shop, eur, story)))
            else:
                shop = kit.web_shop(_CASHOUT_ONLINE)
                plan.append((t, _fraud(kit, card, shop, eur, story, origin)))
            t += int(kit.uniform(p.use_gap_min) * MINUTE_MS)
        kit.own(card, t + HOUR_MS)
    return plan


@dataclass(frozen=True, slots=True)
class Scenario:
    """A kind of fraud story: how often it starts and how many fraudulent records it makes."""

    name: str
    weight: float
    expected_fraud_txns: float
    plan: Callable[[StoryKit, int, str], list[Planned_] | None]


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("card_testing", 0.20, CARD_TESTING.expected_fraud_txns, plan_card_testing),
    Scenario("account_takeover", 0.20, ACCOUNT_TAKEOVER.expected_fraud_txns, plan_account_takeover),
    Scenario(
        "impossible_travel", 0.15, IMPOSSIBLE_TRAVEL.expected_fraud_txns, plan_impossible_travel
    ),
    Scenario("amount_spike", 0.15, AMOUNT_SPIKE.expected_fraud_txns, plan_amount_spike),
    Scenario("cnp_foreign", 0.20, CNP_FOREIGN.expected_fraud_txns, plan_cnp_foreign),
    Scenario(
        "compromised_merchant",
        0.10,
        COMPROMISED_MERCHANT.expected_fraud_txns,
        plan_compromised_merchant,
    ),
)
SCENARIO_NAMES = tuple(s.name for s in SCENARIOS)


def expected_fraud_per_story(
    scenarios: Sequence[Scenario] = SCENARIOS, profile: ScenarioProfile = DEFAULT_PROFILE
) -> float:
    """Mean number of fraudulent records per story, over the scenario mix."""
    total = sum(s.weight for s in scenarios)
    return sum(s.weight * profile.expected_fraud_txns(s.name) for s in scenarios) / total
