"""The model registry on the real MongoDB-protocol server: publish, refresh, refuse bad models."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from dataflows.detection.policy import FormulaModel, OperatingPoint, PolicyBook
from dataflows.detection.training import DAY_MS, Decision, Trainer, TrainingConfig
from dataflows.io.model_store import MODEL_FILES, OPERATING_POINTS, ModelStore
from tests.dataflows.test_learning import D0, config, history


def decisions() -> list[Decision]:
    trainer = Trainer(config())
    history(trainer, 8)
    return [trainer.decide(D0 + d) for d in range(1, 9)]


def book() -> PolicyBook:
    return PolicyBook(OperatingPoint("", -(2**62), FormulaModel("formula-test", 0.002), 0.5))


def test_published_decisions_load_into_the_dataflows_book_in_event_time(mongo_db: Any) -> None:
    store = ModelStore(mongo_db)
    made = decisions()
    for d in made:
        store.publish(d)
    target = book()
    assert ModelStore(mongo_db).refresh(target) == 8
    newest = made[-1].point
    assert target.at(newest.effective_ms).version == newest.version
    assert target.at(newest.effective_ms).threshold == newest.threshold
    assert target.at(newest.effective_ms - 1).version == made[-2].point.version
    # Refreshing again adds nothing; a trained model's artifact was loaded and checked.
    assert ModelStore(mongo_db).refresh(target) == 0
    assert any(p.model.kind == "lightgbm" for p in target.points)
    assert mongo_db[MODEL_FILES].count_documents({}) == sum(1 for d in made if d.model_text)


def test_a_model_that_fails_its_checks_is_refused_and_the_previous_point_keeps_scoring(
    mongo_db: Any, caplog: pytest.LogCaptureFixture
) -> None:
    store = ModelStore(mongo_db)
    made = decisions()
    for d in made:
        store.publish(d)
    last = made[-1].point
    good = next(d for d in reversed(made) if d.model_text is not None)
    # A new day whose model artifact is corrupt (its text no longer matches its digest).
    bad_day = {"_id": "2099-01-01", "day": "2099-01-01", "effective_ms": last.effective_ms + DAY_MS,
               "model_version": "gbm-bad", "kind": "lightgbm", "threshold": 0.3,
               "budget_cards_per_day": 100}  # fmt: skip
    mongo_db[MODEL_FILES].insert_one({"_id": "gbm-bad", "format": "lightgbm-text",
                                      "sha256": "0" * 64, "text": good.model_text})  # fmt: skip
    mongo_db[OPERATING_POINTS].insert_one(bad_day)
    target = book()
    caplog.set_level(logging.ERROR, logger="dataflows.io.model_store")
    ModelStore(mongo_db).refresh(target)
    refused = [r.getMessage() for r in caplog.records if "refusing" in r.getMessage()]
    assert len(refused) == 1
    assert "gbm-bad" in refused[0]
    assert "sha256" in refused[0]
    assert target.at(last.effective_ms + 2 * DAY_MS).version == last.version


def test_a_restarted_trainer_adopts_published_decisions_instead_of_retraining(
    mongo_db: Any,
) -> None:
    store = ModelStore(mongo_db)
    made = decisions()
    for d in made:
        store.publish(d)
    fresh = Trainer(TrainingConfig(**{**config().__dict__}))
    doc = store.decided_days()[made[-1].point.day]
    point = store.point_of(doc, fresh.formula)
    fresh.adopt(D0 + 8, point, None)
    assert fresh.current.version == made[-1].point.version
