"""Merchant risk learned from delayed fraud labels: one merchant's daily counts and labels.

Per merchant the state keeps, for the last ``label_delay_days + 32`` days, how many
transactions it took per day (and their mean log amount), plus the fraud labels reported on
its transactions. For a transaction at event time ``t`` on day ``D`` it gives:

- the handbook's merchant risk: the fraud share among the merchant's transactions in the 1, 7
  and 30 days that end ``label_delay_days`` before ``D`` (days ``D-delay-k .. D-delay-1``),
  counting only labels reported at or before ``t``;
- the recent known frauds: transactions since then (days ``D-delay .. D``) whose fraud is
  already reported by ``t`` (fast chargebacks and analysts' confirmations), over the
  transactions of days ``D-delay .. D-2``;
- its typical ticket: the geometric mean amount over days ``D-31 .. D-2``.

Counts only use days that ended at least a day before ``D``, so a transaction's view does not
depend on how the input partitions interleave around midnight: the stream and the backtest
see the same numbers. Frauds are counted from the labels alone (a label names its merchant and
the transaction's time), so a label may arrive before or after the transaction it is about.
"""

from __future__ import annotations

import math
import pickle
import struct
from array import array
from collections.abc import Iterable
from typing import NamedTuple, Protocol, TypeVar

from dataflows.detection.labels import LabelRow, add_label, fraud_known_at, id_hash
from fraudwatch.contract import CardEvent, LabelEvent

DAY_MS = 86_400_000
WINDOWS_DAYS = (1, 7, 30)
_TYPICAL_DAYS = 30
_LOG_SCALE = 2**32  # fixed-point unit of the daily log-amount sums
_GUARD_DAYS = 1  # the newest complete day used is D-2... see the module docstring


class MerchantView(NamedTuple):
    """What the merchant stage knew about a transaction's merchant at its event time."""

    n_1d: int
    n_7d: int
    n_30d: int
    fraud_1d: int
    fraud_7d: int
    fraud_30d: int
    recent_n: int
    recent_fraud: int
    typical_amount: float  # geometric mean ticket in the base currency, 0.0 if unknown
    typical_n: int

    def risk(self, k: int) -> float:
        """The handbook's raw fraud share of the k-day delayed window (0 with no sales)."""
        n, f = {1: (self.n_1d, self.fraud_1d), 7: (self.n_7d, self.fraud_7d)}.get(
            k, (self.n_30d, self.fraud_30d)
        )
        return f / n if n else 0.0


NO_MERCHANT_VIEW = MerchantView(0, 0, 0, 0, 0, 0, 0, 0, 0.0, 0)


# A label on a merchant: (reported ms, fraud 1/0, id hash, transaction day).
MerchantLabel = tuple[int, int, int, int]


class MerchantState:
    """One merchant's daily counts and labels; see the module docstring."""

    __slots__ = ("_cached", "_cached_day", "counts", "days", "labels", "lognum", "logs")

    def __init__(self) -> None:
        self.days = array("i")  # day numbers (epoch days), ascending
        self.counts = array("i")  # transactions that day
        # Sum of log(amount) of that day's positive amounts, in fixed point: integer sums are
        # exact in any order, so the view does not depend on how partitions interleave.
        self.logs = array("q")
        self.lognum = array("i")  # how many positive amounts that is
        self.labels: list[MerchantLabel] = []
        # The counts part of a view depends only on the day (and the days before yesterday):
        # a busy merchant's transactions of one day share it. Not part of the packed state.
        self._cached_day = -1
        self._cached: tuple[int, int, int, int, int, int] = (0, 0, 0, 0, 0, 0)

    def add(self, ts: int, amount: float) -> None:
        """Count one transaction at event time ``ts``."""
        day = ts // DAY_MS
        if day <= self._cached_day - 1 - _GUARD_DAYS:
            self._cached_day = -1  # a late count for a day the cached view used
        days = self.days
        i = len(days) - 1
        while i >= 0 and days[i] > day:
            i -= 1
        if i >= 0 and days[i] == day:
            self.counts[i] += 1
        else:
            i += 1
            days.insert(i, day)
            self.counts.insert(i, 1)
            self.logs.insert(i, 0)
            self.lognum.insert(i, 0)
        if amount > 0:
            self.logs[i] += round(math.log(amount) * _LOG_SCALE)
            self.lognum[i] += 1

    def add_label(self, label: LabelEvent) -> bool:
        """Keep a label on one of this merchant's transactions (idempotent)."""
        row = (
            label.reported_ts,
            int(label.fraud),
            id_hash(label.transaction_id),
            label.ts // DAY_MS,
        )
        return add_label(self.labels, row)

    def view(self, ts: int, delay_days: int) -> MerchantView:
        """The merchant as known at event time ``ts`` (before counting that transaction)."""
        day = ts // DAY_MS
        delayed_end = day - delay_days - 1  # last day of the delayed windows
        if day != self._cached_day:
            self._cached = self._counts(day, delayed_end)
            self._cached_day = day
        n1, n7, n30, recent_n, log_sum, log_n = self._cached
        f = [0, 0, 0]
        recent_f = 0
        if self.labels:
            known = fraud_known_at(self._label_rows(), ts)
            tx_day = {h: d for _, _, h, d in self.labels}
            for h, fraud in known.items():
                if not fraud:
                    continue
                d = tx_day[h]
                if d <= delayed_end:
                    age = delayed_end - d
                    for j, k in enumerate(WINDOWS_DAYS):
                        if age < k:
                            f[j] += 1
                elif d <= day:
                    recent_f += 1
        typical = math.exp(log_sum / _LOG_SCALE / log_n) if log_n else 0.0
        return MerchantView(n1, n7, n30, f[0], f[1], f[2], recent_n, recent_f, typical, log_n)

    def _counts(self, day: int, delayed_end: int) -> tuple[int, int, int, int, int, int]:
        """Sales in the delayed 1/7/30-day windows and since, and the typical ticket's sums."""
        newest = day - 1 - _GUARD_DAYS  # newest day whose count is used
        n = [0, 0, 0]
        recent_n = 0
        log_sum = 0
        log_n = 0
        for d, c, ls, ln in zip(self.days, self.counts, self.logs, self.lognum, strict=True):
            if d > newest:
                break
            if d <= delayed_end:
                age = delayed_end - d  # 0 = the newest delayed day
                for j, k in enumerate(WINDOWS_DAYS):
                    if age < k:
                        n[j] += c
            else:
                recent_n += c
            if d > newest - _TYPICAL_DAYS:
                log_sum += ls
                log_n += ln
        return n[0], n[1], n[2], recent_n, log_sum, log_n

    def _label_rows(self) -> list[LabelRow]:
        return [(r, fr, h) for r, fr, h, _ in self.labels]

    def prune(self, newest_day: int, keep_days: int) -> None:
        """Forget days (and labels on transactions of days) older than ``keep_days``."""
        oldest = newest_day - keep_days
        cut = 0
        while cut < len(self.days) and self.days[cut] < oldest:
            cut += 1
        if cut:
            del self.days[:cut], self.counts[:cut], self.logs[:cut], self.lognum[:cut]
            self._cached_day = -1
        if self.labels and min(r[3] for r in self.labels) < oldest:
            self.labels = [r for r in self.labels if r[3] >= oldest]

    @property
    def last_day(self) -> int:
        """The newest day with a transaction, or of a label's transaction when there is none
        (a label alone must not move the window past the merchant's own sales)."""
        if self.days:
            return self.days[-1]
        return max((r[3] for r in self.labels), default=-1)

    def pack(self) -> bytes:
        body = (
            self.days.tobytes(),
            self.counts.tobytes(),
            self.logs.tobytes(),
            self.lognum.tobytes(),
            tuple(self.labels) if self.labels else None,
        )
        return _HEADER.pack(self.last_day) + pickle.dumps(body, 5)

    @classmethod
    def unpack(cls, blob: bytes) -> MerchantState:
        days, counts, logs, lognum, labels = pickle.loads(  # noqa: S301 - our own state
            memoryview(blob)[_HEADER.size :]
        )
        m = cls()
        m.days.frombytes(days)
        m.counts.frombytes(counts)
        m.logs.frombytes(logs)
        m.lognum.frombytes(lognum)
        if labels:
            m.labels = list(labels)
        return m


_HEADER = struct.Struct("<q")

# A merchant shard's snapshot: merchant id -> packed state.
MerchantSnapshot = dict[str, bytes]


class Verdict(Protocol):
    """What the merchant stage needs of a card verdict (``detector.CardVerdict``)."""

    @property
    def event(self) -> CardEvent: ...
    @property
    def amount(self) -> float: ...
    @property
    def duplicate(self) -> bool: ...


V = TypeVar("V", bound=Verdict)


class MerchantBook:
    """One shard's merchants, kept as working objects and packed only for snapshots.

    Unlike cards (millions, kept packed to bound memory), merchants are few and busy: a batch
    touches most of a shard's merchants, so packing them after every batch cost more than
    packing them once per snapshot.

    ``observe`` gives each transaction its merchant's view and then counts it.
    """

    __slots__ = ("delay_days", "keep_days", "merchants")

    def __init__(self, delay_days: int, merchants: MerchantSnapshot | None = None) -> None:
        self.delay_days = delay_days
        # Delayed 30-day window + the delay + the guard day + today.
        self.keep_days = delay_days + max(WINDOWS_DAYS) + _GUARD_DAYS + 2
        self.merchants: dict[str, MerchantState] = {
            mid: MerchantState.unpack(blob) for mid, blob in (merchants or {}).items()
        }

    def __len__(self) -> int:
        return len(self.merchants)

    def observe(self, items: Iterable[V | LabelEvent]) -> list[tuple[V, MerchantView]]:
        """Views for the card verdicts among ``items`` (in order), each counted after its
        view unless it is a duplicate; labels are stored."""
        merchants = self.merchants
        touched: set[str] = set()
        out: list[tuple[V, MerchantView]] = []
        delay = self.delay_days
        for item in items:
            mid = item.merchant_id if isinstance(item, LabelEvent) else item.event.merchant_id
            state = merchants.get(mid)
            if state is None:
                state = merchants[mid] = MerchantState()
            touched.add(mid)
            if isinstance(item, LabelEvent):
                state.add_label(item)
                continue
            e = item.event
            out.append((item, state.view(e.ts, delay)))
            if not item.duplicate:
                state.add(e.ts, item.amount)
        for mid in touched:
            state = merchants[mid]
            state.prune(state.last_day, self.keep_days)
        return out

    def state_of(self, merchant_id: str) -> MerchantState | None:
        blob = self.snapshot().get(merchant_id)
        return None if blob is None else MerchantState.unpack(blob)

    def evict(self, newest_ts: int) -> int:
        """Forget merchants with nothing left that any window could use."""
        newest_day = newest_ts // DAY_MS
        idle = [m for m, s in self.merchants.items() if newest_day - s.last_day > self.keep_days]
        for mid in idle:
            del self.merchants[mid]
        return len(idle)

    def snapshot(self) -> MerchantSnapshot:
        """Every merchant packed (independent of later changes)."""
        return {mid: state.pack() for mid, state in self.merchants.items()}
