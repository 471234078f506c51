"""Every fraud story yields the pattern it claims, with parameters drawn from ranges."""

from __future__ import annotations

import itertools
import random
import statistics
from collections import Counter
from dataclasses import replace

import pytest

from fraudwatch.geo import haversine_km
from producer.population import Population
from producer.records import CardState, Planned
from producer.scenarios import (
    ACCOUNT_TAKEOVER,
    AMOUNT_SPIKE,
    CARD_TESTING,
    CNP_FOREIGN,
    COMPROMISED_MERCHANT,
    IMPOSSIBLE_TRAVEL,
    MAX_AMOUNT,
    PROFILES,
    SCENARIO_NAMES,
    SCENARIOS,
    SHIFTED_PROFILE,
    CardTestingParams,
    ScenarioProfile,
    StoryKit,
    plan_account_takeover,
    plan_amount_spike,
    plan_card_testing,
    plan_cnp_foreign,
    plan_compromised_merchant,
    plan_impossible_travel,
)
from producer.world import units_per_eur
from tests.producer.conftest import START_MS

Plan = list[tuple[int, Planned]]
MIN = 60_000


def _plans(
    population: Population,
    plan_fn: object,
    n: int = 60,
    seed: int = 1,
    profile: ScenarioProfile = PROFILES["default"],
) -> list[Plan]:
    """``n`` stories, each on a fresh portfolio state (so every one finds a free card)."""
    rng = random.Random(seed)
    extra_rng = random.Random(-seed)
    plans = []
    for i in range(n):
        states = [CardState() for _ in population.cards]
        kit = StoryKit(rng, population, states, profile=profile, extra_rng=extra_rng)
        plan = plan_fn(kit, START_MS + i * 3_600_000, f"story-{i}")
        assert plan, "a story on an idle portfolio always finds its card"
        plans.append(plan)
    return plans


def _eur(p: Planned) -> float:
    return p.amount / units_per_eur(p.merchant.currency)


def _fraud(plan: Plan) -> Plan:
    return [(t, p) for t, p in plan if p.story is not None]


def test_card_testing_is_tiny_charges_at_one_merchant_then_big_purchases(
    population: Population,
) -> None:
    for plan in _plans(population, plan_card_testing):
        assert len(_fraud(plan)) == len(plan)
        tiny = [(t, p) for t, p in plan if _eur(p) <= CARD_TESTING.test_amount_eur[1] + 0.01]
        big = plan[len(tiny) :]
        assert CARD_TESTING.tests[0] <= len(tiny) <= CARD_TESTING.tests[1]
        assert len({p.merchant.merchant_id for _, p in tiny}) == 1
        assert all(p.channel == "card_not_present" for _, p in plan)
        assert tiny[-1][0] - tiny[0][0] <= CARD_TESTING.tests[1] * 60_000
        assert 1 <= len(big) <= 3
        assert all(_eur(p) >= CARD_TESTING.cashout_min_eur - 1 for _, p in big)
        assert big[0][0] - tiny[-1][0] >= CARD_TESTING.pause_min[0] * MIN
        assert len({p.card.account_id for _, p in plan}) == 1


def test_some_card_testing_stories_open_with_a_zero_amount_account_verification(
    population: Population,
) -> None:
    plans = _plans(population, plan_card_testing, n=300)
    opened_with_zero = [plan for plan in plans if plan[0][1].amount == 0.0]
    assert len(opened_with_zero) / len(plans) == pytest.approx(
        CARD_TESTING.zero_auth_share, abs=0.08
    )
    assert all(p.amount > 0 for plan in plans for _, p in plan[1:])


def test_the_zero_amount_share_does_not_change_what_else_a_story_draws(
    population: Population,
) -> None:
    never = ScenarioProfile("never", card_testing=CardTestingParams(zero_auth_share=0.0))
    always = ScenarioProfile("always", card_testing=CardTestingParams(zero_auth_share=1.0))
    without = _plans(population, plan_card_testing, profile=never)
    with_zero = _plans(population, plan_card_testing, profile=always)
    assert [[(t, replace(p, amount=0.0)) for t, p in plan[:1]] + plan[1:] for plan in without] == (
        with_zero
    )


def test_price_scales_rounds_and_stays_within_the_contract(population: Population) -> None:
    merchants = population.merchants
    shop = next(m for m in merchants if m.currency == "EUR" and m.mcc != "6011")
    atm = next(m for m in merchants if m.currency == "EUR" and m.mcc == "6011")
    kit = StoryKit(random.Random(1), population, [], amount_scale=6.0)
    assert kit.price(shop, 10.0) == 60.0
    assert kit.price(shop, 0.123) == 0.74
    assert kit.price(shop, 0.0001) == 0.01  # never below one minor unit
    assert kit.price(atm, 31.0) == 190.0  # whole notes
    assert kit.price(shop, 1e12) == MAX_AMOUNT


def test_account_takeover_is_a_fast_run_of_purchases_far_above_habit(
    population: Population,
) -> None:
    for plan in _plans(population, plan_account_takeover):
        card = plan[0][1].card
        times = [t for t, _ in plan]
        assert ACCOUNT_TAKEOVER.purchases[0] <= len(plan) <= ACCOUNT_TAKEOVER.purchases[1]
        assert max(b - a for a, b in itertools.pairwise(times)) <= 8 * MIN
        assert all(_eur(p) >= max(99.0, 2.9 * card.median_amount_eur) for _, p in plan)
        assert sum(p.merchant.high_resale for _, p in plan) >= len(plan) / 2 or any(
            p.merchant.category == "online marketplace" for _, p in plan
        )


def test_impossible_travel_follows_a_use_at_home_faster_than_any_plane(
    population: Population,
) -> None:
    speeds = []
    for plan in _plans(population, plan_impossible_travel):
        (t0, home), (t1, far) = plan[0], plan[1]
        assert home.story is None
        assert home.channel == "card_present"
        assert far.story is not None
        assert far.channel == "card_present"
        assert (
            haversine_km(home.latitude, home.longitude, home.card.home_lat, home.card.home_lon) < 80
        )
        km = haversine_km(home.latitude, home.longitude, far.latitude, far.longitude)
        speed = km / ((t1 - t0) / 3_600_000)
        assert km >= IMPOSSIBLE_TRAVEL.min_distance_km - 60
        assert speed > 1000
        speeds.append(speed)
        assert all(p.channel == "card_present" and p.story for _, p in plan[1:])
    assert max(speeds) / min(speeds) > 2  # drawn from a range, not one value


def test_amount_spike_is_many_times_the_cards_usual_amount(population: Population) -> None:
    for plan in _plans(population, plan_amount_spike):
        assert AMOUNT_SPIKE.purchases[0] <= len(plan) <= AMOUNT_SPIKE.purchases[1]
        for _, p in plan:
            assert _eur(p) >= 0.99 * max(AMOUNT_SPIKE.amount_min_eur, 8 * p.card.median_amount_eur)
            assert p.country == p.card.country  # the amount is the only thing that is off


def test_cnp_foreign_comes_from_a_country_the_card_does_not_live_in(
    population: Population,
) -> None:
    for plan in _plans(population, plan_cnp_foreign):
        assert CNP_FOREIGN.purchases[0] <= len(plan) <= CNP_FOREIGN.purchases[1]
        for _, p in plan:
            assert p.channel == "card_not_present"
            assert p.country != p.card.country
            assert p.story is not None


def test_compromised_merchant_defrauds_several_cards_after_one_shared_visit(
    population: Population,
) -> None:
    for plan in _plans(population, plan_compromised_merchant, n=40):
        visits = [(t, p) for t, p in plan if p.story is None]
        assert len({p.merchant.merchant_id for _, p in visits}) == 1
        victims = {p.card.account_id: t for t, p in visits}
        assert COMPROMISED_MERCHANT.victims[0] <= len(victims) <= COMPROMISED_MERCHANT.victims[1]
        assert all(p.channel == "card_present" for _, p in visits)
        defrauded = Counter()
        for t, p in _fraud(plan):
            assert t >= victims[p.card.account_id] + COMPROMISED_MERCHANT.delay_h[0] * 3_600_000
            assert p.merchant.merchant_id != visits[0][1].merchant.merchant_id
            defrauded[p.card.account_id] += 1
        assert set(defrauded) == set(victims)


def test_story_parameters_are_drawn_from_ranges_not_fixed_values(population: Population) -> None:
    plans = _plans(population, plan_card_testing, n=80)
    assert len({len(p) for p in plans}) >= 6
    amounts = [p.amount for plan in plans for _, p in plan]
    assert len(set(amounts)) > 200
    gaps = {plan[1][0] - plan[0][0] for plan in plans}
    assert len(gaps) > 60


@pytest.mark.parametrize("scenario", SCENARIOS, ids=SCENARIO_NAMES)
def test_expected_fraud_count_matches_what_stories_really_make(
    population: Population, scenario: object
) -> None:
    plans = _plans(population, scenario.plan, n=150)
    mean = statistics.mean(len(_fraud(plan)) for plan in plans)
    assert mean == pytest.approx(scenario.expected_fraud_txns, rel=0.2)


def test_a_busy_or_travelling_card_is_not_picked_for_a_story(population: Population) -> None:
    states = [CardState() for _ in population.cards]
    states[1].busy_until = START_MS + 1  # another story owns it
    states[2].trip_until = START_MS + 10  # its holder is abroad
    kit = StoryKit(random.Random(1), population, states)
    assert {kit.free_card(START_MS, [0, 1, 2]).index for _ in range(30)} == {0}
    assert kit.free_card(START_MS, [1, 2]) is None
    assert kit.free_card(START_MS + 1, [1, 2]).index == 1


def test_every_scenario_appears_in_a_long_stream(make_records: object) -> None:
    records = make_records(60_000, fraud_ratio=0.05)
    scenarios = {r.label.scenario for r in records if r.label is not None}
    assert scenarios == set(SCENARIO_NAMES)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=SCENARIO_NAMES)
def test_shifted_profile_expected_fraud_count_matches_what_its_stories_make(
    population: Population, scenario: object
) -> None:
    plans = _plans(population, scenario.plan, n=150, profile=SHIFTED_PROFILE)
    mean = statistics.mean(len(_fraud(plan)) for plan in plans)
    assert mean == pytest.approx(SHIFTED_PROFILE.expected_fraud_txns(scenario.name), rel=0.2)


def test_shifted_card_testing_is_fewer_slower_tests_then_smaller_cash_outs(
    population: Population,
) -> None:
    p = SHIFTED_PROFILE.card_testing
    for plan in _plans(population, plan_card_testing, profile=SHIFTED_PROFILE):
        tester = plan[0][1].merchant.merchant_id
        tests = [(t, q) for t, q in plan if q.merchant.merchant_id == tester]
        assert p.tests[0] <= len(tests) <= p.tests[1]
        assert all(
            b - a >= p.test_gap_s[0] * 1000 - 1 for (a, _), (b, _) in itertools.pairwise(tests)
        )
        assert all(_eur(q) <= p.test_amount_eur[1] + 0.01 for _, q in tests)
        cash_outs = plan[len(tests) :]
        assert p.cashouts[0] <= len(cash_outs) <= p.cashouts[1]
        assert cash_outs[0][0] - tests[-1][0] >= p.pause_min[0] * MIN


def test_shifted_account_takeover_spreads_purchases_over_minutes(population: Population) -> None:
    p = SHIFTED_PROFILE.account_takeover
    for plan in _plans(population, plan_account_takeover, profile=SHIFTED_PROFILE):
        times = [t for t, _ in plan]
        assert p.purchases[0] <= len(plan) <= p.purchases[1]
        assert all(b - a >= p.gap_s[0] * 1000 - 1 for a, b in itertools.pairwise(times))


def test_shifted_impossible_travel_is_closer_but_still_faster_than_a_plane(
    population: Population,
) -> None:
    distances = []
    for plan in _plans(population, plan_impossible_travel, profile=SHIFTED_PROFILE):
        (t0, home), (t1, far) = plan[0], plan[1]
        km = haversine_km(home.latitude, home.longitude, far.latitude, far.longitude)
        assert km / ((t1 - t0) / 3_600_000) > 900
        distances.append(km)
    assert min(distances) < IMPOSSIBLE_TRAVEL.min_distance_km  # default: never this close


def test_every_shifted_range_differs_from_the_default_only_where_declared() -> None:
    default = PROFILES["default"]
    assert PROFILES["shifted"] is SHIFTED_PROFILE
    assert default.card_testing == CARD_TESTING
    moved = [
        name for name in SCENARIO_NAMES if getattr(default, name) != getattr(SHIFTED_PROFILE, name)
    ]
    assert moved == list(SCENARIO_NAMES)  # every scenario is shifted somewhere
