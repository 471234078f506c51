"""``python -m bench.evaluate`` (``make evaluate``): detection quality, measured the handbook way.

For each traffic profile (``default``, ``shifted``, ``small`` and ``large`` amounts) it
generates eight seeded weeks of labelled card traffic with the producer (with delayed
chargebacks when the producer offers them), splits them as Le Borgne et al.'s handbook does
(``bench.handbook.split``: five weeks of history, a training week, the one-week label delay,
a test week), and scores three detectors over the same files:

* **fraudwatch**: ``python -m dataflows.backtest`` of this checkout (the stream's exact code
  over the files), fed the chargebacks when it takes them;
* **today's rules**: the same backtest at commit 07093fa, extracted once into
  ``.stack/evaluate/``;
* **random forest**: the handbook's baseline (``bench.baselines.handbook_rf``), trained on the
  training week with the true labels.

Every valid test-week transaction gets each detector's score (0 where a detector gave none),
and the metrics of the handbook's test set follow: ROC AUC, average precision, card
precision@100 per day; plus alert precision and workload, and per-scenario case recall. The
report goes to ``docs/evaluation.md``; files stay under ``.stack/evaluate/``. With ``--live``
the fraudwatch detector also runs as the real streaming pipeline (Kafka, MongoDB: ``make up``
first) and must raise exactly the backtest's alerts.

Definitions (also written into the report):

* a **case** is one card in one fraud story (a compromised-merchant story has several); it
  is **caught** when an alert is raised on that card between its first and its last
  fraudulent transaction; the **delay** is the event time from the first fraudulent
  transaction to that alert.
* card precision@k: per UTC day, a card scores its highest transaction score of the day and
  counts as compromised when it made a fraudulent transaction that day.
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import importlib.metadata
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import time
import tomllib
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import click
import orjson

from bench.handbook.split import DAY_MS, Split, format_ms, known_compromised
from bench.metrics import average_precision, card_precision_at_k_days, median, ratio, roc_auc
from fraudwatch.vocabulary import EXCHANGE_RATES, SEVERITIES

REPO_ROOT = Path(__file__).resolve().parent.parent
# Only alert ids depend on the token key; every run here uses the same one.
TOKEN_KEY = "evaluate-token-key"  # noqa: S105 - a fixed test key, not a secret
TODAY_COMMIT = "07093fa"
NONE = "\u2013"  # an en dash: nothing to measure
AP_TARGET = 1.0  # fraudwatch's average precision (and card precision@100) should reach the forest's
BUDGET = 100  # ALERT_BUDGET_CARDS_PER_DAY the backtest runs with: alerted cards a day, within ±20 %
SCENARIO_ORDER = (
    "card_testing",
    "account_takeover",
    "impossible_travel",
    "amount_spike",
    "cnp_foreign",
    "compromised_merchant",
)


class EvaluationError(click.ClickException):
    """A step of the evaluation failed: the message says which and where its log is."""


@dataclass(frozen=True)
class Profile:
    """One kind of traffic: the producer's scenario profile and amount scale."""

    name: str
    scenario_profile: str
    amount_scale: str | None  # the producer's --amount-scale, verbatim; None: its default
    what: str


PROFILES = {
    p.name: p
    for p in (
        Profile("default", "default", None, "the producer's usual scenario ranges, the ones "
                "the rules were written with in view"),
        Profile("shifted", "shifted", None, "the same stories with their ranges moved "
                "(slower, more cautious; *The shift* below)"),
        Profile("small", "default", "0.1667", "every amount 6 times smaller (genuine and "
                "fraud alike): absolute amount limits stop fitting"),
        Profile("large", "default", "6", "every amount 6 times larger"),
    )
}  # fmt: skip


@dataclass(frozen=True)
class Detector:
    """A column of the report."""

    key: str
    title: str


DETECTORS = (
    Detector("fraudwatch", "fraudwatch"),
    Detector("today", f"today's rules ({TODAY_COMMIT})"),
    Detector("forest", "random forest (handbook)"),
)


# --------------------------------------------------------------------------- pure scoring


class Txn(NamedTuple):
    """One valid transaction of the run and its ground truth (scenario None: genuine)."""

    transaction_id: str
    account_id: str
    ts_ms: int
    scenario: str | None
    story_id: str | None


class Scored(NamedTuple):
    """What a detector said about one transaction."""

    score: float
    alerted: bool
    rules: tuple[str, ...] = ()
    severity: str | None = None  # the alert's severity band (a detector's own alerts only)


def _day(ts_ms: int) -> str:
    return format_ms(ts_ms - ts_ms % DAY_MS)[:10]


def handbook_test_set(txns: Sequence[Txn], split: Split) -> tuple[list[Txn], dict[str, int]]:
    """The test week's transactions less those of cards already known to be compromised.

    As in the handbook: on each test day, cards with a fraud whose label has arrived (from the
    start of the training week to that day minus the delay) are blocked, so they are not
    scored. Also returns how many transactions and frauds that removed.
    """
    fraud_times: dict[str, list[int]] = defaultdict(list)
    for t in txns:
        if t.scenario is not None:
            fraud_times[t.account_id].append(t.ts_ms)
    known = {day: known_compromised(fraud_times, split, day) for day in split.test_days()}
    test: list[Txn] = []
    removed = Counter[str]()
    for t in txns:
        if not split.test_start_ms <= t.ts_ms < split.end_ms:
            continue
        if t.account_id in known[t.ts_ms - (t.ts_ms - split.test_start_ms) % DAY_MS]:
            removed["transactions"] += 1
            removed["frauds"] += t.scenario is not None
        else:
            test.append(t)
    return test, {"transactions": removed["transactions"], "frauds": removed["frauds"]}


def score_run(
    txns: Sequence[Txn],
    test: Sequence[Txn],
    scored: Mapping[str, Scored],
    k: int = 100,
    min_history: int = 5,
) -> dict[str, Any]:
    """One detector's evaluation on the ``test`` transactions, as plain JSON-ready data.

    ``txns``: the whole run (``test`` is part of it): cases and card histories come from it.
    ``scored``: what the detector said, by transaction id; a transaction it did not score
    counts with score 0, not alerted. A case counts when its first fraudulent transaction is
    in ``test`` (a story that began earlier was already under way). ``min_history``: cases on
    cards with fewer earlier transactions in the run are counted as ``cold``.
    """
    known_ids = {t.transaction_id for t in txns}
    unknown = sorted(set(scored) - known_ids)
    if unknown:
        raise ValueError(f"{len(unknown)} score(s) for unknown transactions, e.g. {unknown[:3]}")
    test_ids = {t.transaction_id for t in test}
    nothing = Scored(0.0, False)
    said = {t.transaction_id: scored.get(t.transaction_id, nothing) for t in test}
    alerted = {i for i, s in said.items() if s.alerted}
    genuine = sum(1 for t in test if t.scenario is None)
    fraud_ids = {t.transaction_id for t in test if t.scenario is not None}
    alerts_on_fraud = len(alerted & fraud_ids)

    card_alerts: dict[str, list[tuple[int, str]]] = defaultdict(list)
    day_alerted_cards: dict[str, set[str]] = defaultdict(set)
    for t in test:
        if t.transaction_id in alerted:
            card_alerts[t.account_id].append((t.ts_ms, t.transaction_id))
            day_alerted_cards[_day(t.ts_ms)].add(t.account_id)
    for alerts in card_alerts.values():
        alerts.sort()
    card_times: dict[str, list[int]] = defaultdict(list)
    for t in txns:
        card_times[t.account_id].append(t.ts_ms)
    for times in card_times.values():
        times.sort()

    stories: dict[tuple[str, str], list[Txn]] = defaultdict(list)
    for t in txns:
        if t.scenario is not None and t.story_id is not None:
            stories[(t.story_id, t.account_id)].append(t)
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    delays: dict[str, list[float]] = defaultdict(list)
    before: dict[str, list[int]] = defaultdict(list)
    for (_, account), story_txns in stories.items():
        story_txns.sort(key=lambda t: t.ts_ms)
        if story_txns[0].transaction_id not in test_ids:
            continue  # began before the test set, or on a card already blocked
        case = [t for t in story_txns if t.transaction_id in test_ids]
        c = counts[case[0].scenario or ""]
        c["cases"] += 1
        c["fraud_txns"] += len(case)
        c["fraud_txns_alerted"] += sum(1 for t in case if t.transaction_id in alerted)
        first, last = case[0].ts_ms, case[-1].ts_ms
        if bisect.bisect_left(card_times[account], first) < min_history:
            c["cold"] += 1
        alerts = card_alerts.get(account, [])
        lo = bisect.bisect_left(alerts, (first, ""))
        if lo >= len(alerts) or alerts[lo][0] > last:
            continue
        c["caught"] += 1
        alert_ts = alerts[lo][0]
        delays[case[0].scenario or ""].append((alert_ts - first) / 60_000)
        before[case[0].scenario or ""].append(sum(1 for t in case if t.ts_ms < alert_ts))
    per_scenario = {
        scenario: {
            "cases": c["cases"],
            "caught": c["caught"],
            "cold": c["cold"],
            "case_recall": ratio(c["caught"], c["cases"]),
            "fraud_txns": c["fraud_txns"],
            "fraud_txns_alerted": c["fraud_txns_alerted"],
            "txn_recall": ratio(c["fraud_txns_alerted"], c["fraud_txns"]),
            "median_delay_min": median(delays[scenario]),
            "median_frauds_before_alert": median(before[scenario]),
        }
        for scenario, c in sorted(counts.items(), key=lambda item: _scenario_rank(item[0]))
    }

    rule_alerts: Counter[str] = Counter()
    rule_on_fraud: Counter[str] = Counter()
    for txn_id in alerted:
        for rule in said[txn_id].rules:
            rule_alerts[rule] += 1
            rule_on_fraud[rule] += txn_id in fraud_ids
    by_severity: Counter[str] = Counter()
    severity_on_fraud: Counter[str] = Counter()
    for txn_id in alerted:
        sev = said[txn_id].severity
        if sev is not None:
            by_severity[sev] += 1
            severity_on_fraud[sev] += txn_id in fraud_ids
    per_severity = {
        sev: {
            "alerts": by_severity[sev],
            "share": ratio(by_severity[sev], len(alerted)),
            "precision": ratio(severity_on_fraud[sev], by_severity[sev]),
        }
        for sev in SEVERITIES
        if by_severity
    }
    per_rule = {
        rule: {
            "alerts": n,
            "alerts_on_fraud": rule_on_fraud[rule],
            "precision": ratio(rule_on_fraud[rule], n),
        }
        for rule, n in sorted(rule_alerts.items(), key=lambda item: (-item[1], item[0]))
    }

    scores = [said[t.transaction_id].score for t in test]
    labels = [t.scenario is not None for t in test]
    day_scores: dict[str, dict[str, float]] = defaultdict(dict)
    day_compromised: dict[str, set[str]] = defaultdict(set)
    for t, s in zip(test, scores, strict=True):
        cards = day_scores[_day(t.ts_ms)]
        cards[t.account_id] = max(s, cards.get(t.account_id, 0.0))
        if t.scenario is not None:
            day_compromised[_day(t.ts_ms)].add(t.account_id)
    days = sorted(day_scores)
    cp = card_precision_at_k_days([(day_scores[d], day_compromised[d]) for d in days], k)
    return {
        "transactions": len(test),
        "unscored": sum(1 for t in test if t.transaction_id not in scored),
        "genuine": genuine,
        "fraud_txns": len(fraud_ids),
        "cases": sum(c["cases"] for c in counts.values()),
        "alerts": len(alerted),
        "alerts_on_fraud": alerts_on_fraud,
        "precision": ratio(alerts_on_fraud, len(alerted)),
        "alerts_per_1000_genuine": 1000 * len(alerted) / genuine if genuine else None,
        "false_alerts_per_1000_genuine": (
            1000 * (len(alerted) - alerts_on_fraud) / genuine if genuine else None
        ),
        "alerted_cards_per_day": (
            sum(len(day_alerted_cards[d]) for d in days) / len(days) if days else None
        ),
        "alerted_cards_by_day": {d: len(day_alerted_cards[d]) for d in days},
        # The console's case queue groups a card's undecided alerts into one case: with the
        # analysts deciding each day's queue, a day's cases are that day's alerted cards.
        "cases_worked_daily": sum(len(day_alerted_cards[d]) for d in days),
        "roc_auc": roc_auc(scores, labels),
        "average_precision": average_precision(scores, labels),
        "k": k,
        "min_history": min_history,
        "card_precision_at_k_per_day": dict(zip(days, cp, strict=True)),
        "card_precision_at_k": sum(cp) / len(cp) if cp else None,
        "compromised_cards_per_day": (
            sum(len(day_compromised[d]) for d in days) / len(days) if days else None
        ),
        "scenarios": per_scenario,
        "rules": per_rule,
        "severities": per_severity,
    }


def _scenario_rank(name: str) -> tuple[int, str]:
    return (SCENARIO_ORDER.index(name) if name in SCENARIO_ORDER else len(SCENARIO_ORDER), name)


def traffic_summary(txns: Sequence[Txn], split: Split) -> dict[str, Any]:
    """Transactions and frauds per phase of the split, and the fraud rate."""
    phases = ("history", "train", "delay", "test")
    total: Counter[str] = Counter()
    frauds: Counter[str] = Counter()
    for t in txns:
        phase = split.phase(t.ts_ms)
        total[phase] += 1
        frauds[phase] += t.scenario is not None
    n, bad = sum(total.values()), sum(frauds.values())
    return {
        "transactions": n,
        "per_day": n / split.days,
        "frauds": bad,
        "fraud_rate": ratio(bad, n),
        "phases": {p: {"transactions": total[p], "frauds": frauds[p]} for p in phases},
        "cards": len({t.account_id for t in txns}),
    }


def chargeback_summary(
    chargebacks: Iterable[Mapping[str, Any]], txns: Sequence[Txn]
) -> dict[str, Any]:
    """How much of the truth the chargebacks tell, and how late.

    Coverage: share of fraudulent transactions with a ``fraud`` label. False disputes:
    ``fraud`` labels on genuine transactions. Delay: ``reported_at`` minus the transaction's
    time, in days.
    """
    fraud_ids = {t.transaction_id for t in txns if t.scenario is not None}
    known_ids = {t.transaction_id for t in txns}
    labels: Counter[str] = Counter()
    covered: set[str] = set()
    false_disputes = unknown = 0
    delays: list[float] = []
    for cb in chargebacks:
        labels[cb["label"]] += 1
        txn_id = cb["transaction_id"]
        if txn_id not in known_ids:
            unknown += 1
        elif cb["label"] == "fraud":
            if txn_id in fraud_ids:
                covered.add(txn_id)
            else:
                false_disputes += 1
        delays.append((_ts_ms(cb["reported_at"]) - _ts_ms(cb["timestamp"])) / DAY_MS)
    delays.sort()
    return {
        "labels": sum(labels.values()),
        "by_label": dict(sorted(labels.items())),
        "coverage": ratio(len(covered), len(fraud_ids)),
        "false_disputes": false_disputes,
        "unknown_transactions": unknown,
        "median_delay_days": median(delays),
        "p90_delay_days": delays[int(0.9 * (len(delays) - 1))] if delays else None,
    }


def ap_ratio(results: Mapping[str, Mapping[str, Any]]) -> float | None:
    """Average precision of fraudwatch over the random forest's."""
    forest = results["forest"]["average_precision"]
    return results["fraudwatch"]["average_precision"] / forest if forest else None


# --------------------------------------------------------------------------- reading runs


def _ts_ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def _json_lines(path: Path) -> Iterator[dict[str, Any]]:
    for line in path.read_bytes().splitlines():
        if line.strip():
            yield orjson.loads(line)


def load_truth(records: Path, labels: Path) -> tuple[list[Txn], int]:
    """Valid transactions of the ``--out`` file with their labels; and how many were skipped.

    Malformed records (labelled ``malformed`` or not even JSON) take no part in the scoring.
    """
    truth: dict[str, tuple[str, str]] = {}
    malformed: set[str] = set()
    for label in _json_lines(labels):
        if label["scenario"] == "malformed":
            malformed.add(label["transaction_id"])
        else:
            truth[label["transaction_id"]] = (label["scenario"], label["story_id"])
    txns: list[Txn] = []
    skipped = 0
    for line in records.read_bytes().splitlines():
        try:
            record = orjson.loads(line)
            txn_id = record["transaction_id"]
            ts = _ts_ms(record["timestamp"])
            account = record["account_id"]
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            skipped += 1
            continue
        if txn_id in malformed:
            skipped += 1
            continue
        scenario, story = truth.get(txn_id, (None, None))
        txns.append(Txn(txn_id, account, ts, scenario, story))
    return txns, skipped


def read_alerts(path: Path) -> dict[str, Scored]:
    """An alerts file (``dataflows.backtest -o``) as scores: each alert's score, alerted."""
    return {
        a["transaction_id"]: Scored(
            float(a["score"]),
            True,
            tuple(r["rule"] for r in a.get("reasons", ())),
            a.get("severity"),
        )
        for a in _json_lines(path)
    }


def read_scores(path: Path, alerts: Mapping[str, Scored] | None = None) -> dict[str, Scored]:
    """A scores file (one ``{"transaction_id", "score", "alerted"}`` per transaction).

    ``alerts`` (from ``read_alerts``) lend their rules to the alerted transactions.
    """
    out: dict[str, Scored] = {}
    for row in _json_lines(path):
        score = float(row["score"])
        if not 0.0 <= score <= 1.0:
            raise ValueError(f"{path}: score {score} of {row['transaction_id']} not in [0, 1]")
        alert = alerts.get(row["transaction_id"]) if alerts is not None else None
        lent = alert if alert is not None and row["alerted"] else None
        out[row["transaction_id"]] = Scored(
            score,
            bool(row["alerted"]),
            lent.rules if lent else (),
            lent.severity if lent else None,
        )
    return out


def alert_essentials(alert: Mapping[str, Any]) -> tuple[Any, ...]:
    """What must be identical between the live run and the backtest for one alert."""
    return (
        alert["transaction_id"],
        alert["account_id"],
        alert["score"],
        alert["severity"],
        tuple((r["rule"], r["score"], r["detail"]) for r in alert["reasons"]),
        tuple(alert["evidence"]),
        alert["late"],
        alert["ruleset_version"],
    )


def compare_alerts(
    live: Mapping[str, tuple[Any, ...]], backtest: Mapping[str, tuple[Any, ...]]
) -> list[str]:
    """Differences between two alert sets by alert id (empty: they agree exactly)."""
    problems = []
    missing = sorted(set(backtest) - set(live))
    extra = sorted(set(live) - set(backtest))
    differ = sorted(i for i in set(live) & set(backtest) if live[i] != backtest[i])
    if missing:
        problems.append(f"{len(missing)} backtest alert(s) missing live, e.g. {missing[:3]}")
    if extra:
        problems.append(f"{len(extra)} live alert(s) not in the backtest, e.g. {extra[:3]}")
    for alert_id in differ[:3]:
        problems.append(f"alert {alert_id}: live {live[alert_id]} != backtest {backtest[alert_id]}")
    if len(differ) > 3:
        problems.append(f"... {len(differ)} alerts differ in all")
    return problems


# --------------------------------------------------------------------------- commands


def _help_options(argv: Sequence[str], cwd: Path, env: Mapping[str, str]) -> frozenset[str]:
    """The ``--long`` options a command's ``--help`` lists."""
    out = subprocess.run(
        [*argv, "--help"], cwd=cwd, env=dict(env), capture_output=True, text=True, timeout=120,
        check=False,
    ).stdout  # fmt: skip
    return frozenset(
        word.rstrip(",").split("=")[0]
        for word in out.split()
        if word.startswith("--") and len(word) > 2
    )


@dataclass(frozen=True)
class Producer:
    """``python -m producer generate`` as this checkout has it (options probed once)."""

    options: frozenset[str]

    @classmethod
    def probe(cls, env: Mapping[str, str]) -> Producer:
        """Ask the producer which options it has (chargebacks and amount scale are new)."""
        return cls(_help_options([sys.executable, "-m", "producer", "generate"], REPO_ROOT, env))

    @property
    def chargebacks(self) -> bool:
        """Whether it writes delayed chargebacks (``--chargebacks-out``)."""
        return "--chargebacks-out" in self.options

    def missing(self, profile: Profile) -> str | None:
        """Why this producer cannot generate ``profile`` (None: it can)."""
        if profile.amount_scale is not None and "--amount-scale" not in self.options:
            return "the producer has no --amount-scale option yet"
        return None

    def args(self, plan: RunPlan, profile: Profile) -> list[str]:
        """The traffic options: the same for every profile but the profile's own."""
        args = [
            "--rate", "max", "--cards", str(plan.cards), "--days", f"{plan.split.days:g}",
            "--seed", str(plan.seed), "--start", format_ms(plan.split.history_start_ms),
            "--fraud-ratio", f"{plan.fraud_ratio:g}", "--bad-ratio", "0",
            "--scenario-profile", profile.scenario_profile,
        ]  # fmt: skip
        if profile.amount_scale is not None:
            args += ["--amount-scale", profile.amount_scale]
        return args

    def command(
        self, plan: RunPlan, profile: Profile, files: RunFiles, kafka: Sequence[str] = ()
    ) -> list[str]:
        """The whole command; ``kafka`` (``--topic T --bootstrap-servers B``) or no Kafka."""
        argv = [sys.executable, "-m", "producer", "generate", *self.args(plan, profile),
                "--out", str(files.transactions), "--labels-out", str(files.truth),
                "--log-interval", "30"]  # fmt: skip
        if self.chargebacks:
            argv += ["--chargebacks-out", str(files.chargebacks)]
        return [*argv, *kafka] if kafka else [*argv, "--no-kafka"]


@dataclass(frozen=True)
class Backtest:
    """``python -m dataflows.backtest`` of one code tree, with what that version accepts."""

    root: Path
    rules_file: Path
    options: frozenset[str]

    @classmethod
    def probe(cls, root: Path, rules_file: Path, env: Mapping[str, str]) -> Backtest:
        """Ask that tree's backtest which options it has."""
        return cls(root, rules_file, _help_options(_BACKTEST, root, _tree_env(env, root)))

    @property
    def scores(self) -> bool:
        """Whether it writes a score for every transaction (``--scores-out``); older ones
        print alerts only, and an unalerted transaction then scores 0."""
        return "--scores-out" in self.options

    @property
    def labels(self) -> bool:
        """Whether it learns from labels (``--labels``)."""
        return "--labels" in self.options

    def command(self, files: RunFiles, tag: str, chargebacks: bool) -> list[str]:
        """Backtest the run's transactions, alerts (and scores) into files named by ``tag``."""
        argv = [*_BACKTEST, str(files.transactions), "--rules", str(self.rules_file),
                "-o", str(files.alerts(tag))]  # fmt: skip
        if self.scores:
            argv += ["--scores-out", str(files.scores(tag))]
        if self.labels and chargebacks:
            argv += ["--labels", str(files.chargebacks)]
        if "--models-out" in self.options and chargebacks:
            argv += ["--models-out", str(files.models(tag)), "--budget", str(BUDGET)]
        return argv

    def read(self, files: RunFiles, tag: str) -> dict[str, Scored]:
        """What it said about each transaction."""
        alerts = read_alerts(files.alerts(tag))
        return read_scores(files.scores(tag), alerts) if self.scores else alerts


_BACKTEST = (sys.executable, "-m", "dataflows.backtest")


def _tree_env(env: Mapping[str, str], root: Path) -> dict[str, str]:
    """The environment for running the code of ``root`` (this checkout, or an extracted one)."""
    out = {k: v for k, v in env.items() if k not in {"FRAUD_RULES_FILE", "PYTHONPATH"}}
    if root != REPO_ROOT:
        out["PYTHONPATH"] = str(root)
    return out


def extract_commit(commit: str, into: Path) -> Path:
    """The tree of ``commit`` under ``into`` (extracted once, then reused)."""
    tree = into / f"code-{commit}"
    done = tree / ".extracted"
    if done.exists():
        return tree
    shutil.rmtree(tree, ignore_errors=True)
    tree.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "archive", commit], cwd=REPO_ROOT, capture_output=True, check=False, timeout=120
    )
    if archive.returncode != 0:
        raise EvaluationError(
            f"cannot extract commit {commit}: {archive.stderr.decode(errors='replace').strip()}"
        )
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True, timeout=120)
    done.touch()
    return tree


@dataclass(frozen=True)
class RunPlan:
    """What every profile generates: the same cards, seed, weeks and fraud ratio."""

    cards: int
    seed: int
    fraud_ratio: float
    split: Split


@dataclass(frozen=True)
class RunFiles:
    """Where one profile's files live."""

    folder: Path

    @property
    def transactions(self) -> Path:
        return self.folder / "transactions.jsonl"

    @property
    def truth(self) -> Path:
        return self.folder / "truth.jsonl"

    @property
    def chargebacks(self) -> Path:
        return self.folder / "chargebacks.jsonl"

    def alerts(self, tag: str) -> Path:
        return self.folder / f"{tag}-alerts.jsonl"

    def scores(self, tag: str) -> Path:
        return self.folder / f"{tag}-scores.jsonl"

    def models(self, tag: str) -> Path:
        return self.folder / f"{tag}-models.jsonl"

    def log(self, step: str) -> Path:
        return self.folder / f"{step}.log"


@contextlib.contextmanager
def _process(
    argv: Sequence[str], log: Path, env: Mapping[str, str], cwd: Path = REPO_ROOT
) -> Iterator[subprocess.Popen[bytes]]:
    """A child process in its own session, logging to ``log``; killed if still running."""
    with log.open("ab") as out:
        proc = subprocess.Popen(
            ["nice", "-n", "10", *argv], cwd=cwd, env=dict(env), stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        yield proc
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _run(
    argv: Sequence[str], log: Path, env: Mapping[str, str], what: str, timeout: float,
    cwd: Path = REPO_ROOT,
) -> float:  # fmt: skip
    """Run a step to completion; its wall time in seconds, or an error naming its log."""
    started = time.monotonic()
    with _process(argv, log, env, cwd) as proc:
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise EvaluationError(
                f"{what} did not finish within {timeout:.0f} s; log: {log}"
            ) from None
    if code != 0:
        tail = log.read_text(errors="replace")[-2000:]
        raise EvaluationError(f"{what} failed with exit code {code} (log {log}):\n{tail}")
    return time.monotonic() - started


def _display(argv: Sequence[str], files: RunFiles) -> str:
    """A command as a reader would type it: ``python``, run files relative to the profile
    folder, other paths relative to the checkout."""
    shown = ["python" if a == sys.executable else a for a in argv]
    return shlex.join(a.replace(f"{files.folder}/", "").replace(f"{REPO_ROOT}/", "") for a in shown)


# --------------------------------------------------------------------------- one profile


@dataclass(frozen=True)
class Setup:
    """Everything the profiles share."""

    plan: RunPlan
    producer: Producer
    fraudwatch: Backtest
    today: Backtest
    env: Mapping[str, str]
    workdir: Path
    k: int
    min_history: int
    timeout: float
    forest_jobs: int


def evaluate_profile(setup: Setup, profile: Profile, live: LiveStack | None) -> dict[str, Any]:
    """Generate one profile's traffic, run the three detectors, score them."""
    from bench.baselines import handbook_rf

    files = RunFiles(setup.workdir / profile.name)
    shutil.rmtree(files.folder, ignore_errors=True)
    files.folder.mkdir(parents=True)
    seconds: dict[str, float] = {}
    env = setup.env
    plan = setup.plan
    notes: list[str] = []
    kafka: list[str] = []
    if live is not None:
        live.create(profile.name)
        kafka = ["--topic", live.topics[0], "--bootstrap-servers", live.bootstrap]
    producer = setup.producer.command(plan, profile, files, kafka)
    seconds["generate"] = _run(producer, files.log("producer"), env, "the producer",
                               setup.timeout)  # fmt: skip
    _say(f"[{profile.name}] generated in {seconds['generate']:.1f} s")
    chargebacks = setup.producer.chargebacks
    if not chargebacks:
        notes.append("the producer has no --chargebacks-out yet: no chargebacks, so fraudwatch "
                     "learned from no labels")  # fmt: skip
    elif not setup.fraudwatch.labels:
        notes.append("this checkout's backtest has no --labels yet: fraudwatch learned from no "
                     "labels")  # fmt: skip

    scored: dict[str, dict[str, Scored]] = {}
    commands = {"producer": _display(setup.producer.command(plan, profile, files), files)}
    for tag, backtest in (("fraudwatch", setup.fraudwatch), ("today", setup.today)):
        argv = backtest.command(files, tag, chargebacks)
        commands[tag] = _display(argv, files)
        seconds[f"{tag} backtest"] = _run(argv, files.log(tag), _tree_env(env, backtest.root),
                            f"the {tag} backtest", setup.timeout, cwd=backtest.root)  # fmt: skip
        scored[tag] = backtest.read(files, tag)
        _say(f"[{profile.name}] {tag} backtest in {seconds[f'{tag} backtest']:.1f} s")

    started = time.monotonic()
    forest_txns = handbook_rf.load_transactions(files.transactions, files.truth, EXCHANGE_RATES)
    forest_scores, forest_seconds = handbook_rf.score_test_week(
        forest_txns, plan.split, setup.forest_jobs
    )
    handbook_rf.write_scores(files.scores("forest"), forest_scores)
    scored["forest"] = {
        i: Scored(s, s >= handbook_rf.ALERT_THRESHOLD) for i, s in forest_scores.items()
    }
    seconds["forest (read, features, fit, predict)"] = time.monotonic() - started
    seconds.update({f"forest: {step}": s for step, s in forest_seconds.items()})
    _say(f"[{profile.name}] random forest in {time.monotonic() - started:.1f} s")

    started = time.monotonic()
    txns, skipped = load_truth(files.transactions, files.truth)
    test, removed = handbook_test_set(txns, plan.split)
    results = {
        d.key: score_run(txns, test, scored[d.key], setup.k, setup.min_history) for d in DETECTORS
    }
    for tag, backtest in (("fraudwatch", setup.fraudwatch), ("today", setup.today)):
        if not backtest.scores:
            results[tag]["unscored"] = None  # it prints alerts only: the rest score 0 by design
    cb = chargeback_summary(_json_lines(files.chargebacks), txns) if chargebacks else None
    seconds["score"] = time.monotonic() - started
    agreement = None
    if live is not None:
        agreement = live.compare(profile.name, files, env, setup.timeout, seconds)
    ratio_ = ap_ratio(results)
    trainer = trainer_summary(files.models("fraudwatch"))
    _say(
        f"[{profile.name}] AP fraudwatch {results['fraudwatch']['average_precision']:.4f}, "
        f"today {results['today']['average_precision']:.4f}, "
        f"forest {results['forest']['average_precision']:.4f}; ratio "
        + (f"{ratio_:.2f}" if ratio_ is not None else NONE)
    )
    return {
        "profile": dataclasses.asdict(profile),
        "commands": commands,
        "traffic": traffic_summary(txns, plan.split),
        "skipped_records": skipped,
        "chargebacks": cb,
        "test_set": {"transactions": len(test), "removed": removed},
        "results": results,
        "ap_ratio": ratio_,
        "trainer": trainer,
        "notes": notes,
        "agreement": agreement,
        "seconds": seconds,
    }


def trainer_summary(models: Path) -> dict[str, Any] | None:
    """The simulated trainer's decisions (``--models-out``): promotions, cost per retrain."""
    if not models.exists():
        return None
    docs = [d["model"] for d in _json_lines(models) if d.get("model")]
    days = sum(1 for _ in _json_lines(models))
    seconds = [d["metrics"]["train_seconds"] for d in docs]
    rss = [d["metrics"]["peak_rss_mb"] for d in docs]
    extra = [e for d in docs if (e := d["metrics"].get("retrain_extra_mb")) is not None]
    return {
        "decisions": days,
        "candidates": len(docs),
        "promoted": sum(1 for d in docs if d["status"] == "promoted"),
        "train_seconds_mean": sum(seconds) / len(seconds) if seconds else None,
        "train_seconds_max": max(seconds, default=None),
        "peak_rss_mb": max(rss, default=None),
        "retrain_extra_mb": max(extra, default=None),
        "train_rows_max": max((d["metrics"]["train_rows"] for d in docs), default=None),
    }


def _say(text: str) -> None:
    print(f"[evaluate {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- the live run


@dataclass
class LiveStack:
    """``--live``: the fraudwatch pipeline on the real stack, checked against its backtest.

    The producer also sends the traffic to a fresh topic; ``python -m bytewax.run
    dataflows.fraud`` reads it to the end into a fresh MongoDB database; its alerts must be
    exactly the backtest's. (The chargebacks are not replayed to the labels topic here: with
    label learning, live == backtest is the integration tests' job.)
    """

    bootstrap: str
    mongo_uri: str
    topics: tuple[str, str, str] = ("", "", "")
    database: str = ""

    def create(self, profile: str) -> None:
        """Fresh topics and database names for one profile; creates the topics."""
        from fraudwatch.clients import ensure_topics, plaintext_kafka

        tag = uuid.uuid4().hex[:8]
        self.topics = (f"evaluate-{tag}-tx", f"evaluate-{tag}-alerts", f"evaluate-{tag}-dlq")
        self.database = f"evaluate_{tag}"
        _say(f"[{profile}] live: topics {', '.join(self.topics)}; database {self.database}")
        kafka = plaintext_kafka(self.bootstrap)
        ensure_topics(kafka, dict(zip(self.topics, (3, 3, 1), strict=True)))
        ensure_topics(kafka, {f"{self.topics[0]}-features": 1})

    def compare(
        self, profile: str, files: RunFiles, env: Mapping[str, str], timeout: float,
        seconds: dict[str, float],
    ) -> dict[str, Any]:  # fmt: skip
        """Run the dataflow over the topic; its alerts against the backtest's; drop it all."""
        tx, alerts_topic, dlq = self.topics
        flow_env = {
            **_tree_env(env, REPO_ROOT), "MONGODB_URI": self.mongo_uri,
            "MONGODB_DATABASE": self.database, "TRANSACTIONS_TOPIC": tx,
            "ALERTS_TOPIC": alerts_topic, "DLQ_TOPIC": dlq, "FRAUD_STOP_AT_END": "1",
            "FEATURES_TOPIC": f"{tx}-features",
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
        }  # fmt: skip
        try:
            seconds["live dataflow"] = _run(
                [sys.executable, "-m", "bytewax.run", "dataflows.fraud"], files.log("dataflow"),
                flow_env, "the dataflow", timeout,
            )  # fmt: skip
            live = self._alerts()
        finally:
            self.drop()
        backtest = {
            a["alert_id"]: alert_essentials(a) for a in _json_lines(files.alerts("fraudwatch"))
        }
        problems = compare_alerts(live, backtest)
        if problems:
            raise EvaluationError(
                f"[{profile}] the live run and the backtest disagree:\n" + "\n".join(problems)
            )
        return {"live_alerts": len(live), "backtest_alerts": len(backtest), "identical": True}

    def _mongo(self) -> Any:
        from fraudwatch.clients import mongo_at, mongo_client

        return mongo_client(mongo_at(self.mongo_uri), serverSelectionTimeoutMS=10_000)

    def _alerts(self) -> dict[str, tuple[Any, ...]]:
        client = self._mongo()
        try:
            fields = ("transaction_id", "account_id", "score", "severity", "reasons",
                      "evidence", "late", "ruleset_version")  # fmt: skip
            cursor = client[self.database]["alerts"].find({}, dict.fromkeys(fields, 1))
            return {doc["_id"]: alert_essentials(doc) for doc in cursor}
        finally:
            client.close()

    def drop(self) -> None:
        """Delete the run's topics and database."""
        from fraudwatch.clients import delete_topics, plaintext_kafka

        # best effort: a topic the run never created
        delete_topics(plaintext_kafka(self.bootstrap), self.topics)
        client = self._mongo()
        try:
            client.drop_database(self.database)
        finally:
            client.close()

    def check(self) -> None:
        """Fail early, with the fix, when Kafka or MongoDB does not answer."""
        from fraudwatch.clients import admin_client, plaintext_kafka

        try:
            admin_client(plaintext_kafka(self.bootstrap)).list_topics(timeout=10)
        except Exception as exc:
            raise EvaluationError(
                f"Kafka is not reachable at {self.bootstrap} ({exc}): is the stack up? run "
                "`make up`"
            ) from None
        client = self._mongo()
        try:
            client.admin.command("ping")
        except Exception as exc:
            raise EvaluationError(
                f"MongoDB is not reachable at {self.mongo_uri} ({exc}): is the stack up? run "
                "`make up`"
            ) from None
        finally:
            client.close()


# --------------------------------------------------------------------------- the report


def _pct(x: float | None) -> str:
    return NONE if x is None else f"{100 * x:.1f}%"


def _num(x: float | None, digits: int = 1) -> str:
    return NONE if x is None else f"{x:,.{digits}f}"


def _int(x: int | None) -> str:
    return NONE if x is None else f"{x:,}"


def shift_rows() -> list[tuple[str, str, str, str]]:
    """(scenario, parameter, default, shifted) for every parameter the shifted profile moves."""
    from producer.scenarios import DEFAULT_PROFILE, SHIFTED_PROFILE

    rows = []
    for scenario in SCENARIO_ORDER:
        default, shifted = getattr(DEFAULT_PROFILE, scenario), getattr(SHIFTED_PROFILE, scenario)
        for f in dataclasses.fields(default):
            a, b = getattr(default, f.name), getattr(shifted, f.name)
            if a != b:
                rows.append((scenario, f.name, _range(a), _range(b)))
    return rows


def _range(value: Any) -> str:
    if isinstance(value, tuple):
        return NONE.join(f"{v:g}" for v in value)
    return f"{value:g}"


def _machine() -> list[str]:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions = ", ".join(
        f"{name} {importlib.metadata.version(name)}"
        for name in ("bytewax", "scikit-learn", "numpy", "Faker")
    )
    return [
        f"{platform.system()} {platform.release()}, {os.cpu_count()} CPUs ({cpu}), "
        f"load average at start {os.getloadavg()[0]:.1f} (a machine shared with other work)",
        f"Python {platform.python_version()}; {versions}",
    ]


# What the evaluation runs: a change here (not elsewhere in the checkout) makes the run's
# commit an imprecise reference, and the report says so.
_CODE_PATHS = ("producer", "dataflows", "fraudwatch", "config", "bench/evaluate.py",
               "bench/metrics.py", "bench/handbook", "bench/baselines/handbook_rf.py")  # fmt: skip


def _git_commit() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True,
            text=True, check=True, timeout=10,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", *_CODE_PATHS],
            cwd=REPO_ROOT, capture_output=True, text=True, check=True, timeout=10,
        ).stdout.splitlines()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    changed = sorted(line[3:] for line in dirty)
    return f"{head} (with uncommitted changes to {', '.join(changed)})" if changed else head


@dataclass(frozen=True)
class RunInfo:
    """What the report says about the run as a whole."""

    command: str
    started: datetime
    total_s: float
    commit: str
    ruleset_version: str
    machine: Sequence[str]
    split: Split
    cards: int
    live: bool


def _table(head: Sequence[str], rows: Iterable[Sequence[str]], align: str = "") -> list[str]:
    """A markdown table; ``align``: one letter per column, ``l`` left, otherwise right."""
    marks = [
        "---" if (align[i] if i < len(align) else "r") == "l" else "---:" for i in range(len(head))
    ]
    return [
        "| " + " | ".join(head) + " |",
        "|" + "|".join(marks) + "|",
        *("| " + " | ".join(row) + " |" for row in rows),
    ]


# (label, key, format) of the per-profile metrics table, in order.
_METRICS: tuple[tuple[str, str, Any], ...] = (
    ("ROC AUC", "roc_auc", lambda x: _num(x, 4)),
    ("average precision", "average_precision", lambda x: _num(x, 4)),
    ("card precision@{k}, mean of the test days", "card_precision_at_k", lambda x: _num(x, 3)),
    ("alerts", "alerts", _int),
    ("alerts on fraudulent transactions", "alerts_on_fraud", _int),
    ("alert precision", "precision", _pct),
    ("alerted cards per day", "alerted_cards_per_day", lambda x: _num(x, 1)),
    ("cases in the queue, worked daily (a card's alerts of a day)", "cases_worked_daily", _int),
    ("alerts per 1,000 genuine transactions", "alerts_per_1000_genuine", lambda x: _num(x, 2)),
    ("false alerts per 1,000 genuine transactions", "false_alerts_per_1000_genuine",
     lambda x: _num(x, 2)),
    ("test transactions it should have scored but did not", "unscored", _int),
)  # fmt: skip

_SCENARIO_COLS = ("case recall", "txn recall", "median delay (min)")


def render_report(runs: Mapping[str, Mapping[str, Any]], info: RunInfo) -> str:
    """docs/evaluation.md from the runs' results (every number in it comes from ``runs``)."""
    done = {n: r for n, r in runs.items() if "skipped" not in r}
    skipped = {n: r["skipped"] for n, r in runs.items() if "skipped" in r}
    split = info.split
    dates = split.dates()
    out: list[str] = []
    w = out.append
    w("# Detection evaluation\n")
    w(
        "Written by `make evaluate` from its latest run; every figure below comes from that run "
        "and the command reproduces it (do not edit by hand).\n"
    )
    w(f"- command: `{info.command}` (what `make evaluate` runs)")
    w(
        f"- run at: {info.started:%Y-%m-%d %H:%M} UTC, took {info.total_s / 60:.1f} min in all "
        f"(load average at the end {os.getloadavg()[0]:.1f})"
    )
    w(f"- code: commit {info.commit}; rules `config/rules.toml` version {info.ruleset_version}")
    for line in info.machine:
        w(f"- machine: {line}")
    w(
        f"- traffic: {info.cards:,} cards over {split.days:g} days from {dates['history_start']}"
        ", generated per profile (commands under *Commands*), ~"
        + " / ".join(f"{r['traffic']['per_day']:,.0f}" for r in done.values())
        + " transactions a day ("
        + " / ".join(done)
        + ")"
    )
    w(
        "- split (Le Borgne et al.'s handbook, days are UTC days): history "
        f"{dates['history_start'][:10]} to {dates['train_start'][:10]} (the detectors' state "
        f"and the 30-day features warm up), training week {dates['train_start'][:10]} to "
        f"{dates['delay_start'][:10]} (the random forest learns it), delay week "
        f"{dates['delay_start'][:10]} to {dates['test_start'][:10]} (labels not yet known), "
        f"test week {dates['test_start'][:10]} to {dates['end'][:10]} (scored); each to the "
        "start of the next, exclusive"
    )
    w(
        "- detectors, each over the same files: **fraudwatch** = `python -m dataflows.backtest` "
        "of this checkout (the stream's exact code), given the chargebacks; **today's rules** "
        f"= the same command at commit {TODAY_COMMIT}; **random forest** = the handbook's "
        "baseline, `bench/baselines/handbook_rf.py` (*Definitions*)"
    )
    w(
        "- live pipeline: "
        + (
            "`--live` ran the fraudwatch dataflow on Kafka and MongoDB too (*Live pipeline*)"
            if info.live
            else "not run (`--live` adds it; live == backtest is proven by the integration tests)"
        )
    )
    for name, reason in skipped.items():
        w(f"- profile `{name}` not run: {reason}")
    notes = sorted({note for r in done.values() for note in r["notes"]})
    for note in notes:
        w(f"- note: {note}")
    w("")

    w("## Against the random forest\n")
    w(
        "The targets (issue #12): on every profile, fraudwatch's average precision and card "
        "precision@100 at least the random forest's, from the live system's own scores (the "
        "backtest simulates its trainer; no offline training), and alerted cards per test day "
        f"within ±20 % of the budget ({BUDGET}).\n"
    )
    rows = []
    for name, r in done.items():
        res, ratio_ = r["results"], r["ap_ratio"]
        fw, forest = res["fraudwatch"], res["forest"]
        met = NONE if ratio_ is None else ("yes" if ratio_ >= AP_TARGET else "no")
        cp_fw, cp_rf = fw.get("card_precision_at_k"), forest.get("card_precision_at_k")
        cp_met = NONE if cp_fw is None or cp_rf is None else ("yes" if cp_fw >= cp_rf else "no")
        by_day = list((fw.get("alerted_cards_by_day") or {}).values())
        inside = [abs(n - BUDGET) <= 0.2 * BUDGET for n in by_day]
        rows.append([
            name, _num(fw["average_precision"], 4), _num(res["today"]["average_precision"], 4),
            _num(forest["average_precision"], 4), _num(ratio_, 2), met,
            _num(cp_fw, 3), _num(cp_rf, 3), cp_met,
            f"{_num(fw.get('alerted_cards_per_day'), 1)} ({min(by_day, default=0)}-"
            f"{max(by_day, default=0)})",
            f"{sum(inside)} of {len(inside)}",
        ])  # fmt: skip
    head = ["profile", "AP fraudwatch", "AP today's rules", "AP random forest",
            "fraudwatch / forest", f">= {AP_TARGET:.2f}", "CP@100 fraudwatch",
            "CP@100 forest", ">= forest", "alerted cards / day (min-max)",
            "days within ±20 %"]  # fmt: skip
    out.extend(_table(head, rows, "l"))
    spread = {n: r["results"]["fraudwatch"].get("severities") for n, r in done.items()}
    if any(spread.values()):
        w("\nSeverity spread: the share of fraudwatch's test-set alerts in each band (cut-offs "
          "published with each operating point, docs/detection.md *Severity*), and the share "
          "of each band's alerts on fraud.\n")  # fmt: skip
        rows = [
            [name, *(_severity_cell(sev.get(s)) for s in SEVERITIES)]
            for name in done if (sev := spread[name])
        ]  # fmt: skip
        out.extend(_table(["profile", *SEVERITIES], rows, "l"))
    trainers = {name: r.get("trainer") for name, r in done.items() if r.get("trainer")}
    if trainers:
        w("\n### The trainer, simulated in event time\n")
        w("One decision per day of the 56; a candidate is trained once 20 labelled frauds in 3 "
          "final days exist, and promoted only if its AP on the newest final day is not below "
          "the current model's. Cost per retrain on this machine (one thread):\n")  # fmt: skip
        rows = [
            [name, str(t["decisions"]), str(t["candidates"]), str(t["promoted"]),
             _num(t["train_seconds_mean"], 2), _num(t["train_seconds_max"], 2),
             _int(t["train_rows_max"]), _num(t.get("retrain_extra_mb"), 0),
             _num(t["peak_rss_mb"], 0)]
            for name, t in trainers.items()
        ]  # fmt: skip
        out.extend(_table(["profile", "decisions", "candidates", "promoted",
                           "s per retrain (mean)", "s (max)", "training rows (max)",
                           "memory a retrain adds, MB (max)",
                           "peak RSS of the whole backtest, MB"], rows, "l"))  # fmt: skip

    w("\n## The data\n")
    rows = []
    for name, r in done.items():
        t, test, cb = r["traffic"], r["test_set"], r["chargebacks"]
        rows.append([
            name, _int(t["transactions"]), _num(t["per_day"], 0), _int(t["frauds"]),
            _pct3(t["fraud_rate"]), _int(t["phases"]["train"]["frauds"]),
            _int(test["transactions"]), _int(r["results"]["forest"]["fraud_txns"]),
            _int(r["results"]["forest"]["cases"]),
            _num(r["results"]["forest"]["compromised_cards_per_day"], 1),
            f"{test['removed']['transactions']:,} / {test['removed']['frauds']:,}",
            NONE if cb is None else _int(cb["labels"]),
            NONE if cb is None else _pct(cb["coverage"]),
            NONE if cb is None else _int(cb["false_disputes"]),
            NONE if cb is None else _num(cb["median_delay_days"], 1),
        ])  # fmt: skip
    head = ["profile", "transactions", "per day", "frauds", "fraud rate",
            "training-week frauds", "test set", "test frauds", "test cases",
            "compromised cards per day",
            "removed (txns / frauds)", "chargebacks", "of frauds covered", "false disputes",
            "median delay (days)"]  # fmt: skip
    out.extend(_table(head, rows, "l"))
    w(
        "\nTest set: the test week's valid transactions less those of cards known to be "
        "compromised (*Definitions*); removed: those. Chargebacks: the labels the bank gets "
        "(the producer's `--chargebacks-out`), with the share of fraudulent transactions they "
        "cover, disputes of genuine transactions, and the median time from transaction to report."
    )

    for name, r in done.items():
        res = r["results"]
        k = res["forest"]["k"]
        w(f"\n## Profile `{name}`\n")
        if name in PROFILES:
            w(PROFILES[name].what[0].upper() + PROFILES[name].what[1:] + ".\n")
        head = ["metric", *(d.title for d in DETECTORS)]
        rows = [
            [label.format(k=k), *(fmt(res[d.key][key]) for d in DETECTORS)]
            for label, key, fmt in _METRICS
        ]
        rows += [
            [f"card precision@{k}, {day}",
             *(_num(res[d.key]["card_precision_at_k_per_day"].get(day), 3) for d in DETECTORS)]
            for day in res["forest"]["card_precision_at_k_per_day"]
        ]  # fmt: skip
        out.extend(_table(head, rows, "l"))
        w(f"\nPer scenario (each cell: {' / '.join(d.key for d in DETECTORS)}):\n")
        scenarios = sorted(res["forest"]["scenarios"], key=_scenario_rank)
        rows = []
        for s in scenarios:
            base = res["forest"]["scenarios"][s]
            cells = [
                " / ".join(_scenario_cell(res[d.key]["scenarios"].get(s), col) for d in DETECTORS)
                for col in _SCENARIO_COLS
            ]
            rows.append([s, _int(base["cases"]), _int(base["cold"]), *cells])
        out.extend(_table(["scenario", "cases", "cold", *_SCENARIO_COLS], rows, "l"))
        rule_rows = [
            [rule, *(_rule_cell(res[d.key]["rules"].get(rule)) for d in DETECTORS[:2])]
            for rule in _rules_of(res)
        ]
        if rule_rows:
            w("\nAlerts by rule in the test set: alerts whose reasons include the rule "
              "(share of them on fraud).\n")  # fmt: skip
            out.extend(_table(["rule", *(d.title for d in DETECTORS[:2])], rule_rows, "l"))

    if info.live:
        w("\n## Live pipeline\n")
        rows = [
            [n, _int(a["live_alerts"]), _int(a["backtest_alerts"]),
             "yes" if a["identical"] else "NO"]
            for n, r in done.items() if (a := r["agreement"]) is not None
        ]  # fmt: skip
        out.extend(_table(["profile", "live alerts (whole run)", "backtest alerts", "identical"],
                          rows, "l"))  # fmt: skip
        w(
            "\nIdentical: the same alert ids, and per alert the same transaction, score, "
            "severity, reasons, evidence, late flag and rule-set version. The command fails "
            "otherwise."
        )

    w("\n## The profiles\n")
    for name in done:
        p = PROFILES.get(name)
        if p is not None:
            scale = "" if p.amount_scale is None else f", `--amount-scale {p.amount_scale}`"
            w(f"- `{name}`: `--scenario-profile {p.scenario_profile}`{scale}: {p.what}.")
    w(
        "\n`--scenario-profile shifted` (producer/scenarios.py `SHIFTED_PROFILE`) changes exactly "
        "these ranges; everything else (population, genuine traffic, scenario mix, seed) is the "
        "same. Uniform draws within each range; amounts are multiples of the card's median "
        "amount, with the minimum in EUR.\n"
    )
    out.extend(_table(["scenario", "parameter", "default", "shifted"], shift_rows(), "llll"))

    w("\n## Definitions\n")
    w(
        "- Valid transaction: every record of the `--out` file (the run sends no malformed "
        "ones: `--bad-ratio 0`). Genuine: every valid transaction not in `--labels-out`."
    )
    w(
        "- Test set (the handbook's `get_train_test_set`): the test week's transactions, less, "
        "on each test day, those of cards with a fraudulent transaction from the start of the "
        "training week up to that day minus the 7-day delay (their label has arrived: the bank "
        "has blocked the card). Every metric below is over the test set."
    )
    w(
        "- Scores: every test transaction gets each detector's score in [0, 1], 0 where the "
        "detector gave none. A backtest with `--scores-out` scores every valid transaction "
        "(a miss is counted in *should have scored*); an older one prints alerts only (today's "
        "rules; they also reject zero-amount authorizations), so an unalerted transaction "
        f"scores 0 there ({NONE} in that row). Alerted: fraudwatch's and today's rules' own "
        "alerts; the random forest's score >= 0.5 (scikit-learn's `predict`)."
    )
    w(
        "- ROC AUC: Mann-Whitney rank statistic, ties count one half. Average precision: "
        "step-wise area under precision-recall, one threshold per distinct score (as "
        "scikit-learn's `average_precision_score`); the lowest threshold counts every "
        "transaction as flagged, so unscored frauds lower it."
    )
    w(
        "- Card precision@k (the handbook's `card_precision_top_k`, k = 100): per UTC test day, "
        "every card that transacted scores its highest transaction score of the day; of the k "
        "highest, the share that made a fraudulent transaction that day (cards tied at the "
        "cut-off count at their tie group's share; the divisor is always k); compromised cards "
        "found in an earlier day's top k are left out of later days; then the mean over the "
        "days. A day with fewer than k compromised cards caps it below 1, even for a perfect "
        "ranking (*compromised cards per day* in *The data*)."
    )
    w(
        "- Alert precision: alerts on fraudulent transactions / alerts. Alerted cards per day: "
        "distinct cards with an alert, mean over the test days. Alerts per 1,000 genuine "
        "transactions: the analysts' workload; false alerts: those on genuine transactions."
    )
    w(
        "- Case: one card in one fraud story, counted when its first fraudulent transaction is "
        "in the test set. Case recall: share of cases with an alert on that card between its "
        "first and last fraudulent transaction. Txn recall: share of fraudulent transactions "
        "alerted. Delay: event time from the case's first fraudulent transaction to that alert "
        f"(median over caught cases). Cold: cases on cards with fewer than "
        f"{_first_min_history(done)} earlier transactions in the run."
    )
    w(
        "- Random forest (`bench/baselines/handbook_rf.py`): the handbook's 15 baseline "
        "features (`bench/handbook/features.py`): the amount in EUR (the contract's rates, "
        "`fraudwatch/vocabulary.py`), weekend, night (UTC hour <= 6), per card (`account_id`) the "
        "number of transactions and their mean amount over the 1, 7 and 30 days up to the "
        "transaction, per merchant (`merchant_id`) the number of transactions and the share "
        "of them fraudulent over 1, 7 and 30 days ending 7 days before the transaction (labels "
        "of the last 7 days are not known yet); scikit-learn's `RandomForestClassifier` with the "
        "handbook's baseline parameters (100 trees, no depth limit, `random_state=0`), fitted "
        "on the training week."
    )
    w(
        "- Which labels each detector sees: the random forest, as in the handbook, every true "
        "label (`--labels-out`) once 7 days old, for training and for the merchant risk. That "
        "favours it: a bank only learns what its chargebacks tell, later and incompletely "
        "(*The data*). fraudwatch sees only the chargebacks, each from its `reported_at` on; "
        "today's rules see no labels. So the forest is a demanding reference, not a peer."
    )
    w(
        "- Code: `bench/evaluate.py` (runs, scoring, this page), `bench/metrics.py` (metrics), "
        "`bench/handbook/` (split, features), `bench/baselines/handbook_rf.py` (the forest)."
    )

    w("\n## Commands\n")
    w(
        "Per profile, in `.stack/evaluate/PROFILE/` (file names relative to it; `PYTHONPATH` "
        f"and the working directory of today's rules are the commit-{TODAY_COMMIT} tree, "
        f"`.stack/evaluate/code-{TODAY_COMMIT}/`):\n"
    )
    for name, r in done.items():
        w(f"- `{name}`:")
        for step, command in r["commands"].items():
            w(f"  - {step}: `{command}`")
    w(
        "- random forest: `python -m bench.baselines.handbook_rf transactions.jsonl --truth "
        f"truth.jsonl --start {dates['history_start']} --scores-out forest-scores.jsonl` "
        "(run in-process by the evaluation)"
    )

    w("\n## Time taken (s)\n")
    steps = list(dict.fromkeys(step for r in done.values() for step in r["seconds"]))
    rows = [[step, *(_num(r["seconds"].get(step)) for r in done.values())] for step in steps]
    out.extend(_table(["step", *done], rows, "l"))
    w(
        f"\nTotal for `make evaluate`, {len(done)} profile(s) and the report: "
        f"{info.total_s:.0f} s ({info.total_s / 60:.1f} min)."
    )
    return "\n".join(out) + "\n"


def _pct3(x: float | None) -> str:
    return NONE if x is None else f"{100 * x:.2f}%"


def _first_min_history(done: Mapping[str, Mapping[str, Any]]) -> str:
    for r in done.values():
        return str(r["results"]["forest"]["min_history"])
    return NONE


def _rules_of(res: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Rules of the rule-based detectors, the busiest first."""
    alerts: Counter[str] = Counter()
    for d in DETECTORS[:2]:
        for rule, v in res[d.key]["rules"].items():
            alerts[rule] += v["alerts"]
    return [rule for rule, _ in sorted(alerts.items(), key=lambda item: (-item[1], item[0]))]


def _scenario_cell(r: Mapping[str, Any] | None, col: str) -> str:
    if r is None:
        return NONE
    return {
        "case recall": lambda: _pct(r["case_recall"]),
        "txn recall": lambda: _pct(r["txn_recall"]),
        "median delay (min)": lambda: _num(r["median_delay_min"]),
    }[col]()


def _severity_cell(band: Mapping[str, Any] | None) -> str:
    if band is None:
        return NONE
    return f"{_pct(band['share'])} ({band['alerts']:,}; {_pct(band['precision'])} fraud)"


def _rule_cell(r: Mapping[str, Any] | None) -> str:
    if r is None:
        return NONE
    return f"{r['alerts']:,} ({_pct(r['precision'])})"


# --------------------------------------------------------------------------- the command


def _rules_facts(rules_file: Path) -> tuple[str, int]:
    """The rule set's version, and the history its profile rules need (for ``cold``)."""
    with rules_file.open("rb") as f:
        doc = tomllib.load(f)
    rules = doc.get("rules", {})
    needs = [
        int(rules[name]["min_history"])
        for name in ("amount_spike", "location_anomaly")
        if "min_history" in rules.get(name, {})
    ]
    return str(doc.get("version", "unknown")), min(needs, default=5)


@click.command()
@click.option("--cards", type=click.IntRange(min=10), default=4_000, show_default=True,
              help="Cards in the portfolio (~2.7 transactions a card a day).")  # fmt: skip
@click.option("--seed", type=int, default=7, show_default=True)
@click.option(
    "--start",
    default="2026-09-28T00:00:00Z",
    show_default=True,
    help="First day of the traffic (UTC midnight); the test week ends 8 weeks later.",
)
@click.option(
    "--history-weeks",
    type=click.IntRange(min=0),
    default=5,
    show_default=True,
    help="Weeks before the training week (state and 30-day features warm up).",
)
@click.option("--fraud-ratio", type=click.FloatRange(0, 0.5), default=0.01, show_default=True)
@click.option("--profiles", default="default,shifted,small,large", show_default=True,
              help=f"Comma-separated, of: {', '.join(PROFILES)}.")  # fmt: skip
@click.option("--k", type=click.IntRange(min=1), default=100, show_default=True,
              help="Cards an analyst team checks per day (card precision@k).")  # fmt: skip
@click.option("--live", is_flag=True,
              help="Also run the fraudwatch dataflow on Kafka + MongoDB (`make up` first) and "
              "require exactly the backtest's alerts.")  # fmt: skip
@click.option("--jobs", type=click.IntRange(min=1), default=2, show_default=True,
              help="Processes for fitting the random forest.")  # fmt: skip
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path),
              default=REPO_ROOT / ".stack" / "evaluate", show_default=True)  # fmt: skip
@click.option("--report", type=click.Path(dir_okay=False, path_type=Path),
              default=REPO_ROOT / "docs" / "evaluation.md", show_default=True)  # fmt: skip
@click.option("--timeout", type=float, default=900.0, show_default=True,
              help="Seconds any one step may take.")  # fmt: skip
def main(
    cards: int, seed: int, start: str, history_weeks: int, fraud_ratio: float, profiles: str,
    k: int, live: bool, jobs: int, workdir: Path, report: Path, timeout: float,
) -> None:  # fmt: skip
    """Score fraudwatch, today's rules and the handbook's forest; write docs/evaluation.md."""
    from bench.common import stop_on_sigterm

    stop_on_sigterm()
    started_at = datetime.now(UTC)
    started = time.monotonic()
    names = [p.strip() for p in profiles.split(",") if p.strip()]
    unknown = [n for n in names if n not in PROFILES]
    if unknown:
        raise click.BadParameter(f"unknown profile(s) {unknown}", param_hint="--profiles")
    split = Split.weeks(datetime.fromisoformat(start), history_days=7 * history_weeks)
    machine = _machine()
    commit = _git_commit()
    env = {**os.environ, "FRAUD_TOKEN_KEY": TOKEN_KEY, "PYTHONUNBUFFERED": "1"}
    live_stack = None
    if live:
        from fraudwatch.settings import KafkaSettings, MongoSettings

        live_stack = LiveStack(KafkaSettings().kafka_bootstrap_servers, MongoSettings().mongodb_uri)
        live_stack.check()
    # Every backtest of this checkout reads one copy taken now: the file may be edited meanwhile.
    workdir = workdir.resolve()  # the extracted tree's backtest runs in another directory
    workdir.mkdir(parents=True, exist_ok=True)
    rules_file = workdir / "rules.toml"
    shutil.copyfile(REPO_ROOT / "config" / "rules.toml", rules_file)
    ruleset_version, min_history = _rules_facts(rules_file)
    today_tree = extract_commit(TODAY_COMMIT, workdir)
    setup = Setup(
        plan=RunPlan(cards, seed, fraud_ratio, split),
        producer=Producer.probe(env),
        fraudwatch=Backtest.probe(REPO_ROOT, rules_file, env),
        today=Backtest.probe(today_tree, today_tree / "config" / "rules.toml", env),
        env=env, workdir=workdir, k=k, min_history=min_history, timeout=timeout,
        forest_jobs=jobs,
    )  # fmt: skip
    _say(
        f"split {split.dates()}; producer chargebacks: {setup.producer.chargebacks}; backtest "
        f"scores: {setup.fraudwatch.scores}, labels: {setup.fraudwatch.labels}"
    )
    runs: dict[str, dict[str, Any]] = {}
    for name in names:
        profile = PROFILES[name]
        missing = setup.producer.missing(profile)
        if missing is not None:
            _say(f"[{name}] skipped: {missing}")
            runs[name] = {"skipped": missing}
            continue
        runs[name] = evaluate_profile(setup, profile, live_stack)
    total_s = time.monotonic() - started
    command = "python -m bench.evaluate " + shlex.join(sys.argv[1:])
    (workdir / "results.json").write_bytes(
        orjson.dumps(
            {"command": command.strip(), "total_s": total_s, "split": split.dates(),
             "runs": runs},
            option=orjson.OPT_INDENT_2,
        )
    )  # fmt: skip
    info = RunInfo(command.strip(), started_at, total_s, commit, ruleset_version, machine,
                   split, cards, live)  # fmt: skip
    report.write_text(render_report(runs, info))
    _say(f"wrote {report} in {total_s:.0f} s")


if __name__ == "__main__":
    main()
