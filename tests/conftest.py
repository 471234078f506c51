"""Shared fixtures. Integration tests need the local stack that `make test` starts.

An integration test never skips: if Kafka or MongoDB is not reachable it fails with a message
that says how to start them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from fraudwatch import clients
from fraudwatch.settings import KafkaSettings, MongoSettings


@pytest.fixture(scope="session")
def kafka_settings() -> KafkaSettings:
    return KafkaSettings()


@pytest.fixture(scope="session")
def mongo_settings() -> MongoSettings:
    return MongoSettings()


@pytest.fixture(scope="session")
def bootstrap(kafka_settings: KafkaSettings) -> str:
    servers = kafka_settings.kafka_bootstrap_servers
    admin = clients.admin_client(kafka_settings)
    try:
        admin.list_topics(timeout=10)
    except Exception as exc:
        pytest.fail(f"Kafka is not reachable at {servers} ({exc}): run `make up` or `make test`")
    return servers


@pytest.fixture(scope="session")
def mongo_client(mongo_settings: MongoSettings) -> Iterator[Any]:
    client: Any = clients.mongo_client(mongo_settings, serverSelectionTimeoutMS=5000)
    try:
        client.admin.command("ping")
    except Exception as exc:
        pytest.fail(
            f"MongoDB is not reachable at {mongo_settings.mongodb_uri} ({exc}): "
            "run `make up` or `make test`"
        )
    yield client
    client.close()


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> str:
    """A name no other test (or earlier run) uses: for topics, databases and collections."""
    base = request.node.name.replace("[", "_").replace("]", "")[:40]
    return f"t-{base}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def mongo_db(mongo_client: Any, unique_name: str) -> Iterator[Any]:
    name = unique_name.replace("-", "_")[:60]
    yield mongo_client[name]
    mongo_client.drop_database(name)


@pytest.fixture
def make_topic(bootstrap: str, kafka_settings: KafkaSettings) -> Iterator[Any]:
    """Factory: create a uniquely named topic, deleted again after the test."""
    created: list[str] = []

    def make(name: str, partitions: int = 1) -> str:
        clients.ensure_topics(kafka_settings, {name: partitions})
        created.append(name)
        return name

    yield make
    clients.delete_topics(kafka_settings, created, timeout_s=15, best_effort=False)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Everything under tests/integration needs the stack: mark it so `-m` can select tiers."""
    for item in items:
        if "/integration/" in str(item.path):
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def pipe(bootstrap: str, mongo_settings: MongoSettings, mongo_client: Any) -> Iterator[Any]:
    """Unique topics (3 input partitions) and database for one dataflow test, removed after."""
    from tests.integration.pipeline import PipelineEnv

    env = PipelineEnv(bootstrap, mongo_settings.mongodb_uri)
    env.create_topics()
    yield env
    env.delete_topics()
    mongo_client.drop_database(env.db)
