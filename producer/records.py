"""What the generators hand to the sender: records, their ground-truth labels, planned events."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from producer.population import Card, Merchant

MALFORMED = "malformed"


class Label(NamedTuple):
    """Ground truth for one fraudulent or malformed record (genuine records have none)."""

    transaction_id: str
    account_id: str
    story_id: str
    scenario: str


class Record(NamedTuple):
    """One Kafka message: event time (epoch ms), key, value and its label if not genuine.

    ``chargeback`` marks a ``fraud-labels`` message interleaved with the transactions (its
    time is its ``reported_at``); such a record never carries a ground-truth ``label``.
    """

    ts_ms: int
    key: bytes | None
    value: bytes
    label: Label | None
    chargeback: bool = False


@dataclass(frozen=True, slots=True)
class Planned:
    """A transaction a fraud story scheduled; it becomes a record when its time comes.

    ``story`` is ``(story_id, scenario)`` for fraudulent transactions and ``None`` for the
    genuine ones a story needs (the visit to a breached merchant, the last use at home).
    """

    card: Card
    merchant: Merchant
    channel: str
    amount: float  # in the merchant's currency, rounded to its minor unit
    latitude: float
    longitude: float
    country: str
    story: tuple[str, str] | None


class CardState:
    """What the generator remembers about a card's holder between transactions."""

    __slots__ = (
        "busy_until",
        "last_cp_lat",
        "last_cp_lon",
        "last_cp_merchant",
        "last_cp_ts",
        "trip_city",
        "trip_until",
    )

    def __init__(self) -> None:
        self.last_cp_ts = -1  # -1: no card-present use yet
        self.last_cp_lat = 0.0
        self.last_cp_lon = 0.0
        self.last_cp_merchant = -1
        self.trip_city = -1
        self.trip_until = 0  # epoch ms; 0 = at home
        self.busy_until = 0  # epoch ms until which a fraud story owns this card
