"""The evaluation's metrics against hand-computed cases and a brute-force definition."""

from __future__ import annotations

import itertools
import random

import pytest

from bench.metrics import (
    average_precision,
    card_precision_at_k,
    card_precision_at_k_days,
    median,
    ratio,
    roc_auc,
    top_k_cards,
)


def test_roc_auc_matches_the_textbook_example() -> None:
    # Pairs (positive, negative): 0.35 > 0.1, 0.35 < 0.4, 0.8 > both: 3 of 4.
    assert roc_auc([0.1, 0.4, 0.35, 0.8], [False, False, True, True]) == pytest.approx(0.75)


def test_roc_auc_counts_a_tied_pair_as_one_half() -> None:
    # Positives 0.9, 0.5, 0; negatives 0.5, 0. Pairs: 1 + 1 + 0.5 + 1 + 0 + 0.5 = 4 of 6.
    scores = [0.9, 0.5, 0.5, 0.0, 0.0]
    labels = [True, True, False, True, False]
    assert roc_auc(scores, labels) == pytest.approx(4 / 6)
    assert roc_auc([0.5, 0.5], [True, False]) == pytest.approx(0.5)


def test_roc_auc_is_one_for_a_perfect_ranking_and_zero_for_a_reversed_one() -> None:
    assert roc_auc([0.9, 0.8, 0.1], [True, True, False]) == 1.0
    assert roc_auc([0.1, 0.2, 0.9], [True, True, False]) == 0.0


def test_roc_auc_equals_the_pairwise_definition_on_random_tied_scores() -> None:
    rng = random.Random(3)
    scores = [rng.choice([0.0, 0.0, 0.0, 0.35, 0.5, 0.55, 0.8]) for _ in range(300)]
    labels = [rng.random() < 0.2 + s / 2 for s in scores]
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    pairs = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    assert roc_auc(scores, labels) == pytest.approx(pairs / (len(pos) * len(neg)))


def test_average_precision_matches_the_textbook_example() -> None:
    # Thresholds 0.8 (P 1, R 1/2), 0.4 (P 1/2, R 1/2), 0.35 (P 2/3, R 1): 1/2 + 1/3.
    ap = average_precision([0.1, 0.4, 0.35, 0.8], [False, False, True, True])
    assert ap == pytest.approx(0.5 + 1 / 3)


def test_average_precision_uses_one_threshold_per_distinct_score() -> None:
    # 0.9: P 1, R 1/3; 0.5: P 2/3, R 2/3; 0: P 3/5, R 1 -> 1/3 + 2/9 + 1/5.
    scores = [0.9, 0.5, 0.5, 0.0, 0.0]
    labels = [True, True, False, True, False]
    assert average_precision(scores, labels) == pytest.approx(1 / 3 + 2 / 9 + 1 / 5)


def test_average_precision_of_an_uninformative_score_is_the_base_rate() -> None:
    assert average_precision([0.5] * 4, [True, False, False, False]) == pytest.approx(0.25)
    assert average_precision([0.0] * 4, [True, False, False, False]) == pytest.approx(0.25)


def test_average_precision_is_one_when_every_positive_ranks_first() -> None:
    assert average_precision([0.9, 0.7, 0.0, 0.0], [True, True, False, False]) == 1.0


def test_ranking_metrics_refuse_one_class_and_mismatched_lengths() -> None:
    with pytest.raises(ValueError, match="one positive and one negative"):
        roc_auc([0.1, 0.2], [False, False])
    with pytest.raises(ValueError, match="one positive and one negative"):
        average_precision([0.1, 0.2], [True, True])
    with pytest.raises(ValueError, match="2 scores but 1 labels"):
        roc_auc([0.1, 0.2], [True])


def test_card_precision_at_k_counts_the_top_cards_and_the_cut_off_tie_at_its_share() -> None:
    scores = {"a": 0.9, "b": 0.8, "c": 0.5, "d": 0.5, "e": 0.0}
    compromised = {"a", "c"}
    assert card_precision_at_k(scores, compromised, 1) == 1.0
    assert card_precision_at_k(scores, compromised, 2) == 0.5
    # a and b take two places; c and d (tied) share the third: half a compromised card.
    assert card_precision_at_k(scores, compromised, 3) == pytest.approx(1.5 / 3)
    assert card_precision_at_k(scores, compromised, 4) == pytest.approx(2 / 4)


def test_card_precision_at_k_divides_by_k_even_when_fewer_cards_transacted() -> None:
    assert card_precision_at_k({"a": 0.9, "b": 0.0}, {"a"}, 10) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="k must be"):
        card_precision_at_k({"a": 0.9}, {"a"}, 0)


def test_top_k_cards_names_the_compromised_cards_that_ranked_outright() -> None:
    scores = {"a": 0.9, "b": 0.8, "c": 0.5, "d": 0.5, "e": 0.0}
    assert top_k_cards(scores, {"a", "c"}, 2) == (0.5, {"a"})
    # c shares the last place with d: half a hit, and not found.
    precision, found = top_k_cards(scores, {"a", "c"}, 3)
    assert precision == pytest.approx(1.5 / 3)
    assert found == {"a"}
    assert top_k_cards(scores, {"a", "c"}, 4) == (0.5, {"a", "c"})


def test_card_precision_per_day_leaves_out_cards_found_on_earlier_days() -> None:
    # Day 1: a (compromised) tops the list. Day 2: a again, then b (compromised), then c.
    day1 = ({"a": 0.9, "x": 0.1}, {"a"})
    day2 = ({"a": 0.95, "b": 0.6, "c": 0.3}, {"a", "b"})
    assert card_precision_at_k_days([day1, day2], k=1) == [1.0, 1.0]  # b takes a's place
    assert card_precision_at_k_days([day1, day2], k=1, remove_found=False) == [1.0, 1.0]
    day2_only_a = ({"a": 0.95, "b": 0.6}, {"a"})
    assert card_precision_at_k_days([day1, day2_only_a], k=1) == [1.0, 0.0]
    assert card_precision_at_k_days([day1, day2_only_a], k=1, remove_found=False) == [1.0, 1.0]


def test_ratio_and_median_say_none_when_there_is_nothing_to_measure() -> None:
    assert ratio(3, 4) == 0.75
    assert ratio(0, 0) is None
    assert median([3.0, 1.0, 2.0, 10.0]) == 2.5
    assert median([]) is None
