"""Detection-quality measures the trainer and the model-health view compute (numpy, weighted).

The feature log keeps a weighted sample of low scores, so the measures take sample weights:
a row of weight 20 stands for 20 transactions. Ties are one threshold, as in scikit-learn's
``average_precision_score``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]


def average_precision(scores: Floats, labels: Bools, weights: Floats | None = None) -> float | None:
    """Weighted area under the precision-recall curve; None without a positive and a negative."""
    y = labels.astype(np.float64)
    w = np.ones_like(y) if weights is None else weights.astype(np.float64)
    if not np.any(y > 0) or not np.any(y == 0):
        return None
    order = np.argsort(-scores, kind="mergesort")
    s, y, w = scores[order], y[order], w[order]
    tp = np.cumsum(w * y)
    fp = np.cumsum(w * (1.0 - y))
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]  # the end of each tie group
    tp, fp = tp[last], fp[last]
    precision = tp / (tp + fp)
    recall = tp / tp[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def roc_auc(scores: Floats, labels: Bools, weights: Floats | None = None) -> float | None:
    """Weighted ROC AUC (a tie counts one half); None without a positive and a negative."""
    y = labels.astype(bool)
    w = np.ones(len(y)) if weights is None else weights.astype(np.float64)
    pos, neg = w[y].sum(), w[~y].sum()
    if pos <= 0 or neg <= 0:
        return None
    order = np.argsort(scores, kind="mergesort")
    s, yy, ww = scores[order], y[order], w[order]
    # Per tie group: the negatives' weight below it, plus half of its own.
    groups = np.r_[0, np.nonzero(np.diff(s))[0] + 1]
    neg_w = np.add.reduceat(np.where(yy, 0.0, ww), groups)
    pos_w = np.add.reduceat(np.where(yy, ww, 0.0), groups)
    below = np.cumsum(neg_w) - neg_w
    return float(np.sum(pos_w * (below + 0.5 * neg_w)) / (pos * neg))


def card_precision_at_k(cards: Sequence[str], scores: Floats, fraud: Bools, k: int) -> float | None:
    """Of the ``k`` cards with the highest score (one day's rows), the share that had a fraud."""
    best: dict[str, float] = {}
    bad: set[str] = set()
    for card, score, f in zip(cards, scores.tolist(), fraud.tolist(), strict=True):
        if score > best.get(card, -1.0):
            best[card] = score
        if f:
            bad.add(card)
    if not best:
        return None
    top = sorted(best, key=lambda c: (-best[c], c))[:k]
    return sum(1 for c in top if c in bad) / len(top)
