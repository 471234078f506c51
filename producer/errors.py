"""Errors a producer user can act on; each carries the exit code the CLI returns for it."""

from __future__ import annotations


class ProducerError(Exception):
    """Something a user must fix before the producer can run."""

    exit_code = 1


class BrokerUnreachable(ProducerError):
    """No Kafka broker answered at the bootstrap servers."""

    exit_code = 2


class TopicMissing(ProducerError):
    """The topic does not exist and the broker does not auto-create topics."""

    exit_code = 2


class DeliveryFailed(ProducerError):
    """Kafka refused or timed out a record: the run stops, since the stream now has a gap."""

    exit_code = 1
