"""Many cards' states in one object: the unit the dataflow keys, snapshots and moves.

Keying Bytewax state by card made the runtime's per-key work (one routing step, one
``on_batch`` call and one snapshot row per card and epoch) the largest cost of the dataflow.
Cards are therefore grouped into a fixed number of shards (``shard_of``): the first step
sends one item per shard and input batch instead of one per transaction, and each shard's
cards live in one ``CardBook``, a dict of card token -> packed state (``CardHistory.pack``).

Trade-off: a snapshot writes every card of each shard touched in the epoch, not only the
touched cards. With few shards and many cards that is the whole state each epoch; with many
shards the per-item savings shrink. ``FRAUD_CARD_SHARDS`` sets it (docs/architecture.md).

Pure Python (no Bytewax): unit-tested and benchmarked alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from dataflows.detection.detector import CardVerdict, Detector, Outcome
from dataflows.detection.merchant import NO_MERCHANT_VIEW
from dataflows.detection.state import CardHistory, packed_header
from fraudwatch.contract import CardEvent, LabelEvent

# What a card shard takes: a transaction, or a label on one of its cards.
CardItem = CardEvent | LabelEvent

# A shard's snapshot: card token -> packed state.
BookSnapshot = dict[str, bytes]


def shard_of(card_token: str, shards: int) -> int:
    """The shard of a card: tokens are hex HMACs, so their leading bits are uniform."""
    return int(card_token[:8], 16) % shards


class CardBook:
    """The packed states of one shard's cards, judged through one ``Detector``."""

    __slots__ = ("cards", "detector")

    def __init__(self, detector: Detector, cards: BookSnapshot | None = None) -> None:
        self.detector = detector
        self.cards: BookSnapshot = {} if cards is None else dict(cards)

    def __len__(self) -> int:
        return len(self.cards)

    def judge(self, items: Iterable[CardItem]) -> list[CardVerdict]:
        """The card half of judging the transactions among ``items``, in order; labels among
        them are applied where they stand. One verdict per transaction.

        A card that comes up several times in one call is unpacked and packed once.
        """
        cards = self.cards
        detector = self.detector
        judge_card = detector.judge_card
        unpack = CardHistory.unpack
        working: dict[str, tuple[CardHistory, int]] = {}
        out = []
        for item in items:
            is_label = isinstance(item, LabelEvent)
            token, partition = item.card_token, -1 if is_label else item.partition
            entry = working.get(token)
            if entry is None:
                blob = cards.get(token)
                state = CardHistory() if blob is None else unpack(blob)
            else:
                state = entry[0]
                if partition == -1:
                    partition = entry[1]
            if isinstance(item, LabelEvent):
                detector.apply_label(state, item)
            else:
                out.append(judge_card(state, item))
            working[token] = (state, partition)
        for token, (state, partition) in working.items():
            known = partition
            if known == -1 and token in cards:  # a label on a card seen before: keep its own
                known = packed_header(cards[token])[1]
            cards[token] = state.pack(known)
        return out

    def judge_events(self, events: Iterable[CardEvent], detected_at: int | None) -> list[Outcome]:
        """Both halves for transactions without a merchant stage (tests and tools)."""
        finish = self.detector.finish
        return [finish(v, NO_MERCHANT_VIEW, detected_at) for v in self.judge(events)]

    def state_of(self, card_token: str) -> CardHistory | None:
        """A copy of one card's state (for tests and tools)."""
        blob = self.cards.get(card_token)
        return None if blob is None else CardHistory.unpack(blob)

    def evict(self, watermarks: Mapping[int, int], horizon_ms: int) -> int:
        """Forget cards idle for more than ``horizon_ms`` of their partition's event time.

        ``watermarks`` is the newest event time seen per source partition. A card lives on
        one partition (the producer keys by account), so no event older than that watermark
        minus the allowed lateness can still arrive for it. Returns how many were evicted.
        """
        idle = []
        newest = max(watermarks.values(), default=None)
        for token, blob in self.cards.items():
            last, partition = packed_header(blob)
            # A card known only from labels has no partition yet: judge it by the newest one.
            wm = newest if partition == -1 else watermarks.get(partition)
            if wm is not None and wm - last > horizon_ms:
                idle.append(token)
        for token in idle:
            del self.cards[token]
        return len(idle)

    def snapshot(self) -> BookSnapshot:
        """An independent copy for recovery (the values are immutable ``bytes``)."""
        return dict(self.cards)
