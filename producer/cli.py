"""``python -m producer`` / ``fraudwatch-producer``: generate traffic, replay files, measure.

Entry point only: it parses options, builds the settings, population and sink once, and hands
them to the send loop in ``runner.py``. See docs/producer.md for the whole story.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import click

from fraudwatch.contract import epoch_ms
from fraudwatch.settings import KafkaSettings
from producer.chargebacks import MAX_DELAY_DAYS
from producer.errors import ProducerError
from producer.progress import LogReporter, Reporter, RichReporter, RunStats, summary_lines
from producer.records import Record
from producer.runner import (
    EventTimePacer,
    LabelWriter,
    Limits,
    Pacer,
    RatePacer,
    Sink,
    StopRequest,
    run,
)

if TYPE_CHECKING:
    from producer.chargebacks import ChargebackConfig, ChargebackCounts
    from producer.replay import MessageKind
    from producer.traffic import TrafficSimulator

_log = logging.getLogger("producer")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_SIGINT = 130
WALL_STORY_SPEEDUP = 30.0
# Below this mean gap between a card's transactions (s), velocity rules (e.g. 6 in 10 min)
# fire on more than ~1% of genuine traffic (measured: docs/producer.md, Event time).
BUSY_CARD_GAP_S = 1800

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT_S = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """``90``, ``30s``, ``5m``, ``2h`` or ``1d`` in seconds."""
    match = _DURATION.match(text)
    if not match or float(match.group(1)) <= 0:
        raise click.BadParameter(f"{text!r} is not a duration such as 90, 30s, 5m, 2h or 1d")
    return float(match.group(1)) * _UNIT_S[match.group(2)]


def parse_speed(text: str, what: str) -> float | None:
    """A positive number, or ``max`` (None: as fast as possible)."""
    if text.strip().lower() == "max":
        return None
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0 or value == float("inf"):
        raise click.BadParameter(f"{what} must be a positive number or 'max', not {text!r}")
    return value


def parse_start(text: str) -> int:
    """``now`` or an ISO 8601 / RFC 3339 time (UTC when it has no offset), in epoch ms."""
    if text.strip().lower() == "now":
        return int(time.time() * 1000)
    try:
        ts = datetime.fromisoformat(text.strip())
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not a time such as 2026-11-25T00:00:00Z or 'now'"
        ) from None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return epoch_ms(ts)


def _settings(
    bootstrap_servers: str | None, topic: str | None, labels: bool = False
) -> tuple[KafkaSettings, str]:
    """The settings with ``--bootstrap-servers`` applied, and the topic to send to.

    ``labels``: the default topic is ``LABELS_TOPIC`` instead of ``TRANSACTIONS_TOPIC``.
    """
    settings = KafkaSettings()
    if bootstrap_servers:
        settings = settings.model_copy(update={"kafka_bootstrap_servers": bootstrap_servers})
    default = settings.labels_topic if labels else settings.transactions_topic
    return settings, topic or default


def _reporter(log_interval: float) -> Reporter:
    if sys.stderr.isatty():
        return RichReporter()
    return LogReporter(log_interval)


def _open_sink(
    no_kafka: bool, settings: KafkaSettings, topic: str, labels: LabelWriter | None
) -> Sink:
    from producer.kafka_sink import KafkaSink, NullSink

    if no_kafka:
        return NullSink(labels)
    sink = KafkaSink.connect(settings, topic, labels)
    _log.info(
        "connected to %s, topic %s (%d partitions)",
        settings.kafka_bootstrap_servers,
        topic,
        sink.partitions,
    )
    return sink


def _finish(stats: RunStats, destination: str, stop: StopRequest, scenarios: bool = True) -> int:
    for line in summary_lines(stats, destination, scenarios=scenarios):
        _log.info("%s", line)
    if stats.error:
        _log.error("%s", stats.error)
        return EXIT_FAILED
    if stats.unconfirmed:
        _log.error("%d message(s) were not confirmed by the broker before the timeout",
                   stats.unconfirmed)  # fmt: skip
        return EXIT_FAILED
    return EXIT_SIGINT if stop.signal == "SIGINT" else EXIT_OK


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Also show kafka-python's own log.")
def main(verbose: bool) -> None:
    """fraudwatch producer: card traffic with labelled fraud, file replay, a benchmark."""
    _configure_logging(verbose)


def _configure_logging(verbose: bool) -> None:
    """Our lines on stderr; kafka-python's own log only with --verbose (we say what failed)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    for name, level in (("producer", logging.INFO), ("kafka", logging.WARNING)):
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if getattr(h, "fraudwatch", False)]:
            logger.removeHandler(old)
        handler.fraudwatch = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.propagate = False
        logger.setLevel(level if name == "producer" or verbose else logging.CRITICAL)


@main.command()
@click.option("--rate", default="100", show_default=True, help="Records per second, or 'max'.")
@click.option("--count", type=click.IntRange(min=0), help="Stop after this many records.")
@click.option("--duration", help="Stop after this wall-clock time: 90, 30s, 5m, 2h.")
@click.option(
    "--days",
    type=click.FloatRange(min=0, min_open=True),
    help="Stop when event time reaches --start plus this many days.",
)
@click.option("--cards", type=click.IntRange(min=10), default=5000, show_default=True)
@click.option("--merchants", type=click.IntRange(min=50), default=1000, show_default=True)
@click.option(
    "--fraud-ratio",
    type=click.FloatRange(0, 0.9),
    default=0.01,
    show_default=True,
    help="Share of records that are fraudulent.",
)
@click.option(
    "--bad-ratio",
    type=click.FloatRange(0, 0.9),
    default=0.0,
    show_default=True,
    help="Share of records that are malformed (for the dead-letter path).",
)
@click.option("--seed", type=int, help="Same seed and --start: the same traffic. Default: random.")
@click.option(
    "--start",
    default="now",
    show_default=True,
    help="Event time of the first record (RFC 3339; UTC if no offset).",
)
@click.option(
    "--clock",
    type=click.Choice(["auto", "wall", "simulated"]),
    default="auto",
    show_default=True,
    help="wall: event time runs with the wall clock; simulated: at the population's "
    "own pace. auto: wall for a numeric --rate, simulated for max.",
)
@click.option(
    "--story-speedup",
    type=click.FloatRange(min=0, min_open=True),
    help="Fraud stories unfold this many times faster than real time. Default: 30 with the "
    "wall clock (so a live demo shows whole stories within minutes), 1 with the simulated clock.",
)
@click.option(
    "--scenario-profile",
    type=click.Choice(["default", "shifted"]),
    default="default",
    show_default=True,
    help="Parameter ranges of the fraud stories: 'shifted' plays every scenario more slowly "
    "and more cautiously (docs/producer.md), to test rules beyond the ranges they were made for.",
)
@click.option(
    "--amount-scale",
    type=click.FloatRange(0.01, 100.0),
    default=1.0,
    show_default=True,
    help="Multiply every amount (genuine spend, fraud stories, card tests, ATM cash) by this: "
    "a population whose amounts are N times larger or smaller, for robustness checks.",
)
@click.option(
    "--labels-out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write ground truth (fraudulent and malformed records) as JSON lines.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write every record sent as JSON lines (for backtests).",
)
@click.option(
    "--chargebacks-out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write chargebacks (label contract v1) as JSON lines ordered by reported_at, "
    "including those reported after the end of the run.",
)
@click.option(
    "--send-chargebacks",
    is_flag=True,
    help="Send chargebacks to --labels-topic when the event-time clock reaches their "
    "reported_at (those due after the end of the run are not sent).",
)
@click.option(
    "--labels-topic",
    help="Where --send-chargebacks sends (implies it). Default: LABELS_TOPIC.",
)
@click.option(
    "--chargeback-delay-days",
    default="5,30",
    show_default=True,
    help="MEDIAN,P95 of the log-normal delay from a transaction to its chargeback, in days "
    f"(at most {MAX_DELAY_DAYS:g}).",
)
@click.option(
    "--chargeback-coverage",
    type=click.FloatRange(0, 1),
    default=0.85,
    show_default=True,
    help="Share of fraud victims (card and story) who dispute; the rest is never reported.",
)
@click.option(
    "--false-dispute-rate",
    type=click.FloatRange(0, 0.1),
    default=0.0005,
    show_default=True,
    help="Share of genuine transactions disputed as fraud all the same.",
)
@click.option(
    "--false-dispute-reversal",
    type=click.FloatRange(0, 1),
    default=0.5,
    show_default=True,
    help="Share of false disputes later reversed by a 'genuine' label.",
)
@click.option(
    "--reissue/--no-reissue",
    default=True,
    show_default=True,
    help="The issuer blocks a card when a fraud dispute is reported and the holder goes on "
    "with a new card number (as issuers do); --no-reissue keeps every transaction as without "
    "chargebacks.",
)
@click.option("--topic", help="Default: TRANSACTIONS_TOPIC.")
@click.option("--bootstrap-servers", help="Default: KAFKA_BOOTSTRAP_SERVERS.")
@click.option(
    "--no-kafka",
    "--dry-run",
    "no_kafka",
    is_flag=True,
    help="Do not connect to Kafka: only write --out / --labels-out / --chargebacks-out.",
)
@click.option(
    "--log-interval",
    type=click.FloatRange(min=0.1),
    default=10.0,
    show_default=True,
    help="Seconds between progress lines when not on a terminal.",
)
def generate(
    rate: str,
    count: int | None,
    duration: str | None,
    days: float | None,
    cards: int,
    merchants: int,
    fraud_ratio: float,
    bad_ratio: float,
    seed: int | None,
    start: str,
    clock: str,
    story_speedup: float | None,
    scenario_profile: str,
    amount_scale: float,
    labels_out: Path | None,
    out: Path | None,
    chargebacks_out: Path | None,
    send_chargebacks: bool,
    labels_topic: str | None,
    chargeback_delay_days: str,
    chargeback_coverage: float,
    false_dispute_rate: float,
    false_dispute_reversal: float,
    reissue: bool,
    topic: str | None,
    bootstrap_servers: str | None,
    no_kafka: bool,
    log_interval: float,
) -> None:
    """Generate card traffic with labelled fraud stories (and malformed records).

    With --chargebacks-out or --send-chargebacks, the fraud's delayed and incomplete truth
    follows as chargebacks (label contract v1); the transactions stay exactly the same.
    """
    from producer.population import build_population
    from producer.traffic import TrafficConfig, TrafficSimulator

    rate_value = parse_speed(rate, "--rate")
    duration_s = parse_duration(duration) if duration else None
    start_ms = parse_start(start)
    if clock == "auto":
        clock = "simulated" if rate_value is None else "wall"
    if clock == "wall" and rate_value is None:
        raise click.BadParameter("--clock wall needs a numeric --rate", param_hint="--clock")
    if seed is None:
        seed = random.SystemRandom().randrange(1 << 31)
    settings, topic_name = _settings(bootstrap_servers, topic)
    try:
        config = TrafficConfig(
            seed=seed,
            start_ms=start_ms,
            clock="wall" if clock == "wall" else "simulated",
            rate=rate_value,
            fraud_ratio=fraud_ratio,
            bad_ratio=bad_ratio,
            story_speedup=story_speedup or (WALL_STORY_SPEEDUP if clock == "wall" else 1.0),
            scenario_profile=scenario_profile,
            amount_scale=amount_scale,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    chargebacks = _chargeback_plan(
        seed=seed,
        out=chargebacks_out,
        topic=labels_topic or (settings.labels_topic if send_chargebacks else None),
        delay_days=chargeback_delay_days,
        coverage=chargeback_coverage,
        false_dispute_rate=false_dispute_rate,
        reversal_share=false_dispute_reversal,
        reissue=reissue,
    )

    t = time.monotonic()
    population = build_population(seed, cards, merchants)
    _log.info(
        "%s cards and %s merchants built in %.1f s",
        f"{cards:,}", f"{merchants:,}", time.monotonic() - t,
    )  # fmt: skip

    # Resolved only now that the population is built, so that "now" is when sending starts.
    first_ms = parse_start(start) if start.strip().lower() == "now" else start_ms
    simulator = TrafficSimulator(population, dataclasses.replace(config, start_ms=first_ms))
    _log.info(
        "seed %d, start %s (pass --seed %d --start %s to repeat this traffic)",
        seed, _iso(first_ms), seed, _iso(first_ms),
    )  # fmt: skip
    _describe_clock(simulator, clock, rate_value)
    until = None if days is None else first_ms + round(days * 86_400_000)

    def records() -> Iterator[Record]:
        for record in simulator.records():
            if until is not None and record.ts_ms >= until:
                return
            yield record

    pacer: Pacer | None = None
    if clock == "wall":
        pacer = EventTimePacer(speed=1.0)  # the first record (at --start) goes now
    elif rate_value is not None:
        pacer = RatePacer(rate_value)
    code = _send(
        records(),
        end_of_input="days",
        limits=Limits(count=count, duration_s=duration_s),
        no_kafka=no_kafka,
        settings=settings,
        topic=topic_name,
        pacer=pacer,
        out=out,
        labels_out=labels_out,
        log_interval=log_interval,
        chargebacks=chargebacks,
    )
    sys.exit(code)


_CHARGEBACK_OPTIONS = (
    "chargeback_delay_days",
    "chargeback_coverage",
    "false_dispute_rate",
    "false_dispute_reversal",
    "reissue",
)


def _chargeback_plan(
    *,
    seed: int,
    out: Path | None,
    topic: str | None,
    delay_days: str,
    coverage: float,
    false_dispute_rate: float,
    reversal_share: float,
    reissue: bool = True,
) -> ChargebackPlan | None:
    """The chargebacks asked for, or None; tuning them without an output is a usage error."""
    from producer.chargebacks import ChargebackConfig

    if out is None and topic is None:
        ctx = click.get_current_context()
        tuned = [
            "--" + name.replace("_", "-")
            for name in _CHARGEBACK_OPTIONS
            if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT
        ]
        if tuned:
            raise click.UsageError(
                f"{', '.join(tuned)} take effect only with --chargebacks-out or --send-chargebacks"
            )
        return None
    median, p95 = parse_delay_days(delay_days)
    try:
        config = ChargebackConfig(
            seed=seed,
            delay_median_days=median,
            delay_p95_days=p95,
            coverage=coverage,
            false_dispute_rate=false_dispute_rate,
            reversal_share=reversal_share,
            reissue=reissue,
        )
    except ValueError as exc:  # the other options are range-checked by click
        raise click.BadParameter(str(exc), param_hint="--chargeback-delay-days") from None
    _log.info(
        "chargebacks: %.0f%% of fraud victims dispute, after a log-normal delay (median %g d, "
        "p95 %g d, at most %g d); %g%% of genuine transactions are disputed too (%.0f%% of "
        "those reversed)",
        100 * coverage, median, p95, MAX_DELAY_DAYS, 100 * false_dispute_rate,
        100 * reversal_share,
    )  # fmt: skip
    return ChargebackPlan(config, out, topic)


def parse_delay_days(text: str) -> tuple[float, float]:
    """``MEDIAN,P95`` in days, e.g. ``5,30`` (``ChargebackConfig`` checks that they fit)."""
    try:
        median, p95 = (float(part) for part in text.split(","))
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not MEDIAN,P95 in days, e.g. 5,30", param_hint="--chargeback-delay-days"
        ) from None
    return median, p95


def _iso(ms: int) -> str:
    from producer.traffic import TimestampFormatter

    return TimestampFormatter()(ms)  # exact to the millisecond: it is meant to be pasted


def _describe_clock(simulator: TrafficSimulator, clock: str, rate: float | None) -> None:
    gap = simulator.per_card_gap_s
    if clock == "wall":
        _log.info(
            "wall clock: event time follows the wall clock; each card transacts every %s on "
            "average (%s cards at %s/s)",
            _human_s(gap), f"{len(simulator.population.cards):,}", f"{rate:g}",
        )  # fmt: skip
        if gap < BUSY_CARD_GAP_S:
            _log.warning(
                "that is far busier than a real card (a few transactions a day): velocity "
                "rules will see genuine cards as bursts. For realistic per-card behaviour keep "
                "--cards / --rate above %d (e.g. --rate 10 --cards 20000) or use --clock "
                "simulated.",
                BUSY_CARD_GAP_S,
            )
    else:
        speedup = "" if rate is None else f", {rate / simulator.natural_rate_per_s:,.0f}x real time"
        _log.info(
            "simulated clock: %.2f genuine transactions per event-time second (%s per day)%s",
            simulator.natural_rate_per_s,
            f"{simulator.natural_per_day:,.0f}",
            speedup,
        )


def _human_s(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


@dataclasses.dataclass(frozen=True, slots=True)
class ChargebackPlan:
    """Where ``generate``'s chargebacks go: a file, a topic (``None``: not sent), or both."""

    config: ChargebackConfig
    out: Path | None
    topic: str | None


def _send(
    records: Iterator[Record],
    *,
    end_of_input: str = "end of input",
    no_kafka: bool,
    settings: KafkaSettings,
    topic: str,
    pacer: Pacer | None,
    limits: Limits,
    out: Path | None,
    labels_out: Path | None,
    log_interval: float,
    chargebacks: ChargebackPlan | None = None,
    scenarios: bool = True,
) -> int:
    """Open the files and the sinks, run the loop, report; the process exit code."""
    from producer.chargebacks import ChargebackStream

    stop = StopRequest()
    destination = "nowhere (--no-kafka)" if no_kafka else f"{topic}"
    with ExitStack() as files:
        out_stream: IO[bytes] | None = None
        labels: LabelWriter | None = None
        if out is not None:
            out_stream = files.enter_context(out.open("wb", buffering=1 << 20))
        if labels_out is not None:
            labels = LabelWriter(files.enter_context(labels_out.open("wb", buffering=1 << 16)))
        stream: ChargebackStream | None = None
        if chargebacks is not None:
            chargebacks_file = None
            if chargebacks.out is not None:
                chargebacks_file = files.enter_context(
                    chargebacks.out.open("wb", buffering=1 << 16)
                )
            stream = ChargebackStream(
                chargebacks.config, emit=chargebacks.topic is not None, out=chargebacks_file
            )
            records = stream.interleave(records)
        try:
            sink = _open_sink(no_kafka, settings, topic, labels)
            files.callback(sink.close)
            chargeback_sink = None
            if chargebacks is not None and chargebacks.topic is not None:
                chargeback_sink = _open_sink(no_kafka, settings, chargebacks.topic, None)
                files.callback(chargeback_sink.close)
        except ProducerError as exc:
            _log.error("%s", exc)
            return exc.exit_code
        stop.install()
        try:
            stats = run(
                records,
                sink,
                limits=limits,
                pacer=pacer,
                reporter=_reporter(log_interval),
                out=out_stream,
                stop=stop,
                end_of_input=end_of_input,
                chargeback_sink=chargeback_sink,
            )
        except KeyboardInterrupt:
            _log.error("interrupted twice: stopped without waiting for the broker")
            return EXIT_SIGINT
        finally:
            stop.restore()
        if stream is not None and chargebacks is not None:
            _report_chargebacks(stream.finish(stats.sent), stats, chargebacks, no_kafka)
    if labels is not None:
        _log.info("labels: %s (%s lines)", labels_out, f"{labels.lines:,}")
    if out is not None:
        _log.info("records: %s", out)
    return _finish(stats, destination, stop, scenarios)


def _report_chargebacks(
    counts: ChargebackCounts, stats: RunStats, plan: ChargebackPlan, no_kafka: bool
) -> None:
    share = counts.fraud_reported / counts.fraud_seen if counts.fraud_seen else 0.0
    _log.info(
        "chargebacks: %s for %s fraudulent transactions (%.0f%%), %s false disputes "
        "(%s reversed)",
        f"{counts.fraud_reported:,}", f"{counts.fraud_seen:,}", 100 * share,
        f"{counts.false_disputes:,}", f"{counts.reversals:,}",
    )  # fmt: skip
    if plan.topic is not None:
        where = "nowhere (--no-kafka)" if no_kafka else plan.topic
        _log.info(
            "chargebacks: sent %s to %s (delivered %s, failed %s); %s reported after the end "
            "of the run were not sent",
            f"{stats.chargebacks:,}", where, f"{stats.chargebacks_delivered:,}",
            stats.chargebacks_failed, f"{counts.after_end:,}",
        )  # fmt: skip
    if plan.out is not None:
        _log.info("chargebacks: %s (%s lines)", plan.out, f"{counts.written:,}")


def _replay_options(topic_help: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """The options ``replay`` and ``labels`` share (they differ in what the file holds)."""
    options = [
        click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path)),
        click.option(
            "--speed",
            default="max",
            show_default=True,
            help="'max' (as fast as possible), 1 (real time) or N (N times faster).",
        ),
        click.option(
            "--sort", is_flag=True, help="Order by event time first (stable; reads it all)."
        ),
        click.option(
            "--shift-to-now",
            is_flag=True,
            help="Rebase timestamps so that the first event happens now.",
        ),
        click.option(
            "--skip-invalid",
            is_flag=True,
            help="Send the valid lines and list the others "
            "(default: send nothing if any line is invalid).",
        ),
        click.option("--raw", is_flag=True, help="Send every line's bytes as they are, unchecked."),
        click.option(
            "--format",
            "fmt",
            type=click.Choice(["auto", "jsonl", "csv"]),
            default="auto",
            show_default=True,
            help="auto: CSV for *.csv, JSON lines otherwise.",
        ),
        click.option("--topic", help=topic_help),
        click.option("--bootstrap-servers", help="Default: KAFKA_BOOTSTRAP_SERVERS."),
        click.option(
            "--no-kafka",
            "--dry-run",
            "no_kafka",
            is_flag=True,
            help="Only check the file (and pace it): nothing is sent.",
        ),
        click.option(
            "--log-interval", type=click.FloatRange(min=0.1), default=10.0, show_default=True
        ),
    ]

    def apply(command: Callable[..., None]) -> Callable[..., None]:
        for option in reversed(options):
            command = option(command)
        return command

    return apply


@main.command()
@_replay_options(topic_help="Default: TRANSACTIONS_TOPIC.")
def replay(**options: Any) -> None:
    """Send a file of v1 transactions (JSON lines, or CSV with a header) in file order."""
    from producer.replay import TRANSACTIONS

    _replay_file(TRANSACTIONS, **options)


@main.command()
@_replay_options(topic_help="Default: LABELS_TOPIC.")
def labels(**options: Any) -> None:
    """Send a file of v1 fraud labels (JSON lines, or CSV with a header) in file order.

    Key: the transaction id. Event time (for --sort, --speed): reported_at.
    """
    from producer.replay import LABELS

    _replay_file(LABELS, **options)


def _replay_file(
    kind: MessageKind[Any],
    *,
    file: Path,
    speed: str,
    sort: bool,
    shift_to_now: bool,
    skip_invalid: bool,
    raw: bool,
    fmt: str,
    topic: str | None,
    bootstrap_servers: str | None,
    no_kafka: bool,
    log_interval: float,
) -> None:
    """Check (unless raw or skipping), then send ``file``; exits with the run's code."""
    from producer.replay import LABELS, ReplayFileInvalid, ReplayOptions, ReplaySource

    speed_value = parse_speed(speed, "--speed")
    try:
        options = ReplayOptions(
            path=file,
            fmt="csv" if fmt == "csv" else "jsonl" if fmt == "jsonl" else "auto",
            sort=sort,
            shift_to_now=shift_to_now,
            skip_invalid=skip_invalid,
            raw=raw,
            kind=kind,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    source = ReplaySource(options)
    settings, topic_name = _settings(bootstrap_servers, topic, labels=kind is LABELS)
    try:
        if not raw and not skip_invalid:
            valid = source.validate()
            _log.info("%s: %s valid %s", file, f"{valid:,}", kind.name)
        code = _send(
            source.records(),
            no_kafka=no_kafka,
            settings=settings,
            topic=topic_name,
            pacer=None if speed_value is None else EventTimePacer(speed=speed_value),
            limits=Limits(),
            out=None,
            labels_out=None,
            log_interval=log_interval,
            scenarios=False,
        )
    except ReplayFileInvalid as exc:
        _log.error("%s", exc)
        sys.exit(EXIT_FAILED)
    if source.invalid_count:
        _log.warning("skipped %d invalid line(s):", source.invalid_count)
        for line in source.invalid:
            _log.warning("  %s", line)
    sys.exit(code)


@main.command()
@click.option(
    "--count",
    type=click.IntRange(min=1000),
    default=300_000,
    show_default=True,
    help="Records for the flat-out measurements.",
)
@click.option("--cards", type=click.IntRange(min=10), default=20_000, show_default=True)
@click.option(
    "--rate",
    "target",
    type=click.FloatRange(min=1),
    default=1000.0,
    show_default=True,
    help="Target of the rate-accuracy measurement.",
)
@click.option(
    "--seconds",
    type=click.FloatRange(min=1),
    default=20.0,
    show_default=True,
    help="Length of the rate-accuracy measurement.",
)
@click.option("--bootstrap-servers", help="Default: KAFKA_BOOTSTRAP_SERVERS.")
def bench(
    count: int, cards: int, target: float, seconds: float, bootstrap_servers: str | None
) -> None:
    """Measure: generation alone, generation + Kafka flat out, and rate accuracy.

    Creates a temporary 3-partition topic and deletes it afterwards.
    """
    from producer.self_benchmark import run_benchmarks

    settings, _ = _settings(bootstrap_servers, None)
    try:
        run_benchmarks(settings, count=count, cards=cards, target=target, seconds=seconds)
    except ProducerError as exc:
        _log.error("%s", exc)
        sys.exit(exc.exit_code)
