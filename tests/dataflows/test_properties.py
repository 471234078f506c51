"""Properties of the detection core, checked on generated card streams."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataflows.detection.detector import Detector
from dataflows.detection.ruleset import load_ruleset
from dataflows.detection.state import CardHistory
from tests.factories import make_event

RULESET = load_ruleset()
DET = Detector(RULESET)
MIN = 60_000
T0 = 1_764_064_800_000
LATENESS = int(RULESET.engine.allowed_lateness_minutes * MIN)

event_strategy = st.fixed_dictionaries(
    {
        "gap_ms": st.integers(min_value=0, max_value=30 * MIN),
        "jitter_ms": st.integers(min_value=0, max_value=LATENESS - 1),
        "amount": st.one_of(
            st.floats(min_value=0.5, max_value=3.0),
            st.floats(min_value=5, max_value=300),
            st.floats(min_value=300, max_value=9000),
        ),
        "cp": st.booleans(),
        "place": st.sampled_from(
            [(52.52, 13.40, "DE"), (48.14, 11.58, "DE"), (40.42, -3.70, "ES"), (35.68, 139.7, "JP")]
        ),
    }
)


def build_stream(specs: list[dict], card: str = "tok") -> list:
    """In arrival order; event times move forward but arrivals may be out of order within
    the allowed lateness (jitter subtracts up to lateness from the running time)."""
    out, now = [], T0
    for i, s in enumerate(specs):
        now += s["gap_ms"]
        lat, lon, cc = s["place"]
        out.append(
            make_event(
                transaction_id=f"{card}-{i}",
                card_token=card,
                ts=max(T0, now - s["jitter_ms"]),
                amount=round(s["amount"], 2),
                channel="card_present" if s["cp"] else "card_not_present",
                latitude=lat,
                longitude=lon,
                country=cc,
            )
        )
    return out


def alerts_of(events: list) -> dict[str, tuple]:
    states: dict[str, CardHistory] = {}
    out = {}
    for e in events:
        o = DET.process(states.setdefault(e.card_token, CardHistory()), e, 0)
        if o.alert:
            out[o.alert.alert_id] = (o.alert.score, o.alert.severity, o.alert.reasons)
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(event_strategy, min_size=2, max_size=40), st.data())
def test_an_alert_never_depends_on_a_transaction_with_a_later_event_time(specs, data) -> None:
    events = build_stream(specs)
    full = {e.transaction_id: a for e in events for a in [None]}  # keep arrival order keys
    state = CardHistory()
    judged = {e.transaction_id: DET.process(state, e, 0) for e in events}
    # Pick one transaction; replay only what arrived before it with an event time <= its own.
    k = data.draw(st.integers(min_value=0, max_value=len(events) - 1))
    target = events[k]
    earlier = [e for e in events[:k] if e.ts <= target.ts]
    replay = CardHistory()
    for e in earlier:
        DET.process(replay, e, 0)
    again = DET.process(replay, target, 0)
    assert full  # the stream is not empty
    first = judged[target.transaction_id]
    if first.late or first.duplicate:
        return
    assert again.score == first.score
    assert (again.alert is None) == (first.alert is None)
    if first.alert and again.alert:
        assert again.alert.reasons == first.alert.reasons
        assert again.alert.score == first.alert.score


@settings(max_examples=60, deadline=None)
@given(st.lists(event_strategy, min_size=1, max_size=30))
def test_amount_vs_habit_never_fires_before_the_minimum_history(specs) -> None:
    for s in specs:
        s["jitter_ms"] = 0
    events = build_stream(specs)
    state = CardHistory()
    need = RULESET.rules.amount_vs_habit.min_history
    for i, e in enumerate(events):
        o = DET.process(state, e, 0)
        if i < need:
            assert "amount_vs_habit" not in [s.rule for s in o.signals]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(event_strategy, min_size=1, max_size=40),
    st.sampled_from([1 / 6, 6.0]),
)
def test_the_same_configuration_scores_a_six_times_cheaper_or_dearer_population_alike(
    specs, scale: float
) -> None:
    """Thresholds are ratios: scaling every amount, and the rule file's one absolute amount
    (card testing's population median, the portfolio's own habit), leaves every score as is."""
    events = build_stream(specs)
    scaled = [e._replace(amount=e.amount * scale) for e in events]
    testing = RULESET.rules.card_testing
    rules = RULESET.rules.model_copy(
        update={
            "card_testing": testing.model_copy(
                update={"population_median": testing.population_median * scale}
            )
        }
    )
    scaled_det = Detector(RULESET.model_copy(update={"rules": rules}))
    a, b = CardHistory(), CardHistory()
    for e, f in zip(events, scaled, strict=True):
        x, y = DET.process(a, e, 0), scaled_det.process(b, f, 0)
        assert [s.rule for s in x.signals] == [s.rule for s in y.signals]
        assert x.score == pytest.approx(y.score, rel=1e-6, abs=1e-9)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.lists(event_strategy, min_size=1, max_size=15), min_size=2, max_size=6),
    st.randoms(use_true_random=False),
)
def test_same_per_card_sequences_on_one_or_three_partitions_give_the_same_alerts(
    cards, rnd: random.Random
) -> None:
    streams = [build_stream(specs, card=f"c{i}") for i, specs in enumerate(cards)]
    one_partition = [e for s in streams for e in s]  # card after card
    # Three partitions consumed in some interleaving: per-card order kept, cards interleaved.
    queues = [list(s) for s in streams]
    interleaved = []
    while any(queues):
        q = rnd.choice([q for q in queues if q])
        interleaved.append(q.pop(0))
    assert alerts_of(one_partition) == alerts_of(interleaved)
