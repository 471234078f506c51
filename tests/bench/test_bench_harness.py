"""The benchmark harness's pure parts: statistics, the card generator, the report (no services)."""

from __future__ import annotations

import copy
from types import SimpleNamespace
from typing import Any

import pytest

from bench import report
from bench.common import linear_fit, percentile, steady_rate, summarize
from bench.latency import _producer_send_seconds
from bench.memory import card_pan, card_traffic
from bench.throughput import rss_by_progress
from fraudwatch.cards import luhn_valid
from fraudwatch.contract import parse_transaction


def test_percentile_interpolates_between_closest_ranks_like_numpy() -> None:
    values = [10.0, 20.0, 30.0, 40.0]
    assert percentile(values, 0) == 10.0
    assert percentile(values, 50) == 25.0
    assert percentile(values, 100) == 40.0
    assert percentile(values, 99) == pytest.approx(39.7)
    assert percentile([7.0], 99.9) == 7.0


def test_percentile_refuses_empty_input_and_out_of_range_p() -> None:
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)
    with pytest.raises(ValueError, match="outside"):
        percentile([1.0], 101)


def test_summarize_reports_count_percentiles_and_max_and_only_count_when_empty() -> None:
    s = summarize([float(v) for v in range(1, 1001)])
    assert s["n"] == 1000
    assert s["p50"] == pytest.approx(500.5)
    assert s["p99.9"] == pytest.approx(999.001)
    assert s["max"] == 1000
    assert summarize([]) == {"n": 0}


def test_linear_fit_recovers_bytes_per_card_and_fixed_memory() -> None:
    cards = [10_000, 100_000, 1_000_000]
    rss = [80e6 + 1500 * n for n in cards]
    slope, intercept = linear_fit(cards, rss)
    assert slope == pytest.approx(1500)
    assert intercept == pytest.approx(80e6)
    with pytest.raises(ValueError, match="distinct"):
        linear_fit([5, 5], [1, 2])


def test_steady_rate_counts_from_the_first_output_to_the_end() -> None:
    samples = [(0.5, 0.0), (1.0, 0.0), (2.0, 1000.0), (3.0, 5000.0)]
    assert steady_rate(samples, total=11_000, end_s=4.0) == pytest.approx(5000.0)
    assert steady_rate([(1.0, 0.0)], total=10, end_s=2.0) is None


def test_rss_by_progress_takes_the_highest_rss_per_quarter_of_the_input() -> None:
    mon = SimpleNamespace(
        progress=[(0.0, 0.0), (1.0, 30.0), (2.0, 60.0), (3.0, 90.0), (4.0, 100.0)],
        rss=[(0.0, 10), (1.0, 20), (2.0, 35), (3.0, 30), (4.0, 40)],
    )
    quarters = rss_by_progress(mon, 100)
    assert quarters == {"25": 10, "50": 20, "75": 35, "100": 40}


def test_card_traffic_is_valid_v1_with_one_distinct_card_per_account() -> None:
    records = list(card_traffic(cards=50, per_card=3))
    assert len(records) == 150
    txns = [parse_transaction(value) for _, value in records]
    pans = {t.card_number for t in txns}
    assert len(pans) == 50
    assert all(luhn_valid(p) for p in pans)
    assert {key.decode() for key, _ in records} == {t.account_id for t in txns}
    assert len({t.transaction_id for t in txns}) == 150
    assert card_pan(7) != card_pan(8)


def test_producer_summary_line_gives_the_sending_time() -> None:
    out = "x\n2026 INFO stopped (duration): sent 60,000 records to topic-a in 60.1 s (998.3/s)\n"
    assert _producer_send_seconds(out) == pytest.approx(60.1)
    assert _producer_send_seconds("nothing") is None


def _latency_run(rate: int, snapshot_s: int, p99: float) -> dict[str, Any]:
    stats = {"n": 500, "p50": p99 / 3, "p95": p99 / 2, "p99": p99, "p99.9": p99 * 1.5}
    return {
        "rate": rate,
        "snapshot_s": snapshot_s,
        "duration_s": 60,
        "sent": rate * 60,
        "achieved_rate": rate,
        "behind_at_producer_end": 0,
        "processed": rate * 60,
        "alerts_kafka": 500,
        "alerts_mongo": 500,
        "send_to_kafka_ms": stats,
        "send_to_consumer_ms": stats,
        "send_to_detect_ms": stats,
        "send_to_mongo_ms": {k: v * 2 for k, v in stats.items()},
        "command": "python -m dataflows.run --recovery-dir $TMP/bench-1-a-rec ; python -m producer",
    }


RESULTS: dict[str, Any] = {
    "run_id": "bench-1-a",
    "mode": "quick",
    "started": "2026-11-25 11:00",
    "seconds": 600,
    "machine": {
        "cpu": "Test CPU",
        "cores": 2,
        "memory_gb": 24,
        "os": "Linux",
        "python": "3.11.7",
        "packages": {"bytewax": "0.21.1"},
        "services": ["kafka-4.1.1"],
        "commit": "abc1234",
        "dirty": False,
        "load_before": "1.0 1.0 1.0",
        "load_after": "2.0 2.0 2.0",
    },
    "throughput": {
        "preload": {
            "count": 200_000,
            "cards": 100_000,
            "partitions": 3,
            "seconds": 9.0,
            "command": "python -m producer generate --topic bench-1-a-tp-tx",
        },
        "systems": [
            {"system": "ceiling", "seconds": 2.0, "tx_per_s": 100_000.0, "command": "c"},
            {
                "system": "dataflow",
                "processes": 1,
                "workers": 1,
                "seconds": 8.0,
                "tx_per_s": 30_000.0,
                "steady_tx_per_s": 35_000.0,
                "alerts_kafka": 10,
                "alerts_mongo": 10,
                "command": "d",
            },
            {"system": "naive", "seconds": 40.0, "tx_per_s": 5_000.0, "alerts": 90, "command": "n"},
        ],
        "scaleout": [],
    },
    "latency": {
        "poll_ms": 20,
        "cards": 100_000,
        "runs": [_latency_run(r, s, 20.0 * s) for s in (1, 10) for r in (1000, 5000)],
    },
    "memory": {
        "sizes": [],
        "bytes_per_card": 1500.0,
        "fixed_bytes": 80e6,
        "peak_bytes_per_card": 1700.0,
        "per_card": 3,
        "deep_per_card": 20,
        "bytes_per_kept_transaction": 100.0,
    },
}


def test_targets_say_met_or_missed_from_the_numbers() -> None:
    rows = {t.split(" (")[0]: ok for t, _, ok in report.targets(RESULTS)}
    assert rows["whole pipeline ≥ 25,000 tx/s, 1 process, recovery on"] is True
    assert rows["≥ 3x the naive design"] is True
    assert rows["≤ 2,048 bytes of state per tracked card"] is True
    assert rows["the same with a full profile"] is False  # 1,500 + 17 x 100 bytes
    p99 = [ok for t, _, ok in report.targets(RESULTS) if t.startswith("p99")]
    assert p99 == [True, False]  # 20 ms at snapshot 1 s, 200 ms at 10 s


def test_report_renders_every_section_and_names_the_run_id_once() -> None:
    page = report.render({"quick": RESULTS})
    for heading in ("## Machine", "## Quick run", "### Throughput", "### Latency", "### Memory"):
        assert heading in page
    assert page.count("bench-1-a") == 1  # in the run's heading; commands say $RUN
    assert "$RUN-tp-tx" in page
    assert "÷ naive: **6.00x**" in page
    assert "At 1,000 tx/s and 5,000 tx/s the longer interval lengthens the tail" in page


def test_report_says_when_the_snapshot_interval_does_not_matter() -> None:
    res = copy.deepcopy(RESULTS)
    res["latency"]["runs"] = [_latency_run(r, s, 20.0) for s in (1, 10) for r in (1000, 5000)]
    assert "The interval barely moves the tail" in report.render({"quick": res})


def test_plot_writes_a_png(tmp_path) -> None:
    png = tmp_path / "latency.png"
    report.plot({"quick": RESULTS}, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_engine_bench_runs_the_real_flow_and_counts_what_it_would_write(tmp_path) -> None:
    from bench.engine import load_records, run
    from tests.factories import traffic

    path = tmp_path / "in.jsonl"
    values = traffic(cards=6, per_card=10)
    path.write_bytes(b"\n".join(values) + b"\n")
    records = load_records(path, partitions=3)
    assert sorted(r.partition for r in records) != [0] * len(records)
    res = run(records, snapshot_s=0.05, batch_size=7)
    assert res["transactions"] == len(values)
    assert res["outputs"]["alerts_kafka"] == res["outputs"]["alerts_mongo"] > 0
    assert "dlq" not in res["outputs"]


def test_snapshot_store_replays_an_epochs_writes_and_times_each() -> None:
    from bench.snapshot_store import measure

    ms = measure(keys=4, kb=2, epochs=3, journal="WAL")
    assert len(ms) == 3
    assert all(x > 0 for x in ms)
