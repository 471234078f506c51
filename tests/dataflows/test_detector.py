"""Each signal fires exactly at its threshold and not below; scores combine them monotonically;
labels count from their reported time; state stays bounded and time-correct."""

from __future__ import annotations

import math

import pytest

from dataflows.detection.detector import Detector, Outcome
from dataflows.detection.merchant import MerchantView
from dataflows.detection.ruleset import RuleSet, load_ruleset
from dataflows.detection.scoring import logit, sigmoid
from dataflows.detection.state import CardHistory
from fraudwatch.contract import LabelEvent
from fraudwatch.geo import haversine_km
from tests.factories import make_event

MIN = 60_000
HOUR = 60 * MIN
DAY = 24 * HOUR
T0 = 1_764_064_800_000


@pytest.fixture(scope="module")
def ruleset() -> RuleSet:
    return load_ruleset()


def only(ruleset: RuleSet, *names: str) -> Detector:
    """A detector with only the named signals enabled (isolates one signal's behaviour)."""
    rules = {
        name: getattr(ruleset.rules, name).model_copy(update={"enabled": name in names})
        for name in type(ruleset.rules).model_fields
    }
    return Detector(ruleset.model_copy(update={"rules": ruleset.rules.model_copy(update=rules)}))


def run(det: Detector, events: list, state: CardHistory | None = None) -> list[Outcome]:
    state = CardHistory() if state is None else state
    return [det.process(state, e, 0) for e in events]


def fired(o: Outcome) -> list[str]:
    return [s.rule for s in o.signals]


def seq(n: int, step_ms: int = MIN, start: int = T0, prefix: str = "t", **kw) -> list:
    return [
        make_event(transaction_id=f"{prefix}{i}", ts=start + i * step_ms, **kw) for i in range(n)
    ]


def label(tx: str, reported: int, fraud: bool = True, ts: int = T0) -> LabelEvent:
    return LabelEvent(tx, ts, "tok-1", "m-1", 10.0, "EUR", fraud, reported, "chargeback")


def test_the_score_is_the_prior_without_evidence_and_grows_with_each_signal(
    ruleset: RuleSet,
) -> None:
    det = Detector(ruleset)
    quiet = run(det, [make_event()])[0]
    assert quiet.signals == ()
    assert quiet.score == pytest.approx(ruleset.score.prior, rel=1e-3)
    assert quiet.alert is None
    # Six transactions in five minutes: velocity fires; its weight moves the log-odds exactly.
    burst = run(det, seq(6))[-1]
    assert "velocity_count" in fired(burst)
    total = sum(s.weight for s in burst.signals)
    assert burst.score == pytest.approx(sigmoid(logit(ruleset.score.prior) + total), abs=1e-6)
    assert burst.score > quiet.score


def test_velocity_fires_on_the_fifth_transaction_in_ten_minutes(ruleset: RuleSet) -> None:
    det = only(ruleset, "velocity_count")
    outs = run(det, seq(5, step_ms=MIN))
    assert [fired(o) for o in outs[:4]] == [[]] * 4
    assert fired(outs[4]) == ["velocity_count"]
    assert outs[4].signals[0].detail.startswith("5 transactions in 4.0 min")
    assert outs[4].signals[0].evidence == (0, 1, 2, 3)


def test_velocity_count_ignores_transactions_outside_the_window(ruleset: RuleSet) -> None:
    det = only(ruleset, "velocity_count")
    window = int(ruleset.rules.velocity_count.window_minutes * MIN)
    events = [*seq(4, step_ms=MIN), make_event(transaction_id="x", ts=T0 + window)]
    # At T0 + window the first transaction (T0) is exactly outside (t - T, t].
    assert fired(run(det, events)[-1]) == []


def habit(days: int, amount: float = 40.0, per_day: int = 2) -> list:
    """A card's ordinary history: ``per_day`` purchases a day of ``amount`` for ``days`` days."""
    return [
        make_event(transaction_id=f"h{d}-{k}", ts=T0 + d * DAY + k * 5 * HOUR, amount=amount)
        for d in range(days)
        for k in range(per_day)
    ]


def test_velocity_amount_compares_the_day_total_with_the_cards_own_daily_spend(
    ruleset: RuleSet,
) -> None:
    det = only(ruleset, "velocity_amount")
    r = ruleset.rules.velocity_amount
    history = habit(20)
    state = CardHistory()
    run(det, history, state)
    day = T0 + 20 * DAY + 12 * HOUR
    daily = state.habit_at(day, len(state)).daily_amount
    under = [
        make_event(transaction_id="a", ts=day, amount=daily * r.min_ratio * 0.45),
        make_event(transaction_id="b", ts=day + HOUR, amount=daily * r.min_ratio * 0.45),
    ]
    assert fired(run(det, under, CardHistory.unpack(state.pack(0)))[-1]) == []
    over = [
        make_event(transaction_id="a", ts=day, amount=daily * r.min_ratio * 0.55),
        make_event(transaction_id="b", ts=day + HOUR, amount=daily * r.min_ratio * 0.55),
    ]
    out = run(det, over, CardHistory.unpack(state.pack(0)))[-1]
    assert fired(out) == ["velocity_amount"]
    assert "usual daily spend" in out.signals[0].detail


def test_card_testing_is_a_burst_of_tiny_amounts_relative_to_the_cards_habit(
    ruleset: RuleSet,
) -> None:
    det = only(ruleset, "card_testing")
    r = ruleset.rules.card_testing
    history = habit(5, amount=50.0)
    tiny = 50.0 * r.small_ratio
    start = T0 + 6 * DAY
    tests = [
        make_event(transaction_id=f"s{i}", ts=start + i * MIN, amount=tiny if i else 0.0)
        for i in range(r.min_small)
    ]
    outs = run(det, [*history, *tests])
    assert fired(outs[-2]) == []  # one tiny authorization short
    assert fired(outs[-1]) == ["card_testing"]  # fires on its own, no large purchase needed
    plain = outs[-1].signals[0].weight
    big = make_event(transaction_id="big", ts=start + 30 * MIN, amount=50.0 * r.large_ratio)
    after = run(det, [*history, *tests, big])[-1]
    assert fired(after) == ["card_testing"]
    assert after.signals[0].weight > plain  # the cash-out after the tests raises it
    slightly_more = tiny * 1.01
    not_tiny = [
        make_event(transaction_id=f"s{i}", ts=start + i * MIN, amount=slightly_more)
        for i in range(r.min_small)
    ]
    assert fired(run(det, [*history, *not_tiny])[-1]) == []


def test_impossible_travel_fires_above_airliner_speed_only_and_always_alerts(
    ruleset: RuleSet,
) -> None:
    det = only(ruleset, "impossible_travel")
    berlin = make_event(transaction_id="a", latitude=52.52, longitude=13.405)
    dist = haversine_km(52.52, 13.405, 40.4168, -3.7038)  # Madrid, ~1,870 km
    limit = ruleset.rules.impossible_travel.max_speed_kmh
    slow_ms = int(dist / (limit * 0.95) * 3_600_000)
    fast_ms = int(dist / (limit * 1.05) * 3_600_000)
    madrid = {"latitude": 40.4168, "longitude": -3.7038, "country": "ES"}
    slow = run(det, [berlin, make_event(transaction_id="b", ts=T0 + slow_ms, **madrid)])[1]
    assert fired(slow) == []
    out = run(det, [berlin, make_event(transaction_id="b", ts=T0 + fast_ms, **madrid)])[1]
    assert fired(out) == ["impossible_travel"]
    assert out.alert is not None  # always alerts, whatever the score
    assert "(DE)" in out.alert.reasons[0].detail
    online = make_event(transaction_id="b", ts=T0 + fast_ms, channel="card_not_present", **madrid)
    assert fired(run(det, [berlin, online])[1]) == []


def test_amount_vs_habit_waits_for_minimum_history(ruleset: RuleSet) -> None:
    det = only(ruleset, "amount_vs_habit")
    r = ruleset.rules.amount_vs_habit
    spike = make_event(transaction_id="spike", ts=T0 + 100 * MIN, amount=2000.0)
    assert fired(run(det, [*seq(r.min_history - 1, amount=20.0), spike])[-1]) == []
    out = run(det, [*seq(r.min_history, amount=20.0), spike])[-1]
    assert fired(out) == ["amount_vs_habit"]
    assert "median of 20.00" in out.signals[0].detail


def test_amount_vs_habit_needs_the_ratio_and_grows_with_the_robust_z(ruleset: RuleSet) -> None:
    det = only(ruleset, "amount_vs_habit")
    r = ruleset.rules.amount_vs_habit
    history = [
        make_event(transaction_id=f"h{i}", ts=T0 + i * HOUR, amount=a)
        for i, a in enumerate([80.0, 100.0, 120.0, 90.0, 110.0, 100.0])
    ]
    below = make_event(transaction_id="x", ts=T0 + DAY, amount=r.min_ratio * 100 - 0.01)
    assert fired(run(det, [*history, below])[-1]) == []
    big = run(det, [*history, make_event(transaction_id="x", ts=T0 + DAY, amount=300.0)])[-1]
    huge = run(det, [*history, make_event(transaction_id="x", ts=T0 + DAY, amount=8000.0)])[-1]
    assert fired(big) == fired(huge) == ["amount_vs_habit"]
    assert huge.signals[0].weight > big.signals[0].weight


def test_amount_vs_merchant_speaks_only_where_the_card_has_no_habit(ruleset: RuleSet) -> None:
    det = only(ruleset, "amount_vs_merchant", "amount_vs_habit")
    r = ruleset.rules.amount_vs_merchant
    shop = MerchantView(0, 0, 0, 0, 0, 0, 0, 0, 20.0, r.min_transactions)
    new_card = make_event(transaction_id="x", amount=20.0 * r.min_ratio)
    out = det.process(CardHistory(), new_card, 0, shop)
    assert fired(out) == ["amount_vs_merchant"]
    assert "typical ticket of 20.00" in out.signals[0].detail
    too_few = shop._replace(typical_n=r.min_transactions - 1)
    assert fired(det.process(CardHistory(), new_card, 0, too_few)) == []


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
    assert "first use in BR" in out.signals[0].detail
    online = run(det, [*home, far._replace(channel="card_not_present")])[-1]
    assert online.signals[0].weight > out.signals[0].weight


def test_merchant_risk_is_the_shrunk_fraud_share_and_needs_a_known_fraud(
    ruleset: RuleSet,
) -> None:
    det = only(ruleset, "merchant_risk")
    r = ruleset.rules.merchant_risk
    clean = MerchantView(40, 280, 1200, 0, 0, 0, 300, 0, 25.0, 1000)
    assert fired(det.process(CardHistory(), make_event(), 0, clean)) == []
    risky = clean._replace(n_7d=37, fraud_7d=4)
    out = det.process(CardHistory(), make_event(), 0, risky)
    assert fired(out) == ["merchant_risk"]
    prior = ruleset.score.prior
    share = (4 + r.prior_strength * prior) / (37 + r.prior_strength)
    assert out.signals[0].weight == pytest.approx(min(r.max_weight, math.log(share / prior)))
    assert "4 of its 37 transactions in the last known week" in out.signals[0].detail
    riskier = det.process(CardHistory(), make_event(), 0, risky._replace(fraud_7d=12))
    assert riskier.signals[0].weight >= out.signals[0].weight


def test_a_fraud_label_makes_later_uses_of_the_card_alert_until_a_genuine_label(
    ruleset: RuleSet,
) -> None:
    det = only(ruleset, "compromised_card")
    state = CardHistory()
    run(det, seq(3, step_ms=HOUR), state)
    det.apply_label(state, label("t0", reported=T0 + 5 * HOUR))
    before = run(det, [make_event(transaction_id="a", ts=T0 + 4 * HOUR)], state)[0]
    assert fired(before) == []  # the label was not known yet at this event time
    after = run(det, [make_event(transaction_id="b", ts=T0 + 6 * HOUR)], state)[0]
    assert fired(after) == ["compromised_card"]
    assert after.alert is not None
    det.apply_label(state, label("t0", reported=T0 + 8 * HOUR, fraud=False))  # dispute reversed
    cleared = run(det, [make_event(transaction_id="c", ts=T0 + 9 * HOUR)], state)[0]
    assert fired(cleared) == []


def test_a_compromised_card_clears_after_the_configured_period(ruleset: RuleSet) -> None:
    det = only(ruleset, "compromised_card")
    state = CardHistory()
    det.apply_label(state, label("t0", reported=T0))
    period = ruleset.compromised_ms
    assert fired(run(det, [make_event(transaction_id="a", ts=T0 + period)], state)[0])
    assert not fired(run(det, [make_event(transaction_id="b", ts=T0 + period + HOUR)], state)[0])


def test_re_sent_labels_are_idempotent(ruleset: RuleSet) -> None:
    det = Detector(ruleset)
    state = CardHistory()
    assert det.apply_label(state, label("t0", reported=T0))
    assert not det.apply_label(state, label("t0", reported=T0))
    assert state.lab is not None
    assert len(state.lab) == 1


def test_resent_transaction_is_ignored(ruleset: RuleSet) -> None:
    det = only(ruleset, "velocity_count")
    events = [*seq(5), make_event(transaction_id="t4", ts=T0 + 5 * MIN)]
    outs = run(det, events)
    assert outs[-1].duplicate
    assert outs[-1].alert is None
    assert outs[-1].score is None


def test_out_of_order_arrival_is_judged_as_of_its_own_event_time(ruleset: RuleSet) -> None:
    det = only(ruleset, "velocity_count")
    # Four transactions at minutes 0..3, then one that happened at minute 1 arrives last.
    events = [*seq(4), make_event(transaction_id="x", ts=T0 + MIN + 1)]
    out = run(det, events)[-1]
    assert not out.late
    # As of minute 1: transactions at 0, 1 and itself = 3; the later ones do not count.
    assert fired(out) == []


def test_habits_never_include_a_transaction_with_a_later_event_time(ruleset: RuleSet) -> None:
    det = Detector(ruleset)
    lateness = int(ruleset.engine.allowed_lateness_minutes * MIN)
    history = habit(10)
    end = history[-1].ts + HOUR
    a = make_event(transaction_id="a", ts=end, amount=10.0)
    b = make_event(transaction_id="b", ts=end + lateness // 2, amount=300.0)
    in_order, swapped = CardHistory(), CardHistory()
    run(det, [*history, a, b], in_order)
    out_of_order = run(det, [*history, b, a], swapped)
    assert not out_of_order[-1].late
    # Judged after b arrived, a's habit must not contain b...
    assert swapped.habit_at(a.ts, len(history)) == pytest.approx(
        tuple(in_order.habit_at(a.ts, len(history)))
    )
    # ...and once both are in, both orders give the same habit.
    t = b.ts + 2 * lateness
    assert tuple(in_order.habit_at(t, len(in_order))) == pytest.approx(
        tuple(swapped.habit_at(t, len(swapped)))
    )


def test_too_late_transaction_takes_the_late_path_with_point_signals_only(
    ruleset: RuleSet,
) -> None:
    det = Detector(ruleset)
    lateness = int(ruleset.engine.allowed_lateness_minutes * MIN)
    state = CardHistory()
    det.apply_label(state, label("x", reported=T0 - DAY))
    events = [*seq(7, step_ms=10), make_event(transaction_id="old", ts=T0 - lateness - 1)]
    outs = run(det, events, state)
    assert outs[-1].late
    assert fired(outs[-1]) == ["compromised_card"]
    assert outs[-1].alert is not None
    assert outs[-1].alert.late
    assert "old" not in state.ids


def test_state_stays_bounded_under_a_burst(ruleset: RuleSet) -> None:
    det = Detector(ruleset)
    state = CardHistory()
    for i in range(2000):
        det.process(state, make_event(transaction_id=f"b{i}", ts=T0 + i * 100, amount=1.0), 0)
    assert len(state) <= ruleset.engine.max_window_events
    assert len(state.ev) == 5 * len(state)


def test_state_is_pruned_by_event_time(ruleset: RuleSet) -> None:
    det = Detector(ruleset)
    state = CardHistory()
    for i in range(50):
        det.process(state, make_event(transaction_id=f"d{i}", ts=T0 + i * DAY), 0)
    oldest_kept = state.ts(0)
    assert state.max_ts - oldest_kept <= ruleset.profile_horizon_ms + ruleset.short_horizon_ms
    # The profile's transactions plus the newest, still inside the allowed lateness.
    assert len(state) <= ruleset.engine.profile_size + 1


def test_snapshot_round_trip_keeps_behaviour(ruleset: RuleSet) -> None:
    det = Detector(ruleset)
    events = [*habit(8), *seq(8, step_ms=MIN, start=T0 + 9 * DAY, prefix="s")]
    a = CardHistory()
    det.apply_label(a, label("h0-0", reported=T0 + 3 * DAY))
    outs_a = run(det, events, a)
    b = CardHistory()
    det.apply_label(b, label("h0-0", reported=T0 + 3 * DAY))
    run(det, events[:12], b)
    b = CardHistory.unpack(b.pack(0))
    outs_b = run(det, events[12:], b)
    assert [(o.score, o.alert) for o in outs_a[12:]] == [(o.score, o.alert) for o in outs_b]


def charity_burst(n: int = 8, start: int = T0, prefix: str = "c") -> list:
    """The reported case: card-not-present charges of about 1 EUR at one charity, 10 s in all."""
    return [
        make_event(
            transaction_id=f"{prefix}{i}",
            ts=start + i * 1_400,
            amount=round(0.95 + 0.02 * i, 2),
            channel="card_not_present",
            merchant_id="m-charity",
            merchant_name="Hope Foundation",
            merchant_category="8398",
        )
        for i in range(n)
    ]


def test_a_burst_of_one_euro_charges_on_a_new_card_at_a_charity_is_card_testing(
    ruleset: RuleSet,
) -> None:
    r = ruleset.rules.card_testing
    outs = run(only(ruleset, "card_testing"), charity_burst())
    # Card testing on its own, from the min_small-th charge on, without a larger purchase.
    assert [fired(o) for o in outs[: r.min_small - 1]] == [[]] * (r.min_small - 1)
    assert all(fired(o) == ["card_testing"] for o in outs[r.min_small - 1 :])
    assert "population's usual" in outs[-1].signals[0].detail
    assert "in 10 s" in outs[-1].signals[0].detail
    # With every signal on, the alert names card testing first, not just a velocity count.
    last = run(Detector(ruleset), charity_burst())[-1]
    assert last.alert is not None
    assert last.alert.reasons[0].rule == "card_testing"


def test_the_burst_stays_tiny_against_the_habit_it_had_before_it_began(
    ruleset: RuleSet,
) -> None:
    """The tests never become the card's habit: eight 1 EUR charges on a card with a 40 EUR
    habit all count, and so do they on a card whose only history is the burst itself."""
    history = habit(5)
    outs = run(only(ruleset, "card_testing"), [*history, *charity_burst(start=T0 + 6 * DAY)])
    assert fired(outs[-1]) == ["card_testing"]
    assert "8 tiny authorizations" in outs[-1].signals[0].detail
    assert "this card's usual 40.00" in outs[-1].signals[0].detail


def test_a_few_small_coffees_over_hours_are_not_card_testing(ruleset: RuleSet) -> None:
    det = only(ruleset, "card_testing", "velocity_count")
    coffees = seq(4, step_ms=75 * MIN, amount=1.90, merchant_category="5814")
    assert [fired(o) for o in run(det, coffees)] == [[]] * 4  # a new card
    later = seq(4, step_ms=75 * MIN, start=T0 + 6 * DAY, prefix="k", amount=2.80)
    assert [fired(o) for o in run(det, [*habit(5, amount=6.0), *later])][-4:] == [[]] * 4


def test_the_larger_purchase_after_the_tests_raises_the_score(ruleset: RuleSet) -> None:
    r = ruleset.rules.card_testing
    det = Detector(ruleset)
    tests = charity_burst(n=r.min_small)
    cash_out = make_event(
        transaction_id="big",
        ts=tests[-1].ts + 5 * MIN,
        amount=r.large_ratio * r.population_median,
        channel="card_not_present",
        merchant_id="m-shop",
    )
    outs = run(det, [*tests, cash_out])
    assert fired(outs[-2]) == ["card_testing"]
    assert "card_testing" in fired(outs[-1])
    testing = {o.event.transaction_id: o.signals[0] for o in outs[-2:]}
    assert testing["big"].weight == pytest.approx(testing[tests[-1].transaction_id].weight
                                                  + r.large_weight)  # fmt: skip
    assert "then this 60.00 EUR one" in testing["big"].detail
    assert outs[-1].score > outs[-2].score


def test_alert_explains_its_strongest_signals_first_with_severity_from_the_score(
    ruleset: RuleSet,
) -> None:
    det = Detector(ruleset)
    history = habit(5, amount=50.0)
    start = T0 + 6 * DAY
    tests = [make_event(transaction_id=f"s{i}", ts=start + i * MIN, amount=0.0) for i in range(5)]
    big = make_event(transaction_id="big", ts=start + 6 * MIN, amount=5000.0)
    out = run(det, [*history, *tests, big])[-1]
    assert out.alert is not None
    rules = [x.rule for x in out.alert.reasons]
    assert {"card_testing", "velocity_count", "amount_vs_habit"} <= set(rules)
    weights = [s.weight for s in sorted(out.signals, key=lambda s: -s.weight)]
    assert next(s.weight for s in out.signals if s.rule == rules[0]) == weights[0]
    assert out.alert.score == out.score
    bands = det.policies.at(big.ts).severity_bands(ruleset.severity)
    assert out.alert.severity == bands.severity(out.alert.score)
    assert out.alert.ruleset_version == ruleset.version


def test_a_re_sent_late_transaction_is_a_duplicate_not_a_second_alert(ruleset: RuleSet) -> None:
    det = Detector(ruleset)
    state = CardHistory()
    det.apply_label(state, label("x", reported=T0 - DAY))
    big = make_event(transaction_id="big", ts=T0, amount=9000.0)
    outcomes = run(det, [*seq(3, step_ms=HOUR), big, big], state)  # ``big`` is hours late
    assert outcomes[3].late
    assert outcomes[3].alert is not None
    assert outcomes[4].duplicate
    assert outcomes[4].alert is None


def test_a_re_sent_transaction_the_windows_dropped_is_still_a_duplicate(ruleset: RuleSet) -> None:
    det = Detector(ruleset)
    state = CardHistory()
    big = make_event(transaction_id="big", ts=T0, amount=9000.0)
    assert not det.process(state, big, 0).duplicate
    for i in range(1, 26):  # more than profile_size later transactions, over two days
        det.process(state, make_event(transaction_id=f"later-{i}", ts=T0 + 2 * i * HOUR), 0)
    assert "big" not in state.ids  # pruned from the windows...
    again = det.process(state, big, 0)
    assert again.duplicate  # ...but remembered for the dedupe horizon
    assert again.alert is None
    # The memory survives a snapshot round trip.
    restored = CardHistory.unpack(state.pack(0))
    assert det.process(restored, big, 0).duplicate


def test_ids_are_forgotten_after_the_dedupe_horizon(ruleset: RuleSet) -> None:
    det = Detector(ruleset)
    state = CardHistory()
    horizon_h = ruleset.engine.dedupe_hours
    det.process(state, make_event(transaction_id="old", ts=T0, amount=9000.0), 0)
    for i in range(1, 26):
        ts = T0 + int(i * (horizon_h + 24) / 25 * HOUR)
        det.process(state, make_event(transaction_id=f"later-{i}", ts=ts), 0)
    assert state.dh is not None
    assert len(state.dh) < 25  # older remembered ids were dropped
    beyond = det.process(state, make_event(transaction_id="old", ts=T0, amount=9000.0), 0)
    assert not beyond.duplicate  # documented: too old to tell apart; judged as a late arrival


def test_every_signal_is_in_the_contracts_vocabulary_with_a_label() -> None:
    from dataflows.detection import signals
    from fraudwatch.vocabulary import RULE_LABELS, SIGNAL_NAMES

    names = {f.__name__ for f in (*signals.CARD_SIGNALS, *signals.MERCHANT_SIGNALS)}
    assert names == set(SIGNAL_NAMES)
    assert set(SIGNAL_NAMES) <= set(RULE_LABELS)


def test_features_name_the_evidence_of_every_transaction(ruleset: RuleSet) -> None:
    from dataflows.detection.features import FEATURE_NAMES, features

    det = Detector(ruleset)
    det.keep_habits = True
    state = CardHistory()
    for e in habit(10, amount=40.0):
        det.judge_card(state, e)
    shop = MerchantView(30, 200, 900, 3, 6, 9, 150, 2, 25.0, 800)
    v = det.judge_card(state, make_event(transaction_id="x", ts=T0 + 10 * DAY, amount=400.0))
    out = det.finish(v, shop, 0)
    f = features(v, shop, out.signals)
    assert tuple(f) == FEATURE_NAMES
    assert all(math.isfinite(x) for x in f.values())
    assert f["amount_vs_card_median"] == pytest.approx(10.0)
    assert f["card_count_30d"] > f["card_count_7d"] > f["card_count_1d"] > 0
    assert f["merchant_risk_7d"] == pytest.approx(6 / 200)
    assert f["amount_vs_merchant_ticket"] == pytest.approx(16.0)
    assert f["signal_amount_vs_habit"] > 0
    assert f["signal_velocity_count"] == 0


def test_a_later_arrival_never_pushes_a_transaction_out_of_an_earlier_ones_profile(
    ruleset: RuleSet,
) -> None:
    det = only(ruleset, "location_anomaly", "amount_vs_habit")
    size = ruleset.engine.profile_size
    old = make_event(transaction_id="far", ts=T0, latitude=-23.55, longitude=-46.63, country="BR")
    home = seq(size - 1, step_ms=HOUR, start=T0 + HOUR)
    last = home[-1].ts
    y = make_event(transaction_id="y", ts=last + 10 * MIN, latitude=-23.5, longitude=-46.6,
                   country="BR")  # fmt: skip
    x = make_event(transaction_id="x", ts=last + 12 * MIN)
    in_order = run(det, [old, *home, y])[-1]
    x_first = run(det, [old, *home, x, y])[-1]  # x happened after y but arrived first
    assert not x_first.late
    assert (x_first.score, fired(x_first)) == (in_order.score, fired(in_order))


def test_a_card_idle_past_every_horizon_is_judged_as_new_evicted_or_not(ruleset: RuleSet) -> None:
    det = Detector(ruleset)
    state = CardHistory()
    run(det, habit(20), state)
    gap = ruleset.eviction_horizon_ms
    later = seq(6, step_ms=MIN, start=T0 + 20 * DAY + gap, prefix="b")
    kept = run(det, later, state)
    fresh = run(det, later, CardHistory())  # what the stream does after evicting the card
    assert [(o.score, fired(o)) for o in kept] == [(o.score, fired(o)) for o in fresh]


def test_one_lost_dispute_does_not_clear_a_card_with_another_fraud(ruleset: RuleSet) -> None:
    det = only(ruleset, "compromised_card")
    state = CardHistory()
    det.apply_label(state, label("t1", reported=T0))
    det.apply_label(state, label("t2", reported=T0 + HOUR))
    det.apply_label(state, label("t1", reported=T0 + 2 * HOUR, fraud=False))
    out = run(det, [make_event(transaction_id="z", ts=T0 + 3 * HOUR)], state)[0]
    assert fired(out) == ["compromised_card"]


def test_before_any_operating_point_severity_cuts_at_multiples_of_the_thresholds_odds(
    ruleset: RuleSet,
) -> None:
    """The rule file's threshold (0.5, odds 1) with odds 3x / 10x / 100x: 0.75 / 0.91 / 0.99."""
    cfg = ruleset.severity
    bands = Detector(ruleset).policies.at(T0).severity_bands(cfg)
    assert bands.medium == pytest.approx(cfg.medium_odds / (1 + cfg.medium_odds), abs=1e-6)
    assert bands.high == pytest.approx(cfg.high_odds / (1 + cfg.high_odds), abs=1e-6)
    assert bands.critical == pytest.approx(cfg.critical_odds / (1 + cfg.critical_odds), abs=1e-6)
    assert [bands.severity(x) for x in (0.5, 0.8, 0.95, 0.995)] == [
        "low", "medium", "high", "critical"
    ]  # fmt: skip


def test_an_always_alert_signal_is_at_least_high_whatever_its_score(ruleset: RuleSet) -> None:
    det = only(ruleset, "impossible_travel")
    home = make_event(transaction_id="home", ts=T0, amount=20.0)
    away = make_event(transaction_id="away", ts=T0 + 20 * MIN, amount=20.0,
                      latitude=40.42, longitude=-3.70, country="ES")  # fmt: skip
    out = run(det, [home, away])[-1]
    assert out.alert is not None
    bands = det.policies.at(away.ts).severity_bands(ruleset.severity)
    assert out.alert.score < bands.high  # the score alone would say medium or low ...
    assert out.alert.severity == "high"  # ... the always-alert signal lifts it
