"""Judges one transaction: its signals, its score, its alert, then the card's state update.

Each transaction is judged the moment it arrives, against a look-back window that ends at its
own event time: only the card's transactions with an event time at or before it count, so an
out-of-order arrival (within the allowed lateness) is judged as of its own time and no score
ever depends on a later transaction. Labels count from their ``reported_at`` on. No signal
reads the wall clock.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple, cast

import numpy as np

from dataflows.detection.explain import sentence, top_families
from dataflows.detection.features import feature_row
from dataflows.detection.labels import id_hash
from dataflows.detection.merchant import NO_MERCHANT_VIEW, MerchantView
from dataflows.detection.policy import FORMULA, FormulaModel, OperatingPoint, PolicyBook
from dataflows.detection.ruleset import RuleSet
from dataflows.detection.scoring import Scorer, explain, sigmoid
from dataflows.detection.signals import (
    CARD_SIGNALS,
    LATE_CARD_SIGNALS,
    MerchantWindow,
    Signal,
    Window,
    amount_vs_merchant,
    merchant_risk,
)
from dataflows.detection.state import AMT, CP, LAT, LON, NO_HABIT, STRIDE, TS, CardHistory, Habit
from fraudwatch.contract import Alert, CardEvent, LabelEvent, Reason, alert_id_for, format_ts


class Outcome(NamedTuple):
    """What happened to one transaction: its score, at most one alert, how it was treated.

    ``score`` is None only for a duplicate (a transaction already judged); ``signals`` are the
    evidence behind the score, alerted or not.
    """

    event: CardEvent
    alert: Alert | None
    late: bool = False
    duplicate: bool = False
    score: float | None = None
    signals: tuple[Signal, ...] = ()
    model_version: str = ""  # the operating point's model that gave ``score``
    features: list[float] | None = None  # the row the model saw (features.FEATURE_NAMES)


class CardVerdict(NamedTuple):
    """What the card stage found about one transaction; the merchant stage finishes it.

    ``evidence`` holds the rows of the card's earlier transactions that its signals point at
    (oldest first), so the alert can show them without the card's state.
    """

    event: CardEvent
    amount: float  # in the base currency
    signals: tuple[Signal, ...]
    evidence: tuple[dict[str, Any], ...] = ()
    late: bool = False
    duplicate: bool = False
    habit: Habit = NO_HABIT  # the card's habits just before this transaction
    card_median: float = 0.0  # median amount of the card's profile (0: none yet)


class Judged(NamedTuple):
    """A transaction after both stages' signals, ready to be scored (``row`` None: a duplicate)."""

    verdict: CardVerdict
    merchant: MerchantView
    signals: list[Signal]
    row: list[float] | None


# One transaction of a batch being finished: its index in the batch, verdict, merchant view,
# signals and the operating point that scores it.
_Job = tuple[int, CardVerdict, MerchantView, list[Signal], OperatingPoint]


def _per_model(
    rows: list[list[float]], jobs: list[_Job], selected: list[int], call: str
) -> dict[int, Any]:
    """``model.<call>`` on the selected jobs' rows: one vectorised call per operating point."""
    groups: dict[int, list[int]] = {}
    for j in selected:
        groups.setdefault(id(jobs[j][4]), []).append(j)
    out: dict[int, Any] = {}
    for js in groups.values():
        model = jobs[js[0]][4].model
        x = np.array([rows[j] for j in js], dtype=np.float64)
        out.update(zip(js, getattr(model, call)(x).tolist(), strict=True))
    return out


class Detector:
    """Applies a rule set to one transaction: card signals, then merchant signals and score.

    The dataflow runs the two halves in two keyed stages (``judge_card`` per card shard, then
    ``finish`` per merchant shard), so that each card's transactions reach the card stage in
    their input order; ``process`` runs both at once for the backtest's tools and tests.
    """

    def __init__(self, ruleset: RuleSet) -> None:
        self.ruleset = ruleset
        self.scorer = Scorer(ruleset)
        self.base = ruleset.currency.base
        self.rates = ruleset.currency.rates
        self.lateness_ms = int(ruleset.engine.allowed_lateness_minutes * 60_000)
        self.profile_size = ruleset.engine.profile_size
        self.profile_ms = ruleset.profile_horizon_ms
        self.short_ms = ruleset.short_horizon_ms
        self.max_window_events = ruleset.engine.max_window_events
        self.dedupe_ms = ruleset.dedupe_horizon_ms
        self.compromised_ms = ruleset.compromised_ms
        # A card whose next event comes later than this after its last activity may have been
        # evicted (CardBook.evict: watermark - last > horizon, and nothing arrives older than
        # the watermark minus the lateness).
        self.idle_reset_ms = ruleset.eviction_horizon_ms - self.lateness_ms
        # Verdicts carry the card's habits, which every feature row needs; tests of the card
        # stage alone may turn this off (it costs a few exponentials per transaction).
        self.keep_habits = True
        formula = FormulaModel(f"formula-{ruleset.version}", ruleset.score.prior)
        # Until the trainer publishes an operating point, the formula scores with the rule
        # file's threshold (docs/detection.md).
        self.policies = PolicyBook(
            OperatingPoint("", -(2**62), formula, ruleset.score.alert_threshold)
        )

    def amount_in_base(self, amount: float, currency: str) -> float:
        rate = self.rates.get(currency)
        if rate is None:
            raise ValueError(f"no exchange rate for {currency} in the rule set")
        return amount * rate

    def apply_label(self, state: CardHistory, label: LabelEvent) -> bool:
        """Record a label on this card; it counts for transactions from its reported time."""
        added = state.add_label(
            (label.reported_ts, int(label.fraud), id_hash(label.transaction_id))
        )
        if added and state.max_ts >= 0:
            state.prune_labels(state.max_ts - self.compromised_ms - self.lateness_ms)
        return added

    def process(
        self,
        state: CardHistory,
        e: CardEvent,
        detected_at: int | None,
        merchant: MerchantView = NO_MERCHANT_VIEW,
    ) -> Outcome:
        """Judge ``e`` against ``state`` and ``merchant`` (both as of ``e``'s event time)."""
        return self.finish(self.judge_card(state, e), merchant, detected_at)

    def judge_card(self, state: CardHistory, e: CardEvent) -> CardVerdict:
        """The card half: ``e`` against ``state`` as of its event time, then added to it."""
        if e.transaction_id in state.ids:
            return CardVerdict(e, 0.0, (), duplicate=True)
        if state.dh and id_hash(e.transaction_id) in state.dh:
            return CardVerdict(e, 0.0, (), duplicate=True)
        if state.max_ts >= 0 and e.ts - state.last_activity > self.idle_reset_ms:
            # Idle past every horizon: the stream may have evicted this card, so judge it as
            # new either way (stream and backtest must agree whether or not eviction ran).
            state.reset()
        amount = self.amount_in_base(e.amount, e.currency)
        late = state.max_ts >= 0 and e.ts < state.max_ts - self.lateness_ms
        ev = state.ev
        pos = len(state.ids)
        # Insertion point: after every kept transaction with event time <= e.ts.
        while pos > 0 and ev[(pos - 1) * STRIDE] > e.ts:
            pos -= 1
        w = Window(
            state, pos, e, amount, self.base, self._profile_start(state, pos, e.ts), self.ruleset
        )
        signals: list[Signal] = []
        for signal in LATE_CARD_SIGNALS if late else CARD_SIGNALS:
            s = signal(w)
            if s is not None:
                signals.append(s)
        evidence = self._evidence(state, signals) if signals else ()
        # Habits as of just before this transaction, worked out before the state changes.
        habit, median = (w.habit, w.card_median() or 0.0) if self.keep_habits else (NO_HABIT, 0.0)
        if late:
            if e.ts >= state.max_ts - self.dedupe_ms:
                state.remember(id_hash(e.transaction_id), e.ts)
        else:
            self._insert(state, pos, e, amount)
            # Anything at or before this can only take the late path from now on.
            state.settle(state.max_ts - self.lateness_ms - 1)
            self._prune(state)
        return CardVerdict(
            e, amount, tuple(signals), evidence, late=late, habit=habit, card_median=median
        )

    def finish(self, v: CardVerdict, merchant: MerchantView, detected_at: int | None) -> Outcome:
        """The merchant half of one transaction (``finish_batch`` of one)."""
        return self.finish_batch([(v, merchant)], detected_at)[0]

    def finish_batch(
        self, viewed: Sequence[tuple[CardVerdict, MerchantView]], detected_at: int | None
    ) -> list[Outcome]:
        """The merchant half of a batch: ``judge_merchant`` each, then ``score_batch``."""
        return self.score_batch([self.judge_merchant(v, m) for v, m in viewed], detected_at)

    def judge_merchant(self, v: CardVerdict, merchant: MerchantView) -> Judged:
        """The merchant signals and the feature row of one transaction (its merchant stage)."""
        if v.duplicate:
            return Judged(v, merchant, [], None)
        signals = self._merchant_signals(v, merchant)
        return Judged(v, merchant, signals, feature_row(v, merchant, signals))

    def score_batch(self, judged: Sequence[Judged], detected_at: int | None) -> list[Outcome]:
        """Scores and alerts for judged transactions; needs no state, so the dataflow runs it
        once per batch over every merchant shard's transactions.

        Each transaction is scored by the operating point in force at its event time
        (``policies``): the formula's score, or one vectorised model call per operating point
        in the batch. ``detected_at`` (epoch ms; None: the event's own time, as backtests
        report it) is only copied into the alert; no signal reads it.
        """
        out: list[Outcome | None] = [None] * len(judged)
        rows: list[list[float]] = []
        jobs: list[_Job] = []
        for i, (v, merchant, signals, row) in enumerate(judged):
            if row is None:
                out[i] = Outcome(v.event, None, duplicate=True)
                continue
            rows.append(row)
            jobs.append((i, v, merchant, signals, self.policies.at(v.event.ts)))
        if not jobs:
            return cast("list[Outcome]", out)
        scores = self._scores(rows, jobs)
        alerting = [
            scores[j] >= point.threshold or any(s.always_alert for s in signals)
            for j, (_, _, _, signals, point) in enumerate(jobs)
        ]
        # Explanations from the model's contributions, for the alerts a model scored only.
        explained = [
            j for j, job in enumerate(jobs) if alerting[j] and job[4].model.kind != FORMULA
        ]
        contributions = _per_model(rows, jobs, explained, "contributions")
        for j, (i, v, merchant, signals, point) in enumerate(jobs):
            score = scores[j]
            alert = None
            if alerting[j]:
                when = v.event.ts if detected_at is None else detected_at
                alert = self._alert(
                    v, merchant, score, signals, point, rows[j], contributions.get(j), when
                )
            out[i] = Outcome(
                v.event, alert, v.late, False, score, tuple(signals), point.version, rows[j]
            )
        return cast("list[Outcome]", out)

    def _merchant_signals(self, v: CardVerdict, merchant: MerchantView) -> list[Signal]:
        signals = list(v.signals)
        mw = MerchantWindow(v.event, v.amount, self.base, merchant, self.ruleset)
        risk = merchant_risk(mw)
        if risk is not None:
            signals.append(risk)
        # The merchant's ticket only speaks where the card's own habit did not.
        if not any(s.rule == "amount_vs_habit" for s in v.signals):
            ticket = amount_vs_merchant(mw)
            if ticket is not None:
                signals.append(ticket)
        return signals

    def _scores(self, rows: list[list[float]], jobs: list[_Job]) -> list[float]:
        """Each job's score: the formula in Python, a model in one call per operating point."""
        scores = [0.0] * len(jobs)
        for j, job in enumerate(jobs):
            if job[4].model.kind == FORMULA:
                scores[j] = self.scorer.score(job[3])
        modelled = [j for j, job in enumerate(jobs) if job[4].model.kind != FORMULA]
        for j, score in _per_model(rows, jobs, modelled, "predict").items():
            scores[j] = score
        return scores

    # ------------------------------------------------------------------ state

    def _profile_start(self, state: CardHistory, pos: int, ts: int) -> int:
        lo = max(0, pos - self.profile_size)
        since = ts - self.profile_ms
        ev = state.ev
        while lo < pos and ev[lo * STRIDE] < since:
            lo += 1
        return lo

    def _insert(self, state: CardHistory, pos: int, e: CardEvent, amount: float) -> None:
        row = (float(e.ts), amount, e.latitude, e.longitude, 1.0 if e.card_present else 0.0)
        if pos == len(state.ids):
            state.ev.extend(row)
            state.cc.append(e.country)
            state.ids.append(e.transaction_id)
        else:
            at = pos * STRIDE
            state.ev[at:at] = array("d", row)
            state.cc.insert(pos, e.country)
            state.ids.insert(pos, e.transaction_id)
        state.max_ts = max(state.max_ts, e.ts)

    def _prune(self, state: CardHistory) -> None:
        """Drop what no signal can use any more, judged by the card's own newest event time.

        Kept: everything inside the short windows (plus lateness), up to ``max_window_events``,
        and the newest ``profile_size`` transactions inside the profile horizon.
        """
        self._prune_dedupe(state)
        state.prune_labels(state.max_ts - self.compromised_ms - self.lateness_ms)
        n = len(state.ids)
        if n <= self.profile_size:
            oldest_useful = state.max_ts - self.profile_ms - self.lateness_ms
            if n == 0 or state.ev[0] >= oldest_useful:
                return
        ev = state.ev
        short_since = state.max_ts - self.short_ms
        keep_short = n
        while keep_short > 0 and ev[(keep_short - 1) * STRIDE] >= short_since:
            keep_short -= 1
        # The newest profile_size among transactions no arrival can still precede, plus all
        # newer ones: so a later transaction never pushes one out of an earlier one's profile.
        settled = n
        settled_until = state.max_ts - self.lateness_ms
        while settled > 0 and ev[(settled - 1) * STRIDE] > settled_until:
            settled -= 1
        keep_profile = max(0, settled - self.profile_size)
        profile_since = state.max_ts - self.profile_ms - self.lateness_ms
        while keep_profile < n and ev[keep_profile * STRIDE] < profile_since:
            keep_profile += 1
        start = min(keep_short, keep_profile)
        start = max(start, n - self.max_window_events)
        if start > 0:
            for i in range(start):
                state.remember(id_hash(state.ids[i]), int(ev[i * STRIDE]))
            del state.ev[: start * STRIDE]
            del state.cc[:start]
            del state.ids[:start]

    def _prune_dedupe(self, state: CardHistory) -> None:
        """Forget remembered ids older than the dedupe horizon."""
        if not state.dt or state.dh is None:
            return
        since = state.max_ts - self.dedupe_ms
        if min(state.dt) >= since:
            return
        dh, dt = state.dh, state.dt
        keep = [i for i, t in enumerate(dt) if t >= since]
        if keep:
            state.dh = array("q", [dh[i] for i in keep])
            state.dt = array("q", [dt[i] for i in keep])
        else:
            state.dh = state.dt = None

    # ------------------------------------------------------------------ alert

    def _evidence(self, state: CardHistory, signals: list[Signal]) -> tuple[dict[str, Any], ...]:
        """Rows of the kept transactions the signals point at (before ``e`` is inserted)."""
        idx = sorted({i for s in signals for i in s.evidence})
        ev = state.ev
        rows = []
        for i in idx:
            at = i * STRIDE
            rows.append(
                _evidence_row(
                    state.ids[i],
                    ev[at + TS],
                    ev[at + AMT],
                    ev[at + LAT],
                    ev[at + LON],
                    state.cc[i],
                    ev[at + CP],
                )
            )
        return tuple(rows)

    def _alert(
        self,
        v: CardVerdict,
        merchant: MerchantView,
        score: float,
        signals: list[Signal],
        point: OperatingPoint,
        row: list[float],
        contributions: list[float] | None,
        detected_at: int,
    ) -> Alert:
        e = v.event
        if contributions is None:
            reasons = tuple(
                Reason(s.rule, self.scorer.alone(s), s.detail) for s in explain(signals)
            )
        else:
            fired = {s.rule: s for s in signals}
            bias = contributions[-1]
            delay = self.ruleset.labels.label_delay_days
            reasons = tuple(
                Reason(
                    family,
                    round(sigmoid(bias + c), 4),
                    sentence(family, v, merchant, row, fired, self.base, delay),
                )
                for family, c in top_families(contributions, signals)
            )
        this = _evidence_row(
            e.transaction_id,
            e.ts,
            v.amount,
            e.latitude,
            e.longitude,
            e.country,
            1.0 if e.card_present else 0.0,
        )
        rows = (*v.evidence, this)
        return Alert(
            alert_id=alert_id_for(e.card_token, e.transaction_id),
            event=e,
            score=score,
            severity=point.severity_bands(self.ruleset.severity).severity(
                score, any(s.always_alert for s in signals)
            ),
            reasons=reasons,
            evidence=tuple(r["transaction_id"] for r in rows),
            evidence_txns=rows,
            ruleset_version=self.ruleset.version,
            detected_at=detected_at,
            base_currency=self.base,
            late=v.late,
            model_version=point.version,
        )


def _evidence_row(
    txn_id: str, ts: float, amount: float, lat: float, lon: float, country: str, cp: float
) -> dict[str, Any]:
    return {
        "transaction_id": txn_id,
        "timestamp": format_ts(datetime.fromtimestamp(ts / 1000, UTC)),
        "amount_base": round(amount, 2),
        "latitude": lat,
        "longitude": lon,
        "country": country,
        "channel": "card_present" if cp else "card_not_present",
    }
