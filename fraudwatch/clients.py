"""Kafka and MongoDB clients built from the shared settings, and the project's topics.

Components, tools, benchmarks and tests build their clients here, so bootstrap servers,
TLS/SASL options and timeouts come from one place: a call site states only what it does
differently (a group id, a shorter server-selection timeout for a probe). The dataflow's
Kafka connectors (``dataflows.io.kafka_io``) are the exception: like Bytewax's own, they take
the brokers and ``KafkaSettings.librdkafka_config()`` from the flow's wiring. Topics are created
by ``ensure_topics`` only, with the partition counts and retention of ``TOPICS`` /
``TOPIC_CONFIGS``. The client libraries are imported when a client is built, not when this
module is.

Nothing here is FerretDB-specific: the MongoDB options are plain driver options, so the same
code runs against a real MongoDB (TLS and auth go in ``MONGODB_URI``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from fraudwatch.settings import KafkaSettings, MongoSettings

if TYPE_CHECKING:
    from pymongo import MongoClient

Doc = dict[str, Any]

# name -> partitions: the topics `make up` creates. Same list as compose.yaml's topic-init.
TOPICS: dict[str, int] = {
    "payment-transactions": 3,
    "fraud-alerts": 3,
    "payment-transactions-dlq": 1,
    "fraud-labels": 3,
    "fraud-scores": 3,
    # One partition: the trainer reads the feature log in the order the dataflow wrote it.
    "fraud-features": 1,
}
# Topic settings that differ from the broker's defaults (compose.yaml sets the same).
TOPIC_CONFIGS: dict[str, dict[str, str]] = {
    # The trainer re-reads the feature log after a restart: keep the training window (14 d)
    # + the label delay (7 d) + a margin.
    "fraud-features": {"retention.ms": str(30 * 86_400_000)},
}


class TopicSetupError(RuntimeError):
    """A topic could not be created, or exists with fewer partitions than it needs."""


def plaintext_kafka(bootstrap: str) -> KafkaSettings:
    """Settings for the plaintext broker at ``bootstrap``: the local stack, or a private one
    that a test started.

    None of the environment's TLS/SASL options apply: they describe the configured cluster,
    not a broker a test or benchmark names by address.
    """
    return KafkaSettings.model_construct(kafka_bootstrap_servers=bootstrap)


# --------------------------------------------------------------------------- Kafka


def kafka_config(settings: KafkaSettings, options: Mapping[str, Any] | None = None) -> Doc:
    """A librdkafka (confluent-kafka, Bytewax) config for an admin client or a producer:
    the bootstrap servers and security options from ``settings``, then ``options``."""
    return {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        **settings.librdkafka_config(),
        **(options or {}),
    }


def producer_config(settings: KafkaSettings, options: Mapping[str, Any] | None = None) -> Doc:
    """A librdkafka producer config that neither loses nor reorders on retries: every write
    acknowledged by all in-sync replicas, idempotent; ``options`` add or override."""
    return kafka_config(settings, {"acks": "all", "enable.idempotence": True, **(options or {})})


def consumer_config(
    settings: KafkaSettings, group_id: str, options: Mapping[str, Any] | None = None
) -> Doc:
    """A librdkafka consumer config in consumer group ``group_id``; ``options`` add or
    override (offsets, EOF events, fetch tuning)."""
    return kafka_config(settings, {"group.id": group_id, **(options or {})})


def kafka_python_config(settings: KafkaSettings, **overrides: Any) -> Doc:
    """Keyword arguments for a kafka-python client (``KafkaProducer``, ``KafkaConsumer``,
    ``KafkaAdminClient``): bootstrap servers and security from ``settings``, then
    ``overrides``."""
    return {
        "bootstrap_servers": settings.bootstrap_list,
        **settings.kafka_python_config(),
        **overrides,
    }


def admin_client(settings: KafkaSettings, options: Mapping[str, Any] | None = None) -> Any:
    """A confluent-kafka ``AdminClient`` for ``settings``' cluster."""
    from confluent_kafka.admin import AdminClient

    return AdminClient(kafka_config(settings, options))


def ensure_topics(
    settings: KafkaSettings,
    topics: Mapping[str, int],
    *,
    configs: Mapping[str, Mapping[str, str]] = TOPIC_CONFIGS,
    timeout_s: float = 30.0,
) -> None:
    """Create ``topics`` (name -> partitions) unless they exist; idempotent.

    A topic named in ``configs`` is created with those settings (retention, timestamp type,
    message size). Replication factor 1: for a single-broker stack; a real cluster's topics
    are created by its operators.

    Raises:
        TopicSetupError: an existing topic has fewer partitions than asked for, or the
            broker refused to create one.
    """
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]

    admin = admin_client(settings)
    existing = admin.list_topics(timeout=timeout_s).topics
    for name, partitions in topics.items():
        if name in existing and len(existing[name].partitions) < partitions:
            raise TopicSetupError(
                f"topic {name} exists with {len(existing[name].partitions)} partitions, "
                f"expected {partitions}; `make clean-stack` resets local data"
            )
    missing = [
        NewTopic(name, num_partitions=n, replication_factor=1, config=dict(configs.get(name, {})))
        for name, n in topics.items()
        if name not in existing
    ]
    if not missing:
        return
    for name, fut in admin.create_topics(missing, operation_timeout=timeout_s).items():
        try:
            fut.result(timeout=timeout_s)
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise TopicSetupError(f"could not create topic {name}: {exc}") from exc


def delete_topics(
    settings: KafkaSettings,
    names: Iterable[str],
    *,
    timeout_s: float = 30.0,
    best_effort: bool = True,
) -> None:
    """Delete scratch topics. ``best_effort``: a topic that is gone already, or a deletion
    the broker refuses, is not an error (cleanup after a test or benchmark)."""
    names = list(names)
    if not names:
        return
    admin = admin_client(settings)
    for fut in admin.delete_topics(names, operation_timeout=timeout_s).values():
        try:
            fut.result(timeout=timeout_s)
        except Exception:
            if not best_effort:
                raise


# --------------------------------------------------------------------------- MongoDB


def mongo_client(settings: MongoSettings, **overrides: Any) -> MongoClient[Doc]:
    """A ``MongoClient`` for ``MONGODB_URI``; ``overrides`` are pymongo options.

    Connecting and picking a server wait at most ``MONGODB_TIMEOUT_MS``; an operation's
    socket may take longer (at least 30 s) because a query legitimately can. pymongo
    connects in the background: the first operation is the first that can fail.
    """
    from pymongo import MongoClient

    timeout_ms = settings.mongodb_timeout_ms
    options: dict[str, Any] = {
        "serverSelectionTimeoutMS": timeout_ms,
        "connectTimeoutMS": timeout_ms,
        "socketTimeoutMS": max(timeout_ms, 30_000),
        **overrides,
    }
    return MongoClient(settings.mongodb_uri, **options)


def mongo_at(uri: str) -> MongoSettings:
    """Settings for the MongoDB server at ``uri`` (a private test server, a benchmark's)."""
    return MongoSettings(mongodb_uri=uri)
