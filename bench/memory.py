"""Memory: RSS of the dataflow against the number of cards in state, and on a large backlog.

Cards: for each size N, ``python -m bench.memory`` feeds ``per_card`` valid transactions of
each of N distinct cards (``card_traffic``: quiet genuine-looking purchases, cards
interleaved, so every card is in state at the end) at a steady rate into a fresh topic while
the dataflow (recovery on) reads it; once it has read everything and idled, its RSS is
sampled. Bytes per card = slope of a least-squares line through (N, peak RSS): the
constant part (interpreter, Bytewax, clients, buffers) drops out, everything that grows with
the cards (the detector's state, Bytewax's per-key state and snapshots) stays in. One more
run at the smallest N with ``deep_per_card`` transactions per card gives the cost of each
further kept transaction, since a card's state grows with its history (up to the profile
size, 20, plus what the 24 h window holds).

Backlog: the producer preloads a large realistic backlog (100,000 cards) and the dataflow
catches up on it; its peak RSS must stay bounded (not grow with the backlog).
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from bench.common import PY, Procs, Scratch, linear_fit, log, shown
from bench.throughput import ThroughputConfig, preload, run_dataflow
from fraudwatch.cards import luhn_check_digit
from fraudwatch.clients import kafka_config, plaintext_kafka

CARD_START_MS = int(datetime(2026, 11, 1, tzinfo=UTC).timestamp() * 1000)
CITIES = ((52.52, 13.405, "DE"), (48.8566, 2.3522, "FR"), (40.4168, -3.7038, "ES"))


@dataclass(frozen=True)
class MemoryConfig:
    card_sizes: tuple[int, ...] = (10_000, 100_000, 1_000_000)
    per_card: int = 3
    deep_per_card: int = 20
    backlog: int = 5_000_000
    backlog_cards: int = 100_000
    seed: int = 8
    # The cards are fed while the dataflow runs, below its throughput: a preloaded topic
    # would be prefetched into librdkafka's queues (up to 64 MB per partition), and that
    # high-water mark stays in RSS and grows with the topic, not with the cards.
    feed_rate: float = 5_000


def card_pan(i: int) -> str:
    """A Luhn-valid 16-digit test PAN, distinct for each ``i`` < 10**9."""
    body = f"411111{i:09d}"
    return body + luhn_check_digit(body)


def card_traffic(cards: int, per_card: int, seed: int = 8) -> Iterator[tuple[bytes, bytes]]:
    """``(key, value)`` of ``per_card`` quiet transactions for each of ``cards`` cards.

    Rounds of one transaction per card, an hour of event time per round, so no rule has a
    reason to fire and every card ends with ``per_card`` kept transactions.
    """
    rng = random.Random(seed)
    step_ms = 3_600_000 / cards
    for r in range(per_card):
        base = CARD_START_MS + r * 3_600_000
        for i in range(cards):
            lat, lon, country = CITIES[i % len(CITIES)]
            ts = datetime.fromtimestamp((base + i * step_ms) / 1000, UTC)
            account = f"acc-{i:09d}"
            value = {
                "transaction_id": f"m{i}-{r}",
                "timestamp": ts.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
                "card_number": card_pan(i),
                "account_id": account,
                "amount": round(rng.uniform(5, 80), 2),
                "currency": "EUR",
                "merchant_id": f"m-{i % 997}",
                "merchant_name": "Corner Shop",
                "merchant_category": "5411",
                "channel": "card_present",
                "latitude": lat,
                "longitude": lon,
                "country": country,
            }
            yield account.encode(), orjson.dumps(value)


def send_cards(
    bootstrap: str, topic: str, cards: int, per_card: int, seed: int, rate: float | None
) -> int:
    """Send ``card_traffic`` to ``topic``, paced at ``rate`` per second (None: flat out)."""
    from confluent_kafka import Producer

    producer = Producer(
        kafka_config(
            plaintext_kafka(bootstrap),
            {"linger.ms": 20, "compression.type": "lz4", "queue.buffering.max.messages": 1_000_000},
        )
    )
    start = time.monotonic()
    sent = 0
    for key, value in card_traffic(cards, per_card, seed):
        while True:
            try:
                producer.produce(topic, value, key)
                break
            except BufferError:
                producer.poll(0.1)
        sent += 1
        if sent % 500 == 0:
            producer.poll(0)
            if rate is not None:
                ahead = start + sent / rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
    if producer.flush(120):
        raise RuntimeError(f"could not deliver everything to {topic}")
    return sent


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.memory --topic T --cards N --per-card K [--rate R]``: the card feed."""
    import argparse

    from fraudwatch.settings import KafkaSettings

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--cards", type=int, required=True)
    parser.add_argument("--per-card", type=int, default=3)
    parser.add_argument("--rate", type=float, default=None)
    parser.add_argument("--seed", type=int, default=8)
    args = parser.parse_args(argv)
    bootstrap = KafkaSettings().kafka_bootstrap_servers
    sent = send_cards(bootstrap, args.topic, args.cards, args.per_card, args.seed, args.rate)
    print(f"sent {sent:,} transactions of {args.cards:,} cards to {args.topic}")
    return 0


def run(scratch: Scratch, procs: Procs, cfg: MemoryConfig) -> dict[str, Any]:
    t0 = time.monotonic()
    sizes = []
    plan = [(n, cfg.per_card) for n in cfg.card_sizes]
    plan.append((min(cfg.card_sizes), cfg.deep_per_card))
    for cards, per_card in plan:
        label = f"mem-{cards}x{per_card}"
        n = cards * per_card
        topic = scratch.topic(f"{label}-tx", 3)
        feed = [PY, "-m", "bench.memory", "--topic", topic, "--cards", str(cards)]
        feed += ["--per-card", str(per_card), "--rate", f"{cfg.feed_rate:g}"]
        feed += ["--seed", str(cfg.seed)]
        log(f"{label}: {n:,} transactions of {cards:,} cards at {cfg.feed_rate:,.0f}/s")
        r = run_dataflow(scratch, procs, label, topic, n, idle_rss=True, feed_argv=feed)
        sizes.append(
            {
                "cards": cards,
                "per_card": per_card,
                "transactions": n,
                "feed_rate": cfg.feed_rate,
                **{k: r[k] for k in ("seconds", "peak_rss_bytes", "idle_rss_bytes", "command")},
                "feed_command": shown(feed),
            }
        )
    shallow = [s for s in sizes if s["per_card"] == cfg.per_card]
    xs = [s["cards"] for s in shallow]
    slope, intercept = linear_fit(xs, [s["idle_rss_bytes"] for s in shallow])
    peak_slope, _ = linear_fit(xs, [s["peak_rss_bytes"] for s in shallow])
    small = min(cfg.card_sizes)
    deep = sizes[-1]
    base = next(s for s in shallow if s["cards"] == small)
    per_txn = (deep["idle_rss_bytes"] - base["idle_rss_bytes"]) / (
        small * (cfg.deep_per_card - cfg.per_card)
    )
    tcfg = ThroughputConfig(count=cfg.backlog, cards=cfg.backlog_cards, seed=cfg.seed)
    pre = preload(scratch, procs, "backlog-tx", tcfg)
    backlog = run_dataflow(scratch, procs, "backlog", pre["topic"], pre["count"])
    return {
        "sizes": sizes,
        "bytes_per_card": slope,
        "fixed_bytes": intercept,
        "peak_bytes_per_card": peak_slope,
        "per_card": cfg.per_card,
        "deep_per_card": cfg.deep_per_card,
        "bytes_per_kept_transaction": per_txn,
        "backlog": {"preload": pre, **backlog},
        "seconds": round(time.monotonic() - t0, 1),
    }


if __name__ == "__main__":
    raise SystemExit(main())
