"""The merchant stage: delayed-window fraud shares from labels, known only from their reported
time; views that do not depend on arrival order; a compact state that round-trips."""

from __future__ import annotations

import math
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from dataflows.detection.merchant import DAY_MS, MerchantBook, MerchantState
from fraudwatch.contract import LabelEvent

DELAY = 7
D0 = 20_000  # an epoch day
HOUR = 3_600_000


def at(day: int, hour: int = 12) -> int:
    return day * DAY_MS + hour * HOUR


def label(tx: str, tx_day: int, reported: int, fraud: bool = True) -> LabelEvent:
    return LabelEvent(tx, at(tx_day), "tok", "m", 10.0, "EUR", fraud, reported, "chargeback")


def busy_merchant(days: range, per_day: int = 10, amount: float = 20.0) -> MerchantState:
    m = MerchantState()
    for d in days:
        for k in range(per_day):
            m.add(at(d, k), amount)
    return m


def test_delayed_windows_count_the_days_that_end_the_label_delay_back() -> None:
    m = busy_merchant(range(D0 - 60, D0 + 1))
    v = m.view(at(D0), DELAY)
    # Windows end at day D0 - DELAY - 1: 1, 7 and 30 days of 10 sales each.
    assert (v.n_1d, v.n_7d, v.n_30d) == (10, 70, 300)
    # Since then, up to the day before yesterday: D0-7 .. D0-2, six days.
    assert v.recent_n == 60
    assert v.typical_n == 300  # D0-31 .. D0-2
    assert math.isclose(v.typical_amount, 20.0)


def test_a_fraud_counts_only_from_its_reported_time_and_a_reversal_undoes_it() -> None:
    m = busy_merchant(range(D0 - 40, D0 + 1))
    m.add_label(label("t1", D0 - DELAY - 3, reported=at(D0, 9)))
    assert m.view(at(D0, 8), DELAY).fraud_7d == 0  # not reported yet
    v = m.view(at(D0, 10), DELAY)
    assert (v.fraud_1d, v.fraud_7d, v.fraud_30d) == (0, 1, 1)
    assert math.isclose(v.risk(7), 1 / 70)
    m.add_label(label("t1", D0 - DELAY - 3, reported=at(D0, 11), fraud=False))
    assert m.view(at(D0, 12), DELAY).fraud_7d == 0
    assert not m.add_label(label("t1", D0 - DELAY - 3, reported=at(D0, 11), fraud=False))


def test_a_recent_fraud_already_reported_counts_before_the_delay_has_passed() -> None:
    m = busy_merchant(range(D0 - 10, D0 + 1))
    m.add_label(label("fresh", D0 - 1, reported=at(D0, 1)))
    v = m.view(at(D0, 2), DELAY)
    assert v.recent_fraud == 1
    assert v.fraud_30d == 0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 50), st.integers(0, 23)), min_size=1, max_size=200),
       st.randoms(use_true_random=False))  # fmt: skip
def test_views_equal_a_fresh_computation_whatever_the_order_within_days(
    sales: list[tuple[int, int]], rnd: random.Random
) -> None:
    """The per-day cache and the day guard: a merchant fed the same sales in another order
    within each day (and with late ones for earlier days) gives the same views."""
    sales.sort()
    shuffled = list(sales)
    for i in range(len(shuffled) - 1):  # swap neighbours within the same day only
        if shuffled[i][0] == shuffled[i + 1][0] and rnd.random() < 0.5:
            shuffled[i], shuffled[i + 1] = shuffled[i + 1], shuffled[i]
    a, b = MerchantState(), MerchantState()
    views_a, views_b = [], []
    for (da, ha), (db, hb) in zip(sales, shuffled, strict=True):
        views_a.append((da, a.view(at(D0 + da, ha), DELAY)))
        a.add(at(D0 + da, ha), 10.0 + ha)
        views_b.append((db, b.view(at(D0 + db, hb), DELAY)))
        b.add(at(D0 + db, hb), 10.0 + hb)
    by_day_a = {d: v for d, v in views_a}
    by_day_b = {d: v for d, v in views_b}
    for d, v in views_a:
        assert v == by_day_a[d] == by_day_b[d]  # one view per day, whatever the order
    fresh = MerchantState.unpack(a.pack())  # no cache
    last_day = sales[-1][0]
    assert fresh.view(at(D0 + last_day, 23), DELAY) == a.view(at(D0 + last_day, 23), DELAY)


def test_pack_round_trips_counts_and_labels() -> None:
    m = busy_merchant(range(D0 - 5, D0 + 1), per_day=3, amount=0.0)
    m.add(at(D0), 55.5)
    m.add_label(label("x", D0 - 1, reported=at(D0)))
    again = MerchantState.unpack(m.pack())
    assert again.pack() == m.pack()
    assert again.view(at(D0 + 1), DELAY) == m.view(at(D0 + 1), DELAY)


def test_the_book_keeps_state_bounded_and_evicts_idle_merchants() -> None:
    book = MerchantBook(DELAY)

    class V:
        def __init__(self, mid: str, ts: int) -> None:
            from tests.factories import make_event

            self.event = make_event(merchant_id=mid, ts=ts)
            self.amount = 10.0
            self.duplicate = False

    book.observe([V("busy", at(D0 - 100 + d)) for d in range(101)])
    book.observe([V("once", at(D0 - 90))])
    state = book.merchants["busy"]
    assert len(state.days) <= book.keep_days + 1
    assert book.evict(at(D0)) == 1
    assert set(book.merchants) == {"busy"}
    snap = book.snapshot()
    assert MerchantBook(DELAY, snap).snapshot() == snap
