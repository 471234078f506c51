"""Pure tests of the model registry's reading and shaping (no MongoDB, no Flask)."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

import pytest

from webapp.data.model_registry import (
    HealthDay,
    ModelVersion,
    current_model,
    drift_alarm,
    health_window,
    model_health_payload,
    newest_first_versions,
)

from .model_factories import health_days, make_formula_doc, make_health_doc, make_model_doc


def version(doc: dict) -> ModelVersion:
    parsed = ModelVersion.from_doc(doc)
    assert parsed is not None
    return parsed


def day(doc: dict) -> HealthDay:
    parsed = HealthDay.from_doc(doc)
    assert parsed is not None
    return parsed


def test_a_contract_shaped_model_document_round_trips_to_the_api_shape() -> None:
    doc = make_model_doc()
    api = version(doc).to_api()
    assert api["trained_at"] == "2026-10-12T00:05:00.000Z"
    expected = {k: v for k, v in doc.items() if k not in ("_id", "trained_at")}
    assert {k: v for k, v in api.items() if k != "trained_at"} == expected


def test_a_contract_shaped_health_document_round_trips_to_the_api_shape() -> None:
    doc = make_health_doc()
    api = day(doc).to_api()
    assert api["updated_at"] == "2026-10-19T03:00:00.000Z"
    assert {k: v for k, v in api.items() if k != "updated_at"} == {
        k: v for k, v in doc.items() if k not in ("_id", "updated_at")
    }


@pytest.mark.parametrize(
    "bad",
    ["0.6", True, float("nan"), float("inf"), None, [0.6], {"$numberDouble": "0.6"}],
)
def test_wrongly_typed_numbers_read_as_unknown_never_as_errors(bad) -> None:
    m = version(make_model_doc(metrics={"validation_ap": bad, "train_rows": bad}, threshold=bad))
    assert (m.validation_ap, m.train_rows, m.threshold) == (None, None, None)
    d = day(make_health_doc(day_ap=bad, alerted_cards=bad, drift=bad if bad is not True else 1))
    assert (d.day_ap, d.alerted_cards, d.drift) == (None, None, False)
    json.dumps(m.to_api())
    json.dumps(d.to_api())


def test_documents_without_an_id_or_a_day_are_skipped_and_bad_days_are_dropped() -> None:
    assert ModelVersion.from_doc({"kind": "lightgbm"}) is None
    assert HealthDay.from_doc({"_id": "yesterday", "day": "2026-13-01"}) is None
    m = version(make_model_doc(effective_day="12/10/2026", training_window="2026-09-21"))
    assert (m.effective_day, m.window_from, m.window_to) == (None, None, None)


def test_current_model_is_the_latest_effective_promoted_one_not_the_latest_trained() -> None:
    older = version(make_model_doc("gbm-a", effective_day="2026-10-11"))
    newer = version(make_model_doc("gbm-b", effective_day="2026-10-12"))
    rejected = version(
        make_model_doc(
            "gbm-c", status="rejected", effective_day=None,
            trained_at=datetime(2026, 10, 13, tzinfo=UTC),
        )
    )  # fmt: skip
    assert current_model([older, rejected, newer]) == newer
    assert current_model([rejected]) is None
    # gbm-a and gbm-b were trained at the same moment: then by version, descending
    assert [m.version for m in newest_first_versions([older, rejected, newer])] == [
        "gbm-c",
        "gbm-b",
        "gbm-a",
    ]


def test_drift_alarm_follows_the_newest_day_that_has_an_ap() -> None:
    days = [
        day(make_health_doc("2026-10-10", drift=True, day_ap=0.31)),
        day(make_health_doc("2026-10-11", drift=False, day_ap=0.60)),
        # the newest days have no AP yet (labels arrive later): they decide nothing
        day(make_health_doc("2026-10-12", drift=True, day_ap=None)),
    ]
    assert drift_alarm(days) is None
    days[1] = day(make_health_doc("2026-10-11", drift=True, day_ap=0.30, validation_ap=0.61))
    alarm = drift_alarm(days)
    assert alarm is not None
    assert (alarm.day, alarm.day_ap, alarm.validation_ap) == ("2026-10-11", 0.30, 0.61)
    assert "2026-10-11" in alarm.message()
    assert "0.300" in alarm.message()
    assert "0.610" in alarm.message()
    assert drift_alarm([]) is None


def test_health_window_keeps_one_entry_per_calendar_day_and_is_bounded() -> None:
    docs = [*health_days("2026-10-01", 3), make_health_doc("2026-10-06")]
    window = health_window([day(d) for d in docs], span=30)
    assert [d for d, _ in window] == [f"2026-10-0{i}" for i in range(1, 7)]
    assert [h is None for _, h in window] == [False, False, False, True, True, False]
    short = health_window([day(d) for d in docs], span=2)
    assert [d for d, _ in short] == ["2026-10-05", "2026-10-06"]
    assert health_window([], span=30) == []


def test_payload_without_models_says_the_formula_scores_and_when_the_first_model_comes() -> None:
    payload = model_health_payload([], [], span=30, first_model_after_days=21)
    assert payload["current"] is None
    assert payload["scoring_with"] == "formula"
    assert payload["first_model_message"] == (
        "Scoring with the formula; the first model is trained after 21 days of labelled history."
    )
    assert (payload["versions"], payload["days"], payload["drift"]) == ([], [], None)
    only_formula = model_health_payload(
        [version(make_formula_doc())], [], span=30, first_model_after_days=21
    )
    assert only_formula["current"]["kind"] == "formula"
    assert only_formula["first_model_message"] is not None


def test_payload_with_models_orders_versions_oldest_first_and_marks_missing_days() -> None:
    versions = [
        version(make_formula_doc()),
        version(make_model_doc("gbm-1", trained_at=datetime(2026, 10, 1, tzinfo=UTC))),
        version(
            make_model_doc("gbm-2", status="rejected", trained_at=datetime(2026, 10, 2, tzinfo=UTC))
        ),
    ]
    docs = [make_health_doc("2026-10-01"), make_health_doc("2026-10-03", drift=True, day_ap=0.2)]
    payload = model_health_payload(
        versions, [day(d) for d in docs], span=30, first_model_after_days=21
    )
    assert payload["scoring_with"] == "model"
    assert payload["first_model_message"] is None
    assert payload["current"]["version"] == "gbm-1"
    assert [v["version"] for v in payload["versions"]] == ["formula-v1", "gbm-1", "gbm-2"]
    assert payload["days"][1] == {"day": "2026-10-02", "missing": True}
    assert payload["drift"]["day"] == "2026-10-03"
    assert payload["newest_measured_day"]["day"] == "2026-10-03"
    text = json.dumps(payload)
    assert "NaN" not in text
    assert not any(isinstance(v, float) and math.isnan(v) for v in payload["days"][0].values())
