"""``python -m bench.evaluate`` (``make evaluate``): how well the rules detect labelled fraud.

For each scenario profile (``default``, then ``shifted``) it generates the same seeded traffic
with the producer into fresh topics, runs the real dataflow to the end of it (alerts into a
fresh MongoDB database), runs ``python -m dataflows.backtest`` over the producer's ``--out``
file, checks that both raised exactly the same alerts, and scores them against the
producer's labels. The report goes to ``docs/evaluation.md``; the raw files stay under
``.stack/evaluate/``. Topics and database are dropped afterwards, and every process this
starts is stopped.

Definitions (also written into the report):

* a **case** is one card in one fraud story (a compromised-merchant story has several);
  it is **caught** when an alert is raised on that card between its first and its last
  fraudulent transaction; the **delay** is the event time from the first fraudulent
  transaction to that alert.
* every transaction gets the score of its alert, 0 without one, for ROC AUC, average
  precision and card precision@k (per UTC day, a card scores its highest transaction score
  of the day and counts as compromised when it made a fraudulent transaction that day).
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
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import click
import orjson

from bench.metrics import average_precision, card_precision_at_k, median, ratio, roc_auc

REPO_ROOT = Path(__file__).resolve().parent.parent
# Only alert ids depend on the token key; the live run and the backtest use the same one.
TOKEN_KEY = "evaluate-token-key"  # noqa: S105 - a fixed test key, not a secret
NONE = "\u2013"  # an en dash: nothing to measure
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


# --------------------------------------------------------------------------- pure scoring


class Txn(NamedTuple):
    """One valid transaction of the run and its ground truth (scenario None: genuine)."""

    transaction_id: str
    account_id: str
    ts_ms: int
    scenario: str | None
    story_id: str | None


class Flag(NamedTuple):
    """What scoring needs of one alert."""

    transaction_id: str
    score: float
    rules: tuple[str, ...]


def _day(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, UTC).strftime("%Y-%m-%d")


def score_run(
    txns: Sequence[Txn],
    flags: Iterable[Flag],
    rule_names: Sequence[str],
    k: int = 100,
    min_history: int = 5,
    since_ms: int | None = None,
) -> dict[str, Any]:
    """The whole evaluation of one run, as plain JSON-ready data (compared live vs backtest).

    ``since_ms``: only transactions from then on, and cases that start then or later, are
    scored; the detector has seen the earlier ones (a warm-up). ``min_history``: cases on cards
    with fewer earlier transactions in the run are counted as ``cold`` (the detector starts
    empty, and its profile rules need that much history).
    """
    every_alert = {f.transaction_id: f for f in flags}
    unknown = sorted(set(every_alert) - {t.transaction_id for t in txns})
    if unknown:
        raise ValueError(f"{len(unknown)} alert(s) on unknown transactions, e.g. {unknown[:3]}")
    all_txns = txns
    if since_ms is not None:
        txns = [t for t in all_txns if t.ts_ms >= since_ms]
    by_txn = {t.transaction_id: every_alert[t.transaction_id] for t in txns
              if t.transaction_id in every_alert}  # fmt: skip
    genuine = sum(1 for t in txns if t.scenario is None)
    alerts_on_fraud = sum(1 for t in txns if t.scenario is not None and t.transaction_id in by_txn)

    # Alerts per card in event-time order, to find the first one inside each case.
    card_alerts: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for t in txns:  # a case starts in the scored period: earlier alerts cannot be inside it
        if t.transaction_id in by_txn:
            card_alerts[t.account_id].append((t.ts_ms, t.transaction_id))
    for alerts in card_alerts.values():
        alerts.sort()
    card_times: dict[str, list[int]] = defaultdict(list)
    for t in all_txns:
        card_times[t.account_id].append(t.ts_ms)
    for times in card_times.values():
        times.sort()

    cases: dict[tuple[str, str], list[Txn]] = defaultdict(list)
    for t in all_txns:
        if t.scenario is not None and t.story_id is not None:
            cases[(t.story_id, t.account_id)].append(t)
    for key, story_txns in list(cases.items()):
        if since_ms is not None and min(t.ts_ms for t in story_txns) < since_ms:
            del cases[key]  # began in the warm-up

    per_scenario: dict[str, dict[str, Any]] = {}
    case_rules: dict[str, list[frozenset[str]]] = defaultdict(list)  # caught cases' rules
    delays: dict[str, list[float]] = defaultdict(list)
    before: dict[str, list[int]] = defaultdict(list)
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for (_, account), story_txns in cases.items():
        story_txns.sort(key=lambda t: t.ts_ms)
        scenario = story_txns[0].scenario or ""
        c = counts[scenario]
        c["cases"] += 1
        c["fraud_txns"] += len(story_txns)
        c["fraud_txns_alerted"] += sum(1 for t in story_txns if t.transaction_id in by_txn)
        first, last = story_txns[0].ts_ms, story_txns[-1].ts_ms
        if bisect.bisect_left(card_times[account], first) < min_history:
            c["cold"] += 1
        alerts = card_alerts.get(account, [])
        lo = bisect.bisect_left(alerts, (first, ""))
        hi = bisect.bisect_right(alerts, (last, "\uffff"))
        if lo >= hi:
            continue
        c["caught"] += 1
        alert_ts = alerts[lo][0]
        delays[scenario].append((alert_ts - first) / 60_000)
        before[scenario].append(sum(1 for t in story_txns if t.ts_ms < alert_ts))
        case_rules[scenario].append(
            frozenset(rule for _, tx in alerts[lo:hi] for rule in by_txn[tx].rules)
        )
    for scenario in sorted(counts, key=_scenario_rank):
        c = counts[scenario]
        per_scenario[scenario] = {
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

    fraud_ids = {t.transaction_id for t in txns if t.scenario is not None}
    per_rule: dict[str, dict[str, Any]] = {}
    all_case_rules = [rules for per in case_rules.values() for rules in per]
    for rule in rule_names:
        fired = [f for f in by_txn.values() if rule in f.rules]
        on_fraud = sum(1 for f in fired if f.transaction_id in fraud_ids)
        per_rule[rule] = {
            "alerts": len(fired),
            "alerts_on_fraud": on_fraud,
            "precision": ratio(on_fraud, len(fired)),
            "fraud_txns_alone": sum(
                1 for f in fired if f.rules == (rule,) and f.transaction_id in fraud_ids
            ),
            "cases_alone": sum(1 for rules in all_case_rules if rules == {rule}),
        }

    scores = [by_txn[t.transaction_id].score if t.transaction_id in by_txn else 0.0 for t in txns]
    labels = [t.scenario is not None for t in txns]
    day_scores: dict[str, dict[str, float]] = defaultdict(dict)
    day_compromised: dict[str, set[str]] = defaultdict(set)
    for t, s in zip(txns, scores, strict=True):
        cards = day_scores[_day(t.ts_ms)]
        cards[t.account_id] = max(s, cards.get(t.account_id, 0.0))
        if t.scenario is not None:
            day_compromised[_day(t.ts_ms)].add(t.account_id)
    cp_per_day = {
        day: card_precision_at_k(cards, day_compromised[day], k)
        for day, cards in sorted(day_scores.items())
    }
    return {
        "transactions": len(txns),
        "genuine": genuine,
        "fraud_txns": len(fraud_ids),
        "cases": sum(c["cases"] for c in counts.values()),
        "alerts": len(by_txn),
        "alerts_on_fraud": alerts_on_fraud,
        "precision": ratio(alerts_on_fraud, len(by_txn)),
        "alerts_per_1000_genuine": 1000 * len(by_txn) / genuine if genuine else None,
        "false_alerts_per_1000_genuine": (
            1000 * (len(by_txn) - alerts_on_fraud) / genuine if genuine else None
        ),
        "roc_auc": roc_auc(scores, labels),
        "average_precision": average_precision(scores, labels),
        "k": k,
        "min_history": min_history,
        "card_precision_at_k_per_day": cp_per_day,
        "card_precision_at_k": sum(cp_per_day.values()) / len(cp_per_day),
        "scenarios": per_scenario,
        "rules": per_rule,
    }


def _scenario_rank(name: str) -> tuple[int, str]:
    return (SCENARIO_ORDER.index(name) if name in SCENARIO_ORDER else len(SCENARIO_ORDER), name)


# --------------------------------------------------------------------------- reading runs


def _ts_ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def load_truth(records: Path, labels: Path) -> tuple[list[Txn], int]:
    """Valid transactions of the ``--out`` file with their labels; and how many were skipped.

    Malformed records (labelled ``malformed`` or not even JSON) take no part in the scoring.
    """
    truth: dict[str, tuple[str, str]] = {}
    malformed: set[str] = set()
    for line in labels.read_bytes().splitlines():
        label = orjson.loads(line)
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


def flags_of(alerts: Mapping[str, tuple[Any, ...]]) -> list[Flag]:
    """Scoring input from alert essentials (see ``alert_essentials``)."""
    return [Flag(e[0], e[2], tuple(r[0] for r in e[4])) for e in alerts.values()]


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


# --------------------------------------------------------------------------- the live run


@dataclass(frozen=True)
class RunPlan:
    """What one evaluation run generates; the same for every profile except the profile."""

    profile: str
    cards: int
    days: float
    seed: int
    start: str  # scoring starts here; the warm-up days come before it
    fraud_ratio: float
    warmup_days: float

    @property
    def since_ms(self) -> int:
        return _ts_ms(self.start)

    @property
    def generate_from(self) -> str:
        first = datetime.fromtimestamp(self.since_ms / 1000, UTC) - timedelta(days=self.warmup_days)
        return first.strftime("%Y-%m-%dT%H:%M:%SZ")

    def producer_args(self) -> list[str]:
        return [
            "--rate", "max", "--cards", str(self.cards),
            "--days", f"{self.warmup_days + self.days:g}",
            "--seed", str(self.seed), "--start", self.generate_from,
            "--fraud-ratio", f"{self.fraud_ratio:g}", "--bad-ratio", "0",
            "--scenario-profile", self.profile,
        ]  # fmt: skip


@contextlib.contextmanager
def _process(
    argv: Sequence[str], log: Path, env: Mapping[str, str]
) -> Iterator[subprocess.Popen[bytes]]:
    """A child process in its own session, logging to ``log``; killed if still running."""
    with log.open("ab") as out:
        proc = subprocess.Popen(
            list(argv), cwd=REPO_ROOT, env=dict(env), stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
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
    argv: Sequence[str], log: Path, env: Mapping[str, str], what: str, timeout: float
) -> float:
    """Run a step to completion; its wall time in seconds, or an error naming its log."""
    started = time.monotonic()
    with _process(argv, log, env) as proc:
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


def _live_alerts(mongo_uri: str, database: str) -> dict[str, tuple[Any, ...]]:
    from pymongo import MongoClient

    client: MongoClient[dict[str, Any]] = MongoClient(mongo_uri, serverSelectionTimeoutMS=10_000)
    try:
        fields = ("transaction_id", "account_id", "score", "severity", "reasons", "evidence",
                  "late", "ruleset_version")  # fmt: skip
        cursor = client[database]["alerts"].find({}, dict.fromkeys(fields, 1))
        return {doc["_id"]: alert_essentials(doc) for doc in cursor}
    finally:
        client.close()


def _drop(bootstrap: str, topics: Sequence[str], mongo_uri: str, database: str) -> None:
    from confluent_kafka.admin import AdminClient
    from pymongo import MongoClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for fut in admin.delete_topics(list(topics), operation_timeout=30).values():
        with contextlib.suppress(Exception):  # a topic the run never created
            fut.result(timeout=30)
    client: MongoClient[dict[str, Any]] = MongoClient(mongo_uri, serverSelectionTimeoutMS=10_000)
    try:
        client.drop_database(database)
    finally:
        client.close()


def evaluate_profile(
    plan: RunPlan, workdir: Path, bootstrap: str, mongo_uri: str, rule_names: Sequence[str],
    k: int, timeout: float, min_history: int, rules_file: Path,
) -> dict[str, Any]:  # fmt: skip
    """One whole run: generate, stream, backtest, compare, score. Cleans up after itself."""
    from fraudwatch.devstack import ensure_topics

    out_dir = workdir / plan.profile
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("*"):
        old.unlink()
    tag = uuid.uuid4().hex[:8]
    tx, alerts_topic, dlq = (f"evaluate-{tag}-{s}" for s in ("tx", "alerts", "dlq"))
    database = f"evaluate_{tag}"
    records, labels = out_dir / "transactions.jsonl", out_dir / "labels.jsonl"
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "MONGODB_URI": mongo_uri,
        "MONGODB_DATABASE": database,
        "TRANSACTIONS_TOPIC": tx,
        "ALERTS_TOPIC": alerts_topic,
        "DLQ_TOPIC": dlq,
        "FRAUD_TOKEN_KEY": TOKEN_KEY,
        "FRAUD_STOP_AT_END": "1",
        "PYTHONUNBUFFERED": "1",
    }
    env["FRAUD_RULES_FILE"] = str(rules_file)  # one snapshot for the stream and the backtest
    seconds: dict[str, float] = {}
    _say(f"[{plan.profile}] topics {tx}, {alerts_topic}, {dlq}; database {database}")
    try:
        ensure_topics(bootstrap, {tx: 3, alerts_topic: 3, dlq: 1})
        producer = [sys.executable, "-m", "producer", "generate", *plan.producer_args(),
                    "--topic", tx, "--bootstrap-servers", bootstrap, "--out", str(records),
                    "--labels-out", str(labels), "--log-interval", "30"]  # fmt: skip
        seconds["generate"] = _run(producer, out_dir / "producer.log", env, "the producer", timeout)
        _say(f"[{plan.profile}] generated in {seconds['generate']:.1f} s; running the dataflow")
        dataflow = [sys.executable, "-m", "bytewax.run", "dataflows.fraud"]
        seconds["dataflow"] = _run(dataflow, out_dir / "dataflow.log", env, "the dataflow", timeout)
        _say(f"[{plan.profile}] dataflow done in {seconds['dataflow']:.1f} s; reading alerts")
        live = _live_alerts(mongo_uri, database)
    finally:
        _drop(bootstrap, [tx, alerts_topic, dlq], mongo_uri, database)

    backtest_out = out_dir / "backtest-alerts.jsonl"
    backtest = [sys.executable, "-m", "dataflows.backtest", str(records), "-o", str(backtest_out)]
    seconds["backtest"] = _run(backtest, out_dir / "backtest.log", env, "the backtest", timeout)
    backtest_alerts = {
        a["alert_id"]: alert_essentials(a)
        for a in map(orjson.loads, backtest_out.read_bytes().splitlines())
    }
    problems = compare_alerts(live, backtest_alerts)
    if problems:
        raise EvaluationError(
            f"[{plan.profile}] the live run and the backtest disagree:\n" + "\n".join(problems)
        )
    txns, skipped = load_truth(records, labels)
    started = time.monotonic()
    live_result = score_run(txns, flags_of(live), rule_names, k, min_history, plan.since_ms)
    backtest_result = score_run(
        txns, flags_of(backtest_alerts), rule_names, k, min_history, plan.since_ms
    )
    seconds["score"] = time.monotonic() - started
    if live_result != backtest_result:
        raise EvaluationError(f"[{plan.profile}] the live and backtest evaluations differ")
    _say(
        f"[{plan.profile}] {len(live):,} alerts, identical live and backtest; "
        f"backtest {seconds['backtest']:.1f} s"
    )
    # The backtest's last stderr line is its summary: invalid lines would be dead letters.
    backtest_summary = orjson.loads((out_dir / "backtest.log").read_bytes().splitlines()[-1])
    return {
        "plan": dataclasses.asdict(plan),
        "producer_command": shlex.join(
            ["python", "-m", "producer", "generate", *plan.producer_args()]
        ),
        "agreement": {
            "live_alerts": len(live),
            "backtest_alerts": len(backtest_alerts),
            "identical": True,
        },
        "skipped_records": skipped,
        "backtest_invalid": backtest_summary["invalid"],
        "seconds": seconds,
        "result": live_result,
    }


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- the report


def _pct(x: float | None) -> str:
    return NONE if x is None else f"{100 * x:.1f}%"


def _num(x: float | None, digits: int = 1) -> str:
    return NONE if x is None else f"{x:,.{digits}f}"


def _num2(x: float | None) -> str:
    return _num(x, 2)


def _num3(x: float | None) -> str:
    return _num(x, 3)


def _num4(x: float | None) -> str:
    return _num(x, 4)


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
        for name in ("bytewax", "confluent-kafka", "kafka-python", "pymongo", "Faker")
    )
    return [
        f"{platform.system()} {platform.release()}, {os.cpu_count()} CPUs ({cpu}), "
        f"load average at start {os.getloadavg()[0]:.1f} (a machine shared with other work)",
        f"Python {platform.python_version()}; {versions}; Kafka and FerretDB from `make up`",
    ]


# What the evaluation runs: a change here (not elsewhere in the checkout) makes the run's
# commit an imprecise reference, and the report says so.
_CODE_PATHS = ("producer", "dataflows", "fraudwatch", "config", "bench/evaluate.py",
               "bench/metrics.py")  # fmt: skip


def _git_commit() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True,
            text=True, check=True, timeout=10,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", *_CODE_PATHS],
            cwd=REPO_ROOT,
            capture_output=True, text=True, check=True, timeout=10,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head} (with uncommitted changes to {', '.join(_CODE_PATHS)})" if dirty else head


def render_report(
    runs: Mapping[str, dict[str, Any]], command: str, started: datetime, total_s: float,
    ruleset_version: str, machine: Sequence[str], commit: str,
) -> str:  # fmt: skip
    """docs/evaluation.md from the runs' results (every number in it comes from ``runs``)."""
    names = list(runs)
    res = {n: runs[n]["result"] for n in names}
    plan = runs[names[0]]["plan"]
    k = res[names[0]]["k"]
    head = " | ".join(names)
    out: list[str] = []
    w = out.append
    w("# Detection evaluation\n")
    w(
        "Written by `make evaluate` from its latest run; every figure below comes from that run "
        "and the command reproduces it (do not edit by hand).\n"
    )
    w(f"- command: `{command}` (what `make evaluate` runs)")
    w(
        f"- run at: {started:%Y-%m-%d %H:%M} UTC, took {total_s / 60:.1f} min in all (load "
        f"average at the end {os.getloadavg()[0]:.1f})"
    )
    w(
        f"- code: commit {commit}; rules `config/rules.toml` version {ruleset_version} (one copy, "
        "taken at the start, for the live run and the backtest)"
    )
    for line in machine:
        w(f"- machine: {line}")
    w(
        "- traffic, per profile: `"
        + runs[names[0]]["producer_command"].replace(
            f"--scenario-profile {names[0]}", "--scenario-profile PROFILE"
        )
        + "` into a fresh 3-partition topic, with `--out` and `--labels-out`"
    )
    w(
        f"- scored: the {plan['days']:g} days from {plan['start']}. The {plan['warmup_days']:g} "
        "days before are a warm-up: the detector sees them (so cards have a history, as in a "
        "running system), the scoring ignores their transactions and every case that began in "
        "them"
    )
    w(
        "- live: `python -m bytewax.run dataflows.fraud` with `FRAUD_STOP_AT_END=1` on that "
        "topic, alerts read back from a fresh MongoDB database; oracle: "
        "`python -m dataflows.backtest` over the `--out` file. Topics and database are dropped "
        "afterwards; the files stay in `.stack/evaluate/PROFILE/`."
    )
    w(
        "- profiles: `default` is the producer's usual scenario ranges, the ones the rules were "
        "written with in view; `shifted` plays the same stories with the ranges moved "
        "(listed under *The shift*), so nobody mistakes rules fitted to our own generator for "
        "detection.\n"
    )

    w("## Live pipeline vs backtest\n")
    w("| profile | live alerts (MongoDB, warm-up included) | backtest alerts | identical |")
    w("|---|---:|---:|---|")
    for n in names:
        a = runs[n]["agreement"]
        w(
            f"| {n} | {a['live_alerts']:,} | {a['backtest_alerts']:,} | "
            f"{'yes' if a['identical'] else 'NO'} |"
        )
    w(
        "\nIdentical means: the same alert ids, and per alert the same transaction, score, "
        "severity, reasons (rule, score, sentence), evidence, late flag and rule-set version; "
        "and the two evaluations computed from them are equal. The command fails otherwise.\n"
    )

    w("## Overall\n")
    w(f"| metric | {head} |")
    w("|---|" + "---:|" * len(names))
    rows: list[tuple[str, str]] = [
        ("valid transactions", "transactions"),
        ("genuine transactions", "genuine"),
        ("fraudulent transactions", "fraud_txns"),
        ("fraud cases (card x story)", "cases"),
        ("alerts", "alerts"),
        ("alerts on fraudulent transactions", "alerts_on_fraud"),
    ]
    for label, key in rows:
        w(f"| {label} | " + " | ".join(f"{res[n][key]:,}" for n in names) + " |")
    formatted: list[tuple[str, str, Any]] = [
        ("precision of alerts", "precision", _pct),
        ("alerts per 1,000 genuine transactions", "alerts_per_1000_genuine", _num2),
        ("false alerts per 1,000 genuine transactions", "false_alerts_per_1000_genuine", _num2),
        ("ROC AUC (per transaction)", "roc_auc", _num4),
        ("average precision (per transaction)", "average_precision", _num4),
        (f"card precision@{k}, mean of days", "card_precision_at_k", _num3),
    ]
    for label, key, fmt in formatted:
        w(f"| {label} | " + " | ".join(fmt(res[n][key]) for n in names) + " |")
    for day in res[names[0]]["card_precision_at_k_per_day"]:
        w(
            f"| card precision@{k}, {day} | "
            + " | ".join(_num(res[n]["card_precision_at_k_per_day"].get(day), 3) for n in names)
            + " |"
        )

    w("\n## Per scenario\n")
    w(
        "Case recall: share of fraud cases (one card in one story) with an alert on that card "
        "between its first and last fraudulent transaction. Delay: event time from the case's "
        "first fraudulent transaction to that alert (median over caught cases). Frauds before: "
        "fraudulent transactions of the case that passed before the alert (median). Cold: "
        f"cases on a card with fewer than {res[names[0]]['min_history']} earlier transactions "
        "in the run (the detector starts empty, and `amount_spike` and `location_anomaly` need "
        "that much history).\n"
    )
    pair = " / ".join(names)
    w(f"Each cell: {pair}.\n")
    cols = (
        "cases",
        "cold",
        "caught",
        "case recall",
        "txn recall",
        "median delay (min)",
        "frauds before",
    )
    w("| scenario | " + " | ".join(cols) + " |")
    w("|---|" + "---:|" * len(cols))
    scenarios = sorted({s for n in names for s in res[n]["scenarios"]}, key=_scenario_rank)
    for s in scenarios:
        cells = [
            " / ".join(_scenario_cell(res[n]["scenarios"].get(s), col) for n in names)
            for col in cols
        ]
        w(f"| {s} | " + " | ".join(cells) + " |")

    w("\n## Per rule\n")
    w(
        "Alerts: alerts whose reasons include the rule. Precision: share of those on fraudulent "
        "transactions. Frauds alone: fraudulent transactions alerted with this rule as the only "
        f"reason. Cases alone: caught cases in which this was the only rule that fired. Each "
        f"cell: {pair}.\n"
    )
    rcols = ("alerts", "precision", "frauds alone", "cases alone")
    w("| rule | " + " | ".join(rcols) + " |")
    w("|---|" + "---:|" * len(rcols))
    for rule in res[names[0]]["rules"]:
        cells = [" / ".join(_rule_cell(res[n]["rules"][rule], col) for n in names) for col in rcols]
        w(f"| {rule} | " + " | ".join(cells) + " |")

    notes = _notes(res)
    if notes:
        w("\n## Worth knowing from this run\n")
        out.extend(f"- {note}" for note in notes)

    w("\n## The shift\n")
    w(
        "`--scenario-profile shifted` (producer/scenarios.py `SHIFTED_PROFILE`) changes exactly "
        "these ranges; everything else (population, genuine traffic, scenario mix, seed) is the "
        "same. Uniform draws within each range; amounts are multiples of the card's median "
        "amount, with the minimum in EUR.\n"
    )
    w("| scenario | parameter | default | shifted |")
    w("|---|---|---|---|")
    for row in shift_rows():
        w("| " + " | ".join(row) + " |")

    w("\n## Definitions\n")
    w(
        "- Genuine: every valid transaction not in `--labels-out`. Malformed records take no "
        "part (this run sends none: `--bad-ratio 0`)."
    )
    w(
        "- Precision of alerts: alerts on fraudulent transactions / all alerts. Alert rate: all "
        "alerts per 1,000 genuine transactions (the analysts' workload); false alerts: alerts on "
        "genuine transactions per 1,000 genuine transactions."
    )
    w(
        "- Ranking metrics score every valid transaction with its alert's score (noisy-OR of the "
        "rules that fired), 0 without an alert. ROC AUC: Mann-Whitney rank statistic, ties count "
        "one half. Average precision: step-wise area under precision-recall, one threshold per "
        "distinct score (as scikit-learn's `average_precision_score`); the threshold 0 counts "
        "every transaction as flagged, so unalerted frauds lower it."
    )
    w(
        f"- Card precision@{k} (Le Borgne et al., *Reproducible Machine Learning for Credit Card "
        "Fraud Detection*): per UTC day, every card that transacted scores its highest "
        f"transaction score of the day; of the {k} highest, the share that made a fraudulent "
        f"transaction that day (cards tied at the cut-off count at their tie group's share; the "
        f"divisor is always {k}); then the mean over the days. Cards found on earlier days are "
        "not removed."
    )
    w("- Code: `bench/evaluate.py` (runs, scoring, this page), `bench/metrics.py` (metrics).\n")

    w("## Time taken (s)\n")
    steps = ("generate", "dataflow", "backtest", "score")
    w("| step | " + head + " |")
    w("|---|" + "---:|" * len(names))
    for step in steps:
        w(f"| {step} | " + " | ".join(_num(runs[n]["seconds"][step]) for n in names) + " |")
    w(f"\nTotal for `make evaluate`, both profiles and the report: {total_s:.0f} s.")
    return "\n".join(out) + "\n"


def _scenario_cell(r: Mapping[str, Any] | None, col: str) -> str:
    if r is None:
        return NONE
    return {
        "cases": lambda: f"{r['cases']:,}",
        "cold": lambda: f"{r['cold']:,}",
        "caught": lambda: f"{r['caught']:,}",
        "case recall": lambda: _pct(r["case_recall"]),
        "txn recall": lambda: _pct(r["txn_recall"]),
        "median delay (min)": lambda: _num(r["median_delay_min"]),
        "frauds before": lambda: _num(r["median_frauds_before_alert"]),
    }[col]()


def _rule_cell(r: Mapping[str, Any], col: str) -> str:
    return {
        "alerts": lambda: f"{r['alerts']:,}",
        "precision": lambda: _pct(r["precision"]),
        "frauds alone": lambda: f"{r['fraud_txns_alone']:,}",
        "cases alone": lambda: f"{r['cases_alone']:,}",
    }[col]()


def _notes(res: Mapping[str, dict[str, Any]]) -> list[str]:
    """Plain facts worth a reader's attention: rules that catch nothing, scenarios missed."""
    notes = []
    for n, r in res.items():
        for rule, v in r["rules"].items():
            share = ratio(v["alerts"], r["alerts"])
            if share is not None and share > 0.5:
                notes.append(
                    f"{n}: `{rule}` is among the reasons of {_pct(share)} of all alerts, "
                    f"{_pct(v['precision'])} of its alerts on fraud: most of the analysts' "
                    "workload."
                )
            if v["alerts"] == 0:
                notes.append(f"{n}: `{rule}` raised no alert.")
            elif v["alerts_on_fraud"] == 0:
                notes.append(f"{n}: `{rule}` fired {v['alerts']:,} times, never on fraud.")
            elif v["fraud_txns_alone"] == 0 and v["cases_alone"] == 0:
                notes.append(
                    f"{n}: `{rule}` caught no fraud on its own (every fraud it flagged was "
                    "flagged by another rule too)."
                )
        for s, v in r["scenarios"].items():
            if v["caught"] == 0:
                notes.append(f"{n}: no `{s}` case was caught ({v['cases']} cases).")
            elif v["case_recall"] is not None and v["case_recall"] < 0.5:
                notes.append(f"{n}: `{s}`: only {_pct(v['case_recall'])} of cases caught.")
    return notes


# --------------------------------------------------------------------------- the command


def _check_stack(bootstrap: str, mongo_uri: str) -> None:
    from confluent_kafka.admin import AdminClient
    from pymongo import MongoClient

    try:
        AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10)
    except Exception as exc:
        raise EvaluationError(
            f"Kafka is not reachable at {bootstrap} ({exc}): is the stack up? run `make up`"
        ) from None
    client: MongoClient[dict[str, Any]] = MongoClient(mongo_uri, serverSelectionTimeoutMS=10_000)
    try:
        client.admin.command("ping")
    except Exception as exc:
        raise EvaluationError(
            f"MongoDB is not reachable at {mongo_uri} ({exc}): is the stack up? run `make up`"
        ) from None
    finally:
        client.close()


@click.command()
@click.option("--cards", type=click.IntRange(min=10), default=20_000, show_default=True)
@click.option("--days", type=click.FloatRange(min=0, min_open=True), default=3.0, show_default=True)
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--start", default="2026-11-23T00:00:00Z", show_default=True)
@click.option("--fraud-ratio", type=click.FloatRange(0, 0.5), default=0.01, show_default=True)
@click.option(
    "--warmup-days",
    type=click.FloatRange(min=0),
    default=2.0,
    show_default=True,
    help="Days of traffic before --start that the detector sees but the scoring ignores "
    "(every card starts without history otherwise).",
)
@click.option(
    "--profiles",
    default="default,shifted",
    show_default=True,
    help="Scenario profiles to run, comma-separated (producer --scenario-profile).",
)
@click.option("--k", type=click.IntRange(min=1), default=100, show_default=True,
              help="Cards an analyst team checks per day (card precision@k).")  # fmt: skip
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=REPO_ROOT / ".stack" / "evaluate",
    show_default=True,
)
@click.option(
    "--report",
    type=click.Path(dir_okay=False, path_type=Path),
    default=REPO_ROOT / "docs" / "evaluation.md",
    show_default=True,
)
@click.option("--timeout", type=float, default=900.0, show_default=True,
              help="Seconds any one step may take.")  # fmt: skip
def main(
    cards: int, days: float, seed: int, start: str, fraud_ratio: float, warmup_days: float,
    profiles: str, k: int,
    workdir: Path, report: Path, timeout: float,
) -> None:  # fmt: skip
    """Score the rules on labelled traffic, live and by backtest; write docs/evaluation.md."""
    from bench.common import stop_on_sigterm
    from dataflows.ruleset import load_ruleset

    stop_on_sigterm()
    from fraudwatch.settings import KafkaSettings, MongoSettings

    started_at = datetime.now(UTC)
    started = time.monotonic()
    machine = _machine()
    commit = _git_commit()
    bootstrap = KafkaSettings().kafka_bootstrap_servers
    mongo_uri = MongoSettings().mongodb_uri
    _check_stack(bootstrap, mongo_uri)
    # Both runs read one copy taken now: the rule file may be edited while this runs.
    workdir.mkdir(parents=True, exist_ok=True)
    rules_file = workdir / "rules.toml"
    shutil.copyfile(REPO_ROOT / "config" / "rules.toml", rules_file)
    ruleset = load_ruleset(rules_file)
    rule_names = list(type(ruleset.rules).model_fields)
    rules = ruleset.rules
    min_history = min(rules.amount_spike.min_history, rules.location_anomaly.min_history)
    runs: dict[str, dict[str, Any]] = {}
    for profile in (p.strip() for p in profiles.split(",") if p.strip()):
        plan = RunPlan(profile, cards, days, seed, start, fraud_ratio, warmup_days)
        runs[profile] = evaluate_profile(
            plan, workdir, bootstrap, mongo_uri, rule_names, k, timeout, min_history, rules_file
        )
    total_s = time.monotonic() - started
    command = "python -m bench.evaluate " + shlex.join(sys.argv[1:])
    (workdir / "results.json").write_bytes(
        orjson.dumps(
            {"command": command, "total_s": total_s, "runs": runs}, option=orjson.OPT_INDENT_2
        )
    )
    report.write_text(
        render_report(runs, command.strip(), started_at, total_s, ruleset.version, machine, commit)
    )
    _say(f"wrote {report} in {total_s:.0f} s")


if __name__ == "__main__":
    main()
