"""New operating points for a running flow: the ``score`` step asks between batches."""

from __future__ import annotations

import time
from collections.abc import Callable

from dataflows.detection.policy import PolicyBook
from dataflows.io import prometheus


class PolicyRefresh:
    """Looks for new operating points (``dataflows.io.model_store``) at most every ``every_s``
    seconds of wall clock, between batches of the ``score`` step; one per built flow."""

    def __init__(
        self, book: PolicyBook, source: Callable[[PolicyBook], int] | None, every_s: float
    ) -> None:
        self.book = book
        self.source = source
        self.every_s = every_s
        self.next_at = 0.0

    def maybe_refresh(self) -> None:
        if self.source is None:
            return
        now = time.monotonic()
        if now >= self.next_at:
            self.next_at = now + self.every_s
            if self.source(self.book):
                prometheus.MODEL_INFO.info(
                    {"version": self.book.newest.version, "day": self.book.newest.day}
                )
                prometheus.ALERT_THRESHOLD.set(self.book.newest.threshold)
