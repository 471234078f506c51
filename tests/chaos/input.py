"""Put test input on a topic in exactly the order it was sent, and prove it.

The suites compare the dataflow with the backtest over the list they sent. That oracle is
only right if every key's records sit in its partition in the order they were sent. A plain
(non-idempotent) producer does not guarantee that: right after a topic is created, or a broker
(re)started, its first batches can fail with a retriable error (partition leader not known yet)
and be appended after later batches. The stream then judges a different per-card order than
the backtest, and the check reports alerts "lost" (and others "spurious") after an exit 0,
with every input offset read and every transaction counted. ``produce_in_order`` removes
that: an idempotent producer (ordered across retries), the topic's leaders known before the
first message, and a read-back of every partition compared with what was sent.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import defaultdict
from collections.abc import Sequence

from confluent_kafka import Consumer, Producer, TopicPartition

from fraudwatch import clients


class InputOutOfOrder(AssertionError):
    """The topic does not hold the sent records in their per-key order."""


def record_key(value: bytes) -> bytes | None:
    """The producer's key: the record's ``account_id`` (None when the record has none)."""
    try:
        return str(json.loads(value)["account_id"]).encode()
    except Exception:
        return None


def read_partitions(
    bootstrap: str, topic: str, timeout_s: float = 30.0
) -> dict[int, list[tuple[bytes | None, bytes]]]:
    """(key, value) of every record of every partition of ``topic``, in offset order."""
    consumer = Consumer(
        clients.consumer_config(
            clients.plaintext_kafka(bootstrap),
            f"readback-{uuid.uuid4().hex}",
            {"enable.auto.commit": False, "enable.partition.eof": True},
        )
    )
    try:
        parts = sorted(consumer.list_topics(topic, timeout=timeout_s).topics[topic].partitions)
        consumer.assign([TopicPartition(topic, p, 0) for p in parts])
        out: dict[int, list[tuple[bytes | None, bytes]]] = {p: [] for p in parts}
        done: set[int] = set()
        deadline = time.monotonic() + timeout_s
        while len(done) < len(parts):
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read {topic} to its end in {timeout_s:g}s")
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == -191:  # _PARTITION_EOF
                    done.add(msg.partition())
                    continue
                raise RuntimeError(f"reading {topic}: {msg.error()}")
            out[msg.partition()].append((msg.key(), msg.value() or b""))
        return out
    finally:
        consumer.close()


def keys_out_of_order(
    sent: Sequence[bytes], held: dict[int, list[tuple[bytes | None, bytes]]]
) -> int:
    """How many keys' records the topic holds in another order (or number) than ``sent``."""
    want: dict[bytes | None, list[bytes]] = defaultdict(list)
    for v in sent:
        want[record_key(v)].append(v)
    got: dict[bytes | None, list[bytes]] = defaultdict(list)
    for records in held.values():
        for k, v in records:
            got[k].append(v)
    keyless_sent = sorted(want.pop(None, []))
    keyless_held = sorted(got.pop(None, []))
    bad = sum(1 for k in set(want) | set(got) if want.get(k) != got.get(k))
    return bad + (keyless_sent != keyless_held)


def ordered_producer(bootstrap: str, topic: str, timeout_s: float = 30.0) -> Producer:
    """A producer that keeps each key's records in the order sent, once ``topic`` has a
    leader for every partition (issue #15: a plain producer can retry a just-started broker's
    first batch behind later ones; idempotence keeps the order across retries, and a known
    leader keeps messages out of the unassigned queue)."""
    # acks=all and idempotence: retries keep the order
    producer = Producer(
        clients.producer_config(clients.plaintext_kafka(bootstrap), {"linger.ms": 5})
    )
    deadline = time.monotonic() + timeout_s
    while True:
        md = producer.list_topics(topic, timeout=10).topics.get(topic)
        if (
            md is not None
            and md.error is None
            and md.partitions
            and all(p.leader >= 0 for p in md.partitions.values())
        ):
            return producer
        if time.monotonic() > deadline:
            raise TimeoutError(f"{topic} has no leader for every partition after {timeout_s:g} s")
        time.sleep(0.1)


def produce_in_order(
    bootstrap: str, topic: str, values: Sequence[bytes], verify: bool = True
) -> int:
    """Send ``values`` keyed by account, each key's records in order; verify by reading back.

    Raises ``InputOutOfOrder`` if the topic does not hold exactly what was sent, per key in
    order (``verify=False`` skips the read-back, for a topic that already held records).
    """
    send_in_order(ordered_producer(bootstrap, topic), topic, values)
    if verify:
        bad = keys_out_of_order(values, read_partitions(bootstrap, topic))
        if bad:
            raise InputOutOfOrder(f"{topic} holds {bad} key(s) out of the order they were sent")
    return len(values)


def send_in_order(producer: Producer, topic: str, values: Sequence[bytes]) -> None:
    """Send ``values`` keyed by account with an ``ordered_producer`` and wait until every one
    is acknowledged (raises ``RuntimeError`` otherwise). A long-lived sender reuses one
    producer: a new one costs a metadata round trip and an idempotence id each time."""
    errors: list[str] = []

    def on_delivery(err: object, _msg: object) -> None:
        if err is not None:
            errors.append(str(err))

    for v in values:
        while True:
            try:
                producer.produce(topic, v, record_key(v), on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    if producer.flush(60) != 0 or errors:
        raise RuntimeError(f"producing to {topic} failed: {errors[:3]}")
