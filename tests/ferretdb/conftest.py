"""Private FerretDB servers for the pushdown tests: the project's patched build and FerretDB's
own query behaviour ("upstream": only the leak-tracker patch), each on a free port with its
own data folder, started here and stopped again (CI starts from nothing)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devtools.stack import LocalStack, StackConfig
from fraudwatch import clients


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _server(tmp: Path, variant: str) -> Iterator[Any]:
    config = StackConfig(data_dir=tmp / variant, mongo_port=_free_port(), ferretdb_variant=variant)
    stack = LocalStack(config)
    started = stack.up(kafka=False, mongo=True)
    client: Any = clients.mongo_client(
        clients.mongo_at(config.mongodb_uri), serverSelectionTimeoutMS=10_000
    )
    try:
        yield client
    finally:
        client.close()
        stack.stop(started)


@pytest.fixture(scope="session")
def patched_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    yield from _server(tmp_path_factory.mktemp("ferretdb"), "patched")


@pytest.fixture(scope="session")
def upstream_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    yield from _server(tmp_path_factory.mktemp("ferretdb"), "upstream")
