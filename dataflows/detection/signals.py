"""Each signal is a small function over a ``Window``: the card's history as of one transaction.

A signal returns a ``Signal`` (its name, the log-odds it adds, a sentence with the numbers) or
None. Thresholds on amounts are ratios to the card's own habit or the merchant's usual ticket,
never absolute limits, so the same configuration works at any price level. Signals only read
the card's transactions at or before the judged one's event time (``pos`` is its insertion
point), never a later one and never the wall clock.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import NamedTuple

from dataflows.detection.merchant import MerchantView
from dataflows.detection.ruleset import RuleSet
from dataflows.detection.state import AMT, CP, HABIT_TAUS_MS, LAT, LON, STRIDE, CardHistory, Habit
from fraudwatch.contract import CardEvent
from fraudwatch.geo import haversine_km


class Signal(NamedTuple):
    """One piece of evidence: ``weight`` in log-odds, ``detail`` in words with numbers."""

    rule: str
    weight: float
    detail: str
    evidence: tuple[int, ...] = ()  # indices into the card's kept transactions
    always_alert: bool = False


class Window:
    """The judged transaction and what the card looked like just before it.

    The card's habits and median amount are worked out on first use: most transactions fire
    no signal that needs them.
    """

    __slots__ = ("_habit", "_median", "amount", "base", "e", "pos", "profile_lo", "ruleset",
                 "state")  # fmt: skip

    def __init__(
        self,
        state: CardHistory,
        pos: int,
        e: CardEvent,
        amount: float,
        base: str,
        profile_lo: int,
        ruleset: RuleSet,
    ) -> None:
        self.state = state
        self.pos = pos  # insertion point of ``e`` among the card's kept transactions
        self.e = e
        self.amount = amount  # in the base currency
        self.base = base
        self.profile_lo = profile_lo  # first kept transaction of the amount/location profile
        self.ruleset = ruleset
        self._habit: Habit | None = None
        self._median: float | None = -1.0  # -1: not worked out yet

    @property
    def history_days(self) -> float:
        """Days since the card was first seen (cheap: no decayed sums needed)."""
        first = self.state.first_seen
        return 0.0 if first is None else max(0.0, (self.e.ts - first) / 86_400_000)

    @property
    def habit(self) -> Habit:
        if self._habit is None:
            self._habit = self.state.habit_at(self.e.ts, self.pos)
        return self._habit

    def start_after(self, since_exclusive: float) -> int:
        """Index of the first kept transaction after ``since_exclusive`` (and before ``pos``)."""
        ev = self.state.ev
        lo = self.pos
        while lo > 0 and ev[(lo - 1) * STRIDE] > since_exclusive:
            lo -= 1
        return lo

    def usual_daily(self, lo: int) -> tuple[float, float]:
        """The card's usual (count, spend) per day, leaving out its transactions from ``lo``
        on: a burst must not raise the habit it is compared with."""
        ev = self.state.ev
        t = self.e.ts
        count, amount = self.habit.count_30d, self.habit.amount_30d
        for i in range(lo, self.pos):
            d = math.exp(-(t - ev[i * STRIDE]) / _MONTH_MS)
            count -= d
            amount -= d * ev[i * STRIDE + AMT]
        days = self.habit.month_days
        # What is left after subtracting the burst may be rounding residue of a zero habit.
        if count <= 1e-9 * max(self.habit.count_30d, 1.0):
            count = 0.0
        if amount <= 1e-9 * max(self.habit.amount_30d, 1e-12):
            amount = 0.0
        return count / days, amount / days

    def amounts(self, lo: int, hi: int) -> list[float]:
        return self.state.ev[lo * STRIDE + AMT : hi * STRIDE : STRIDE].tolist()

    def median_before(self, lo: int) -> float | None:
        """The median amount of the card's profile as it was before kept transaction ``lo``
        (None below the minimum history): the habit a burst starting at ``lo`` is compared
        with."""
        if lo == self.pos:
            return self.card_median()
        start = max(0, lo - self.ruleset.engine.profile_size)
        since = self.e.ts - self.ruleset.profile_horizon_ms
        ev = self.state.ev
        while start < lo and ev[start * STRIDE] < since:
            start += 1
        if lo - start < self.ruleset.rules.amount_vs_habit.min_history:
            return None
        med = median(self.amounts(start, lo))
        return med if med > 0 else None

    def card_median(self) -> float | None:
        """The median amount of the card's profile, or None below the minimum history."""
        if self._median is not None and self._median < 0:
            n = self.pos - self.profile_lo
            if n < self.ruleset.rules.amount_vs_habit.min_history:
                self._median = None
            else:
                med = median(self.amounts(self.profile_lo, self.pos))
                self._median = med if med > 0 else None
        return self._median


_MONTH_MS = HABIT_TAUS_MS[2]


def median(xs: list[float]) -> float:
    s = sorted(xs)
    n = len(s)
    mid = n // 2
    return s[mid] if n % 2 else (s[mid - 1] + s[mid]) / 2


def money(x: float) -> str:
    return f"{x:,.2f}"


def amount_vs_habit(w: Window) -> Signal | None:
    rule = w.ruleset.rules.amount_vs_habit
    med = w.card_median()
    if not rule.enabled or med is None:
        return None
    ratio = w.amount / med
    if ratio < rule.min_ratio:
        return None
    floor = med * 1e-3
    logs = [math.log(max(a, floor) / med) for a in w.amounts(w.profile_lo, w.pos)]
    centre = median(logs)
    mad = median([abs(x - centre) for x in logs])
    # A card with near-identical amounts has MAD ~0; the floor keeps z finite and meaningful.
    sigma = max(1.4826 * mad, 0.25)
    z = (math.log(ratio) - centre) / sigma
    if z < rule.min_z:
        return None
    weight = min(rule.max_weight, rule.base_weight + rule.weight_per_z * (z - rule.min_z))
    n = w.pos - w.profile_lo
    return Signal(
        "amount_vs_habit",
        weight,
        f"{ratio:.1f}x this card's median of {money(med)} {w.base} over its last {n} "
        f"transactions (robust z {z:.1f}; fires at {rule.min_ratio:g}x and z {rule.min_z:g})",
    )


def velocity_count(w: Window) -> Signal | None:
    rule = w.ruleset.rules.velocity_count
    if not rule.enabled:
        return None
    lo = w.start_after(w.e.ts - rule.window_minutes * 60_000)
    count = w.pos - lo + 1
    if count <= rule.max_count:
        return None
    span_min = (w.e.ts - w.state.ts(lo)) / 60_000 if lo < w.pos else 0.0
    weight = min(
        rule.max_weight, rule.weight + rule.weight_per_extra * (count - rule.max_count - 1)
    )
    usual = w.habit.daily_count
    habit = f"; this card's usual is {usual:.1f} a day" if w.habit.history_days >= 1 else ""
    return Signal(
        "velocity_count",
        weight,
        f"{count} transactions in {span_min:.1f} min (fires above {rule.max_count} in "
        f"{rule.window_minutes:g} min){habit}",
        tuple(range(lo, w.pos)),
    )


def velocity_amount(w: Window) -> Signal | None:
    rule = w.ruleset.rules.velocity_amount
    if not rule.enabled:
        return None
    lo = w.start_after(w.e.ts - rule.window_minutes * 60_000)
    count = w.pos - lo + 1
    # Cheap tests first: the habit costs a few exponentials.
    if count < rule.min_count or w.history_days < rule.min_history_days:
        return None
    _, daily = w.usual_daily(lo)
    if daily <= 0:
        return None
    total = w.amount + sum(w.amounts(lo, w.pos))
    ratio = total / daily
    if ratio < rule.min_ratio:
        return None
    return Signal(
        "velocity_amount",
        rule.weight,
        f"{money(total)} {w.base} in {count} transactions within "
        f"{rule.window_minutes / 60:g} h: {ratio:.1f}x this card's usual daily spend of "
        f"{money(daily)} {w.base} (fires at {rule.min_ratio:g}x)",
        tuple(range(lo, w.pos)),
    )


def card_testing(w: Window) -> Signal | None:
    rule = w.ruleset.rules.card_testing
    if not rule.enabled:
        return None
    lo = w.start_after(w.e.ts - rule.window_minutes * 60_000)
    # Cheap test first: too few authorizations in the window, whatever their amounts.
    if w.pos - lo + 1 < rule.min_small:
        return None
    # Tiny and large are relative to the card's habit before the burst (the tests must not
    # become the habit they are compared with); a card without that history is compared with
    # the population's habit, so a new card tested at a low-ticket merchant still counts.
    card_ref = w.median_before(lo)
    ref = rule.population_median if card_ref is None else card_ref
    small_max = rule.small_ratio * ref
    is_small = w.amount <= small_max
    is_large = w.amount >= rule.large_ratio * ref
    if not (is_small or is_large):
        return None
    small = [lo + k for k, a in enumerate(w.amounts(lo, w.pos)) if a <= small_max]
    n_small = len(small) + (1 if is_small else 0)
    if n_small < rule.min_small:
        return None
    weight = rule.weight + rule.weight_per_extra * (n_small - rule.min_small)
    span = (w.e.ts - w.state.ts(small[0])) / 1000 if small else 0.0
    span_txt = f"{span:.0f} s" if span < 120 else f"{span / 60:.0f} min"
    usual = (
        f"{rule.small_ratio:g}x this card's usual {money(ref)}"
        if card_ref is not None
        else f"{rule.small_ratio:g}x the population's usual {money(ref)}: no card history"
    )
    detail = (
        f"{n_small} tiny authorizations (at most {money(small_max)} {w.base}, {usual}) "
        f"in {span_txt}"
    )
    if is_large:
        weight += rule.large_weight
        detail += f", then this {money(w.amount)} {w.base} one ({w.amount / ref:.1f}x usual)"
    return Signal("card_testing", min(rule.max_weight, weight), detail, tuple(small))


def impossible_travel(w: Window) -> Signal | None:
    rule = w.ruleset.rules.impossible_travel
    e = w.e
    if not rule.enabled or e.channel != "card_present":
        return None
    ev = w.state.ev
    j = w.pos - 1
    while j >= 0 and ev[j * STRIDE + CP] == 0.0:
        j -= 1
    if j < 0:
        return None
    at = j * STRIDE
    dist = haversine_km(ev[at + LAT], ev[at + LON], e.latitude, e.longitude)
    if dist < rule.min_distance_km:
        return None
    hours = (e.ts - ev[at]) / 3_600_000
    speed = math.inf if hours <= 0 else dist / hours
    if speed <= rule.max_speed_kmh:
        return None
    speed_txt = "instantly" if math.isinf(speed) else f"{speed:,.0f} km/h"
    return Signal(
        "impossible_travel",
        rule.weight,
        f"card-present in {e.country} {dist:,.0f} km from the previous card-present use "
        f"({w.state.cc[j]}) {hours * 60:.0f} min earlier: {speed_txt} "
        f"(limit {rule.max_speed_kmh:,.0f} km/h)",
        (j,),
        rule.always_alert,
    )


def location_anomaly(w: Window) -> Signal | None:
    rule = w.ruleset.rules.location_anomaly
    lo, pos, e = w.profile_lo, w.pos, w.e
    n = pos - lo
    if not rule.enabled or n < rule.min_history:
        return None
    ev = w.state.ev
    nearest = min(
        haversine_km(ev[i * STRIDE + LAT], ev[i * STRIDE + LON], e.latitude, e.longitude)
        for i in range(lo, pos)
    )
    new_country = e.country not in w.state.cc[lo:pos]
    if new_country and nearest >= rule.new_country_min_km:
        detail = (
            f"first use in {e.country} among this card's last {n} transactions, "
            f"{nearest:,.0f} km from its nearest usual place (fires at "
            f"{rule.new_country_min_km:,.0f} km for a new country)"
        )
    elif nearest >= rule.far_km:
        detail = (
            f"{nearest:,.0f} km from the nearest of this card's last {n} transaction "
            f"locations (fires at {rule.far_km:,.0f} km)"
        )
    else:
        return None
    weight = rule.weight
    if new_country and not e.card_present:
        weight += rule.cnp_extra_weight
        detail += "; card not present"
    return Signal("location_anomaly", weight, detail)


def card_activity(w: Window) -> Signal | None:
    rule = w.ruleset.rules.card_activity
    if not rule.enabled:
        return None
    lo = w.start_after(w.e.ts - 86_400_000)
    count = w.pos - lo + 1
    if count < rule.min_count or w.history_days < rule.min_history_days:
        return None
    usual, _ = w.usual_daily(lo)
    if count < rule.min_count or count < rule.min_ratio * max(usual, 0.1):
        return None
    return Signal(
        "card_activity",
        rule.weight,
        f"{count} transactions in 24 h; this card's usual is {usual:.1f} a day "
        f"(fires at {rule.min_ratio:g}x and {rule.min_count})",
    )


def compromised_card(w: Window) -> Signal | None:
    if not w.state.lab:
        return None
    rule = w.ruleset.rules.compromised_card
    if not rule.enabled:
        return None
    label = w.state.compromised_at(w.e.ts, w.ruleset.compromised_ms)
    if label is None:
        return None
    reported = datetime.fromtimestamp(label[0] / 1000, UTC).strftime("%Y-%m-%d %H:%M")
    days = (w.e.ts - label[0]) / 86_400_000
    return Signal(
        "compromised_card",
        rule.weight,
        f"a fraud on this card was reported {reported} UTC ({days:.1f} days ago) and not "
        f"cleared since: the card is known to be compromised",
        always_alert=rule.always_alert,
    )


class MerchantWindow(NamedTuple):
    """A transaction as the merchant stage sees it: what its merchant looked like before it."""

    e: CardEvent
    amount: float
    base: str
    merchant: MerchantView
    ruleset: RuleSet


def merchant_risk(w: MerchantWindow) -> Signal | None:
    rule = w.ruleset.rules.merchant_risk
    m = w.merchant
    most = max(m.fraud_1d, m.fraud_7d, m.fraud_30d, m.recent_fraud)
    if not rule.enabled or most < rule.min_frauds:
        return None
    prior = w.ruleset.score.prior
    s = rule.prior_strength
    delay = w.ruleset.labels.label_delay_days
    best: tuple[float, str] | None = None
    candidates = (
        (m.fraud_1d, m.n_1d, f"on the last known day (ending {delay} days ago)"),
        (m.fraud_7d, m.n_7d, f"in the last known week (ending {delay} days ago)"),
        (m.fraud_30d, m.n_30d, f"in the last known 30 days (ending {delay} days ago)"),
        (m.recent_fraud, m.recent_n, f"reported so far for the last {delay} days"),
    )
    for f, n, when in candidates:
        if f < rule.min_frauds:
            continue
        share = (f + s * prior) / (max(n, f) + s)
        if best is None or share > best[0]:
            best = (share, f"{f} of its {max(n, f)} transactions {when} were fraud")
    if best is None or best[0] <= prior:
        return None
    weight = min(rule.max_weight, math.log(best[0] / prior))
    return Signal(
        "merchant_risk",
        weight,
        f"merchant {w.e.merchant_id} ({w.e.merchant_name}): {best[1]}",
    )


def amount_vs_merchant(w: MerchantWindow) -> Signal | None:
    rule = w.ruleset.rules.amount_vs_merchant
    m = w.merchant
    if not rule.enabled or m.typical_n < rule.min_transactions or m.typical_amount <= 0:
        return None
    ratio = w.amount / m.typical_amount
    if ratio < rule.min_ratio:
        return None
    return Signal(
        "amount_vs_merchant",
        rule.weight,
        f"{ratio:.1f}x this merchant's typical ticket of {money(m.typical_amount)} {w.base} "
        f"(over its last {m.typical_n} sales; fires at {rule.min_ratio:g}x)",
    )


# The card stage's signals, in the order explanations list ties. ``late`` transactions (beyond
# the allowed lateness) cannot be placed in the card's windows: they get only the point ones.
CARD_SIGNALS: tuple[Callable[[Window], Signal | None], ...] = (
    compromised_card,
    impossible_travel,
    card_testing,
    amount_vs_habit,
    velocity_count,
    velocity_amount,
    card_activity,
    location_anomaly,
)
LATE_CARD_SIGNALS: tuple[Callable[[Window], Signal | None], ...] = (compromised_card,)
# The merchant stage's: amount_vs_merchant only speaks where the card's own habit did not.
MERCHANT_SIGNALS: tuple[Callable[[MerchantWindow], Signal | None], ...] = (
    merchant_risk,
    amount_vs_merchant,
)
