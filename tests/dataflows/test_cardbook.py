"""Cards packed into shards judge exactly as one state per card would, and stay bounded."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataflows.detection.cardbook import CardBook, shard_of
from dataflows.detection.detector import Detector
from dataflows.detection.ruleset import load_ruleset
from dataflows.detection.state import CardHistory, packed_header
from tests.factories import make_event

MIN = 60_000
HOUR = 60 * MIN
T0 = 1_764_064_800_000


@pytest.fixture(scope="module")
def detector() -> Detector:
    return Detector(load_ruleset())


def card_events(card: int, n: int, partition: int = 0) -> list:
    """A card's story: small charges, a burst, a big one far away (so rules fire)."""
    out = []
    for i in range(n):
        big = i == n - 1
        out.append(
            make_event(
                transaction_id=f"c{card}-t{i}",
                card_token=f"{card:032x}",
                ts=T0 + i * 2 * MIN,
                amount=4000.0 if big else 1.0 + i,
                latitude=40.7 if big else 52.5,
                longitude=-74.0 if big else 13.4,
                country="US" if big else "DE",
                partition=partition,
            )
        )
    return out


def one_state_per_card(detector: Detector, events: list) -> list:
    states: dict[str, CardHistory] = {}
    return [detector.process(states.setdefault(e.card_token, CardHistory()), e, 0) for e in events]


def test_pack_round_trip_keeps_behaviour_and_the_dedupe_memory(detector: Detector) -> None:
    events = card_events(1, 30)
    whole = CardHistory()
    expected = [detector.process(whole, e, 0) for e in events]
    state = CardHistory()
    got = []
    for e in events:
        got.append(detector.process(state, e, 0))
        state = CardHistory.unpack(state.pack(e.partition))
    assert [o.alert for o in got] == [o.alert for o in expected]
    assert any(o.alert for o in got), "the story must make rules fire"
    # Re-sending the first transaction, long pruned from the windows, is still a duplicate.
    assert detector.process(state, events[0], 0).duplicate


def test_the_header_gives_newest_event_time_and_partition_without_unpacking(
    detector: Detector,
) -> None:
    state = CardHistory()
    for e in card_events(2, 5, partition=7):
        detector.process(state, e, 0)
    assert packed_header(state.pack(7)) == (state.max_ts, 7)


def test_pack_refuses_a_country_code_that_would_shift_the_others() -> None:
    state = CardHistory()
    state.cc = ["DEU"]
    with pytest.raises(ValueError, match="2 letters"):
        state.pack(0)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32), cut_every=st.integers(1, 9))
def test_a_book_judges_interleaved_cards_as_one_state_per_card_would(
    detector: Detector, seed: int, cut_every: int
) -> None:
    rng = random.Random(seed)
    stories = [card_events(c, rng.randint(1, 12)) for c in range(5)]
    events = []
    while any(stories):
        story = rng.choice([s for s in stories if s])
        events.append(story.pop(0))
    expected = one_state_per_card(detector, events)
    book = CardBook(detector)
    got = []
    for i in range(0, len(events), cut_every):  # calls of various sizes, cards repeating
        got.extend(book.judge_events(events[i : i + cut_every], 0))
    assert got == expected


def test_a_snapshot_is_independent_of_later_judging(detector: Detector) -> None:
    book = CardBook(detector)
    events = card_events(3, 6)
    book.judge_events(events[:3], 0)
    snap = book.snapshot()
    book.judge_events(events[3:], 0)
    resumed = CardBook(detector, snap)
    assert resumed.judge_events(events[3:], 0) == one_state_per_card(detector, events)[3:]


def test_eviction_uses_each_cards_own_partition_watermark(detector: Detector) -> None:
    book = CardBook(detector)
    book.judge_events(card_events(10, 2, partition=0), 0)
    book.judge_events(card_events(11, 2, partition=1), 0)
    horizon = detector.ruleset.eviction_horizon_ms
    newest = max(s.max_ts for s in (book.state_of(f"{c:032x}") for c in (10, 11)) if s)
    # Partition 0 moved past the horizon, partition 1 did not, partition 2 is unknown.
    assert book.evict({0: newest + horizon + 1, 1: newest + horizon}, horizon) == 1
    assert book.state_of(f"{10:032x}") is None
    assert book.state_of(f"{11:032x}") is not None
    assert book.evict({}, horizon) == 0
    assert len(book) == 1


def test_shards_are_stable_in_range_and_roughly_even() -> None:
    tokens = [f"{random.Random(i).getrandbits(128):032x}" for i in range(20_000)]
    counts = [0] * 16
    for t in tokens:
        counts[shard_of(t, 16)] += 1
    assert shard_of(tokens[0], 16) == shard_of(tokens[0], 16)
    assert min(counts) > 0.8 * 20_000 / 16
    assert max(counts) < 1.2 * 20_000 / 16
