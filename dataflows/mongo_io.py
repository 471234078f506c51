"""MongoDB sinks: idempotent bulk upserts with a bounded retry, then a loud failure.

Alerts are inserted, never updated, keyed by the deterministic alert id (a duplicate ``_id``
means "already written"), so a replay after a crash neither duplicates an alert nor undoes an
analyst's disposition. Stats
documents are rewritten with the complete counts of their minute (``$set``), so replays do not
inflate them. A transient outage is retried with backoff for a bounded time; after that the
dataflow stops with a non-zero exit instead of dropping alerts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import stamina
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from pymongo import MongoClient
from pymongo.collection import Collection
from pymongo.errors import AutoReconnect, ConnectionFailure, PyMongoError

from fraudwatch.alert_store import (
    ALERT_STATS,
    ALERTS,
    Doc,
    ensure_indexes,
    write_alerts,
    write_stats,
)

_log = logging.getLogger(__name__)
_TRANSIENT = (AutoReconnect, ConnectionFailure)


class MongoUnavailable(RuntimeError):
    """MongoDB stayed unreachable beyond the retry budget; the dataflow must stop."""


def connect(uri: str, database: str, timeout_ms: int) -> Any:
    """Open a client and check the server answers; a clear error when it does not."""
    client: MongoClient[Doc] = MongoClient(
        uri,
        serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=timeout_ms,
        socketTimeoutMS=max(timeout_ms, 30_000),
        appname="fraudwatch-dataflow",
    )
    try:
        client.admin.command("ping")
    except PyMongoError as exc:
        raise MongoUnavailable(
            f"MongoDB is not reachable at the configured MONGODB_URI ({exc}); is the stack up? "
            "run `make up`"
        ) from exc
    return client[database]


class _MongoPartition(StatelessSinkPartition[Doc]):
    def __init__(
        self,
        coll: Collection[Doc],
        write: Callable[[Collection[Doc], list[Doc]], Any],
        attempts: int,
        timeout_s: float,
        on_retry: Callable[[], None],
    ) -> None:
        self._coll = coll
        self._write = write
        self._attempts = attempts
        self._timeout_s = timeout_s
        self._on_retry = on_retry

    def write_batch(self, items: list[Doc]) -> None:
        if not items:
            return
        try:
            for attempt in stamina.retry_context(
                on=_TRANSIENT, attempts=self._attempts, timeout=self._timeout_s, wait_max=10.0
            ):
                with attempt:
                    if attempt.num > 1:
                        self._on_retry()
                        _log.warning(
                            "retrying MongoDB write",
                            extra={"collection": self._coll.name, "attempt": attempt.num},
                        )
                    self._write(self._coll, items)
        except _TRANSIENT as exc:
            raise MongoUnavailable(
                f"writing {len(items)} document(s) to {self._coll.full_name} failed after "
                f"{self._attempts} attempts / {self._timeout_s:g}s: {exc}"
            ) from exc

    def close(self) -> None:
        self._coll.database.client.close()


class MongoUpsertSink(DynamicSink[Doc]):
    """Writes alert documents (insert-only) or stats documents (whole-minute rewrites)."""

    def __init__(
        self,
        uri: str,
        database: str,
        collection: str,
        timeout_ms: int = 5000,
        attempts: int = 6,
        retry_timeout_s: float = 60.0,
        on_retry: Callable[[], None] = lambda: None,
    ) -> None:
        if collection not in (ALERTS, ALERT_STATS):
            raise ValueError(f"unknown collection {collection!r}")
        self._uri = uri
        self._database = database
        self._collection = collection
        self._timeout_ms = timeout_ms
        self._attempts = attempts
        self._retry_timeout_s = retry_timeout_s
        self._on_retry = on_retry

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _MongoPartition:
        db = connect(self._uri, self._database, self._timeout_ms)
        if worker_index == 0:
            for attempt in stamina.retry_context(on=_TRANSIENT, attempts=self._attempts):
                with attempt:
                    ensure_indexes(db)
        write = write_alerts if self._collection == ALERTS else write_stats
        return _MongoPartition(
            db[self._collection],
            write,
            self._attempts,
            self._retry_timeout_s,
            self._on_retry,
        )
