"""The simulated card portfolio: cards with habits, merchants with places, built once per run.

Faker gives names (cardholders, shops, web domains) in each country's locale; everything
numeric comes from one ``random.Random`` seeded from ``--seed``, so the same seed builds the
same population. Faker is only used here: per-transaction generation (``traffic.py``) works
on the plain numbers stored on these profiles.
"""

from __future__ import annotations

import bisect
import math
import random
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any

from fraudwatch.cards import luhn_check_digit
from producer.world import CITIES, COUNTRIES, City, minor_units, offset_km, units_per_eur


@dataclass(frozen=True, slots=True)
class Category:
    """A kind of merchant: its MCC, how common it is and how big its tickets are."""

    mcc: str
    label: str
    weight: float  # share among merchants of the same kind (physical or online)
    amount_scale: float  # typical ticket relative to a grocery run
    high_resale: bool = False  # what fraudsters buy to resell: electronics, jewellery, cash
    name_suffix: str = ""


PHYSICAL_CATEGORIES: tuple[Category, ...] = (
    Category("5411", "grocery", 20, 1.0, name_suffix="Market"),
    Category("5812", "restaurant", 12, 1.1, name_suffix="Restaurant"),
    Category("5814", "fast food", 10, 0.35, name_suffix="Grill"),
    Category("5541", "fuel", 7, 1.5, name_suffix="Fuel"),
    Category("5912", "pharmacy", 5, 0.6, name_suffix="Pharmacy"),
    Category("5311", "department store", 4, 1.8, name_suffix="Department Store"),
    Category("5651", "clothing", 5, 1.6, name_suffix="Fashion"),
    Category("5999", "misc retail", 6, 1.0, name_suffix="Store"),
    Category("5732", "electronics", 3, 4.0, high_resale=True, name_suffix="Electronics"),
    Category("5944", "jewellery", 1, 5.0, high_resale=True, name_suffix="Jewellers"),
    Category("4111", "transit", 4, 0.12, name_suffix="Transit"),
    Category("4121", "taxi", 3, 0.6, name_suffix="Taxi"),
    Category("5813", "bar", 5, 0.7, name_suffix="Bar"),
    Category("7011", "hotel", 3, 5.0, name_suffix="Hotel"),
    Category("6011", "ATM cash", 5, 3.0, high_resale=True, name_suffix="ATM"),
    Category("5942", "books", 2, 0.8, name_suffix="Books"),
    Category("7832", "cinema", 2, 0.5, name_suffix="Cinema"),
    Category("5200", "home supply", 3, 2.2, name_suffix="Home & Garden"),
)

ONLINE_CATEGORIES: tuple[Category, ...] = (
    Category("5999", "online marketplace", 20, 1.2),
    Category("5815", "digital media", 12, 0.3),
    Category("5816", "digital games", 6, 0.5),
    Category("5968", "subscription", 8, 0.5),
    Category("4899", "streaming", 6, 0.4),
    Category("5732", "online electronics", 8, 4.0, high_resale=True),
    Category("5964", "catalogue retail", 8, 1.5),
    Category("4511", "airline", 4, 8.0),
    Category("4722", "travel agency", 4, 6.0),
    Category("7995", "gambling", 2, 1.2, high_resale=True),
    Category("4829", "money transfer", 2, 4.0, high_resale=True),
    Category("8398", "charity", 2, 0.8),
)

# Issuer BIN ranges: (first digits of the BIN, PAN length, share of the portfolio).
_BIN_RANGES: tuple[tuple[str, int, float], ...] = (
    ("4", 16, 0.55),  # Visa
    ("5", 16, 0.30),  # Mastercard 51-55
    ("2", 16, 0.05),  # Mastercard 2221-2720
    ("37", 15, 0.05),  # American Express
    ("6", 19, 0.05),  # Maestro / UnionPay, 19 digits
)

# A card's activity by local hour (relative): quiet nights, a lunch and an evening peak.
_BASE_RHYTHM = (
    0.30, 0.15, 0.10, 0.08, 0.08, 0.15, 0.50, 1.20, 2.00, 2.30, 2.60, 3.00,
    3.60, 3.30, 2.80, 2.70, 3.00, 3.60, 3.80, 3.20, 2.50, 1.80, 1.20, 0.60,
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Merchant:
    """A shop, restaurant, ATM or web merchant. ``online`` merchants take CNP payments only."""

    index: int
    merchant_id: str
    name: str
    mcc: str
    category: str
    online: bool
    city: int  # index into geo.CITIES (the head office for online merchants)
    country: str
    currency: str
    latitude: float
    longitude: float
    amount_scale: float
    high_resale: bool
    eur_rate: float  # units of ``currency`` per EUR
    decimals: int


@dataclass(frozen=True, slots=True)
class Card:
    """One card and its holder's habits; the generator draws transactions from these numbers.

    ``hour_weights_utc[h]`` is the share of the card's daily activity in UTC hour ``h`` (the
    holder's local rhythm shifted by the home time zone).
    """

    index: int
    account_id: str
    card_number: str
    holder: str
    home_city: int
    country: str
    currency: str
    home_lat: float
    home_lon: float
    median_amount_eur: float
    amount_sigma: float
    daily_rate: float
    hour_weights_utc: tuple[float, ...]
    cnp_share: float
    favourite_merchants: tuple[int, ...]  # physical merchants near home
    favourite_cum_weights: tuple[float, ...]
    favourite_online: tuple[int, ...]
    trips_per_year: float
    key: bytes = field(repr=False)  # account_id as UTF-8: the Kafka message key
    ip_lat: float = field(repr=False, default=0.0)  # where the holder's home connection
    ip_lon: float = field(repr=False, default=0.0)  # geolocates (~1 km): online purchases


@dataclass(frozen=True, slots=True)
class Population:
    """Cards and merchants of one run, with the indexes the generators need."""

    seed: int
    cards: tuple[Card, ...]
    merchants: tuple[Merchant, ...]
    physical_by_city: dict[int, tuple[int, ...]]
    online_merchants: tuple[int, ...]
    online_by_country: dict[str, tuple[int, ...]]
    cards_by_city: dict[int, tuple[int, ...]]

    def cities_with_merchants(self) -> list[int]:
        """Cities that have at least one physical merchant, in index order."""
        return sorted(self.physical_by_city)


class _Names:
    """Faker instances per locale, created on first use and seeded from the run's seed."""

    def __init__(self, seed: int) -> None:
        self._seed = seed
        self._fakers: dict[str, Any] = {}

    def __call__(self, locale: str) -> Any:
        fake = self._fakers.get(locale)
        if fake is None:
            from faker import Faker

            fake = Faker(locale)
            fake.seed_instance(f"{self._seed}-{locale}")
            self._fakers[locale] = fake
        return fake


def _weighted_index(rng: random.Random, cum_weights: list[float]) -> int:
    return bisect.bisect(cum_weights, rng.random() * cum_weights[-1])


def _pick_category(rng: random.Random, categories: tuple[Category, ...]) -> Category:
    cum = list(accumulate(c.weight for c in categories))
    return categories[_weighted_index(rng, cum)]


def _make_pan(rng: random.Random, bins: list[tuple[str, int]], taken: set[str]) -> str:
    while True:
        bin_, length = bins[rng.randrange(len(bins))]
        n = length - len(bin_) - 1
        body = f"{bin_}{rng.randrange(10**n):0{n}d}"
        pan = body + luhn_check_digit(body)
        if pan not in taken:
            taken.add(pan)
            return pan


def _issuer_bins(rng: random.Random) -> list[tuple[str, int]]:
    """About a dozen 6-digit BINs in the shares of ``_BIN_RANGES`` (a list, so draws weigh)."""
    bins: list[tuple[str, int]] = []
    for prefix, length, share in _BIN_RANGES:
        for _ in range(max(1, round(share * 20))):
            if prefix == "5":
                head = f"5{rng.randint(1, 5)}"
            elif prefix == "2":
                head = str(rng.randint(2221, 2720))
            elif prefix == "37":
                head = rng.choice(("34", "37"))
            elif prefix == "6":
                head = rng.choice(("6759", "6763", "62"))
            else:
                head = prefix
            bin_ = head + "".join(str(rng.randrange(10)) for _ in range(6 - len(head)))
            bins.append((bin_, length))
    return bins


def _unique_id(rng: random.Random, prefix: str, taken: set[str], bits: int = 40) -> str:
    while True:
        candidate = f"{prefix}{rng.getrandbits(bits):0{bits // 4}x}"
        if candidate not in taken:
            taken.add(candidate)
            return candidate


def _jitter(rng: random.Random, city: City, spread: float) -> tuple[float, float]:
    return offset_km(
        city.latitude,
        city.longitude,
        rng.gauss(0.0, city.radius_km * spread),
        rng.gauss(0.0, city.radius_km * spread),
    )


def _merchant_name(rng: random.Random, names: _Names, cat: Category, city: City) -> str:
    fake = names(COUNTRIES[city.country].locale)
    label = cat.label
    if label == "ATM cash":
        return f"{fake.last_name()} Bank ATM {city.name}"
    if label == "transit":
        return f"{city.name} Transit"
    if label == "hotel":
        return f"Hotel {fake.last_name()} {city.name}"
    if label in ("department store", "misc retail", "home supply"):
        return str(fake.company())
    return f"{fake.last_name()} {cat.name_suffix}"


def _online_name(names: _Names, cat: Category, country: str) -> str:
    fake = names(COUNTRIES[country].locale)
    if cat.label == "airline":
        return f"{fake.last_name()} Air"
    if cat.label == "charity":
        return f"{fake.last_name()} Foundation"
    if cat.label == "money transfer":
        return f"{fake.last_name()}Pay Transfers"
    return str(fake.domain_name())


def _allocate_physical(rng: random.Random, n_physical: int) -> list[int]:
    """A city for each physical merchant: every city gets some when there are enough."""
    weights = [c.home_weight * 3 + c.travel_weight + c.fraud_weight for c in CITIES]
    floor = 2 if n_physical >= 3 * len(CITIES) else (1 if n_physical >= len(CITIES) else 0)
    cities = [i for i in range(len(CITIES)) for _ in range(floor)]
    cum = list(accumulate(weights))
    cities += [_weighted_index(rng, cum) for _ in range(n_physical - len(cities))]
    return cities


def build_population(seed: int, cards: int, merchants: int) -> Population:
    """Build the run's cards and merchants; the same arguments always give the same result.

    Raises:
        ValueError: when ``cards`` or ``merchants`` is too small to tell fraud stories.
    """
    if cards < 10:
        raise ValueError("--cards must be at least 10")
    if merchants < 50:
        raise ValueError("--merchants must be at least 50")
    rng = random.Random(f"fraudwatch-population-{seed}")  # noqa: S311 - a simulation, not secrets
    names = _Names(seed)
    taken_ids: set[str] = set()

    # Merchants: ~85% with a till somewhere, ~15% online only.
    n_online = max(12, round(merchants * 0.15))
    merchant_list: list[Merchant] = []
    for city_idx in sorted(_allocate_physical(rng, merchants - n_online)):
        city = CITIES[city_idx]
        cat = _pick_category(rng, PHYSICAL_CATEGORIES)
        lat, lon = _jitter(rng, city, 0.5)
        currency = COUNTRIES[city.country].currency
        merchant_list.append(
            Merchant(
                index=len(merchant_list),
                merchant_id=_unique_id(rng, "mer-", taken_ids, 32),
                name=_merchant_name(rng, names, cat, city)[:200],
                mcc=cat.mcc,
                category=cat.label,
                online=False,
                city=city_idx,
                country=city.country,
                currency=currency,
                latitude=round(lat, 5),
                longitude=round(lon, 5),
                amount_scale=cat.amount_scale * math.exp(rng.gauss(0.0, 0.3)),
                high_resale=cat.high_resale,
                eur_rate=units_per_eur(currency),
                decimals=minor_units(currency),
            )
        )
    home_cum = list(accumulate(c.home_weight for c in CITIES))
    hubs = [i for i, c in enumerate(CITIES) if c.country in ("US", "GB", "IE", "NL")]
    for j in range(n_online):
        # The first dozen cover every online category, so every story finds its merchant.
        cat = (
            ONLINE_CATEGORIES[j]
            if j < len(ONLINE_CATEGORIES)
            else _pick_category(rng, ONLINE_CATEGORIES)
        )
        city_idx = (
            _weighted_index(rng, home_cum) if rng.random() < 0.7 else hubs[rng.randrange(len(hubs))]
        )
        city = CITIES[city_idx]
        currency = COUNTRIES[city.country].currency
        merchant_list.append(
            Merchant(
                index=len(merchant_list),
                merchant_id=_unique_id(rng, "mer-", taken_ids, 32),
                name=_online_name(names, cat, city.country)[:200],
                mcc=cat.mcc,
                category=cat.label,
                online=True,
                city=city_idx,
                country=city.country,
                currency=currency,
                latitude=city.latitude,
                longitude=city.longitude,
                amount_scale=cat.amount_scale * math.exp(rng.gauss(0.0, 0.3)),
                high_resale=cat.high_resale,
                eur_rate=units_per_eur(currency),
                decimals=minor_units(currency),
            )
        )

    physical_by_city: dict[int, list[int]] = {}
    online_by_country: dict[str, list[int]] = {}
    for m in merchant_list:
        if m.online:
            online_by_country.setdefault(m.country, []).append(m.index)
        else:
            physical_by_city.setdefault(m.city, []).append(m.index)
    online = tuple(m.index for m in merchant_list if m.online)
    international = [i for i in online if merchant_list[i].country in ("US", "GB", "IE", "NL")]

    # Cards live where the physical merchants are (every home city has some with >= 50).
    home_cities = [i for i, c in enumerate(CITIES) if c.home_weight > 0 and i in physical_by_city]
    home_cum = list(accumulate(CITIES[i].home_weight for i in home_cities))
    favourite_cum = {
        city_idx: list(accumulate(_regular_weight(merchant_list[m]) for m in members))
        for city_idx, members in physical_by_city.items()
    }
    bins = _issuer_bins(rng)
    taken_pans: set[str] = set()
    card_list: list[Card] = []
    cards_by_city: dict[int, list[int]] = {}
    for idx in range(cards):
        city_idx = home_cities[_weighted_index(rng, home_cum)]
        city = CITIES[city_idx]
        country = COUNTRIES[city.country]
        lat, lon = _jitter(rng, city, 0.4)
        account_id = _unique_id(rng, "acc-", taken_ids, 48)

        # Daily rhythm: a base curve, shifted for early birds and night owls, a little noise,
        # rotated from local time to UTC.
        shift = rng.choices((-2, 0, 2), weights=(15, 70, 15))[0]
        local = [_BASE_RHYTHM[(h - shift) % 24] * math.exp(rng.gauss(0.0, 0.25)) for h in range(24)]
        total = sum(local)
        offset_h = round(city.utc_offset_min / 60)
        hours_utc = tuple(local[(h + offset_h) % 24] / total for h in range(24))

        nearby = physical_by_city[city_idx]
        n_fav = min(len(nearby), rng.randint(3, 8))
        favourites = _distinct_draws(rng, nearby, favourite_cum[city_idx], n_fav)
        domestic_online = online_by_country.get(city.country, [])
        favourite_online = [
            (
                domestic_online[rng.randrange(len(domestic_online))]
                if domestic_online and rng.random() < 0.7
                else international[rng.randrange(len(international))]
                if international
                else online[rng.randrange(len(online))]
            )
            for _ in range(rng.randint(2, 6))
        ]
        card = Card(
            index=idx,
            account_id=account_id,
            card_number=_make_pan(rng, bins, taken_pans),
            holder=str(names(country.locale).name()),
            home_city=city_idx,
            country=city.country,
            currency=country.currency,
            home_lat=round(lat, 5),
            home_lon=round(lon, 5),
            median_amount_eur=min(400.0, math.exp(rng.gauss(math.log(32.0), 0.55))),
            amount_sigma=rng.uniform(0.45, 0.95),
            daily_rate=min(15.0, max(0.2, math.exp(rng.gauss(math.log(2.2), 0.6)))),
            hour_weights_utc=hours_utc,
            cnp_share=rng.betavariate(2.0, 6.0),
            favourite_merchants=tuple(favourites),
            favourite_cum_weights=tuple(accumulate(1.0 / (r + 1) for r in range(len(favourites)))),
            favourite_online=tuple(favourite_online),
            trips_per_year=min(20.0, math.exp(rng.gauss(math.log(3.0), 0.7))),
            key=account_id.encode(),
            ip_lat=round(lat, 2),
            ip_lon=round(lon, 2),
        )
        card_list.append(card)
        cards_by_city.setdefault(city_idx, []).append(idx)

    return Population(
        seed=seed,
        cards=tuple(card_list),
        merchants=tuple(merchant_list),
        physical_by_city={k: tuple(v) for k, v in physical_by_city.items()},
        online_merchants=online,
        online_by_country={k: tuple(v) for k, v in online_by_country.items()},
        cards_by_city={k: tuple(v) for k, v in cards_by_city.items()},
    )


_CATEGORY_WEIGHT = {c.label: c.weight for c in PHYSICAL_CATEGORIES}


def _regular_weight(m: Merchant) -> float:
    """How likely a merchant becomes somebody's regular: groceries yes, hotels at home no."""
    base = _CATEGORY_WEIGHT.get(m.category, 1.0)
    if m.category in ("hotel", "jewellery"):
        base *= 0.05
    return base


def _distinct_draws(
    rng: random.Random, items: list[int], cum_weights: list[float], k: int
) -> list[int]:
    """Up to ``k`` distinct items, each draw proportional to its weight (by rejection)."""
    chosen: list[int] = []
    for _ in range(20 * k):
        if len(chosen) == k:
            break
        item = items[_weighted_index(rng, cum_weights)]
        if item not in chosen:
            chosen.append(item)
    return chosen
