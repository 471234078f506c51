"""Each rule fires exactly at its threshold and not below; state stays bounded and time-correct."""

from __future__ import annotations

import pytest

from dataflows.detector import CardState, Detector, Outcome
from dataflows.ruleset import RuleSet, load_ruleset
from fraudwatch.geo import haversine_km
from tests.factories import make_event

MIN = 60_000
T0 = 1_764_064_800_000


@pytest.fixture(scope="module")
def ruleset() -> RuleSet:
    return load_ruleset()


def only(ruleset: RuleSet, *names: str) -> Detector:
    """A detector with only the named rules enabled (isolates one rule's behaviour)."""
    rules = {
        name: getattr(ruleset.rules, name).model_copy(update={"enabled": name in names})
        for name in type(ruleset.rules).model_fields
    }
    return Detector(ruleset.model_copy(update={"rules": ruleset.rules.model_copy(update=rules)}))


def run(det: Detector, events: list) -> list[Outcome]:
    state = CardState()
    return [det.process(state, e, 0) for e in events]


def fired(o: Outcome) -> list[str]:
    return [r.rule for r in o.alert.reasons] if o.alert else []


def seq(n: int, step_ms: int = MIN, **kw) -> list:
    return [make_event(transaction_id=f"t{i}", ts=T0 + i * step_ms, **kw) for i in range(n)]


def test_high_amount_fires_above_the_limit_and_not_at_it(ruleset: RuleSet) -> None:
    det = only(ruleset, "high_amount")
    limit = ruleset.rules.high_amount.limit
    assert fired(run(det, [make_event(amount=limit)])[0]) == []
    out = run(det, [make_event(amount=limit + 0.01)])[0]
    assert fired(out) == ["high_amount"]
    assert f"{limit:,.2f}" in out.alert.reasons[0].detail


def test_high_amount_compares_in_the_base_currency(ruleset: RuleSet) -> None:
    det = only(ruleset, "high_amount")
    limit = ruleset.rules.high_amount.limit
    usd = ruleset.currency.rates["USD"]
    assert fired(run(det, [make_event(amount=limit / usd * 0.99, currency="USD")])[0]) == []
    out = run(det, [make_event(amount=limit / usd * 1.01, currency="USD")])[0]
    assert fired(out) == ["high_amount"]
    assert "USD" in out.alert.reasons[0].detail


def test_velocity_rule_fires_on_sixth_transaction_in_ten_minutes(ruleset: RuleSet) -> None:
    det = only(ruleset, "velocity_count")
    outs = run(det, seq(6, step_ms=MIN))
    assert [fired(o) for o in outs[:5]] == [[]] * 5
    assert fired(outs[5]) == ["velocity_count"]
    assert outs[5].alert.reasons[0].detail.startswith("6 transactions within 5.0 min")
    assert set(outs[5].alert.evidence) == {f"t{i}" for i in range(6)}


def test_velocity_count_ignores_transactions_outside_the_window(ruleset: RuleSet) -> None:
    det = only(ruleset, "velocity_count")
    window = ruleset.rules.velocity_count.window_minutes * MIN
    events = [*seq(5, step_ms=MIN), make_event(transaction_id="late", ts=T0 + window)]
    # At T0 + window the first transaction (T0) is exactly outside (t - T, t].
    assert fired(run(det, events)[-1]) == []


def test_velocity_amount_fires_when_the_day_total_exceeds_the_limit(ruleset: RuleSet) -> None:
    det = only(ruleset, "velocity_amount")
    limit = ruleset.rules.velocity_amount.limit
    at_limit = [
        make_event(transaction_id="a", amount=limit / 2),
        make_event(transaction_id="b", ts=T0 + 60 * MIN, amount=limit / 2),
    ]
    assert fired(run(det, at_limit)[-1]) == []
    over = [
        make_event(transaction_id="a", amount=limit / 2),
        make_event(transaction_id="b", ts=T0 + 60 * MIN, amount=limit / 2 + 1),
    ]
    assert fired(run(det, over)[-1]) == ["velocity_amount"]


def test_card_testing_needs_enough_small_charges_before_a_large_one(ruleset: RuleSet) -> None:
    det = only(ruleset, "card_testing")
    r = ruleset.rules.card_testing
    smalls = [
        make_event(transaction_id=f"s{i}", ts=T0 + i * MIN, amount=r.small_max)
        for i in range(r.min_small)
    ]
    large = make_event(transaction_id="big", ts=T0 + 30 * MIN, amount=r.large_min)
    assert fired(run(det, [*smalls, large])[-1]) == ["card_testing"]
    assert fired(run(det, [*smalls[1:], large])[-1]) == []
    slightly_small = make_event(transaction_id="big", ts=T0 + 30 * MIN, amount=r.large_min - 0.01)
    assert fired(run(det, [*smalls, slightly_small])[-1]) == []


def test_impossible_travel_fires_above_airliner_speed_only(ruleset: RuleSet) -> None:
    det = only(ruleset, "impossible_travel")
    berlin = make_event(transaction_id="a", latitude=52.52, longitude=13.405)
    dist = haversine_km(52.52, 13.405, 40.4168, -3.7038)  # Madrid, ~1,870 km
    limit = ruleset.rules.impossible_travel.max_speed_kmh
    slow_ms = int(dist / (limit * 0.95) * 3_600_000)
    fast_ms = int(dist / (limit * 1.05) * 3_600_000)
    madrid = {"latitude": 40.4168, "longitude": -3.7038, "country": "ES"}
    assert (
        fired(run(det, [berlin, make_event(transaction_id="b", ts=T0 + slow_ms, **madrid)])[1])
        == []
    )
    out = run(det, [berlin, make_event(transaction_id="b", ts=T0 + fast_ms, **madrid)])[1]
    assert fired(out) == ["impossible_travel"]
    assert "(DE)" in out.alert.reasons[0].detail
    online = make_event(transaction_id="b", ts=T0 + fast_ms, channel="card_not_present", **madrid)
    assert fired(run(det, [berlin, online])[1]) == []


def test_amount_spike_waits_for_minimum_history(ruleset: RuleSet) -> None:
    det = only(ruleset, "amount_spike")
    r = ruleset.rules.amount_spike
    history = seq(r.min_history - 1, amount=20.0)
    spike = make_event(transaction_id="spike", ts=T0 + 100 * MIN, amount=5000.0)
    assert fired(run(det, [*history, spike])[-1]) == []
    history = seq(r.min_history, amount=20.0)
    out = run(det, [*history, spike])[-1]
    assert fired(out) == ["amount_spike"]
    assert "median of 20.00" in out.alert.reasons[0].detail


def test_amount_spike_needs_both_ratio_and_robust_z(ruleset: RuleSet) -> None:
    det = only(ruleset, "amount_spike")
    r = ruleset.rules.amount_spike
    history = seq(r.min_history, amount=100.0)
    just_below = make_event(transaction_id="x", ts=T0 + 100 * MIN, amount=r.min_ratio * 100 - 0.01)
    assert fired(run(det, [*history, just_below])[-1]) == []
    at_ratio = make_event(transaction_id="x", ts=T0 + 100 * MIN, amount=r.min_ratio * 100)
    assert fired(run(det, [*history, at_ratio])[-1]) == ["amount_spike"]


def test_location_anomaly_flags_a_far_new_country_but_not_a_nearby_one(ruleset: RuleSet) -> None:
    det = only(ruleset, "location_anomaly")
    home = seq(ruleset.rules.location_anomaly.min_history, step_ms=60 * MIN)
    near = make_event(
        transaction_id="pl", ts=T0 + 10_000 * MIN, latitude=52.35, longitude=14.55, country="PL"
    )  # Slubice, across the border (~80 km)
    assert fired(run(det, [*home, near])[-1]) == []
    far = make_event(
        transaction_id="br", ts=T0 + 10_000 * MIN, latitude=-23.55, longitude=-46.63, country="BR"
    )
    out = run(det, [*home, far])[-1]
    assert fired(out) == ["location_anomaly"]
    assert "first use in BR" in out.alert.reasons[0].detail


def test_resent_transaction_is_ignored(ruleset: RuleSet) -> None:
    det = only(ruleset, "velocity_count")
    events = [*seq(5), make_event(transaction_id="t4", ts=T0 + 5 * MIN)]
    outs = run(det, events)
    assert outs[-1].duplicate
    assert outs[-1].alert is None


def test_out_of_order_arrival_is_judged_as_of_its_own_event_time(ruleset: RuleSet) -> None:
    det = only(ruleset, "velocity_count")
    # Five transactions at minutes 0..4, then one that happened at minute 2 arrives last.
    events = [*seq(5), make_event(transaction_id="x", ts=T0 + 2 * MIN + 1)]
    out = run(det, events)[-1]
    assert not out.late
    # As of minute 2: transactions at 0, 1, 2 and itself = 4; the later ones do not count.
    assert out.alert is None


def test_too_late_transaction_takes_the_late_path_with_point_rules_only(ruleset: RuleSet) -> None:
    det = Detector(ruleset)
    lateness = int(ruleset.engine.allowed_lateness_minutes * MIN)
    events = [
        *seq(7, step_ms=10),
        make_event(
            transaction_id="old", ts=T0 - lateness - 1, amount=ruleset.rules.high_amount.limit + 1
        ),
    ]
    state = CardState()
    outs = [det.process(state, e, 0) for e in events]
    assert outs[-1].late
    assert fired(outs[-1]) == ["high_amount"]
    assert outs[-1].alert.late
    assert "old" not in state.ids


def test_state_stays_bounded_under_a_burst(ruleset: RuleSet) -> None:
    det = Detector(ruleset)
    state = CardState()
    for i in range(2000):
        det.process(state, make_event(transaction_id=f"b{i}", ts=T0 + i * 100, amount=1.0), 0)
    assert len(state) <= ruleset.engine.max_window_events
    assert len(state.ev) == 5 * len(state)


def test_state_is_pruned_by_event_time(ruleset: RuleSet) -> None:
    det = Detector(ruleset)
    state = CardState()
    for i in range(50):
        det.process(state, make_event(transaction_id=f"d{i}", ts=T0 + i * 86_400_000), 0)
    oldest_kept = state.ts(0)
    assert state.max_ts - oldest_kept <= ruleset.profile_horizon_ms + ruleset.short_horizon_ms
    assert len(state) <= max(ruleset.engine.profile_size, 1)


def test_snapshot_round_trip_keeps_behaviour(ruleset: RuleSet) -> None:
    det = Detector(ruleset)
    a, events = CardState(), seq(8, step_ms=MIN)
    outs_a = [det.process(a, e, 0) for e in events]
    b = CardState()
    for e in events[:4]:
        det.process(b, e, 0)
    b = CardState.unpack(b.pack(0))
    outs_b = [det.process(b, e, 0) for e in events[4:]]
    assert [o.alert for o in outs_a[4:]] == [o.alert for o in outs_b]


def test_alert_score_merges_rules_and_severity_is_at_least_each_rules(ruleset: RuleSet) -> None:
    det = Detector(ruleset)
    r = ruleset.rules.card_testing
    events = [make_event(transaction_id=f"s{i}", ts=T0 + i * MIN, amount=1.0) for i in range(5)]
    events.append(make_event(transaction_id="big", ts=T0 + 6 * MIN, amount=r.large_min * 10))
    alert = run(det, events)[-1].alert
    assert alert is not None
    rules = [x.rule for x in alert.reasons]
    assert {"card_testing", "velocity_count", "amount_spike"} <= set(rules)
    expected = 1.0
    for x in alert.reasons:
        expected *= 1 - x.score
    assert alert.score == round(1 - expected, 4)
    assert alert.severity == "critical"
    assert alert.ruleset_version == ruleset.version


HOUR = 60 * MIN


def test_a_re_sent_late_transaction_is_a_duplicate_not_a_second_alert(ruleset: RuleSet) -> None:
    det = Detector(ruleset)
    big = make_event(transaction_id="big", ts=T0, amount=9000.0)
    events = [*seq(3, step_ms=HOUR), big, big]  # ``big`` is hours late: the late path
    outcomes = run(det, events)
    assert outcomes[3].late
    assert fired(outcomes[3]) == ["high_amount"]
    assert outcomes[4].duplicate
    assert outcomes[4].alert is None


def test_a_re_sent_transaction_the_windows_dropped_is_still_a_duplicate(ruleset: RuleSet) -> None:
    det = Detector(ruleset)
    state = CardState()
    big = make_event(transaction_id="big", ts=T0, amount=9000.0)
    assert fired(det.process(state, big, 0)) == ["high_amount"]
    for i in range(1, 26):  # more than profile_size later transactions, over two days
        det.process(state, make_event(transaction_id=f"later-{i}", ts=T0 + 2 * i * HOUR), 0)
    assert "big" not in state.ids  # pruned from the windows...
    again = det.process(state, big, 0)
    assert again.duplicate  # ...but remembered for the dedupe horizon
    assert again.alert is None
    # The memory survives a snapshot round trip.
    restored = CardState.unpack(state.pack(0))
    assert det.process(restored, big, 0).duplicate


def test_ids_are_forgotten_after_the_dedupe_horizon(ruleset: RuleSet) -> None:
    det = Detector(ruleset)
    state = CardState()
    horizon_h = ruleset.engine.dedupe_hours
    det.process(state, make_event(transaction_id="old", ts=T0, amount=9000.0), 0)
    for i in range(1, 26):
        ts = T0 + int(i * (horizon_h + 24) / 25 * HOUR)
        det.process(state, make_event(transaction_id=f"later-{i}", ts=ts), 0)
    assert state.dh is not None
    assert len(state.dh) < 25  # older remembered ids were dropped
    beyond = det.process(state, make_event(transaction_id="old", ts=T0, amount=9000.0), 0)
    assert not beyond.duplicate  # documented: too old to tell apart; judged as a late arrival
    assert beyond.late
