"""``python -m dataflows.backtest TX.jsonl [--labels L] [--scores-out S] [--features-out F]``.

The detection core over files, no services: the dataflow's own validation, merchant stage and
card stage, in one process. Transactions are read as JSON lines in file order; labels (contract
v1, JSON lines) are applied in event time: a label is applied before the first transaction whose
event time is at or after its ``reported_at``, which is what the stream does when each label is
consumed before such a transaction. Alerts go to stdout (the same JSON as on ``fraud-alerts``);
``--scores-out`` gets one line per valid transaction. Alert ids, scores, severities and reasons
equal the stream's for the same per-card and per-merchant order; only ``detected_at`` and
``source_ts`` differ. Invalid lines are counted by reason on stderr, as the dataflow would
dead-letter them.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, cast

import click
import orjson

from dataflows.detection.cardbook import CardBook, CardItem
from dataflows.detection.detector import CardVerdict, Detector, Outcome
from dataflows.detection.featurelog import Sampler
from dataflows.detection.features import features
from dataflows.detection.merchant import MerchantBook, MerchantView
from dataflows.detection.policy import operating_point_doc
from dataflows.detection.ruleset import RuleSet, load_ruleset
from dataflows.detection.training import Decision, Trainer, day_of
from dataflows.settings import DataflowSettings
from dataflows.validation import RawRecord, RecordValidator
from fraudwatch.cards import CardTokenizer
from fraudwatch.contract import CardEvent, LabelEvent

_BATCH = 2000


def read_labels(
    lines: Iterable[bytes], validator: RecordValidator, dead: Counter[str]
) -> list[LabelEvent]:
    """Valid labels of a file, ordered by reported time (invalid ones counted in ``dead``)."""
    out = []
    for number, line in enumerate(lines, start=1):
        raw = line.rstrip(b"\r\n")
        if not raw.strip():
            continue
        item = validator.to_label(RawRecord("labels", 0, number, None, raw))
        if isinstance(item, LabelEvent):
            out.append(item)
        else:
            dead[f"label:{item.reason}"] += 1
    out.sort(key=lambda lab: lab.reported_ts)
    return out


@dataclass
class Learning:
    """The trainer simulated in event time (``dataflows.detection.training``).

    Every outcome goes through ``sampler`` into the feature log, which here is the trainer's
    memory; when the first transaction of a new UTC day comes, the trainer decides that day
    with what it knew before it, and its operating point scores from then on (plus its grace
    time), exactly as ``dataflows.trainer`` publishes it to a running dataflow.
    """

    trainer: Trainer
    sampler: Sampler
    on_decision: Callable[[Decision], None] | None = None
    logged: int = 0
    day: int = -1

    def see(self, outcomes: Iterable[Outcome]) -> None:
        for o in outcomes:
            row = self.sampler.row(o)
            if row is not None:
                self.trainer.add_row(row)
                self.logged += 1

    def new_day(self, ts: int, detector: Detector) -> bool:
        """True (and a decision made) when ``ts`` starts a new day after some logged rows."""
        day = day_of(ts)
        if day <= self.day:
            return False
        self.day = day
        if self.trainer.newest_ts < 0:
            return False
        decision = self.trainer.decide(day)
        detector.policies.add(decision.point)
        if self.on_decision is not None:
            self.on_decision(decision)
        return True


def run_backtest(
    lines: Iterable[bytes],
    ruleset: RuleSet,
    token_key: str | None,
    dead: Counter[str],
    labels: Iterable[bytes] = (),
    on_judged: Callable[[CardVerdict, MerchantView, Outcome], None] | None = None,
    learning: Learning | None = None,
) -> Iterator[Outcome]:
    """Outcomes of every valid transaction line, in order; invalid lines counted in ``dead``.

    ``on_judged`` sees each transaction's card verdict and merchant view with its outcome
    (for ``--features-out``); ``learning`` retrains on the way (``--learn``).
    """
    validator = RecordValidator(CardTokenizer(token_key), set(ruleset.currency.rates))
    detector = Detector(ruleset)
    cards = CardBook(detector)
    merchants = MerchantBook(ruleset.labels.label_delay_days)
    pending = read_labels(labels, validator, dead)
    next_label = 0
    batch: list[CardEvent] = []

    def judge(items: list[CardItem]) -> list[Outcome]:
        # The stream's two stages in its order: cards, then merchants (labels reach both).
        verdicts = cards.judge(items)
        labels: list[CardVerdict | LabelEvent] = [x for x in items if isinstance(x, LabelEvent)]
        if learning is not None:
            for label in labels:
                learning.trainer.add_label(cast("LabelEvent", label))
        viewed = merchants.observe([*labels, *verdicts])
        # The backtest's alerts say they were detected at their own event time.
        outcomes = detector.finish_batch(viewed, None)
        if on_judged is not None:
            for (v, view), o in zip(viewed, outcomes, strict=True):
                on_judged(v, view, o)
        if learning is not None:
            learning.see(outcomes)
        return outcomes

    for number, line in enumerate(lines, start=1):
        raw = line.rstrip(b"\r\n")
        if not raw.strip():
            continue
        item = validator.to_event(RawRecord("file", 0, number, None, raw))
        if not isinstance(item, CardEvent):
            dead[item.reason] += 1
            continue
        if next_label < len(pending) and pending[next_label].reported_ts <= item.ts:
            yield from judge(list(batch))
            batch.clear()
            due: list[CardItem] = []
            while next_label < len(pending) and pending[next_label].reported_ts <= item.ts:
                due.append(pending[next_label])
                next_label += 1
            judge(due)
        if learning is not None and day_of(item.ts) > learning.day:
            yield from judge(list(batch))
            batch.clear()
            learning.new_day(item.ts, detector)
        batch.append(item)
        if len(batch) >= _BATCH:
            yield from judge(list(batch))
            batch.clear()
    if batch:
        yield from judge(list(batch))


def decision_record(d: Decision) -> dict[str, object]:
    """A decision as the trainer publishes it (its operating point and model document)."""
    return {
        "operating_point": operating_point_doc(d.point),
        "model": d.model_doc,
        "log": d.log,
    }


@click.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--labels",
    "labels_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Fraud labels (contract v1, JSON lines), applied at their reported_at.",
)
@click.option(
    "--scores-out",
    type=click.File("wb"),
    default=None,
    help="Write one JSON line per valid transaction: transaction_id, score, alerted.",
)
@click.option(
    "--features-out",
    type=click.File("wb"),
    default=None,
    help="Write one JSON line per valid transaction: transaction_id and its named features "
    "(dataflows/detection/features.py), for training a model on labelled history.",
)
@click.option(
    "--rules",
    "rules_file",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="Rule file (default: FRAUD_RULES_FILE or config/rules.toml).",
)
@click.option(
    "--learn/--no-learn",
    default=None,
    help="Simulate the trainer (daily retraining, alert budget) in event time; default: on "
    "when --labels is given.",
)
@click.option(
    "--models-out",
    type=click.File("wb"),
    default=None,
    help="Write the trainer's daily decisions (JSON lines: operating point, model document).",
)
@click.option(
    "--models-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Write each promoted model's artifact there (<version>.txt, LightGBM's text format).",
)
@click.option(
    "--budget",
    type=int,
    default=None,
    help="Cards per day to alert (default: ALERT_BUDGET_CARDS_PER_DAY, 100); 0: no budget.",
)
@click.option("--output", "-o", type=click.File("wb"), default="-", help="Where alerts go.")
def main(
    path: Path,
    labels_file: Path | None,
    scores_out: IO[bytes] | None,
    features_out: IO[bytes] | None,
    rules_file: Path | None,
    learn: bool | None,
    models_out: IO[bytes] | None,
    models_dir: Path | None,
    budget: int | None,
    output: IO[bytes],
) -> None:
    """Print the alerts the dataflow would raise for the transactions in PATH (JSON lines)."""
    settings = DataflowSettings()
    if budget is not None:
        settings = settings.model_copy(update={"alert_budget_cards_per_day": budget})
    ruleset = load_ruleset(rules_file or settings.fraud_rules_file)
    learning = None
    decisions = 0
    if learn or (learn is None and labels_file is not None):

        def record(d: Decision) -> None:
            nonlocal decisions
            decisions += 1
            sys.stderr.write(f"[trainer] {d.log}\n")
            if models_out is not None:
                models_out.write(orjson.dumps(decision_record(d)) + b"\n")
            if models_dir is not None and d.model_text is not None:
                models_dir.mkdir(parents=True, exist_ok=True)
                (models_dir / f"{d.point.version}.txt").write_text(d.model_text)

        learning = Learning(
            Trainer(settings.training(ruleset)), settings.sampler(ruleset.score.prior), record
        )
    key = settings.fraud_token_key.get_secret_value() if settings.fraud_token_key else None
    dead: Counter[str] = Counter()
    total = alerts = 0
    labels: list[bytes] = labels_file.read_bytes().splitlines() if labels_file else []

    def write_features(v: CardVerdict, view: MerchantView, o: Outcome) -> None:
        if features_out is not None and not o.duplicate:
            row = {"transaction_id": v.event.transaction_id, **features(v, view, o.signals)}
            features_out.write(orjson.dumps(row) + b"\n")

    on_judged = write_features if features_out is not None else None
    with path.open("rb") as f:
        for outcome in run_backtest(f, ruleset, key, dead, labels, on_judged, learning):
            if outcome.duplicate:
                continue
            total += 1
            if outcome.alert is not None:
                alerts += 1
                output.write(orjson.dumps(outcome.alert.to_json_dict()) + b"\n")
            if scores_out is not None:
                scores_out.write(
                    orjson.dumps(
                        {
                            "transaction_id": outcome.event.transaction_id,
                            "score": outcome.score,
                            "alerted": outcome.alert is not None,
                            "model_version": outcome.model_version,
                        }
                    )
                    + b"\n"
                )
    output.flush()
    for out in (scores_out, features_out, models_out):
        if out is not None:
            out.flush()
    summary: dict[str, object] = {
        "valid": total,
        "alerts": alerts,
        "labels": len(labels),
        "invalid": dict(dead),
        "ruleset_version": ruleset.version,
    }
    if learning is not None:
        summary["decisions"] = decisions
        summary["feature_log_rows"] = learning.logged
        summary["model_version"] = learning.trainer.current.version
    sys.stderr.write(orjson.dumps(summary).decode() + "\n")


if __name__ == "__main__":
    main()
