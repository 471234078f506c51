"""The simulated portfolio: believable, internally consistent and reproducible."""

from __future__ import annotations

import statistics

import pytest

from dataflows.detection.ruleset import DEFAULT_RULES_FILE, load_ruleset
from fraudwatch.cards import luhn_valid
from fraudwatch.geo import haversine_km
from fraudwatch.vocabulary import EXCHANGE_RATES
from producer.population import Population, build_population
from producer.world import CITIES, COUNTRIES, units_per_eur


def test_same_seed_builds_the_same_population() -> None:
    assert build_population(3, 200, 100) == build_population(3, 200, 100)


def test_different_seeds_build_different_populations() -> None:
    a, b = build_population(3, 200, 100), build_population(4, 200, 100)
    assert [c.card_number for c in a.cards] != [c.card_number for c in b.cards]
    assert [m.name for m in a.merchants] != [m.name for m in b.merchants]


def test_card_numbers_are_unique_luhn_valid_pans(population: Population) -> None:
    pans = [c.card_number for c in population.cards]
    assert len(set(pans)) == len(pans)
    assert all(p.isdigit() and 12 <= len(p) <= 19 and luhn_valid(p) for p in pans)
    assert {len(p) for p in pans} >= {15, 16, 19}  # Visa/MC, Amex and 19-digit cards


def test_account_and_merchant_ids_are_unique(population: Population) -> None:
    accounts = [c.account_id for c in population.cards]
    merchants = [m.merchant_id for m in population.merchants]
    assert len(set(accounts)) == len(accounts)
    assert len(set(merchants)) == len(merchants)
    assert all(c.key == c.account_id.encode() for c in population.cards)


def test_every_card_has_a_named_holder_a_home_and_its_country_currency(
    population: Population,
) -> None:
    for card in population.cards:
        home = CITIES[card.home_city]
        assert card.holder.strip()
        assert card.country == home.country
        assert card.currency == COUNTRIES[home.country].currency
        assert haversine_km(card.home_lat, card.home_lon, home.latitude, home.longitude) < 80


def test_favourite_merchants_are_physical_shops_in_the_home_city(population: Population) -> None:
    for card in population.cards:
        assert 1 <= len(card.favourite_merchants) <= 8
        for idx in card.favourite_merchants:
            shop = population.merchants[idx]
            assert not shop.online
            assert shop.city == card.home_city
        assert all(population.merchants[i].online for i in card.favourite_online)


def test_daily_rhythm_is_busier_by_day_than_at_night(population: Population) -> None:
    daytime = []
    for card in population.cards:
        weights = card.hour_weights_utc
        assert sum(weights) == pytest.approx(1.0)
        offset_h = round(CITIES[card.home_city].utc_offset_min / 60)
        local = [weights[(h - offset_h) % 24] for h in range(24)]
        daytime.append(sum(local[8:22]))
    assert statistics.median(daytime) > 0.8


def test_spend_levels_and_rates_vary_between_cards(population: Population) -> None:
    medians = [c.median_amount_eur for c in population.cards]
    rates = [c.daily_rate for c in population.cards]
    assert 20 < statistics.median(medians) < 50
    assert max(medians) / min(medians) > 5
    assert 1.5 < statistics.median(rates) < 3.5
    assert all(0.2 <= r <= 15 for r in rates)
    assert 0.15 < statistics.mean(c.cnp_share for c in population.cards) < 0.35


def test_merchants_carry_valid_mccs_names_and_local_currencies(population: Population) -> None:
    for m in population.merchants:
        assert len(m.mcc) == 4
        assert m.mcc.isdigit()
        assert 0 < len(m.name) <= 200
        assert m.currency in EXCHANGE_RATES
        assert m.currency == COUNTRIES[m.country].currency
    online = [m for m in population.merchants if m.online]
    assert 0.1 < len(online) / len(population.merchants) < 0.25
    assert {m.category for m in online} >= {"charity", "online electronics", "money transfer"}


def test_euro_countries_price_in_eur_and_others_in_their_own_currency() -> None:
    assert COUNTRIES["DE"].currency == COUNTRIES["FR"].currency == "EUR"
    assert COUNTRIES["GB"].currency == "GBP"
    assert COUNTRIES["US"].currency == "USD"
    assert COUNTRIES["JP"].currency == "JPY"


def test_every_city_with_cardholders_has_shops(population: Population) -> None:
    assert set(population.cards_by_city) <= set(population.physical_by_city)


@pytest.mark.parametrize(("cards", "merchants"), [(5, 100), (100, 10)])
def test_too_small_a_population_is_refused(cards: int, merchants: int) -> None:
    with pytest.raises(ValueError, match="at least"):
        build_population(1, cards, merchants)


def test_every_price_converts_back_exactly_with_the_detectors_rates() -> None:
    # One table (fraudwatch.vocabulary): the producer prices with it, the detector converts
    # back with it, and the rule file keeps no rates of its own that could drift.
    import tomllib

    assert "currency" not in tomllib.loads(DEFAULT_RULES_FILE.read_text())
    rates = load_ruleset().currency.rates  # base units per unit
    for currency in sorted({c.currency for c in COUNTRIES.values()}):
        assert currency in rates, f"{currency} would be dead-lettered as unsupported_currency"
        assert units_per_eur(currency) * rates[currency] == pytest.approx(1.0, rel=1e-12)
