"""The ceiling: a plain confluent-kafka batch consumer that only decodes JSON.

    python -m bench.baselines.ceiling --topic T [--group G]

Reads every partition from the beginning to the high watermark captured at start (as the
dataflow's ``FRAUD_STOP_AT_END=1`` does), in batches of 10,000, and decodes each value with
orjson (the fastest JSON decoder the project has). No validation, no state, no output: no
consumer of this topic in Python can be faster on this machine. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import sys
import time

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from fraudwatch.clients import consumer_config
from fraudwatch.settings import KafkaSettings


def main(argv: list[str] | None = None) -> int:
    started = time.time()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", default="fraudwatch-bench-ceiling")
    args = parser.parse_args(argv)
    consumer = Consumer(
        consumer_config(
            KafkaSettings(),
            args.group,
            {"enable.auto.commit": False, "auto.offset.reset": "earliest"},
        )
    )
    parts = sorted(consumer.list_topics(args.topic, timeout=30).topics[args.topic].partitions)
    ends = {
        p: consumer.get_watermark_offsets(TopicPartition(args.topic, p), timeout=30)[1]
        for p in parts
    }
    consumer.assign([TopicPartition(args.topic, p, OFFSET_BEGINNING) for p in parts])
    pending = {p for p, end in ends.items() if end > 0}
    count, decoded_bytes, first_at = 0, 0, None
    loads = orjson.loads
    while pending:
        for msg in consumer.consume(10_000, 1.0):
            if msg.error() is not None:
                continue
            if first_at is None:
                first_at = time.time()
            value = msg.value()
            loads(value)
            decoded_bytes += len(value)
            count += 1
            if msg.offset() + 1 >= ends[msg.partition()]:
                pending.discard(msg.partition())
    ended = time.time()
    consumer.close()
    summary = {
        "count": count,
        "bytes": decoded_bytes,
        "started_at": started,
        "first_at": first_at,
        "ended_at": ended,
    }
    print(orjson.dumps(summary).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
