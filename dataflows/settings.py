"""Settings of the dataflow: built once in the entry point from the environment."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from dataflows.ruleset import DEFAULT_RULES_FILE
from fraudwatch.settings import KafkaSettings, MongoSettings, TokenSettings


class DataflowSettings(KafkaSettings, MongoSettings, TokenSettings):
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
