"""The detection core: compact per-card state and the rules that judge each transaction.

Pure Python (no Bytewax, Kafka or MongoDB): the streaming dataflow and the file backtest run
exactly this code, so they produce identical alerts for the same per-card order.

Each transaction is judged the moment it arrives, against a look-back window that ends at its
own event time: only the card's transactions with an event time at or before it count, so an
out-of-order arrival (within the allowed lateness) is judged as of its own time and no alert
ever depends on a later transaction. No rule reads the wall clock.
"""

from __future__ import annotations

import math
import pickle
import struct
from array import array
from datetime import UTC, datetime
from hashlib import blake2b
from typing import Any, NamedTuple

from dataflows.ruleset import SEVERITY_RANK, RuleSet
from fraudwatch.contract import Alert, CardEvent, Reason, alert_id_for, format_ts
from fraudwatch.geo import haversine_km

# One transaction in state is STRIDE doubles in ``CardState.ev``: event time (epoch ms),
# amount in the base currency, latitude, longitude, card-present flag.
STRIDE = 5
_TS, _AMT, _LAT, _LON, _CP = range(STRIDE)


class CardState:
    """What one card's rules need, and nothing else: no PAN, bounded by event time and count.

    ``ev`` holds the card's kept transactions sorted by event time (STRIDE doubles each);
    ``cc`` and ``ids`` are the parallel country codes and transaction ids. ``dh``/``dt`` remember
    the ids (64-bit hashes) and event times of transactions judged but no longer kept (pruned,
    or late), for duplicate detection within the rule set's dedupe horizon.
    """

    __slots__ = ("cc", "dh", "dt", "ev", "ids", "max_ts")

    def __init__(self) -> None:
        self.ev = array("d")
        self.cc: list[str] = []
        self.ids: list[str] = []
        self.max_ts = -1
        # Allocated on first use: most cards never drop an id inside the dedupe horizon, and
        # two empty arrays would cost 160 bytes on every card.
        self.dh: array[int] | None = None
        self.dt: array[int] | None = None

    def remember(self, id_h: int, ts: int) -> None:
        """Keep a judged id that is not (or no longer) in ``ids`` for duplicate detection."""
        if self.dh is None or self.dt is None:
            self.dh, self.dt = array("q"), array("q")
        self.dh.append(id_h)
        self.dt.append(ts)

    def __len__(self) -> int:
        return len(self.ids)

    def ts(self, i: int) -> float:
        return self.ev[i * STRIDE]

    def pack(self, partition: int) -> bytes:
        """The state at rest: one compact ``bytes`` (what a card costs in memory and snapshots).

        A fixed header (newest event time, source partition) lets eviction read a card
        without unpacking it (``packed_header``); the rest is a pickle of flat fields.
        """
        cc = "".join(self.cc)
        if len(cc) != 2 * len(self.cc):
            raise ValueError(f"country codes must be 2 letters: {self.cc}")
        body = (
            self.ev.tobytes(),
            cc,
            tuple(self.ids),
            self.dh.tobytes() if self.dh else None,
            self.dt.tobytes() if self.dt else None,
        )
        return _HEADER.pack(self.max_ts, partition) + pickle.dumps(body, _PICKLE_PROTOCOL)

    @classmethod
    def unpack(cls, blob: bytes) -> CardState:
        """The working form of ``pack``'s output."""
        max_ts, _ = _HEADER.unpack_from(blob)
        ev, cc, ids, dh, dt = pickle.loads(memoryview(blob)[_HEADER.size :])  # noqa: S301 - our own state
        state = cls()
        state.ev.frombytes(ev)
        state.cc = [cc[i : i + 2] for i in range(0, len(cc), 2)]
        state.ids = list(ids)
        state.max_ts = max_ts
        if dh:
            state.dh, state.dt = array("q", dh), array("q", dt)
        return state


# Newest event time (epoch ms) and source partition, ahead of the packed fields.
_HEADER = struct.Struct("<qi")
_PICKLE_PROTOCOL = 5


def packed_header(blob: bytes) -> tuple[int, int]:
    """(newest event time, source partition) of a packed card, without unpacking it."""
    max_ts, partition = _HEADER.unpack_from(blob)
    return max_ts, partition


def id_hash(transaction_id: str) -> int:
    """A stable 64-bit hash of a transaction id (the same in every process and run)."""
    return int.from_bytes(
        blake2b(transaction_id.encode(), digest_size=8).digest(), "big", signed=True
    )


class Outcome(NamedTuple):
    """What happened to one transaction: at most one alert, and how it was treated."""

    event: CardEvent
    alert: Alert | None
    late: bool = False
    duplicate: bool = False


def _fmt(x: float) -> str:
    return f"{x:,.2f}"


def _median(xs: list[float]) -> float:
    s = sorted(xs)
    n = len(s)
    mid = n // 2
    return s[mid] if n % 2 else (s[mid - 1] + s[mid]) / 2


class Detector:
    """Applies a rule set to one card's state and one transaction at a time."""

    def __init__(self, ruleset: RuleSet) -> None:
        self.ruleset = ruleset
        r = ruleset.rules
        self.base = ruleset.currency.base
        self.rates = ruleset.currency.rates
        self.lateness_ms = int(ruleset.engine.allowed_lateness_minutes * 60_000)
        self.profile_size = ruleset.engine.profile_size
        self.profile_ms = ruleset.profile_horizon_ms
        self.short_ms = ruleset.short_horizon_ms
        self.max_window_events = ruleset.engine.max_window_events
        self.dedupe_ms = ruleset.dedupe_horizon_ms
        self.r = r
        self.vc_ms = int(r.velocity_count.window_minutes * 60_000)
        self.va_ms = int(r.velocity_amount.window_minutes * 60_000)
        self.ct_ms = int(r.card_testing.window_minutes * 60_000)

    # ------------------------------------------------------------------ public

    def amount_in_base(self, amount: float, currency: str) -> float:
        rate = self.rates.get(currency)
        if rate is None:
            raise ValueError(f"no exchange rate for {currency} in the rule set")
        return amount * rate

    def process(self, state: CardState, e: CardEvent, detected_at: int) -> Outcome:
        """Judge ``e`` against ``state`` (as of ``e``'s event time), then add it to ``state``.

        ``detected_at`` (epoch ms) is only copied into the alert; no rule reads it.
        """
        if e.transaction_id in state.ids:
            return Outcome(e, None, duplicate=True)
        if state.dh and id_hash(e.transaction_id) in state.dh:
            return Outcome(e, None, duplicate=True)
        amount = self.amount_in_base(e.amount, e.currency)
        late = state.max_ts >= 0 and e.ts < state.max_ts - self.lateness_ms
        ev = state.ev
        n = len(state.ids)
        # Insertion point: after every kept transaction with event time <= e.ts.
        pos = n
        while pos > 0 and ev[(pos - 1) * STRIDE] > e.ts:
            pos -= 1

        reasons: list[Reason] = []
        evidence: set[int] = set()  # indices into state; -1 = e itself
        self._high_amount(e, amount, reasons)
        if not late:
            self._velocity_count(state, pos, e, reasons, evidence)
            self._velocity_amount(state, pos, e, amount, reasons, evidence)
            self._card_testing(state, pos, e, amount, reasons, evidence)
            self._impossible_travel(state, pos, e, reasons, evidence)
            lo = self._profile_start(state, pos, e.ts)
            self._amount_spike(state, lo, pos, amount, reasons)
            self._location_anomaly(state, lo, pos, e, reasons)
            self._insert(state, pos, e, amount)

        alert = (
            self._alert(state, e, amount, reasons, evidence, detected_at, late) if reasons else None
        )
        if late:
            if e.ts >= state.max_ts - self.dedupe_ms:
                state.remember(id_hash(e.transaction_id), e.ts)
        else:
            self._prune(state)
        return Outcome(e, alert, late=late)

    # ------------------------------------------------------------------ rules

    def _high_amount(self, e: CardEvent, amount: float, reasons: list[Reason]) -> None:
        rule = self.r.high_amount
        if rule.enabled and amount > rule.limit:
            orig = "" if e.currency == self.base else f" ({_fmt(e.amount)} {e.currency})"
            reasons.append(
                Reason(
                    "high_amount",
                    rule.score,
                    f"amount {_fmt(amount)} {self.base}{orig} is above the single-transaction "
                    f"limit of {_fmt(rule.limit)} {self.base}",
                )
            )

    def _window_start(self, state: CardState, pos: int, since_exclusive: float) -> int:
        ev = state.ev
        lo = pos
        while lo > 0 and ev[(lo - 1) * STRIDE] > since_exclusive:
            lo -= 1
        return lo

    def _velocity_count(
        self, state: CardState, pos: int, e: CardEvent, reasons: list[Reason], evidence: set[int]
    ) -> None:
        rule = self.r.velocity_count
        if not rule.enabled:
            return
        lo = self._window_start(state, pos, e.ts - self.vc_ms)
        count = pos - lo + 1
        if count > rule.max_count:
            span_min = (e.ts - state.ts(lo)) / 60_000 if lo < pos else 0.0
            reasons.append(
                Reason(
                    "velocity_count",
                    rule.score,
                    f"{count} transactions within {span_min:.1f} min (limit {rule.max_count} "
                    f"in {rule.window_minutes:g} min)",
                )
            )
            evidence.update(range(lo, pos))

    def _velocity_amount(
        self,
        state: CardState,
        pos: int,
        e: CardEvent,
        amount: float,
        reasons: list[Reason],
        evidence: set[int],
    ) -> None:
        rule = self.r.velocity_amount
        if not rule.enabled:
            return
        lo = self._window_start(state, pos, e.ts - self.va_ms)
        count = pos - lo + 1
        if count < rule.min_count:
            return
        total = amount + sum(state.ev[lo * STRIDE + _AMT : pos * STRIDE : STRIDE])
        if total > rule.limit:
            reasons.append(
                Reason(
                    "velocity_amount",
                    rule.score,
                    f"{_fmt(total)} {self.base} spent in {count} transactions within "
                    f"{rule.window_minutes / 60:g} h (limit {_fmt(rule.limit)} {self.base})",
                )
            )
            evidence.update(range(lo, pos))

    def _card_testing(
        self,
        state: CardState,
        pos: int,
        e: CardEvent,
        amount: float,
        reasons: list[Reason],
        evidence: set[int],
    ) -> None:
        rule = self.r.card_testing
        if not rule.enabled or amount < rule.large_min:
            return
        lo = self._window_start(state, pos, e.ts - self.ct_ms)
        amounts = state.ev[lo * STRIDE + _AMT : pos * STRIDE : STRIDE]
        small = [lo + k for k, a in enumerate(amounts) if a <= rule.small_max]
        if len(small) >= rule.min_small:
            span_min = (e.ts - state.ts(small[0])) / 60_000
            reasons.append(
                Reason(
                    "card_testing",
                    rule.score,
                    f"{len(small)} small authorizations (at most {_fmt(rule.small_max)} "
                    f"{self.base}) in the {span_min:.0f} min before this {_fmt(amount)} "
                    f"{self.base} one (limit {rule.min_small - 1} within "
                    f"{rule.window_minutes:g} min)",
                )
            )
            evidence.update(small)

    def _impossible_travel(
        self, state: CardState, pos: int, e: CardEvent, reasons: list[Reason], evidence: set[int]
    ) -> None:
        rule = self.r.impossible_travel
        if not rule.enabled or e.channel != "card_present":
            return
        ev = state.ev
        j = pos - 1
        while j >= 0 and ev[j * STRIDE + _CP] == 0.0:
            j -= 1
        if j < 0:
            return
        base = j * STRIDE
        dist = haversine_km(ev[base + _LAT], ev[base + _LON], e.latitude, e.longitude)
        if dist < rule.min_distance_km:
            return
        hours = (e.ts - ev[base + _TS]) / 3_600_000
        speed = math.inf if hours <= 0 else dist / hours
        if speed > rule.max_speed_kmh:
            speed_txt = "instantly" if math.isinf(speed) else f"{speed:,.0f} km/h"
            reasons.append(
                Reason(
                    "impossible_travel",
                    rule.score,
                    f"card-present in {e.country} {dist:,.0f} km from the previous card-present "
                    f"use ({state.cc[j]}) {hours * 60:.0f} min earlier: {speed_txt} "
                    f"(limit {rule.max_speed_kmh:,.0f} km/h)",
                )
            )
            evidence.add(j)

    def _profile_start(self, state: CardState, pos: int, ts: int) -> int:
        lo = max(0, pos - self.profile_size)
        since = ts - self.profile_ms
        ev = state.ev
        while lo < pos and ev[lo * STRIDE] < since:
            lo += 1
        return lo

    def _amount_spike(
        self, state: CardState, lo: int, pos: int, amount: float, reasons: list[Reason]
    ) -> None:
        rule = self.r.amount_spike
        n = pos - lo
        if not rule.enabled or n < rule.min_history or amount < rule.min_amount:
            return
        amounts = state.ev[lo * STRIDE + _AMT : pos * STRIDE : STRIDE].tolist()
        med = _median(amounts)
        if amount < rule.min_ratio * med:
            return
        mad = _median([abs(a - med) for a in amounts])
        # A card with identical amounts has MAD 0; a floor keeps z finite and meaningful.
        sigma = max(1.4826 * mad, 0.1 * med, 1.0)
        z = (amount - med) / sigma
        if z >= rule.min_robust_z:
            reasons.append(
                Reason(
                    "amount_spike",
                    rule.score,
                    f"amount {_fmt(amount)} {self.base} is {amount / med:.1f}x this card's median "
                    f"of {_fmt(med)} {self.base} over its last {n} transactions (robust z "
                    f"{z:.1f}; limits {rule.min_ratio:g}x and z {rule.min_robust_z:g})",
                )
            )

    def _location_anomaly(
        self, state: CardState, lo: int, pos: int, e: CardEvent, reasons: list[Reason]
    ) -> None:
        rule = self.r.location_anomaly
        n = pos - lo
        if not rule.enabled or n < rule.min_history:
            return
        ev = state.ev
        nearest = min(
            haversine_km(ev[i * STRIDE + _LAT], ev[i * STRIDE + _LON], e.latitude, e.longitude)
            for i in range(lo, pos)
        )
        new_country = e.country not in state.cc[lo:pos]
        if new_country and nearest >= rule.new_country_min_km:
            detail = (
                f"first use in {e.country} among this card's last {n} transactions, "
                f"{nearest:,.0f} km from its nearest usual place (limit "
                f"{rule.new_country_min_km:,.0f} km for a new country)"
            )
        elif nearest >= rule.far_km:
            detail = (
                f"{nearest:,.0f} km from the nearest of this card's last {n} transaction "
                f"locations (limit {rule.far_km:,.0f} km)"
            )
        else:
            return
        reasons.append(Reason("location_anomaly", rule.score, detail))

    # ------------------------------------------------------------------ state

    def _insert(self, state: CardState, pos: int, e: CardEvent, amount: float) -> None:
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

    def _prune(self, state: CardState) -> None:
        """Drop what no rule can use any more, judged by the card's own newest event time.

        Kept: everything inside the short windows (plus lateness), up to ``max_window_events``,
        and the newest ``profile_size`` transactions inside the profile horizon.
        """
        self._prune_dedupe(state)
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
        keep_profile = max(0, n - self.profile_size)
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

    def _prune_dedupe(self, state: CardState) -> None:
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

    def _alert(
        self,
        state: CardState,
        e: CardEvent,
        amount: float,
        reasons: list[Reason],
        evidence: set[int],
        detected_at: int,
        late: bool,
    ) -> Alert:
        miss = 1.0
        for r in reasons:
            miss *= 1.0 - r.score
        score = round(1.0 - miss, 4)
        severity = self.ruleset.severity_for(score)
        for r in reasons:
            rule_sev = getattr(self.r, r.rule).severity
            if SEVERITY_RANK[rule_sev] > SEVERITY_RANK[severity]:
                severity = rule_sev
        # Evidence indices all lie before e's insertion point, so inserting e did not move them.
        ev = state.ev
        evidence_txns: list[dict[str, Any]] = []
        ids: list[str] = []
        for idx in sorted(evidence):
            base = idx * STRIDE
            ids.append(state.ids[idx])
            evidence_txns.append(
                _evidence_row(
                    state.ids[idx],
                    ev[base + _TS],
                    ev[base + _AMT],
                    ev[base + _LAT],
                    ev[base + _LON],
                    state.cc[idx],
                    ev[base + _CP],
                )
            )
        ids.append(e.transaction_id)
        evidence_txns.append(
            _evidence_row(
                e.transaction_id,
                e.ts,
                amount,
                e.latitude,
                e.longitude,
                e.country,
                1.0 if e.card_present else 0.0,
            )
        )
        return Alert(
            alert_id=alert_id_for(e.card_token, e.transaction_id),
            event=e,
            score=score,
            severity=severity,
            reasons=tuple(reasons),
            evidence=tuple(ids),
            evidence_txns=tuple(evidence_txns),
            ruleset_version=self.ruleset.version,
            detected_at=detected_at,
            base_currency=self.base,
            late=late,
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
