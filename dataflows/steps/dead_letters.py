"""Splitting a validated stream into valid items and dead letters, the way Bytewax's Kafka
operators split messages from errors (``bytewax.connectors.kafka.operators``): a composite
``@operator`` that returns a frozen dataclass of two streams instead of one mixed stream."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar, cast

import bytewax.operators as op
from bytewax.dataflow import Stream, operator

from fraudwatch.contract import DeadLetter

X = TypeVar("X")


@dataclass(frozen=True)
class ValidatedOut(Generic[X]):
    """The two streams of a validation step."""

    oks: Stream[X]
    """Valid items."""

    errs: Stream[DeadLetter]
    """Inputs that failed validation, for the dead-letter topic."""


def _is_valid(item: object) -> bool:
    return type(item) is not DeadLetter


@operator
def split_dead_letters(step_id: str, up: Stream[X | DeadLetter]) -> ValidatedOut[X]:
    """Split a stream of valid items and dead letters between ``oks`` and ``errs``.

    Args:
        step_id: Unique ID.
        up: What a validation step emits: a valid item or a ``DeadLetter`` per input.

    Returns:
        The valid items and the dead letters as separate streams.
    """
    branch = op.branch("branch", up, _is_valid)
    oks = cast("Stream[X]", branch.trues)
    errs = cast("Stream[DeadLetter]", branch.falses)
    return ValidatedOut(oks, errs)
