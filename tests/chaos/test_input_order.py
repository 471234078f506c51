"""Issue #15: the "silent loss after a broker restart" was input sent out of order.

The soak (``python -m tests.chaos.soak``) found every exit-0 loss on a run whose input topic
held some keys' records in another order than the list the oracle judged: the plain test
producer's first batch, refused while the topic's leader was not yet known to a just-started
broker, was retried and appended after later batches. The dataflow judged the topic exactly,
so MongoDB, ``fraud-alerts`` and the statistics all agreed with each other and with an oracle
of the topic's own order; only the oracle of the *sent* list said "lost N, spurious M".

Both tests inject that fault at the exact point, deterministically: the first records of the
input reach the broker after the rest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.chaos import input as chaos_input
from tests.chaos.input import (
    InputOutOfOrder,
    keys_out_of_order,
    produce_in_order,
    read_partitions,
)
from tests.factories import traffic
from tests.integration.pipeline import PipelineEnv, assert_equals_oracle, oracle

pytestmark = pytest.mark.slow

HELD_BACK = 100  # the records of the "retried first batch"


class FirstBatchLast:
    """A producer whose first ``HELD_BACK`` messages reach the broker after all the others,
    as a first batch retried behind later ones does."""

    def __init__(self, config: dict[str, Any]) -> None:
        from confluent_kafka import Producer

        self._producer = Producer(config)
        self._held: list[tuple[Any, Any]] = []
        self._passed = 0

    def list_topics(self, *args: Any, **kwargs: Any) -> Any:
        return self._producer.list_topics(*args, **kwargs)

    def produce(self, *args: Any, **kwargs: Any) -> None:
        self._passed += 1
        if self._passed <= HELD_BACK:
            self._held.append((args, kwargs))
        else:
            self._producer.produce(*args, **kwargs)

    def poll(self, timeout: float) -> int:
        return int(self._producer.poll(timeout))

    def flush(self, timeout: float) -> int:
        self._producer.flush(timeout)
        for args, kwargs in self._held:
            self._producer.produce(*args, **kwargs)
        self._held.clear()
        return int(self._producer.flush(timeout))


def test_input_that_reaches_the_topic_out_of_order_is_refused_before_any_oracle_check(
    pipe: PipelineEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = traffic(cards=30, per_card=12)
    monkeypatch.setattr(chaos_input, "Producer", FirstBatchLast)
    with pytest.raises(InputOutOfOrder, match=r"holds \d+ key\(s\) out of the order"):
        produce_in_order(pipe.bootstrap, pipe.tx, values)


def test_reordered_input_alone_gives_the_lost_alerts_signature_after_an_exit_0(
    pipe: PipelineEnv, mongo_client: Any, tmp_path: Path
) -> None:
    values = traffic(cards=30, per_card=12)
    # The fault: the first records are appended after the rest (each part in order).
    produce_in_order(pipe.bootstrap, pipe.tx, values[HELD_BACK:], verify=False)
    produce_in_order(pipe.bootstrap, pipe.tx, values[:HELD_BACK], verify=False)
    held = read_partitions(pipe.bootstrap, pipe.tx)
    assert keys_out_of_order(values, held) > 0

    log = tmp_path / "dataflow.log"
    assert pipe.run_to_end(log) == 0, log.read_text()[-3000:]

    db = mongo_client[pipe.db]
    # The dataflow judged exactly what the topic holds: nothing lost, nothing unjudged...
    as_held = [v for p in sorted(held) for _, v in held[p]]
    assert_equals_oracle(db, oracle(as_held), len(values))
    # ...while the oracle of the list as sent reports a loss, with every transaction counted.
    with pytest.raises(AssertionError, match=rf"lost [1-9]\d*, .*stats count {len(values)} of"):
        assert_equals_oracle(db, oracle(values), len(values))
