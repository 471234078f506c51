"""One card's state: what its signals need, and nothing else (no PAN), bounded by event time.

``ev`` holds the card's kept transactions sorted by event time (STRIDE doubles each); ``cc``
and ``ids`` are the parallel country codes and transaction ids. ``dh``/``dt`` remember the ids
(64-bit hashes) and event times of transactions judged but no longer kept, for duplicate
detection. ``hab`` holds the card's habits as exponentially decayed counts and amounts over
1, 7 and 30 days (a few doubles instead of 30 days of transactions). ``lab`` holds the labels
reported on this card (``labels.LabelRow``).
"""

from __future__ import annotations

import math
import pickle
import struct
from array import array
from typing import NamedTuple

from dataflows.detection.labels import LabelRow, add_label

# One transaction in state is STRIDE doubles in ``CardHistory.ev``: event time (epoch ms),
# amount in the base currency, latitude, longitude, card-present flag.
STRIDE = 5
TS, AMT, LAT, LON, CP = range(STRIDE)

DAY_MS = 86_400_000
# Decay time constants of the habits: 1, 7 and 30 days.
HABIT_TAUS_MS = (DAY_MS, 7 * DAY_MS, 30 * DAY_MS)
# ``hab`` layout: first seen, settled up to (event time of the newest settled transaction),
# then the decayed counts and decayed amounts per tau as of that time.
_FIRST, _LAST = 0, 1
_HAB_LEN = 2 + 2 * len(HABIT_TAUS_MS)


class Habit(NamedTuple):
    """A card's habits as of one event time (before the transaction judged at that time).

    ``count_*`` are decayed transaction counts (about "transactions in the last N days" for a
    steady card); ``amount_*`` decayed sums of amounts; ``history_days`` how long the card has
    been seen. A card seen for the first time has all zeros.
    """

    history_days: float
    count_1d: float
    count_7d: float
    count_30d: float
    amount_1d: float
    amount_7d: float
    amount_30d: float

    @property
    def month_days(self) -> float:
        """The effective length in days of the 30-day decayed window for this card's history.

        A decayed sum over a history of ``h`` days covers ``30 * (1 - exp(-h / 30))`` days'
        worth of weight, so a young card's daily rate is not underestimated.
        """
        return max(1.0, 30.0 * -math.expm1(-self.history_days / 30.0))

    @property
    def daily_count(self) -> float:
        """Usual transactions per day, from the 30-day decayed count."""
        return self.count_30d / self.month_days

    @property
    def daily_amount(self) -> float:
        """Usual spend per day, in the base currency."""
        return self.amount_30d / self.month_days


NO_HABIT = Habit(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


class CardHistory:
    """The state of one card; see the module docstring."""

    __slots__ = ("cc", "dh", "dt", "ev", "hab", "ids", "lab", "max_ts")

    def __init__(self) -> None:
        self.ev = array("d")
        self.cc: list[str] = []
        self.ids: list[str] = []
        self.max_ts = -1
        # Allocated on first use: most cards never drop an id inside the dedupe horizon, and
        # two empty arrays would cost 160 bytes on every card.
        self.dh: array[int] | None = None
        self.dt: array[int] | None = None
        self.hab: array[float] | None = None
        self.lab: list[LabelRow] | None = None

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

    @property
    def first_seen(self) -> float | None:
        """Event time of the card's first transaction judged in the windows (None: none)."""
        first = self.hab[_FIRST] if self.hab is not None else None
        if self.ids and (first is None or self.ev[0] < first):
            first = self.ev[0]
        return first

    def habit_at(self, t: int, pos: int) -> Habit:
        """The card's habits at event time ``t``, from its transactions before index ``pos``.

        ``hab`` aggregates the settled transactions (see ``settle``); the kept ones after the
        settled time and before ``pos`` are added on the fly, so a habit never includes a
        transaction with a later event time, whatever the arrival order.
        """
        h = self.hab
        ev = self.ev
        settled = h[_LAST] if h is not None else -math.inf
        counts = [0.0, 0.0, 0.0]
        amounts = [0.0, 0.0, 0.0]
        first = h[_FIRST] if h is not None else math.inf
        if h is not None:
            # A late transaction (before the settled time) sees the aggregate as it stands:
            # never decay backwards, which would inflate it without bound.
            dt = max(0.0, t - settled)
            for i, tau in enumerate(HABIT_TAUS_MS):
                d = math.exp(-dt / tau)
                counts[i] = h[2 + i] * d
                amounts[i] = h[5 + i] * d
        j = pos - 1
        while j >= 0 and ev[j * STRIDE] > settled:
            ts = ev[j * STRIDE]
            amount = ev[j * STRIDE + AMT]
            for i, tau in enumerate(HABIT_TAUS_MS):
                d = math.exp(-(t - ts) / tau)
                counts[i] += d
                amounts[i] += d * amount
            first = min(first, ts)
            j -= 1
        if first == math.inf:
            return NO_HABIT
        return Habit(max(0.0, (t - first) / DAY_MS), *counts, *amounts)

    def settle(self, boundary: int) -> None:
        """Fold the kept transactions with event time up to ``boundary`` into ``hab``.

        ``boundary`` is the newest event time minus the allowed lateness: no transaction at or
        before it can still be placed in the windows, so the aggregate is final up to there and
        is the same for every arrival order.
        """
        h = self.hab
        ev = self.ev
        settled = h[_LAST] if h is not None else -math.inf
        n = len(self.ids)
        i = n
        while i > 0 and ev[(i - 1) * STRIDE] > settled:
            i -= 1
        while i < n and ev[i * STRIDE] <= boundary:
            ts = ev[i * STRIDE]
            amount = ev[i * STRIDE + AMT]
            if h is None:
                h = self.hab = array("d", [ts, ts] + [0.0] * (_HAB_LEN - 2))
            dt = ts - h[_LAST]
            for k, tau in enumerate(HABIT_TAUS_MS):
                d = math.exp(-dt / tau)
                h[2 + k] = h[2 + k] * d + 1.0
                h[5 + k] = h[5 + k] * d + amount
            h[_LAST] = ts
            i += 1

    def add_label(self, row: LabelRow) -> bool:
        """Keep a label reported on this card (idempotent). True if it was new."""
        if self.lab is None:
            self.lab = []
        return add_label(self.lab, row)

    def compromised_at(self, t: int, period_ms: int) -> LabelRow | None:
        """The fraud label that makes the card known-compromised at event time ``t``, if any.

        Each labelled transaction has the verdict of its newest label reported at or before
        ``t`` (a lost dispute reverses a fraud). The card is compromised by its newest fraud
        verdict reported within ``period_ms``, unless a genuine verdict on a transaction never
        reported as fraud came after it (an analyst found the card's later use genuine).
        """
        if not self.lab:
            return None
        newest: dict[int, LabelRow] = {}
        ever_fraud: set[int] = set()
        for row in self.lab:
            if row[0] > t:
                break
            newest[row[2]] = row
            if row[1]:
                ever_fraud.add(row[2])
        fraud = max((r for r in newest.values() if r[1]), default=None)
        if fraud is None or t - fraud[0] > period_ms:
            return None
        # A genuine verdict on a transaction never reported as fraud clears the card; a lost
        # dispute (genuine after fraud on the same transaction) only reverses that one.
        if any(not r[1] and r[0] > fraud[0] and r[2] not in ever_fraud for r in newest.values()):
            return None
        return fraud

    def reset(self) -> None:
        """Forget everything: what eviction does to a card idle past every horizon."""
        self.__init__()  # type: ignore[misc]

    def prune_labels(self, keep_since: int) -> None:
        """Forget labels reported before ``keep_since``: they can no longer change a score."""
        if self.lab and self.lab[0][0] < keep_since:
            kept = [r for r in self.lab if r[0] >= keep_since]
            self.lab = kept or None

    @property
    def last_activity(self) -> int:
        """Newest event time of a transaction or a label on this card (for eviction)."""
        newest_label = self.lab[-1][0] if self.lab else -1
        return max(self.max_ts, newest_label)

    def pack(self, partition: int) -> bytes:
        """The state at rest: one compact ``bytes`` (what a card costs in memory and snapshots).

        A fixed header (last activity, source partition) lets eviction read a card without
        unpacking it (``packed_header``); the rest is a pickle of flat fields.
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
            self.max_ts,
            self.hab.tobytes() if self.hab else None,
            tuple(self.lab) if self.lab else None,
        )
        return _HEADER.pack(self.last_activity, partition) + pickle.dumps(body, _PICKLE_PROTOCOL)

    @classmethod
    def unpack(cls, blob: bytes) -> CardHistory:
        """The working form of ``pack``'s output."""
        ev, cc, ids, dh, dt, max_ts, hab, lab = pickle.loads(  # noqa: S301 - our own state
            memoryview(blob)[_HEADER.size :]
        )
        state = cls()
        state.ev.frombytes(ev)
        state.cc = [cc[i : i + 2] for i in range(0, len(cc), 2)]
        state.ids = list(ids)
        state.max_ts = max_ts
        if dh:
            state.dh, state.dt = array("q", dh), array("q", dt)
        if hab:
            state.hab = array("d", hab)
        if lab:
            state.lab = list(lab)
        return state


# Last activity (epoch ms) and source partition, ahead of the packed fields.
_HEADER = struct.Struct("<qi")
_PICKLE_PROTOCOL = 5


def packed_header(blob: bytes) -> tuple[int, int]:
    """(last activity, source partition) of a packed card, without unpacking it."""
    last, partition = _HEADER.unpack_from(blob)
    return last, partition
