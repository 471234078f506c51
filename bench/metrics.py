"""Ranking and detection metrics for the evaluation, written out by hand (no scikit-learn).

Pure functions over plain sequences, so they are unit-tested against hand-computed cases.
Ties are treated the way the fraud-detection literature's tools treat them: ROC AUC by the
rank statistic with mid-ranks (a tied positive/negative pair counts one half), average
precision with one threshold per distinct score (as scikit-learn's ``average_precision_score``),
and card precision@k with the tie group at the cut-off counted at its expected share.
"""

from __future__ import annotations

import statistics
from collections.abc import Collection, Iterable, Mapping, Sequence
from itertools import groupby


def ratio(part: int, whole: int) -> float | None:
    """``part / whole``, or None when there is nothing to divide (no alerts, no frauds)."""
    return part / whole if whole else None


def median(values: Iterable[float]) -> float | None:
    """The median, or None for no values."""
    xs = list(values)
    return float(statistics.median(xs)) if xs else None


def _check(scores: Sequence[float], labels: Sequence[bool]) -> tuple[int, int]:
    if len(scores) != len(labels):
        raise ValueError(f"{len(scores)} scores but {len(labels)} labels")
    positives = sum(1 for y in labels if y)
    negatives = len(labels) - positives
    if not positives or not negatives:
        raise ValueError("ranking metrics need at least one positive and one negative")
    return positives, negatives


def roc_auc(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """Area under the ROC curve: the chance that a random positive outscores a random negative.

    Mann-Whitney U from the rank sum of the positives, with mid-ranks for tied scores (a tie
    counts one half).
    """
    positives, negatives = _check(scores, labels)
    order = sorted(range(len(scores)), key=scores.__getitem__)
    rank_sum = 0.0
    start = 0
    for _, group in groupby(order, key=scores.__getitem__):
        members = list(group)
        mid_rank = start + (len(members) + 1) / 2  # ranks start at 1
        rank_sum += mid_rank * sum(1 for i in members if labels[i])
        start += len(members)
    u = rank_sum - positives * (positives + 1) / 2
    return u / (positives * negatives)


def average_precision(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """Area under the precision-recall curve as a step sum: sum of (R_n - R_n-1) * P_n.

    One threshold per distinct score, from the highest down; the last threshold is the lowest
    score, where every item counts as flagged (so unflagged positives lower the result).
    """
    positives, _ = _check(scores, labels)
    order = sorted(range(len(scores)), key=scores.__getitem__, reverse=True)
    tp = flagged = 0
    result = 0.0
    for _, group in groupby(order, key=scores.__getitem__):
        members = list(group)
        hits = sum(1 for i in members if labels[i])
        tp += hits
        flagged += len(members)
        result += (hits / positives) * (tp / flagged)
    return result


def top_k_cards(
    card_scores: Mapping[str, float], compromised: Collection[str], k: int
) -> tuple[float, set[str]]:
    """Of the ``k`` highest-scored cards, the share that were really compromised; and those
    compromised cards that ranked in the top ``k`` outright (the ones an analyst team found).

    ``card_scores`` holds every card to rank (e.g. every card that transacted that day, scored
    by its highest transaction score); ``compromised`` the cards that really were. Cards tied
    at the cut-off fill the remaining places at their group's compromised share, the expected
    value when ties are broken at random (and none of them counts as found). The denominator is
    always ``k`` (as in Le Borgne et al.'s handbook), so a day with fewer than ``k`` cards
    cannot reach 1.
    """
    if k < 1:
        raise ValueError("k must be at least 1")
    ranked = sorted(card_scores.items(), key=lambda item: item[1], reverse=True)
    slots = k
    hits = 0.0
    found: set[str] = set()
    for _, group in groupby(ranked, key=lambda item: item[1]):
        members = [card for card, _ in group]
        bad = [card for card in members if card in compromised]
        if len(members) <= slots:
            hits += len(bad)
            found.update(bad)
            slots -= len(members)
        else:
            hits += slots * len(bad) / len(members)
            slots = 0
        if not slots:
            break
    return hits / k, found


def card_precision_at_k(
    card_scores: Mapping[str, float], compromised: Collection[str], k: int
) -> float:
    """Of the ``k`` highest-scored cards, the share that were really compromised.

    See ``top_k_cards`` for ties and the denominator.
    """
    return top_k_cards(card_scores, compromised, k)[0]


def card_precision_at_k_days(
    days: Sequence[tuple[Mapping[str, float], Collection[str]]],
    k: int,
    remove_found: bool = True,
) -> list[float]:
    """Card precision@k of each day, in day order, the handbook's way.

    Each day is (every card that transacted with its best score of the day, the cards
    compromised that day). With ``remove_found`` (the handbook's default), compromised cards
    found in an earlier day's top ``k`` take no part in later days: the bank has blocked them.
    """
    found: set[str] = set()
    result = []
    for card_scores, compromised in days:
        still_open = {c: s for c, s in card_scores.items() if c not in found}
        precision, found_today = top_k_cards(still_open, compromised, k)
        result.append(precision)
        if remove_found:
            found |= found_today
    return result
