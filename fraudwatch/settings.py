"""Typed configuration shared by every fraudwatch component.

Each component builds one frozen settings object in its entry point and passes
it down; nothing else reads ``os.environ``. Variable names are the same in every
component, the README, ``.env.example`` and ``compose.yaml``.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

LOCAL_KAFKA = "localhost:9092"
LOCAL_MONGODB = "mongodb://localhost:27017"

_CONFIG = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)


class KafkaSettings(BaseSettings):
    """Where Kafka is and how to talk to it; TLS/SASL are passed through to clients."""

    model_config = _CONFIG

    kafka_bootstrap_servers: str = LOCAL_KAFKA
    transactions_topic: str = "payment-transactions"
    alerts_topic: str = "fraud-alerts"
    dlq_topic: str = "payment-transactions-dlq"
    # Fraud labels (contract v1: chargebacks, analysts' dispositions), read by the dataflow.
    labels_topic: str = "fraud-labels"
    # Every valid transaction's score (written only when FRAUD_WRITE_SCORES=1).
    scores_topic: str = "fraud-scores"
    # The feature log the trainer learns from (dataflows.detection.featurelog).
    features_topic: str = "fraud-features"
    # PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str | None = None  # PLAIN, SCRAM-SHA-256, SCRAM-SHA-512
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: str | None = None
    kafka_ssl_certfile: str | None = None
    kafka_ssl_keyfile: str | None = None

    @property
    def bootstrap_list(self) -> list[str]:
        """Bootstrap servers as a list of ``host:port`` strings."""
        return [s.strip() for s in self.kafka_bootstrap_servers.split(",") if s.strip()]

    def librdkafka_config(self) -> dict[str, Any]:
        """Security options in librdkafka (confluent-kafka, Bytewax) spelling."""
        conf: dict[str, Any] = {"security.protocol": self.kafka_security_protocol}
        optional = {
            "sasl.mechanism": self.kafka_sasl_mechanism,
            "sasl.username": self.kafka_sasl_username,
            "sasl.password": (
                self.kafka_sasl_password.get_secret_value() if self.kafka_sasl_password else None
            ),
            "ssl.ca.location": self.kafka_ssl_cafile,
            "ssl.certificate.location": self.kafka_ssl_certfile,
            "ssl.key.location": self.kafka_ssl_keyfile,
        }
        conf.update({k: v for k, v in optional.items() if v is not None})
        return conf

    def kafka_python_config(self) -> dict[str, Any]:
        """Security options in kafka-python spelling (the producer)."""
        conf: dict[str, Any] = {"security_protocol": self.kafka_security_protocol}
        optional = {
            "sasl_mechanism": self.kafka_sasl_mechanism,
            "sasl_plain_username": self.kafka_sasl_username,
            "sasl_plain_password": (
                self.kafka_sasl_password.get_secret_value() if self.kafka_sasl_password else None
            ),
            "ssl_cafile": self.kafka_ssl_cafile,
            "ssl_certfile": self.kafka_ssl_certfile,
            "ssl_keyfile": self.kafka_ssl_keyfile,
        }
        conf.update({k: v for k, v in optional.items() if v is not None})
        return conf


class MongoSettings(BaseSettings):
    """Where MongoDB is. TLS and auth options go in the URI (``?tls=true&tlsCAFile=...``)."""

    model_config = _CONFIG

    mongodb_uri: str = LOCAL_MONGODB
    mongodb_database: str = "fraud"
    mongodb_timeout_ms: int = Field(default=5000, gt=0)


class TokenSettings(BaseSettings):
    """The key that turns card numbers into tokens; the dataflow and web app must share it."""

    model_config = _CONFIG

    fraud_token_key: SecretStr | None = None
