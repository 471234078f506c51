"""The feature log: what the trainer learns from, bounded by a score floor and a seeded sample.

Every scored transaction whose score (the operating point's, or the formula's) reaches
``floor``, or that alerted, is logged with weight 1; of the rest, a sample of ``rate`` chosen
by a seeded hash of the transaction id is logged with weight ``1 / rate``, so weighted counts
stand for the whole stream. The choice depends only on the transaction and its scores, never
on arrival order or the wall clock, so the stream and the backtest log the same rows.

One row is one JSON object on the ``fraud-features`` topic (docs/contracts.md):
``{"v": 1, "id", "ts", "card", "score", "model", "alerted", "always", "w", "f": [...]}``,
``f`` in ``FEATURE_NAMES`` order; ``names`` is written once per file or first message so that
a trainer refuses rows of another feature set.
"""

from __future__ import annotations

import hashlib
import math
import zlib
from typing import Any, NamedTuple

import orjson

from dataflows.detection.detector import Outcome
from dataflows.detection.features import FEATURE_NAMES

FEATURE_LOG_VERSION = 1
# A short, stable fingerprint of the feature set: rows of another one are refused.
FEATURE_SET = format(zlib.crc32(",".join(FEATURE_NAMES).encode()), "08x")
_FORMULA = FEATURE_NAMES.index("formula_logit")


class FeatureLogError(ValueError):
    """A feature-log record that cannot be used: the message says why."""


class LoggedRow(NamedTuple):
    """One logged transaction: its features, the score it got, its sampling weight."""

    transaction_id: str
    ts: int
    card: str
    score: float
    model_version: str
    alerted: bool
    always: bool  # an always-alert signal fired (alerts whatever the threshold)
    weight: float
    features: list[float]


class Sampler:
    """Decides which outcomes are logged, and with which weight."""

    def __init__(self, floor: float, rate: float, seed: int, prior: float) -> None:
        if not 0 < rate <= 1:
            raise ValueError(f"the feature log's sample rate must be in (0, 1], not {rate}")
        self.floor = floor
        self.rate = rate
        self.seed = seed.to_bytes(8, "big", signed=True)
        self.cut = int(rate * 2**64)
        # The formula's score reaches the floor exactly when its logit does.
        self.formula_floor = math.log(floor / (1 - floor)) - math.log(prior / (1 - prior))

    def weight(self, o: Outcome) -> float:
        """0.0 (not logged), 1.0 (at or above the floor, or alerted) or ``1 / rate``."""
        if o.score is None or o.features is None:
            return 0.0
        if (
            o.alert is not None
            or o.score >= self.floor
            or o.features[_FORMULA] >= self.formula_floor
        ):
            return 1.0
        h = hashlib.blake2b(o.event.transaction_id.encode(), digest_size=8, key=self.seed)
        if int.from_bytes(h.digest(), "big") < self.cut:
            return 1.0 / self.rate
        return 0.0

    def row(self, o: Outcome) -> LoggedRow | None:
        w = self.weight(o)
        if w == 0.0 or o.score is None or o.features is None:
            return None
        e = o.event
        return LoggedRow(
            e.transaction_id,
            e.ts,
            e.card_token,
            o.score,
            o.model_version,
            o.alert is not None,
            any(s.always_alert for s in o.signals),
            w,
            o.features,
        )


def encode(row: LoggedRow) -> bytes:
    return orjson.dumps(
        {
            "v": FEATURE_LOG_VERSION,
            "set": FEATURE_SET,
            "id": row.transaction_id,
            "ts": row.ts,
            "card": row.card,
            "score": row.score,
            "model": row.model_version,
            "alerted": row.alerted,
            "always": row.always,
            "w": row.weight,
            "f": row.features,
        }
    )


def decode(raw: bytes) -> LoggedRow:
    """A row from its JSON; raises ``FeatureLogError`` for another version or feature set."""
    try:
        d: dict[str, Any] = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise FeatureLogError(f"not JSON: {exc}") from exc
    if d.get("v") != FEATURE_LOG_VERSION or d.get("set") != FEATURE_SET:
        raise FeatureLogError(
            f"feature log version {d.get('v')}/{d.get('set')}, this trainer reads "
            f"{FEATURE_LOG_VERSION}/{FEATURE_SET}"
        )
    f = d.get("f")
    if not isinstance(f, list) or len(f) != len(FEATURE_NAMES):
        raise FeatureLogError(
            f"row {d.get('id')}: {len(f or [])} features, not {len(FEATURE_NAMES)}"
        )
    return LoggedRow(
        str(d["id"]),
        int(d["ts"]),
        str(d["card"]),
        float(d["score"]),
        str(d["model"]),
        bool(d["alerted"]),
        bool(d["always"]),
        float(d["w"]),
        [float(x) for x in f],
    )
