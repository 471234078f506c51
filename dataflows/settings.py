"""Settings of the dataflow: built once in the entry point from the environment."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from dataflows.detection.featurelog import Sampler
from dataflows.detection.ruleset import DEFAULT_RULES_FILE, RuleSet
from dataflows.detection.training import TrainingConfig
from fraudwatch.settings import KafkaSettings, MongoSettings, TokenSettings


class LearningSettings(BaseSettings):
    """The learning loop's knobs, shared by the dataflow, the trainer and the backtest."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    # Analyst capacity: the trainer sizes each day's alert threshold so that about this many
    # cards alert per day (always-alert signals included). 0: no budget, fixed thresholds.
    alert_budget_cards_per_day: int = Field(default=100, ge=0)
    # The feature log keeps every transaction scoring at least the floor (or alerted) and a
    # seeded sample of the rest, weighted by 1 / rate.
    feature_log_floor: float = Field(default=0.05, gt=0, lt=1)
    feature_log_rate: float = Field(default=0.02, gt=0, le=1)
    feature_log_seed: int = 7
    # Training window: the latest N days whose labels count as final (label_delay_days back).
    trainer_window_days: int = Field(default=14, ge=1, le=90)
    # A candidate needs this many labelled frauds in its window to be trained at all.
    trainer_min_frauds: int = Field(default=20, ge=1)
    # A day's decision scores from this long after midnight (event time): the time a running
    # dataflow has to load it.
    trainer_grace_minutes: float = Field(default=60.0, ge=0, le=720)
    # How often (wall clock) the dataflow looks for a new operating point.
    fraud_model_poll_s: float = Field(default=5.0, gt=0)

    def sampler(self, prior: float) -> Sampler:
        return Sampler(self.feature_log_floor, self.feature_log_rate, self.feature_log_seed, prior)

    def training(self, ruleset: RuleSet) -> TrainingConfig:
        return TrainingConfig(
            prior=ruleset.score.prior,
            fallback_threshold=ruleset.score.alert_threshold,
            ruleset_version=ruleset.version,
            label_delay_days=ruleset.labels.label_delay_days,
            window_days=self.trainer_window_days,
            min_frauds=self.trainer_min_frauds,
            budget_cards_per_day=self.alert_budget_cards_per_day or None,
            grace_ms=int(self.trainer_grace_minutes * 60_000),
            severity=ruleset.severity,
        )


class DataflowSettings(KafkaSettings, MongoSettings, TokenSettings, LearningSettings):
    """Everything ``dataflows.fraud`` needs; same variable names as every other component."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    fraud_rules_file: Path = DEFAULT_RULES_FILE
    # Stop at the end of the input topic (backtests, benchmarks): the process then exits 0.
    fraud_stop_at_end: bool = False
    # Messages per poll of one input partition; also bounds memory between epochs.
    fraud_batch_size: int = Field(default=2000, ge=1, le=100_000)
    # Give up (non-zero exit) when no broker has been reachable for this long.
    fraud_broker_timeout_s: float = Field(default=60.0, gt=0)
    # Every flush of alerts/DLQ to Kafka must complete within this.
    fraud_flush_timeout_s: float = Field(default=30.0, gt=0)
    # MongoDB writes: attempts and total time before the dataflow fails loudly.
    fraud_mongo_attempts: int = Field(default=6, ge=1)
    fraud_mongo_retry_timeout_s: float = Field(default=60.0, gt=0)
    # Per-minute stats are rewritten at most this often (wall clock), and kept in state this
    # many minutes behind the newest event time (older arrivals are counted in a metric only).
    fraud_stats_flush_s: float = Field(default=2.0, gt=0)
    fraud_stats_retention_minutes: int = Field(default=2880, ge=60)
    # Past minutes are written once every input partition has passed them; a partition whose
    # event time has not advanced for this long (idle, finished) no longer holds them back.
    fraud_stats_idle_partition_s: float = Field(default=30.0, gt=0)
    # Card state is kept in this many shards (Bytewax state keys). Fixed for a recovery store:
    # changing it would route cards to other shards (the store records it and refuses).
    fraud_card_shards: int = Field(default=256, ge=1, le=65_536)
    # Write every valid transaction's score to SCORES_TOPIC (what a payment switch consumes).
    fraud_write_scores: bool = False
    # How often (wall clock) idle cards are checked for eviction.
    fraud_eviction_check_s: float = Field(default=300.0, gt=0)
    # Prometheus metrics at http://FRAUD_METRICS_HOST:FRAUD_METRICS_PORT/metrics; 0 = off
    # (the default: tests, benchmarks and scale-out run several dataflows). `make run`: 3030.
    fraud_metrics_port: int = Field(default=0, ge=0, le=65_535)
    fraud_metrics_host: str = "127.0.0.1"


class TrainerSettings(KafkaSettings, MongoSettings, TokenSettings, LearningSettings):
    """Everything ``dataflows.trainer`` needs."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    fraud_rules_file: Path = DEFAULT_RULES_FILE
    # Stop once the feature log's end is reached (tests, backfills): the process exits 0.
    trainer_stop_at_end: bool = False
    # Health documents are rewritten at most this often (wall clock) as labels arrive.
    trainer_health_every_s: float = Field(default=30.0, gt=0)
    # Prometheus metrics (drift, validation AP) at TRAINER_METRICS_HOST:PORT; 0 = off.
    trainer_metrics_port: int = Field(default=3031, ge=0, le=65_535)
    trainer_metrics_host: str = "127.0.0.1"
