"""Fixtures for the producer tests: small populations and simulators, built once."""

from __future__ import annotations

from collections.abc import Callable
from itertools import islice

import pytest

from producer.population import Population, build_population
from producer.records import Record
from producer.traffic import TrafficConfig, TrafficSimulator

START_MS = 1_795_000_000_000  # 2026-11-18T11:06:40Z


@pytest.fixture(scope="session")
def population() -> Population:
    return build_population(seed=11, cards=1500, merchants=600)


@pytest.fixture
def make_records(population: Population) -> Callable[..., list[Record]]:
    """Factory: the first ``n`` records of a simulator over the session population."""

    def make(n: int, **config: object) -> list[Record]:
        settings: dict[str, object] = {"seed": 5, "start_ms": START_MS, **config}
        simulator = TrafficSimulator(population, TrafficConfig(**settings))
        return list(islice(simulator.records(), n))

    return make
