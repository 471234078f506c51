"""The naive design this project grew from, written as that example's users would have.

    python -m bench.baselines.naive --topic T --alerts-topic A --database D

One kafka-python consumer loop: decode each message with ``json.loads``, apply one
per-message threshold rule (``amount > 500``, in whatever currency the transaction is in),
and for each hit produce the alert to Kafka and insert it into MongoDB with one
``insert_one``. No validation, no state, no batching, no delivery checks.

Additions for the benchmark only: the loop ends at the high watermarks captured at start
(the original runs forever) or, with ``--max-seconds``, after that long (its rate is steady:
one MongoDB round trip per alert, so a prefix of the topic measures it; the summary says how
much was read); and the alert leaves out ``card_number`` (this project never writes a card
number outside the input topic; one field less changes nothing in the cost). Prints one JSON
line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from fraudwatch.clients import kafka_python_config, mongo_client
from fraudwatch.settings import KafkaSettings, MongoSettings

THRESHOLD = 500


def main(argv: list[str] | None = None) -> int:
    started = time.time()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--topic", required=True)
    parser.add_argument("--alerts-topic", required=True)
    parser.add_argument("--database", required=True)
    parser.add_argument("--group", default="fraudwatch-bench-naive")
    parser.add_argument("--max-seconds", type=float, default=None)
    args = parser.parse_args(argv)
    kafka = KafkaSettings()

    consumer = KafkaConsumer(
        args.topic,
        **kafka_python_config(
            kafka,
            group_id=args.group,
            auto_offset_reset="earliest",
            value_deserializer=lambda m: json.loads(m.decode("utf-8")),
        ),
    )
    producer = KafkaProducer(
        **kafka_python_config(kafka, value_serializer=lambda v: json.dumps(v).encode("utf-8"))
    )
    client = mongo_client(MongoSettings())
    alerts = client[args.database]["alerts"]

    partitions = [TopicPartition(args.topic, p) for p in consumer.partitions_for_topic(args.topic)]
    ends = {tp.partition: off for tp, off in consumer.end_offsets(partitions).items()}
    pending = {p for p, end in ends.items() if end > 0}

    count, alert_count, first_at = 0, 0, None
    stop_at = None if args.max_seconds is None else started + args.max_seconds
    for message in consumer:
        if first_at is None:
            first_at = time.time()
        count += 1
        transaction = message.value
        if transaction["amount"] > THRESHOLD:
            alert = {k: v for k, v in transaction.items() if k != "card_number"}
            alert["reason"] = f"amount {transaction['amount']} > {THRESHOLD}"
            alert["detected_at"] = time.time()
            producer.send(args.alerts_topic, alert)
            alerts.insert_one(alert)
            alert_count += 1
        if message.offset + 1 >= ends[message.partition]:
            pending.discard(message.partition)
            if not pending:
                break
        if stop_at is not None and count % 1000 == 0 and time.time() > stop_at:
            break
    producer.flush()
    ended = time.time()
    consumer.close()
    producer.close()
    client.close()
    summary = {
        "count": count,
        "alerts": alert_count,
        "started_at": started,
        "first_at": first_at,
        "ended_at": ended,
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
