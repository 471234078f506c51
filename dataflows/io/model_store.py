"""The model registry in MongoDB: what the trainer publishes, the dataflow loads and the console
shows (docs/contracts.md, "Model registry and model health").

Collections:

- ``operating_points``: one document per decided day (``_id`` = the day): the model version
  and alert threshold that score from ``effective_ms`` (event time) on. The dataflow reads
  the newest few between batches.
- ``model_files``: one document per promoted model (``_id`` = version): its LightGBM text and
  sha256. Kept apart so that listing models never loads artifacts.
- ``models``: one document per trained candidate (promoted or rejected), with its training
  window, feature list, metrics, threshold and library versions.
- ``model_health``: one document per event day, rewritten as labels arrive.

Every write is an idempotent replace by ``_id``: a restarted trainer that decides a day again
writes the same documents.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from pymongo import DESCENDING
from pymongo.database import Database
from pymongo.errors import PyMongoError

from dataflows.detection.policy import (
    FORMULA,
    LIGHTGBM,
    GbmModel,
    Model,
    ModelError,
    OperatingPoint,
    PolicyBook,
    SeverityBands,
    digest,
    operating_point_doc,
)
from dataflows.detection.training import Decision

OPERATING_POINTS = "operating_points"
MODEL_FILES = "model_files"
MODELS = "models"
MODEL_HEALTH = "model_health"
# Operating points a dataflow keeps: enough for any transaction within the allowed lateness.
POINTS_KEPT = 8

_log = logging.getLogger(__name__)
Doc = dict[str, Any]


class ModelStore:
    """Reads and writes the registry in one database."""

    def __init__(self, db: Database[Doc]) -> None:
        self.db = db
        self._models: dict[str, Model] = {}
        self._refused: set[str] = set()

    # ------------------------------------------------------------------ trainer side

    def publish(self, decision: Decision) -> None:
        """Write one day's decision: the model file first, the operating point last, so a
        dataflow never sees a point whose model is not there yet."""
        point = decision.point
        if decision.model_text is not None and point.model.kind == LIGHTGBM:
            self.db[MODEL_FILES].replace_one(
                {"_id": point.version},
                {
                    "_id": point.version,
                    "format": "lightgbm-text",
                    "sha256": digest(decision.model_text),
                    "text": decision.model_text,
                },
                upsert=True,
            )
        if decision.model_doc is not None:
            doc = {**decision.model_doc, "trained_at": datetime.now(UTC)}
            self.db[MODELS].replace_one({"_id": doc["_id"]}, doc, upsert=True)
        self.db[OPERATING_POINTS].replace_one(
            {"_id": point.day}, operating_point_doc(point), upsert=True
        )

    def publish_formula(self, doc: Doc) -> None:
        """Record the formula as a version (once: its first appearance is kept)."""
        if self.db[MODELS].find_one({"_id": doc["_id"]}, {"_id": 1}) is None:
            self.db[MODELS].insert_one({**doc, "trained_at": datetime.now(UTC)})

    def write_health(self, docs: list[Doc]) -> None:
        """Rewrite the health days (one document a day). One ``replace_one`` each, not one
        bulk write: FerretDB v1 stops serving writes after a bulk write of about 30 or more
        updates by ``_id`` (seen with ~31 health days), and a month of days is ~30 writes."""
        now = datetime.now(UTC)
        for d in docs:
            self.db[MODEL_HEALTH].replace_one(
                {"_id": d["_id"]}, {**d, "updated_at": now}, upsert=True
            )

    def decided_days(self) -> dict[str, Doc]:
        """Every operating point document, by day."""
        return {d["_id"]: d for d in self.db[OPERATING_POINTS].find({})}

    def model_docs(self) -> dict[str, Doc]:
        return {d["_id"]: d for d in self.db[MODELS].find({}, {"params": 0, "features": 0})}

    # ------------------------------------------------------------------ dataflow side

    def model(self, version: str, kind: str, formula: Model) -> Model:
        """A model by version, loaded once and checked (``ModelError`` when it cannot score)."""
        if kind == FORMULA:
            return formula
        cached = self._models.get(version)
        if cached is not None:
            return cached
        doc = self.db[MODEL_FILES].find_one({"_id": version})
        if doc is None:
            raise ModelError(f"model {version}: no artifact in {MODEL_FILES}")
        if doc.get("format") != "lightgbm-text" or not isinstance(doc.get("text"), str):
            raise ModelError(f"model {version}: unknown artifact format {doc.get('format')!r}")
        model = GbmModel.from_text(version, doc["text"], doc.get("sha256"))
        self._models[version] = model
        return model

    def point_of(self, doc: Doc, formula: Model) -> OperatingPoint:
        threshold = doc.get("threshold")
        if not isinstance(threshold, int | float) or not 0 <= threshold <= 1:
            raise ModelError(f"operating point {doc.get('_id')}: threshold {threshold!r}")
        bands = doc.get("severity_bands")
        return OperatingPoint(
            str(doc["day"]),
            int(doc["effective_ms"]),
            self.model(str(doc["model_version"]), str(doc["kind"]), formula),
            float(threshold),
            doc.get("budget_cards_per_day"),
            # A point published before bands were: its threshold's odds multiples grade it.
            None if bands is None else SeverityBands.from_doc(bands),
        )

    def refresh(self, book: PolicyBook) -> int:
        """Add the newest operating points not yet in ``book``; returns how many were added.

        A point whose model cannot be loaded or checked is refused with an error log line
        (once), and the points before it keep scoring. A MongoDB error is logged and retried
        at the next refresh: scoring goes on with what is loaded.
        """
        try:
            docs = list(
                self.db[OPERATING_POINTS].find({}).sort("_id", DESCENDING).limit(POINTS_KEPT)
            )
        except PyMongoError as exc:
            _log.warning("model registry unreachable, scoring goes on with %s: %s",
                         book.newest.version, exc)  # fmt: skip
            return 0
        added = 0
        known = {(p.day, p.version, p.threshold) for p in book.points}
        for doc in reversed(docs):
            key = (doc.get("day"), doc.get("model_version"), doc.get("threshold"))
            if key in known or str(doc.get("_id")) in self._refused:
                continue
            try:
                point = self.point_of(doc, book.fallback.model)
            except (ModelError, KeyError, TypeError, ValueError, PyMongoError) as exc:
                self._refused.add(str(doc.get("_id")))
                _log.error(
                    "refusing operating point %s (model %s): %s; %s keeps scoring",
                    doc.get("_id"), doc.get("model_version"), exc, book.newest.version,
                )  # fmt: skip
                continue
            book.add(point)
            added += 1
            _log.info(
                "operating point %s: model %s from %s at threshold %.6f",
                point.day, point.version, doc.get("effective_ms"), point.threshold,
            )  # fmt: skip
        book.keep_newest(POINTS_KEPT)
        return added
