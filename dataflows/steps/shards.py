"""The two keyed stages as Bytewax state: a shard's ``CardBook`` or ``MerchantBook`` inside a
``StatefulBatchLogic``, with wall-clock eviction of idle entries.

Cards and merchants are packed into a fixed number of shards (``FRAUD_CARD_SHARDS``), one
Bytewax state key each, so the runtime moves one item per shard and batch. The logics only
adapt the books (``dataflows.detection``) to Bytewax; every decision is the core's.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol, TypeVar

from bytewax.operators import StatefulBatchLogic

from dataflows.detection.cardbook import BookSnapshot, CardBook, CardItem
from dataflows.detection.detector import CardVerdict, Detector, Judged
from dataflows.detection.merchant import MerchantBook, MerchantSnapshot
from dataflows.io import prometheus
from fraudwatch.contract import LabelEvent

V_in = TypeVar("V_in")
V_out = TypeVar("V_out")
S = TypeVar("S")
S_co = TypeVar("S_co", covariant=True)


@dataclass
class PartitionWatermarks:
    """Newest event time seen per input partition, in this process.

    A card lives on one partition (messages are keyed by account), so its next event cannot be
    older than this minus the allowed lateness; that is what makes eviction safe (see
    ``CardBook.evict``). One object per built flow, shared by its card shards.
    """

    marks: dict[int, int] = field(default_factory=dict)

    def see(self, items: list[CardItem]) -> None:
        marks = self.marks
        for e in items:
            if isinstance(e, LabelEvent):
                continue
            wm = marks.get(e.partition)
            if wm is None or e.ts > wm:
                marks[e.partition] = e.ts


def merchant_shard_of(merchant_id: str, shards: int) -> int:
    """The shard of a merchant: a stable hash of its id (the same in every process)."""
    return zlib.crc32(merchant_id.encode()) % shards


class Book(Protocol[S_co]):
    """What a shard's book offers the Bytewax wrapper: its size and a snapshot."""

    def __len__(self) -> int: ...
    def snapshot(self) -> S_co: ...


class ShardLogic(StatefulBatchLogic[V_in, V_out, S]):
    """A shard's book inside Bytewax: every ``eviction_every`` (wall clock) its idle entries
    are evicted (``evict_idle``), and a shard left empty is discarded."""

    __slots__ = ("book", "check_at", "eviction_every")

    def __init__(self, book: Book[S], eviction_every: timedelta) -> None:
        self.book = book
        self.eviction_every = eviction_every
        self.check_at = datetime.now(UTC) + eviction_every

    def evict_idle(self) -> None:
        raise NotImplementedError

    def on_notify(self) -> tuple[list[V_out], bool]:
        self.evict_idle()
        if not self.book:
            return [], StatefulBatchLogic.DISCARD
        self.check_at = datetime.now(UTC) + self.eviction_every
        return [], StatefulBatchLogic.RETAIN

    def notify_at(self) -> datetime | None:
        return self.check_at

    def snapshot(self) -> S:
        return self.book.snapshot()


class CardShardLogic(ShardLogic[list[CardItem], list[CardVerdict], BookSnapshot]):
    """One shard's cards inside Bytewax: card signals, labels, eviction of idle cards."""

    __slots__ = ("cards", "horizon_ms", "watermarks")

    def __init__(
        self,
        detector: Detector,
        resume: BookSnapshot | None,
        eviction_every: timedelta,
        watermarks: PartitionWatermarks,
    ) -> None:
        self.cards = CardBook(detector, resume)
        super().__init__(self.cards, eviction_every)
        self.horizon_ms = detector.ruleset.eviction_horizon_ms
        self.watermarks = watermarks

    def on_batch(self, values: list[list[CardItem]]) -> tuple[list[list[CardVerdict]], bool]:
        judge = self.cards.judge
        see = self.watermarks.see
        out = []
        for items in values:
            out.append(judge(items))
            see(items)
        return out, StatefulBatchLogic.RETAIN

    def evict_idle(self) -> None:
        evicted = self.cards.evict(self.watermarks.marks, self.horizon_ms)
        if evicted:
            prometheus.CARDS_EVICTED.inc(evicted)


MerchantItem = CardVerdict | LabelEvent


class MerchantShardLogic(ShardLogic[list[MerchantItem], list[Judged], MerchantSnapshot]):
    """One shard's merchants: learned merchant risk, each transaction's merchant signals and
    feature row (scoring needs no state: the ``score`` step does it for all shards at once)."""

    __slots__ = ("detector", "merchants", "newest_ts")

    def __init__(
        self, detector: Detector, resume: MerchantSnapshot | None, eviction_every: timedelta
    ) -> None:
        self.detector = detector
        self.merchants = MerchantBook(detector.ruleset.labels.label_delay_days, resume)
        super().__init__(self.merchants, eviction_every)
        self.newest_ts = -1

    def on_batch(self, values: list[list[MerchantItem]]) -> tuple[list[list[Judged]], bool]:
        observe = self.merchants.observe
        judge = self.detector.judge_merchant
        out = []
        for items in values:
            viewed = observe(items)
            if viewed:
                self.newest_ts = max(self.newest_ts, *(v.event.ts for v, _ in viewed))
                out.append([judge(v, view) for v, view in viewed])
        return out, StatefulBatchLogic.RETAIN

    def evict_idle(self) -> None:
        if self.newest_ts >= 0:
            self.merchants.evict(self.newest_ts)
