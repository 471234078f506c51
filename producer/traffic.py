"""Genuine card traffic on a simulation clock, with fraud stories and malformed records mixed in.

The clock
---------
Event time starts at ``start_ms`` and only moves forward; records come out in event-time order,
so every card's transactions are in order too.

* ``simulated``: genuine transactions arrive as the population would make them: each card at
  its own daily rate, following its holder's hour-of-day rhythm in local time (a
  non-homogeneous Poisson process over UTC hours). 20,000 cards make ~55,000 transactions a
  simulated day, whatever the sending speed; this is the clock for backtests.
* ``wall``: event time advances at wall-clock pace: records take evenly spaced slots, ``rate``
  per second; a story's transactions keep their own times and genuine ones fill the rest.
  Which card transacts still follows the cards' rates and rhythms, but every card is
  proportionally busier than in real life when ``rate`` is high for the number of cards (see
  ``per_card_gap_s``).

Fraud stories start at random genuine arrivals with the probability that makes about
``fraud_ratio`` of all records fraudulent; malformed records follow genuine arrivals with the
probability that makes ``bad_ratio`` of all records malformed.

Nothing here touches Kafka or Faker: this is the hot path, plain ``random.Random`` draws on the
numbers of the population's profiles.
"""

from __future__ import annotations

import heapq
import math
import random
from bisect import bisect
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import accumulate
from statistics import NormalDist
from typing import Any, Literal

import orjson

from fraudwatch.geo import haversine_km
from producer import malformed
from producer.population import Card, Population
from producer.records import MALFORMED, CardState, Label, Planned, Record
from producer.scenarios import PROFILES, SCENARIOS, StoryKit, expected_fraud_per_story
from producer.world import CITIES

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
CP = "card_present"
CNP = "card_not_present"

Clock = Literal["wall", "simulated"]

# Share of card-present purchases at the holder's regular places (the rest: elsewhere in town).
_FAVOURITE_SHARE = 0.75
_FAVOURITE_ONLINE_SHARE = 0.7
_DOMESTIC_ONLINE_SHARE = 0.6
_LOCAL_SPEED_KMH = 100.0  # how fast a holder moves around town between two purchases
_TRAVEL_SPEED_KMH = 800.0  # door to door by plane
_TRIP_DAYS = (2.0, 10.0)
_PRIOR_STORIES = 20  # weight of the scenario ranges' expectation before stories are seen


@dataclass(frozen=True, slots=True)
class TrafficConfig:
    """Everything that decides the generated sequence (with the population's seed)."""

    seed: int
    start_ms: int
    clock: Clock = "simulated"
    rate: float | None = None  # records per second; required by the wall clock
    fraud_ratio: float = 0.01
    bad_ratio: float = 0.0
    story_speedup: float = 1.0  # fraud stories unfold this many times faster than real time
    scenario_profile: str = "default"  # which parameter ranges stories draw from (PROFILES)
    amount_scale: float = 1.0  # multiplies every amount, genuine and fraudulent

    def __post_init__(self) -> None:
        if not 0.0 < self.amount_scale < math.inf:
            raise ValueError("--amount-scale must be a positive number")
        if self.scenario_profile not in PROFILES:
            raise ValueError(
                f"unknown scenario profile {self.scenario_profile!r}; "
                f"choose one of {', '.join(PROFILES)}"
            )
        if not self.story_speedup > 0:
            raise ValueError("--story-speedup must be positive")
        if not 0.0 <= self.fraud_ratio < 1.0 or not 0.0 <= self.bad_ratio < 1.0:
            raise ValueError("--fraud-ratio and --bad-ratio must be in [0, 1)")
        if self.fraud_ratio + self.bad_ratio > 0.9:
            raise ValueError("--fraud-ratio plus --bad-ratio must leave genuine traffic (<= 0.9)")
        if self.clock == "wall" and (self.rate is None or self.rate <= 0):
            raise ValueError("the wall clock needs a numeric --rate (not max)")


class TimestampFormatter:
    """Epoch ms to RFC 3339 like ``fraudwatch.contract.format_ts``, ~4x faster.

    The ``YYYY-MM-DDTHH:MM:`` prefix is cached per minute: consecutive records mostly share it.
    """

    __slots__ = ("_minute", "_prefix")

    def __init__(self) -> None:
        self._minute = -1
        self._prefix = ""

    def __call__(self, ts_ms: int) -> str:
        minute, ms = divmod(ts_ms, 60_000)
        if minute != self._minute:
            self._minute = minute
            self._prefix = datetime.fromtimestamp(minute * 60, UTC).strftime("%Y-%m-%dT%H:%M:")
        return "%s%02d.%03dZ" % (self._prefix, ms // 1000, ms % 1000)  # noqa: UP031 - faster


def _normal_quantiles(n: int = 4096) -> tuple[float, ...]:
    """Standard-normal quantiles at the midpoints of ``n`` equal bins: a cheap normal draw is
    ``table[int(random() * n)]`` (tails end at +-3.5 sigma, far enough for shopping)."""
    dist = NormalDist()
    return tuple(dist.inv_cdf((i + 0.5) / n) for i in range(n))


_NORMAL = _normal_quantiles()
_NORMAL_N = len(_NORMAL)


class AliasTable:
    """Walker's alias method: O(1) draws of an index with probability proportional to weight."""

    __slots__ = ("_alias", "_n", "_probability")

    def __init__(self, weights: Sequence[float]) -> None:
        n = len(weights)
        total = sum(weights)
        scaled = [w * n / total for w in weights]
        small = [i for i, w in enumerate(scaled) if w < 1.0]
        large = [i for i, w in enumerate(scaled) if w >= 1.0]
        probability = [1.0] * n
        alias = list(range(n))
        while small and large:
            s, g = small.pop(), large.pop()
            probability[s], alias[s] = scaled[s], g
            scaled[g] -= 1.0 - scaled[s]
            (small if scaled[g] < 1.0 else large).append(g)
        self._n = n
        self._probability = probability
        self._alias = alias

    def draw(self, u: float) -> int:
        """The index for a uniform ``u`` in [0, 1)."""
        x = u * self._n
        i = int(x)
        return i if x - i < self._probability[i] else self._alias[i]


def _fast_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Equirectangular distance: within 0.5% of haversine at city scale, 5x cheaper."""
    x = (lon2 - lon1) * math.cos(math.radians((lat1 + lat2) / 2))
    y = lat2 - lat1
    return 111.195 * math.sqrt(x * x + y * y)


class TrafficSimulator:
    """Turns a population into an endless, deterministic stream of records.

    The same population, config and therefore seed give the same records, byte for byte.
    """

    def __init__(self, population: Population, config: TrafficConfig) -> None:
        self.population = population
        self.config = config
        self.rng = rng = random.Random(f"fraudwatch-traffic-{config.seed}")  # noqa: S311
        self.id_prefix = f"tx-{rng.getrandbits(32):08x}-"
        self.states = [CardState() for _ in population.cards]
        profile = PROFILES[config.scenario_profile]
        self.kit = StoryKit(
            rng,
            population,
            self.states,
            config.story_speedup,
            profile,
            amount_scale=config.amount_scale,
            extra_rng=random.Random(f"fraudwatch-extra-{config.seed}"),  # noqa: S311
        )
        self._price = self.kit.price
        self.format_ts = TimestampFormatter()
        cards = population.cards
        self._hour_rate = [  # genuine transactions per hour of the whole population
            sum(c.daily_rate * c.hour_weights_utc[h] for c in cards) for h in range(24)
        ]
        self._hour_cards = [
            AliasTable([c.daily_rate * c.hour_weights_utc[h] for c in cards]) for h in range(24)
        ]
        self.natural_per_day = sum(c.daily_rate for c in cards)
        genuine_share = 1.0 - config.fraud_ratio - config.bad_ratio
        if config.clock == "wall" and config.rate is not None:  # TrafficConfig insists
            genuine_per_s = config.rate * genuine_share
            self._slot_ms = 1000.0 / config.rate
            activity_scale = genuine_per_s * 86_400 / self.natural_per_day
        else:
            self._slot_ms = 0.0
            activity_scale = 1.0
        self.activity_scale = activity_scale
        self._trip_probability = [
            c.trips_per_year / 365.0 / (c.daily_rate * activity_scale) for c in cards
        ]
        # Running totals over the stories planned so far (seeded with a prior from the
        # scenario ranges): they calibrate how often stories start, see _calibrate().
        self._story_count = _PRIOR_STORIES
        self._story_fraud = _PRIOR_STORIES * expected_fraud_per_story(profile=profile)
        self._story_genuine = 0.0
        self._p_story = 0.0
        self._p_bad = 0.0
        self._calibrate()
        self._scenario_cum = list(accumulate(s.weight for s in SCENARIOS))
        self._stories = 0
        self._malformed = 0
        self._seq = 0  # transaction counter: ids and heap tie-breaks
        self._heap: list[tuple[int, int, Planned]] = []
        merchants = population.merchants
        self._merchants = merchants
        self._online = [merchants[i] for i in population.online_merchants]
        self._online_by_country = {
            cc: [merchants[i] for i in idx] for cc, idx in population.online_by_country.items()
        }
        self._trip_cities = [
            i for i in population.cities_with_merchants() if CITIES[i].travel_weight > 0
        ]
        self._trip_cum = list(accumulate(CITIES[i].travel_weight for i in self._trip_cities))
        self._domestic = {
            cc: [i for i in population.cities_with_merchants() if CITIES[i].country == cc]
            for cc in {c.country for c in cards}
        }

    @property
    def per_card_gap_s(self) -> float:
        """Mean seconds between two genuine transactions of one card on this clock."""
        return 86_400.0 / (self.natural_per_day * self.activity_scale) * len(self.population.cards)

    @property
    def natural_rate_per_s(self) -> float:
        """Genuine transactions per second of event time the population makes by itself."""
        return self.natural_per_day / 86_400.0

    # --- the stream ---------------------------------------------------------------------
    def records(self) -> Iterator[Record]:
        """The endless stream: genuine, fraudulent and malformed records in event-time order."""
        rng = self.rng
        random_ = rng.random
        expovariate = rng.expovariate
        heap = self._heap
        hour_rate = self._hour_rate
        hour_cards = self._hour_cards
        cards = self.population.cards
        genuine = self._genuine
        wall = self.config.clock == "wall"
        slot_ms = self._slot_ms
        start = float(self.config.start_ms)
        t = start
        emitted = 0
        while True:
            if wall:
                # Every record takes the next slot, so exactly `rate` records per second of
                # event time, whatever the stories add: genuine arrivals fill the gaps.
                t = start + emitted * slot_ms
            elif emitted:
                while True:  # piecewise-constant intensity per UTC hour; memoryless restarts
                    step = expovariate(hour_rate[int(t // HOUR_MS) % 24] / HOUR_MS)
                    boundary = (t // HOUR_MS + 1) * HOUR_MS
                    if t + step < boundary:
                        t += step
                        break
                    t = boundary
            ts = int(t)
            if heap and heap[0][0] <= ts:
                when, _, planned = heapq.heappop(heap)
                emitted += 1
                yield self._emit(when, planned)
                if wall:
                    continue
                while heap and heap[0][0] <= ts:
                    when, _, planned = heapq.heappop(heap)
                    emitted += 1
                    yield self._emit(when, planned)
            card = cards[hour_cards[(ts // HOUR_MS) % 24].draw(random_())]
            emitted += 1
            yield genuine(card, ts)
            if random_() < self._p_story:
                self._start_story(ts)
            if self._p_bad and random_() < self._p_bad:
                emitted += 1
                yield self._malformed_record(ts)

    # --- genuine transactions -----------------------------------------------------------
    def _genuine(self, card: Card, ts: int) -> Record:
        random_ = self.rng.random
        merchants = self._merchants
        st = self.states[card.index]
        if st.trip_until:
            if ts >= st.trip_until and self._reachable(st, card.home_lat, card.home_lon, ts):
                st.trip_until = 0
                st.trip_city = -1
        elif st.busy_until <= ts and random_() < self._trip_probability[card.index]:
            self._start_trip(card, st, ts)

        if random_() < card.cnp_share:
            channel = CNP
            if random_() < _FAVOURITE_ONLINE_SHARE:
                fav = card.favourite_online
                merchant = merchants[fav[int(random_() * len(fav))]]
            else:
                domestic = self._online_by_country.get(card.country)
                pool = domestic if domestic and random_() < _DOMESTIC_ONLINE_SHARE else self._online
                merchant = pool[int(random_() * len(pool))]
            if st.trip_until:
                city = CITIES[st.trip_city]
                lat, lon, country = round(city.latitude, 2), round(city.longitude, 2), city.country
            else:  # the holder's usual connection: geolocated to ~1 km
                lat, lon, country = card.ip_lat, card.ip_lon, card.country
        else:
            channel = CP
            if st.trip_until:
                local = self.population.physical_by_city[st.trip_city]
                merchant = merchants[local[int(random_() * len(local))]]
            elif random_() < _FAVOURITE_SHARE:
                cum = card.favourite_cum_weights
                merchant = merchants[card.favourite_merchants[bisect(cum, random_() * cum[-1])]]
            else:
                local = self.population.physical_by_city[card.home_city]
                merchant = merchants[local[int(random_() * len(local))]]
            last_ts = st.last_cp_ts
            if last_ts >= 0 and ts - last_ts < HOUR_MS:
                # Nobody crosses town faster than traffic allows: stay where the last one was.
                allowed = max(1.0, _LOCAL_SPEED_KMH * (ts - last_ts) / HOUR_MS)
                km = _fast_km(st.last_cp_lat, st.last_cp_lon, merchant.latitude, merchant.longitude)
                if km > allowed:
                    merchant = merchants[st.last_cp_merchant]
            lat, lon, country = merchant.latitude, merchant.longitude, merchant.country
            st.last_cp_ts = ts
            st.last_cp_lat = lat
            st.last_cp_lon = lon
            st.last_cp_merchant = merchant.index

        eur = (
            card.median_amount_eur
            * merchant.amount_scale
            * math.exp(card.amount_sigma * _NORMAL[int(random_() * _NORMAL_N)])
        )
        amount = self._price(merchant, eur)
        self._seq += 1
        value = orjson.dumps(
            {
                "transaction_id": f"{self.id_prefix}{self._seq}",
                "timestamp": self.format_ts(ts),
                "card_number": card.card_number,
                "account_id": card.account_id,
                "amount": amount,
                "currency": merchant.currency,
                "merchant_id": merchant.merchant_id,
                "merchant_name": merchant.name,
                "merchant_category": merchant.mcc,
                "channel": channel,
                "latitude": lat,
                "longitude": lon,
                "country": country,
            }
        )
        return Record(ts, card.key, value, None)

    def _reachable(self, st: CardState, lat: float, lon: float, ts: int) -> bool:
        """Could the holder be at (lat, lon) at ``ts``, given the last card-present use?"""
        if st.last_cp_ts < 0:
            return True
        hours = (ts - st.last_cp_ts) / HOUR_MS
        return haversine_km(st.last_cp_lat, st.last_cp_lon, lat, lon) <= _TRAVEL_SPEED_KMH * hours

    def _start_trip(self, card: Card, st: CardState, ts: int) -> None:
        rng = self.rng
        domestic = [c for c in self._domestic.get(card.country, ()) if c != card.home_city]
        if domestic and rng.random() < 0.5:
            city_idx = domestic[int(rng.random() * len(domestic))]
        else:
            city_idx = self._trip_cities[bisect(self._trip_cum, rng.random() * self._trip_cum[-1])]
            if city_idx == card.home_city:
                return
        city = CITIES[city_idx]
        if not self._reachable(st, city.latitude, city.longitude, ts):
            return  # not yet: the holder only just paid somewhere else
        st.trip_city = city_idx
        st.trip_until = ts + int(rng.uniform(*_TRIP_DAYS) * DAY_MS)

    # --- stories and malformed records --------------------------------------------------
    def _calibrate(self) -> None:
        """Story and malformed probabilities per genuine arrival that hit the asked-for ratios.

        Per genuine arrival there are, on average, ``1 + q + p * (F + S)`` records, where ``p``
        is the story probability, ``q`` the malformed one, and ``F``/``S`` the fraudulent and
        genuine transactions per story. Solving ``p * F = f * D`` and ``q = b * D`` gives
        ``D = 1 / (1 - b - f * (1 + S / F))``. ``F`` and ``S`` are running means over the
        stories actually planned (some find no free card, some make fewer transactions).
        """
        f, b = self.config.fraud_ratio, self.config.bad_ratio
        fraud = self._story_fraud / self._story_count
        genuine = self._story_genuine / self._story_count
        records_per_arrival = 1.0 / max(0.05, 1.0 - b - f * (1.0 + genuine / max(fraud, 0.1)))
        self._p_story = min(1.0, f * records_per_arrival / max(fraud, 0.1))
        self._p_bad = b * records_per_arrival

    def _start_story(self, ts: int) -> None:
        scenario = SCENARIOS[bisect(self._scenario_cum, self.rng.random() * self._scenario_cum[-1])]
        self._stories += 1
        self.kit.begin(ts)
        plan = scenario.plan(self.kit, ts, f"{scenario.name}-{self._stories:06d}") or []
        speedup = self.config.story_speedup
        for planned_at, planned in plan:
            self._seq += 1
            when = planned_at if speedup == 1.0 else ts + int((planned_at - ts) / speedup)
            heapq.heappush(self._heap, (when, self._seq, planned))
        fraud = sum(1 for _, planned in plan if planned.story is not None)
        self._story_count += 1
        self._story_fraud += fraud
        self._story_genuine += len(plan) - fraud
        self._calibrate()

    def _emit(self, ts: int, p: Planned) -> Record:
        """A story's transaction, now that its time has come."""
        card, merchant = p.card, p.merchant
        if p.story is None and p.channel == CP:  # the holder was really there
            st = self.states[card.index]
            st.last_cp_ts = ts
            st.last_cp_lat = p.latitude
            st.last_cp_lon = p.longitude
            st.last_cp_merchant = merchant.index
        self._seq += 1
        txn_id = f"{self.id_prefix}{self._seq}"
        value = orjson.dumps(
            {
                "transaction_id": txn_id,
                "timestamp": self.format_ts(ts),
                "card_number": card.card_number,
                "account_id": card.account_id,
                "amount": p.amount,
                "currency": merchant.currency,
                "merchant_id": merchant.merchant_id,
                "merchant_name": merchant.name,
                "merchant_category": merchant.mcc,
                "channel": p.channel,
                "latitude": p.latitude,
                "longitude": p.longitude,
                "country": p.country,
            }
        )
        label = None
        if p.story is not None:
            label = Label(txn_id, card.account_id, p.story[0], p.story[1])
        return Record(ts, card.key, value, label)

    def _malformed_record(self, ts: int) -> Record:
        rng = self.rng
        cards = self.population.cards
        card = cards[int(rng.random() * len(cards))]
        merchant = self.population.merchants[card.favourite_merchants[0]]
        self._seq += 1
        self._malformed += 1
        txn_id = f"{self.id_prefix}{self._seq}"
        txn: dict[str, Any] = {
            "transaction_id": txn_id,
            "timestamp": self.format_ts(ts),
            "card_number": card.card_number,
            "account_id": card.account_id,
            "amount": self.kit.price(merchant, self.kit.usual_eur(card, merchant)),
            "currency": merchant.currency,
            "merchant_id": merchant.merchant_id,
            "merchant_name": merchant.name,
            "merchant_category": merchant.mcc,
            "channel": CP,
            "latitude": merchant.latitude,
            "longitude": merchant.longitude,
            "country": merchant.country,
        }
        kind, value = malformed.corrupt(rng, txn)
        story_id = f"{MALFORMED}-{kind}-{self._malformed:06d}"
        return Record(ts, card.key, value, Label(txn_id, card.account_id, story_id, MALFORMED))
