"""A short-lived, bounded, per-process cache for the console's expensive read views.

Twenty analysts looking at the same queue ask the same questions within seconds of each
other; on FerretDB v1 each of those questions is a full collection scan. ``ReadCache`` keeps
an answer for ``ttl_s`` seconds (``WEBAPP_READ_CACHE_S``), at most ``max_entries`` answers
(least recently used first out), and lets concurrent identical requests wait for one query
instead of each running it (single-flight). At most ``max_loads`` of those queries run at
once per process (a bulkhead): when the database is the bottleneck, queries that share it
slow each other down until all of them miss their deadline; queued behind each other, most
finish in time and their answers serve everyone waiting for them.

Freshness rules (also in ``docs/webapp.md``):

- an answer is served for at most ``ttl_s`` seconds after it arrived from the database (it
  shows the database as of its query's run); a request that arrives while the same query
  is running waits for that query's answer;
- any write this process makes clears the whole cache (``invalidate``), and a query that was
  in flight during the write is not stored nor joined by later requests;
- a request may demand answers whose query started after a given moment (``not_before``,
  set per request from the session after the user's own write), so an analyst sees their
  own change at once even when the next request lands on another gunicorn worker.

Lookups by ``_id`` are never cached: they are cheap everywhere and must stay exact.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")

# The moment (cache clock) after which this request's answers must have been read; set from
# the session after the user's own write. A ContextVar, so each gthread request has its own.
_not_before: ContextVar[float | None] = ContextVar("read_cache_not_before", default=None)

LookupObserver = Callable[[str, str], None]


@contextmanager
def reads_not_before(moment: float | None) -> Iterator[None]:
    """Within this block, serve only answers whose query started after ``moment``."""
    token = _not_before.set(moment)
    try:
        yield
    finally:
        _not_before.reset(token)


def set_reads_not_before(moment: float | None) -> None:
    """Like :func:`reads_not_before` for a whole request (reset by the next request's call)."""
    _not_before.set(moment)


@dataclass(slots=True)
class _Entry:
    value: Any
    started: float  # when its query started: compared with a reader's not_before
    stored: float  # when its answer arrived: the TTL counts from here
    generation: int


@dataclass(slots=True)
class _Flight:
    started: float
    generation: int
    done: threading.Event = field(default_factory=threading.Event)
    value: Any = None
    error: BaseException | None = None


class ReadCache:
    """TTL + LRU + single-flight, safe to share between threads.

    Args:
        ttl_s: how long an answer is served after it arrived; ``0`` disables caching
            (every call runs its loader; nothing is stored, nothing is shared).
        max_entries: bound on stored answers (least recently used evicted first).
        max_loads: how many loaders may run at the same time (others wait their turn).
        clock: seconds, wall-clock based (``time.time``) so that ``not_before`` moments from
            another process compare; tests inject their own.
        observer: called with (view, "hit" | "miss" | "shared") for each lookup, where view
            is the first element of the key; the console counts these in ``/metrics``.
    """

    def __init__(
        self,
        ttl_s: float,
        max_entries: int = 256,
        *,
        max_loads: int = 1,
        clock: Callable[[], float] = time.time,
        observer: LookupObserver | None = None,
    ) -> None:
        if ttl_s < 0 or max_entries < 1 or max_loads < 1:
            raise ValueError("ttl_s must be >= 0, max_entries and max_loads >= 1")
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.clock = clock
        self._observer = observer
        self._lock = threading.Lock()
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._flights: dict[Hashable, _Flight] = {}
        self._generation = 0
        self._loads = threading.BoundedSemaphore(max_loads)

    @property
    def enabled(self) -> bool:
        return self.ttl_s > 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def bucket(self, moment: float) -> int:
        """The coarse time bucket of ``moment`` (a key part for views that depend on now)."""
        return int(moment // self.ttl_s) if self.enabled else 0

    def get_or_load(self, key: tuple[Hashable, ...], load: Callable[[], T]) -> T:
        """The cached answer for ``key``, else ``load()``'s (one call per key at a time).

        ``load``'s exception reaches every request that waited for it and is not cached.
        """
        view = str(key[0]) if key else "?"
        if not self.enabled:
            self._observe(view, "miss")
            with self._loads:
                return load()
        found, flight, leader = self._lookup(key, _not_before.get())
        if found is not None:
            self._observe(view, "hit")
            value: T = found.value
            return value
        if not leader:
            self._observe(view, "shared")
            flight.done.wait()
            if flight.error is not None:
                raise flight.error
            shared: T = flight.value
            return shared
        self._observe(view, "miss")
        try:
            with self._loads:
                flight.value = load()
        except BaseException as exc:
            flight.error = exc
            raise
        else:
            self._store(key, flight)
            loaded: T = flight.value
            return loaded
        finally:
            with self._lock:
                if self._flights.get(key) is flight:
                    del self._flights[key]
            flight.done.set()

    def _lookup(
        self, key: Hashable, not_before: float | None
    ) -> tuple[_Entry | None, _Flight, bool]:
        """(usable entry, or the flight to lead or join and whether to lead it)."""
        with self._lock:
            now = self.clock()
            entry = self._entries.get(key)
            if entry is not None:
                if self._usable(entry.started, entry.generation, now - entry.stored, not_before):
                    self._entries.move_to_end(key)
                    return entry, _Flight(entry.started, entry.generation), False
                if now - entry.stored >= self.ttl_s:
                    del self._entries[key]
            flight = self._flights.get(key)
            # Joining a running query needs no TTL check: its answer is read after the
            # request arrived or shortly before, and starting the same scan again would only
            # slow both down.
            if flight is not None and self._usable(
                flight.started, flight.generation, 0.0, not_before
            ):
                return None, flight, False
            flight = _Flight(started=now, generation=self._generation)
            self._flights[key] = flight
            return None, flight, True

    def _store(self, key: Hashable, flight: _Flight) -> None:
        with self._lock:
            if flight.generation != self._generation:
                return  # a write happened while the query ran: its answer may predate it
            stored = self.clock()
            self._entries[key] = _Entry(flight.value, flight.started, stored, flight.generation)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def invalidate(self) -> float:
        """Forget every answer and in-flight query (call after any write); returns the moment,
        to be used as a later request's ``not_before``."""
        with self._lock:
            self._generation += 1
            self._entries.clear()
            self._flights.clear()
            return self.clock()

    def _usable(
        self, started: float, generation: int, age: float, not_before: float | None
    ) -> bool:
        return (
            generation == self._generation
            and age < self.ttl_s
            and (not_before is None or started > not_before)
        )

    def _observe(self, view: str, result: str) -> None:
        if self._observer is not None:
            self._observer(view, result)
