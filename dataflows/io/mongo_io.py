"""MongoDB sinks of the alert store (``AlertStoreSink``): idempotent bulk writes off the main
thread, a bounded retry, a loud failure.

Alerts are inserted, never updated, keyed by the deterministic alert id (a duplicate ``_id``
means "already written"), so a replay after a crash neither duplicates an alert nor undoes an
analyst's disposition. Stats
documents are rewritten with the complete counts of their minute (``$set``), so replays do not
inflate them. A transient outage is retried with backoff for a bounded time; after that the
dataflow stops with a non-zero exit instead of dropping alerts.

Writes run on one background thread per collection (``BackgroundWriter``), so the dataflow
keeps judging transactions while MongoDB answers (a synchronous ``insert_many`` was 13 % of
the main thread's wall time on FerretDB). At-least-once is kept by an epoch barrier: the sink
is a ``FixedPartitionedSink``, whose ``snapshot()`` Bytewax calls at the close of every epoch
the partition wrote in, before that epoch's input offsets are committed; ``snapshot()`` waits
until every queued batch is written and re-raises a failed write there. A crash loses at
most queued writes of an uncommitted epoch, which the restart replays.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import stamina
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition
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
from fraudwatch.clients import mongo_client
from fraudwatch.settings import MongoSettings

_log = logging.getLogger(__name__)
_TRANSIENT = (AutoReconnect, ConnectionFailure)


class MongoUnavailable(RuntimeError):
    """MongoDB stayed unreachable beyond the retry budget; the dataflow must stop."""


def connect(uri: str, database: str, timeout_ms: int) -> Any:
    """Open a client and check the server answers; a clear error when it does not."""
    settings = MongoSettings(
        mongodb_uri=uri, mongodb_database=database, mongodb_timeout_ms=timeout_ms
    )
    client = mongo_client(settings, appname="fraudwatch-dataflow")
    try:
        client.admin.command("ping")
    except PyMongoError as exc:
        raise MongoUnavailable(
            f"MongoDB is not reachable at the configured MONGODB_URI ({exc}); is the stack up? "
            "run `make up`"
        ) from exc
    return client[database]


T = TypeVar("T")


def _retried(
    action: Callable[[], T],
    *,
    what: str,
    on: tuple[type[Exception], ...],
    attempts: int,
    timeout_s: float,
    on_retry: Callable[[int], None] = lambda attempt: None,
) -> T:
    """``action()`` with backoff within ``attempts`` and ``timeout_s``, then a loud failure
    that says ``what`` failed."""
    try:
        for attempt in stamina.retry_context(
            on=on, attempts=attempts, timeout=timeout_s, wait_max=10.0
        ):
            with attempt:
                if attempt.num > 1:
                    on_retry(attempt.num)
                result = action()
    except on as exc:
        failure = MongoUnavailable(
            f"{what} failed after {attempts} attempts / {timeout_s:g}s: {exc}"
        )
        # Logged here as well as raised: when both sinks fail at once, Bytewax can abort
        # (a panic while unwinding another) before it prints the exception.
        _log.error("MongoDB unavailable: the dataflow stops", extra={"error": str(failure)})
        raise failure from exc
    return result


class RetryingWrite:
    """One collection's write function with the bounded retry, then ``MongoUnavailable``."""

    def __init__(
        self,
        coll: Collection[Doc],
        write: Callable[[Collection[Doc], list[Doc]], Any],
        attempts: int,
        timeout_s: float,
        on_retry: Callable[[], None],
    ) -> None:
        self.coll = coll
        self._write = write
        self._attempts = attempts
        self._timeout_s = timeout_s
        self._on_retry = on_retry

    def __call__(self, items: list[Doc]) -> None:
        def retrying(attempt: int) -> None:
            self._on_retry()
            _log.warning(
                "retrying MongoDB write", extra={"collection": self.coll.name, "attempt": attempt}
            )

        _retried(
            lambda: self._write(self.coll, items),
            what=f"writing {len(items)} document(s) to {self.coll.full_name}",
            on=_TRANSIENT,
            attempts=self._attempts,
            timeout_s=self._timeout_s,
            on_retry=retrying,
        )


_STOP: list[Doc] = []  # a sentinel: identity, not content, is compared


class BackgroundWriter:
    """Writes batches in order on one thread; ``drain`` is the barrier that re-raises.

    At most ``max_pending`` batches wait; ``submit`` then blocks (backpressure instead of
    unbounded memory while MongoDB is slow). After a failed write the later batches are
    skipped, and ``submit``/``drain`` raise the failure: the dataflow must stop, and its
    restart replays from the last committed epoch.
    """

    def __init__(self, write: Callable[[list[Doc]], None], name: str, max_pending: int) -> None:
        self._write = write
        self._queue: queue.Queue[list[Doc]] = queue.Queue(maxsize=max_pending)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            batch = self._queue.get()
            try:
                if batch is _STOP:
                    return
                if self._error is None:
                    self._write(batch)
            except BaseException as exc:
                self._error = exc
            finally:
                self._queue.task_done()

    def _raise_failure(self) -> None:
        if self._error is not None:
            raise self._error

    def submit(self, batch: list[Doc]) -> None:
        self._raise_failure()
        self._queue.put(batch)

    def drain(self) -> None:
        """Return once every submitted batch is written; raise if one failed."""
        self._queue.join()
        self._raise_failure()

    def close(self) -> None:
        try:
            self.drain()
        finally:
            self._queue.put(_STOP)
            self._thread.join()


class _MongoPartition(StatefulSinkPartition[Doc, None]):
    def __init__(self, write: RetryingWrite, max_pending: int) -> None:
        self._client = write.coll.database.client
        self._writer = BackgroundWriter(write, f"mongo-{write.coll.name}", max_pending)

    def write_batch(self, values: list[Doc]) -> None:
        if values:
            self._writer.submit(values)

    def snapshot(self) -> None:
        # The epoch barrier: nothing of this epoch may be unwritten when its offsets commit.
        self._writer.drain()

    def close(self) -> None:
        try:
            self._writer.close()
        finally:
            self._client.close()


class AlertStoreSink(FixedPartitionedSink[Doc, None]):
    """Writes one ``fraudwatch.alert_store`` collection: alert documents (insert-only) or
    minute-stats documents (whole-minute rewrites), through the store's own write functions.

    One partition (named after the collection): every worker routes its documents to the
    worker that owns it, which writes them on its background thread. Items are
    ``(key, document)``; the key only routes.
    """

    def __init__(
        self,
        uri: str,
        database: str,
        collection: str,
        timeout_ms: int = 5000,
        attempts: int = 6,
        retry_timeout_s: float = 60.0,
        on_retry: Callable[[], None] = lambda: None,
        max_pending: int = 64,
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
        self._max_pending = max_pending
        # Bytewax builds a partition at its first write, which may be long after start-up:
        # check now that the server answers, so a wrong MONGODB_URI fails at once.
        connect(uri, database, timeout_ms).client.close()

    def list_parts(self) -> list[str]:
        return [self._collection]

    def part_fn(self, item_key: str) -> int:
        return 0

    def _open(self) -> Any:
        """The database, indexes ensured, within the same retry budget as the writes."""

        def open_db() -> Any:
            db = connect(self._uri, self._database, self._timeout_ms)
            ensure_indexes(db)
            return db

        return _retried(
            open_db,
            what=f"opening {self._database}.{self._collection}",
            on=(MongoUnavailable, *_TRANSIENT),
            attempts=self._attempts,
            timeout_s=self._retry_timeout_s,
        )

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _MongoPartition:
        db = self._open()
        write = write_alerts if self._collection == ALERTS else write_stats
        retrying = RetryingWrite(
            db[self._collection], write, self._attempts, self._retry_timeout_s, self._on_retry
        )
        return _MongoPartition(retrying, self._max_pending)
