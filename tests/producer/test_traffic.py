"""Genuine traffic and the simulation clock: valid, ordered, reproducible and realistic."""

from __future__ import annotations

import itertools
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fraudwatch.contract import format_ts, parse_transaction
from fraudwatch.geo import haversine_km
from producer.population import Population
from producer.records import MALFORMED, Record
from producer.scenarios import SCENARIO_NAMES
from producer.traffic import DAY_MS, TimestampFormatter, TrafficConfig, TrafficSimulator
from producer.world import CITIES, units_per_eur
from tests.producer.conftest import START_MS

Make = Callable[..., list[Record]]


def _genuine(records: list[Record]) -> list[dict[str, Any]]:
    return [orjson.loads(r.value) for r in records if r.label is None]


@given(st.integers(min_value=946_684_800_000, max_value=4_102_444_799_999))
def test_timestamp_formatter_matches_the_contract_format(ts_ms: int) -> None:
    expected = format_ts(datetime.fromtimestamp(ts_ms // 1000, UTC)).replace(
        ".000Z", f".{ts_ms % 1000:03d}Z"
    )
    assert TimestampFormatter()(ts_ms) == expected


def test_every_genuine_and_fraudulent_record_is_a_valid_v1_transaction(make_records: Make) -> None:
    records = make_records(5000, fraud_ratio=0.05)
    for rec in records:
        txn = parse_transaction(rec.value)
        assert rec.key == txn.account_id.encode()
        assert rec.ts_ms == int(txn.timestamp.timestamp() * 1000)


def test_labels_never_appear_inside_the_transaction(make_records: Make) -> None:
    for rec in make_records(5000, fraud_ratio=0.05, bad_ratio=0.01):
        assert b"scenario" not in rec.value
        assert b"story" not in rec.value


def test_same_seed_and_start_give_byte_identical_traffic(make_records: Make) -> None:
    a = make_records(3000, fraud_ratio=0.05, bad_ratio=0.01)
    b = make_records(3000, fraud_ratio=0.05, bad_ratio=0.01)
    assert a == b


def test_scenario_profile_default_is_the_traffic_without_one(make_records: Make) -> None:
    base = make_records(20_000, fraud_ratio=0.05)
    assert base == make_records(20_000, fraud_ratio=0.05, scenario_profile="default")
    shifted = make_records(20_000, fraud_ratio=0.05, scenario_profile="shifted")
    assert [r.label for r in base if r.label] != [r.label for r in shifted if r.label]


def test_an_unknown_scenario_profile_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="choose one of default, shifted"):
        TrafficConfig(seed=1, start_ms=START_MS, scenario_profile="easy")


def test_another_seed_or_start_gives_other_traffic(make_records: Make) -> None:
    base = [r.value for r in make_records(200)]
    assert base != [r.value for r in make_records(200, seed=6)]
    assert base != [r.value for r in make_records(200, start_ms=START_MS + 1)]


def test_first_record_happens_at_start_and_event_time_never_goes_back(make_records: Make) -> None:
    records = make_records(20_000, fraud_ratio=0.05, bad_ratio=0.01)
    assert records[0].ts_ms == START_MS
    assert all(a.ts_ms <= b.ts_ms for a, b in itertools.pairwise(records))


def test_transaction_ids_are_unique(make_records: Make) -> None:
    ids = [orjson.loads(r.value)["transaction_id"] for r in make_records(20_000, fraud_ratio=0.05)]
    assert len(set(ids)) == len(ids)


def test_simulated_clock_runs_at_the_populations_own_pace(population: Population) -> None:
    sim = TrafficSimulator(population, TrafficConfig(seed=1, start_ms=START_MS))
    per_day = sim.natural_per_day
    records = []
    for rec in sim.records():
        if rec.ts_ms >= START_MS + 2 * DAY_MS:
            break
        records.append(rec)
    assert len(records) / 2 == pytest.approx(per_day, rel=0.1)


def test_wall_clock_puts_exactly_rate_records_in_each_second_of_event_time(
    make_records: Make,
) -> None:
    records = make_records(60_000, clock="wall", rate=1000.0, fraud_ratio=0.02, bad_ratio=0.01)
    per_second = Counter((r.ts_ms - START_MS) // 1000 for r in records)
    assert all(abs(n - 1000) <= 2 for second, n in per_second.items() if second < 59)


def test_most_activity_happens_by_local_day(population: Population, make_records: Make) -> None:
    cards = {c.account_id: c for c in population.cards}
    local_hours = Counter()
    for txn in _genuine(make_records(30_000)):
        card = cards[str(txn["account_id"])]
        ts = datetime.fromisoformat(str(txn["timestamp"]))
        offset_h = round(CITIES[card.home_city].utc_offset_min / 60)
        local_hours[(ts.hour + offset_h) % 24] += 1
    day = sum(local_hours[h] for h in range(8, 22))
    night = sum(local_hours[h] for h in range(1, 6))
    assert day / sum(local_hours.values()) > 0.8
    assert night / sum(local_hours.values()) < 0.05


def test_amounts_are_right_skewed_like_log_normal_spend(make_records: Make) -> None:
    eur = [
        float(t["amount"]) / units_per_eur(str(t["currency"]))
        for t in _genuine(make_records(20_000))
    ]
    median, mean = statistics.median(eur), statistics.mean(eur)
    assert 10 < median < 80
    assert mean > 1.3 * median
    assert min(eur) > 0
    assert sum(1 for a in eur if a > 20 * median) / len(eur) < 0.02


@pytest.mark.parametrize("scale", [6.0, 1 / 6])
def test_amount_scale_multiplies_genuine_and_fraudulent_amounts_alike(
    make_records: Make, scale: float
) -> None:
    base = make_records(30_000, fraud_ratio=0.05)
    scaled = make_records(30_000, fraud_ratio=0.05, amount_scale=scale)
    ratios: dict[str, list[float]] = defaultdict(list)
    for before, after in zip(base, scaled, strict=True):
        txn, scaled_txn = orjson.loads(before.value), orjson.loads(after.value)
        # The scale draws nothing at random: the same transactions, only the amounts differ.
        assert {**scaled_txn, "amount": txn["amount"]} == txn
        assert after.label == before.label
        assert parse_transaction(after.value).amount == scaled_txn["amount"]
        decimals = 0 if txn["currency"] in ("JPY", "KRW") else 2
        assert round(scaled_txn["amount"], decimals) == scaled_txn["amount"]
        if txn["amount"] > 0:
            kind = before.label.scenario if before.label else "genuine"
            ratios[kind].append(scaled_txn["amount"] / txn["amount"])
    assert set(ratios) == {"genuine", *SCENARIO_NAMES}
    assert statistics.median(ratios["genuine"]) == pytest.approx(scale, rel=0.02)
    for kind, kind_ratios in ratios.items():  # card tests, ATM notes and cash-outs too
        assert statistics.median(kind_ratios) == pytest.approx(scale, rel=0.1), kind


def test_zero_amount_authorizations_are_card_tests_and_valid(make_records: Make) -> None:
    records = make_records(60_000, fraud_ratio=0.05)
    zero = [r for r in records if orjson.loads(r.value)["amount"] == 0]
    assert zero
    assert all(r.label is not None and r.label.scenario == "card_testing" for r in zero)
    assert all(parse_transaction(r.value).amount == 0 for r in zero)


def test_amount_scale_must_be_positive() -> None:
    with pytest.raises(ValueError, match="amount-scale"):
        TrafficConfig(seed=1, start_ms=START_MS, amount_scale=0.0)


def test_most_in_person_purchases_are_near_home_and_some_are_online(
    population: Population, make_records: Make
) -> None:
    cards = {c.account_id: c for c in population.cards}
    genuine = _genuine(make_records(20_000))
    present = [t for t in genuine if t["channel"] == "card_present"]
    distances = [
        haversine_km(
            t["latitude"],
            t["longitude"],
            cards[t["account_id"]].home_lat,
            cards[t["account_id"]].home_lon,
        )
        for t in present
    ]
    near = len([km for km in distances if km < 50])
    assert near / len(present) > 0.8
    assert 0.1 < 1 - len(present) / len(genuine) < 0.4


@pytest.mark.parametrize(
    "clock",
    [{}, {"clock": "wall", "rate": 300.0}],  # a card every ~5 s: where trips and moves matter
    ids=["simulated", "busy-wall-clock"],
)
def test_genuine_card_present_pairs_rarely_imply_impossible_travel(
    make_records: Make, clock: dict[str, Any]
) -> None:
    last: dict[str, tuple[int, float, float]] = {}
    pairs = impossible = 0
    for rec in make_records(60_000, fraud_ratio=0.0, **clock):
        txn = orjson.loads(rec.value)
        if txn["channel"] != "card_present":
            continue
        here = (rec.ts_ms, float(txn["latitude"]), float(txn["longitude"]))
        before = last.get(txn["account_id"])
        last[txn["account_id"]] = here
        if before is None:
            continue
        pairs += 1
        km = haversine_km(before[1], before[2], here[1], here[2])
        hours = max(here[0] - before[0], 1) / 3_600_000
        if km > 1.5 and km / hours > 1000:
            impossible += 1
    assert pairs > 10_000
    assert impossible / pairs < 0.001


def test_fraud_and_malformed_shares_are_close_to_the_ratios_asked_for(make_records: Make) -> None:
    records = make_records(100_000, fraud_ratio=0.02, bad_ratio=0.01)
    labels = Counter(r.label.scenario for r in records if r.label is not None)
    malformed = labels.pop(MALFORMED)
    assert sum(labels.values()) / len(records) == pytest.approx(0.02, rel=0.25)
    assert malformed / len(records) == pytest.approx(0.01, rel=0.2)


def test_no_fraud_ratio_means_only_genuine_records(make_records: Make) -> None:
    assert all(r.label is None for r in make_records(20_000, fraud_ratio=0.0))


def test_malformed_records_are_invalid_and_everything_else_is_valid(make_records: Make) -> None:
    records = make_records(20_000, bad_ratio=0.05)
    bad = [r for r in records if r.label is not None and r.label.scenario == MALFORMED]
    assert len(bad) > 500
    for rec in records:
        try:
            parse_transaction(rec.value)
        except ValueError:
            assert rec in bad
        else:
            assert rec not in bad


def test_a_card_is_owned_by_at_most_one_story_at_a_time(make_records: Make) -> None:
    stories: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for rec in make_records(100_000, fraud_ratio=0.05):
        if rec.label is not None:
            stories[rec.label.account_id].append((rec.ts_ms, rec.label.story_id))
    for events in stories.values():
        spans: dict[str, list[int]] = defaultdict(list)
        for ts, story in events:
            spans[story].append(ts)
        ordered = sorted((min(t), max(t)) for t in spans.values())
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(ordered))


def test_wall_clock_needs_a_numeric_rate() -> None:
    with pytest.raises(ValueError, match="numeric --rate"):
        TrafficConfig(seed=1, start_ms=START_MS, clock="wall", rate=None)


def test_ratios_must_leave_genuine_traffic() -> None:
    with pytest.raises(ValueError, match="leave genuine"):
        TrafficConfig(seed=1, start_ms=START_MS, fraud_ratio=0.6, bad_ratio=0.4)


def _story_spans_ms(records: list[Record]) -> list[int]:
    times: dict[str, list[int]] = defaultdict(list)
    for rec in records:
        if rec.label is not None and rec.label.scenario != MALFORMED:
            times[rec.label.story_id].append(rec.ts_ms)
    return [max(t) - min(t) for t in times.values()]


def test_story_speedup_compresses_stories_in_time(make_records: Make) -> None:
    real_time = _story_spans_ms(make_records(50_000, fraud_ratio=0.05))
    faster = _story_spans_ms(make_records(50_000, fraud_ratio=0.05, story_speedup=30.0))
    assert max(real_time) > 3_600_000  # some stories take hours (delays, pauses)
    assert max(faster) <= 48 * 3_600_000 / 30 + 1_000  # the longest: a breach, 48 h
    assert statistics.median(faster) < statistics.median(real_time) / 10


def test_a_trip_starts_only_when_the_holder_could_have_flown_there(
    population: Population,
) -> None:
    sim = TrafficSimulator(population, TrafficConfig(seed=1, start_ms=START_MS))
    card = population.cards[0]
    st = sim.states[card.index]
    st.last_cp_ts, st.last_cp_lat, st.last_cp_lon = START_MS, card.home_lat, card.home_lon
    for _ in range(100):  # a second after paying at home: no trip can have begun
        sim._start_trip(card, st, START_MS + 1000)
    assert st.trip_until == 0
    for _ in range(100):  # a day later: trips begin
        sim._start_trip(card, st, START_MS + DAY_MS)
    assert st.trip_until > START_MS + DAY_MS
    assert st.trip_city != card.home_city


def test_a_trip_ends_only_when_the_holder_could_be_home_again(population: Population) -> None:
    sim = TrafficSimulator(population, TrafficConfig(seed=1, start_ms=START_MS))
    card = next(c for c in population.cards if c.country in ("DE", "FR", "GB"))
    st = sim.states[card.index]
    tokyo = next(i for i, c in enumerate(CITIES) if c.name == "Tokyo")
    st.trip_city, st.trip_until = tokyo, START_MS  # the trip is over ...
    st.last_cp_ts, st.last_cp_lat, st.last_cp_lon = START_MS, CITIES[tokyo].latitude, 139.65
    st.busy_until = START_MS + 2 * DAY_MS  # (no new trip in between)
    sim._genuine(card, START_MS + 3_600_000)  # ... but an hour after paying in Tokyo
    assert st.trip_city == tokyo
    sim._genuine(card, START_MS + DAY_MS)  # a day later the holder is home
    assert st.trip_until == 0
