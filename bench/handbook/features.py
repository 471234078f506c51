"""The handbook's 15 baseline features per transaction, vectorised with numpy.

Le Borgne et al. (chapter 3, *Baseline feature transformation*) describe every transaction by

* ``TX_AMOUNT`` (here converted to EUR, so amounts in different currencies compare);
* ``TX_DURING_WEEKEND`` (Saturday or Sunday) and ``TX_DURING_NIGHT`` (hour <= 6), both of the
  UTC time stamp;
* per customer (here the card's ``account_id``) and window of 1, 7 and 30 days ending at the
  transaction, the number of transactions and their average amount (the transaction itself
  included);
* per terminal (here ``merchant_id``) and window of 1, 7 and 30 days, the number of
  transactions and the share of them that were fraudulent ("risk"), over the window *shifted
  back by the delay* (7 days): ``(t - delay - n days, t - delay]``. Labels of the last
  ``delay`` days are not known yet when a transaction is scored, so they must not be used;
  getting that shift wrong leaks the future into the feature.

Windows follow the handbook's pandas ``rolling("<n>d")`` exactly: the rows of the same entity
at or before the transaction (in time order, ties in input order) whose time is later than
``t - n days``. A terminal window with no transaction has risk 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

DAY_MS = 86_400_000
WINDOW_DAYS = (1, 7, 30)
DELAY_DAYS = 7

FEATURE_NAMES: tuple[str, ...] = (
    "TX_AMOUNT",
    "TX_DURING_WEEKEND",
    "TX_DURING_NIGHT",
    *(
        name
        for n in WINDOW_DAYS
        for name in (f"CUSTOMER_ID_NB_TX_{n}DAY_WINDOW", f"CUSTOMER_ID_AVG_AMOUNT_{n}DAY_WINDOW")
    ),
    *(
        name
        for n in WINDOW_DAYS
        for name in (f"TERMINAL_ID_NB_TX_{n}DAY_WINDOW", f"TERMINAL_ID_RISK_{n}DAY_WINDOW")
    ),
)

Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]


def calendar_features(ts_ms: Ints) -> tuple[Floats, Floats]:
    """``TX_DURING_WEEKEND`` and ``TX_DURING_NIGHT`` (1.0 or 0.0) of UTC epoch milliseconds."""
    days = ts_ms // DAY_MS
    weekday = (days + 3) % 7  # 1970-01-01 was a Thursday; Monday is 0
    hour = (ts_ms % DAY_MS) // 3_600_000
    return (weekday >= 5).astype(np.float64), (hour <= 6).astype(np.float64)


class _GroupedTimes:
    """Rows sorted by (entity, time, input order), with window start positions on demand."""

    def __init__(self, groups: Ints, ts_ms: Ints) -> None:
        self.order = np.lexsort((np.arange(len(ts_ms)), ts_ms, groups))
        ts = ts_ms[self.order]
        span = int(ts.max() - ts.min()) if len(ts) else 0
        # One sortable key per row; entities lie further apart than any window reaches.
        self.stride = span + (max(WINDOW_DAYS) + DELAY_DAYS + 1) * DAY_MS + 1
        self.key = groups[self.order] * self.stride + (ts - (ts.min() if len(ts) else 0))
        self.position = np.arange(len(ts), dtype=np.int64)

    def first_within(self, reach_ms: int) -> Ints:
        """Per sorted row, the first row of its entity with time > its own time - reach."""
        if reach_ms >= self.stride:
            raise ValueError("window longer than the entity stride")
        return np.searchsorted(self.key, self.key - reach_ms, side="right").astype(np.int64)

    def unsort(self, values: Floats) -> Floats:
        """Values per sorted row, back in input order."""
        out = np.empty_like(values)
        out[self.order] = values
        return out


def _prefix(values: Floats) -> Floats:
    return np.concatenate(([0.0], np.cumsum(values)))


def customer_features(
    customer: Ints, ts_ms: Ints, amount: Floats, windows: Sequence[int] = WINDOW_DAYS
) -> list[Floats]:
    """Per window: number of the customer's transactions, then their average amount.

    The window of a transaction is ``(t - n days, t]`` and includes the transaction itself, so
    the count is at least 1.
    """
    grouped = _GroupedTimes(customer, ts_ms)
    sums = _prefix(amount[grouped.order])
    end = grouped.position + 1
    out: list[Floats] = []
    for n in windows:
        start = grouped.first_within(n * DAY_MS)
        count = (end - start).astype(np.float64)
        out.append(grouped.unsort(count))
        out.append(grouped.unsort((sums[end] - sums[start]) / count))
    return out


def terminal_features(
    terminal: Ints,
    ts_ms: Ints,
    fraud: npt.NDArray[np.bool_],
    windows: Sequence[int] = WINDOW_DAYS,
    delay_days: int = DELAY_DAYS,
) -> list[Floats]:
    """Per window: the terminal's transactions, then their fraud share, delay-shifted.

    Both over ``(t - delay - n days, t - delay]``: what was seen up to ``t + delay`` minus
    the last ``delay`` days, whose labels are unknown at ``t``.
    """
    grouped = _GroupedTimes(terminal, ts_ms)
    frauds = _prefix(fraud[grouped.order].astype(np.float64))
    recent = grouped.first_within(delay_days * DAY_MS)  # first row of (t - delay, t]
    out: list[Floats] = []
    for n in windows:
        start = grouped.first_within((delay_days + n) * DAY_MS)
        count = (recent - start).astype(np.float64)
        bad = frauds[recent] - frauds[start]
        risk = np.divide(bad, count, out=np.zeros_like(bad), where=count > 0)
        out.append(grouped.unsort(count))
        out.append(grouped.unsort(risk))
    return out


def baseline_features(
    ts_ms: Ints,
    amount_eur: Floats,
    customer: Ints,
    terminal: Ints,
    fraud: npt.NDArray[np.bool_],
) -> Floats:
    """The 15 features of every transaction, one row each, columns as ``FEATURE_NAMES``.

    ``customer`` and ``terminal`` are integer codes of the entities; ``fraud`` the labels the
    terminal risk may use (only those older than the delay enter any row).
    """
    n = len(ts_ms)
    if not (len(amount_eur) == len(customer) == len(terminal) == len(fraud) == n):
        raise ValueError("every column needs one value per transaction")
    weekend, night = calendar_features(ts_ms)
    columns = [
        amount_eur.astype(np.float64),
        weekend,
        night,
        *customer_features(customer, ts_ms, amount_eur.astype(np.float64)),
        *terminal_features(terminal, ts_ms, fraud),
    ]
    return np.column_stack(columns) if n else np.empty((0, len(FEATURE_NAMES)))
