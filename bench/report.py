"""Render ``docs/benchmarks.md`` and ``docs/benchmarks-latency.png`` from results JSON files.

    python -m bench.report [--quick bench/results/quick.json] [--full bench/results/full.json]

Every figure in the page comes from a results file written by ``python -m bench``; the page
says which command produced it. Text that interprets a result is chosen by the numbers
(e.g. whether the snapshot interval moved p99), never written for a particular run.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from bench.common import REPO

RESULTS_DIR = REPO / "bench" / "results"
DOC = REPO / "docs" / "benchmarks.md"
PLOT = REPO / "docs" / "benchmarks-latency.png"
MODES = ("full", "quick")
MAKE_TARGET = {"quick": "make bench", "full": "make bench-full"}

# Targets of issue #6 (2-core machine, Kafka and MongoDB on the same box).
TARGET_TX_PER_S = 25_000
STRETCH_TX_PER_S = 50_000
TARGET_VS_NAIVE = 3.0
TARGET_P99_MS = 50.0
TARGET_P99_RATE = 5_000
TARGET_BYTES_PER_CARD = 2048
TARGET_SCALEOUT = 1.3
FULL_PROFILE_TXNS = 20


def _n(x: float | None, digits: int = 0) -> str:
    return "-" if x is None else f"{x:,.{digits}f}"


def _mb(x: float | None) -> str:
    return "-" if x is None else f"{x / 2**20:,.0f} MB"


def _ms(stats: dict[str, Any], key: str) -> str:
    v = stats.get(key)
    return "-" if v is None else (f"{v:,.0f}" if v >= 10 else f"{v:.1f}")


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return [*out, ""]


def _yes(ok: bool | None) -> str:
    return "-" if ok is None else ("**met**" if ok else "**missed**")


def _system(tp: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((s for s in tp.get("systems", []) if s["system"] == name), None)


def full_profile_bytes(mem: dict[str, Any]) -> float:
    """Bytes per card with ``FULL_PROFILE_TXNS`` kept transactions (linear extrapolation)."""
    extra = FULL_PROFILE_TXNS - mem["per_card"]
    return float(mem["bytes_per_card"] + mem["bytes_per_kept_transaction"] * extra)


def one_process_rate(tp: dict[str, Any]) -> float | None:
    """Mean tx/s of the 1-process, 1-worker dataflow runs (the run and its repeat)."""
    runs = [
        s["tx_per_s"]
        for s in [*tp.get("systems", []), *tp.get("scaleout", [])[1:]]
        if s.get("processes") == 1 and s.get("workers") == 1
    ]
    return sum(runs) / len(runs) if runs else None


def _anon(text: str, run_id: str) -> str:
    return text.replace(run_id, "$RUN").replace(run_id.replace("-", "_"), "$RUN_")


def targets(res: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    """(target, measured, met) for each target of the issue that this run measured."""
    out: list[tuple[str, str, bool | None]] = []
    tp = res.get("throughput")
    if tp:
        df, naive = _system(tp, "dataflow"), _system(tp, "naive")
        rate = one_process_rate(tp)
        if df and rate:
            out.append(
                (
                    f"whole pipeline ≥ {TARGET_TX_PER_S:,} tx/s, 1 process, recovery on "
                    f"(stretch {STRETCH_TX_PER_S:,})",
                    f"{rate:,.0f} tx/s start to exit (mean of the 1-process runs; "
                    f"{_n(df.get('steady_tx_per_s'))} after start-up in the first)",
                    rate >= TARGET_TX_PER_S,
                )
            )
        if rate and naive:
            ratio = rate / naive["tx_per_s"]
            out.append(
                (
                    f"≥ {TARGET_VS_NAIVE:g}x the naive design",
                    f"{ratio:.2f}x",
                    ratio >= TARGET_VS_NAIVE,
                )
            )
        two = next((s for s in tp.get("scaleout", []) if s["processes"] == 2), None)
        if rate and two:
            ratio = two["tx_per_s"] / rate
            out.append(
                (
                    f"2 processes ≥ {TARGET_SCALEOUT:g}x 1 process",
                    f"{ratio:.2f}x",
                    ratio >= TARGET_SCALEOUT,
                )
            )
    lat = res.get("latency")
    if lat:
        for r in lat["runs"]:
            if r["rate"] == TARGET_P99_RATE and "p99" in r["send_to_kafka_ms"]:
                p99 = r["send_to_kafka_ms"]["p99"]
                out.append(
                    (
                        f"p99 send → alert on Kafka ≤ {TARGET_P99_MS:g} ms at "
                        f"{TARGET_P99_RATE:,} tx/s (snapshot {r['snapshot_s']} s)",
                        f"{p99:,.0f} ms",
                        p99 <= TARGET_P99_MS,
                    )
                )
    mem = res.get("memory")
    if mem:
        b = mem["bytes_per_card"]
        out.append(
            (
                f"≤ {TARGET_BYTES_PER_CARD:,} bytes of state per tracked card",
                f"{b:,.0f} bytes/card ({mem['per_card']} kept transactions each)",
                b <= TARGET_BYTES_PER_CARD,
            )
        )
        full = full_profile_bytes(mem)
        out.append(
            (
                f"the same with a full profile ({FULL_PROFILE_TXNS} kept transactions, "
                "extrapolated)",
                f"{full:,.0f} bytes/card",
                full <= TARGET_BYTES_PER_CARD,
            )
        )
    return out


def render_mode(mode: str, res: dict[str, Any]) -> list[str]:
    run_id = res["run_id"]
    m = res["machine"]
    lines = [
        f"## {mode.capitalize()} run (`{MAKE_TARGET[mode]}`)",
        "",
        f"Run `{run_id}` at {res['started']} UTC, commit `{m['commit']}`"
        f"{' (uncommitted changes)' if m.get('dirty') else ''}; "
        f"took **{res['seconds'] / 60:.1f} min**. Load average {m['load_before']} before, "
        f"{m['load_after']} after (the machine is shared: compare ratios within one run).",
        "",
        "### Targets",
        "",
    ]
    lines += _table(("target", "measured", ""), [(t, v, _yes(ok)) for t, v, ok in targets(res)])
    if res.get("throughput"):
        tp = res["throughput"]
        lines += _render_throughput(tp, tp.get("run_id", run_id))
    if res.get("latency"):
        lat = res["latency"]
        lines += _render_latency(lat, lat.get("run_id", run_id))
    if res.get("memory"):
        mem = res["memory"]
        lines += _render_memory(mem, mem.get("run_id", run_id))
    return lines


def _render_throughput(tp: dict[str, Any], run_id: str) -> list[str]:
    pre = tp["preload"]
    lines = [
        "### Throughput",
        "",
        f"{pre['count']:,} transactions of {pre['cards']:,} cards on {pre['partitions']} "
        f"partitions, preloaded once ({pre['seconds']:.0f} s); each system then reads the same "
        "topic from the start to the end captured at its start. Seconds from spawning the "
        "process to its exit; *after start-up* counts from the first output (the dataflow's "
        "first input record, a baseline's first message).",
        "",
    ]
    ceiling = _system(tp, "ceiling")
    rows = []
    for s in tp["systems"]:
        alerts = s.get("alerts_kafka", s.get("alerts"))
        vs_ceiling = s["tx_per_s"] / ceiling["tx_per_s"] if ceiling else None
        read = s.get("read", pre["count"])
        rows.append(
            (
                s["system"] if read == pre["count"] else f"{s['system']} (first {read:,})",
                f"{s['seconds']:.1f}",
                f"**{s['tx_per_s']:,.0f}**",
                _n(s.get("steady_tx_per_s")),
                _n(s.get("first_output_s"), 1),
                _n(vs_ceiling, 2),
                _mb(s.get("peak_rss_bytes")),
                _n(alerts),
            )
        )
    lines += _table(
        (
            "system",
            "seconds",
            "tx/s",
            "tx/s after start-up",
            "first output (s)",
            "÷ ceiling",
            "peak RSS",
            "alerts",
        ),
        rows,
    )
    df, naive = _system(tp, "dataflow"), _system(tp, "naive")
    rate = one_process_rate(tp)
    if df and naive and ceiling and rate:
        lines += [
            f"Dataflow (mean of its 1-process runs, {rate:,.0f} tx/s) ÷ naive: "
            f"**{rate / naive['tx_per_s']:.2f}x**; ÷ ceiling: "
            f"**{rate / ceiling['tx_per_s']:.2f}x**. The naive design "
            f"raised {naive.get('alerts', 0):,} alerts (every amount over 500 in any currency)"
            + (
                f" on the first {naive['read']:,} transactions: it is stopped after "
                f"{naive['seconds']:.0f} s (`--max-seconds`; its rate is steady, one MongoDB "
                "round trip per alert, so a prefix of the same topic measures it); "
                if naive.get("read", pre["count"]) < pre["count"]
                else "; "
            )
            + f"the dataflow {df.get('alerts_kafka', 0):,} (to Kafka) and "
            f"{df.get('alerts_mongo', 0):,} (to MongoDB).",
            "",
        ]
    if tp.get("scaleout") and rate:
        lines += [
            "### Scale-out",
            "",
            "Same topic, 3 partitions; each configuration has its own recovery store (4 "
            "partitions), alerts topic and database. *÷ 1 process* is against the mean of "
            "the two 1-process runs (`dataflow` ran before the naive baseline, "
            "`dataflow-again` last: their difference is the machine's drift).",
            "",
        ]
        rows = [
            (
                s["system"],
                f"{s['processes']} x {s['workers']}",
                f"{s['seconds']:.1f}",
                f"**{s['tx_per_s']:,.0f}**",
                _n(s.get("steady_tx_per_s")),
                f"{s['tx_per_s'] / rate:.2f}x",
                _mb(s.get("peak_rss_bytes")),
                _n(s.get("alerts_kafka")),
            )
            for s in tp["scaleout"]
        ]
        lines += _table(
            (
                "configuration",
                "processes x workers",
                "seconds",
                "tx/s",
                "tx/s after start-up",
                "÷ 1 process",
                "peak RSS (all)",
                "alerts",
            ),
            rows,
        )
        w2 = next((s for s in tp["scaleout"] if s["workers"] == 2), None)
        if w2:
            w2_ratio = w2["tx_per_s"] / rate
            if w2_ratio < 1.1:
                why = (
                    "every step is Python, and the threads take turns on one GIL; only "
                    "separate processes run Python in parallel"
                )
            else:
                why = (
                    "the Python steps still take turns on one GIL, so the gain comes from "
                    "what runs outside it: waits on Kafka and MongoDB round trips and "
                    "Bytewax's Rust side overlap with the other thread's Python"
                )
            lines += [
                f"`-w 2` (two worker threads in one process): {w2_ratio:.2f}x one worker; {why}.",
                "",
            ]
    lines += ["Commands:", "", "```"]
    lines.append(_anon(pre["command"], run_id))
    for s in tp["systems"] + tp.get("scaleout", [])[1:]:
        lines.append(_anon(s["command"], run_id))
    lines += ["```", ""]
    return lines


def _render_latency(lat: dict[str, Any], run_id: str) -> list[str]:
    lines = [
        "### Latency",
        "",
        "Live dataflow (recovery on), producer at a fixed rate for "
        f"{lat['runs'][0]['duration_s']:g} s ({lat['cards']:,} cards, simulated clock, "
        "1 % fraud); every alert counted once. "
        "Milliseconds from the producer's `send()` (the input's CreateTime, the alert's "
        "`source_ts`) to: the alert's append on the alerts topic (topic created with "
        "`LogAppendTime`), its receipt by a consumer, `detected_at` (when the dataflow "
        "raised it), and its first sight in MongoDB (FerretDB's SQLite file tailed every "
        f"{lat['poll_ms']:.0f} ms: add up to that to the MongoDB column's resolution).",
        "",
    ]
    rows = []
    for r in lat["runs"]:
        k, mg = r["send_to_kafka_ms"], r["send_to_mongo_ms"]
        c, d = r["send_to_consumer_ms"], r["send_to_detect_ms"]
        rows.append(
            (
                f"{r['rate']:,}",
                f"{r['snapshot_s']} s",
                f"{r['achieved_rate']:,.0f}",
                f"{r['alerts_kafka']:,}",
                " / ".join(_ms(k, p) for p in ("p50", "p95", "p99", "p99.9")),
                " / ".join(_ms(mg, p) for p in ("p50", "p95", "p99", "p99.9")),
                _ms(c, "p99"),
                _ms(d, "p99"),
                f"{r['behind_at_producer_end']:,}",
            )
        )
    lines += _table(
        (
            "offered tx/s",
            "snapshot",
            "achieved tx/s",
            "alerts",
            "send → Kafka p50 / p95 / p99 / p99.9",
            "send → MongoDB p50 / p95 / p99 / p99.9",
            "→ consumer p99",
            "→ detected p99",
            "unread at producer end",
        ),
        rows,
    )
    lines += _snapshot_effect(lat["runs"])
    lines += [
        f"![latency percentiles against offered rate]({PLOT.name})",
        "",
        "Commands (one pair per row: the dataflow first, then the producer):",
        "",
        "```",
    ]
    lines += [_anon(r["command"], run_id) for r in lat["runs"]]
    lines += ["```", ""]
    return lines


def _snapshot_effect(runs: list[dict[str, Any]]) -> list[str]:
    intervals = sorted({r["snapshot_s"] for r in runs})
    if len(intervals) < 2:
        return []
    lo, hi = intervals[0], intervals[-1]
    parts = []
    ratios: list[tuple[int, float]] = []
    for rate in sorted({r["rate"] for r in runs}):
        a = next((r for r in runs if r["rate"] == rate and r["snapshot_s"] == lo), None)
        b = next((r for r in runs if r["rate"] == rate and r["snapshot_s"] == hi), None)
        if (
            not a
            or not b
            or "p99" not in a["send_to_kafka_ms"]
            or "p99" not in b["send_to_kafka_ms"]
        ):
            continue
        pa, pb = a["send_to_kafka_ms"]["p99"], b["send_to_kafka_ms"]["p99"]
        ratios.append((rate, pb / pa if pa else float("inf")))
        parts.append(f"{rate:,} tx/s: {pa:,.0f} → {pb:,.0f} ms")
    if not parts:
        return []
    longer = [rate for rate, ratio in ratios if ratio >= 1.5]
    shorter = [rate for rate, ratio in ratios if ratio <= 1 / 1.5]
    said = []
    if longer:
        said.append(
            f"At {_rates(longer)} the longer interval lengthens the tail: at each epoch close "
            "(every snapshot interval in Bytewax 0.21) the worker snapshots every card shard "
            "touched during the epoch, whole, into the recovery store and processes nothing "
            "meanwhile; a longer epoch holds more new state, so the stall is longer."
        )
    if shorter:
        said.append(
            f"At {_rates(shorter)} the shorter interval is the slower one: at these rates "
            "every card shard is touched within an epoch, so each epoch close writes the "
            "whole card state; with 1 s epochs that stall comes every second and reaches "
            "the 99th percentile, with longer epochs it is rarer."
        )
    if not said:
        said.append("The interval barely moves the tail at these rates.")
    said.append(_where_time_goes(runs))
    return [
        f"Snapshot interval {lo} s → {hi} s, p99 send → Kafka: "
        + "; ".join(parts)
        + ". "
        + " ".join(s for s in said if s),
        "",
    ]


def _rates(rates: list[int]) -> str:
    return " and ".join(f"{r:,} tx/s" for r in rates)


def _where_time_goes(runs: list[dict[str, Any]]) -> str:
    """Whether alerts wait before they are raised or between raising and Kafka."""
    shares = []
    for r in runs:
        k, d = r["send_to_kafka_ms"].get("p99"), r["send_to_detect_ms"].get("p99")
        if k and d is not None and k > 0:
            shares.append(max(0.0, k - d) / k)
    if not shares:
        return ""
    worst = max(shares)
    if worst < 0.25:
        return (
            "In every run the p99 to `detected_at` is within "
            f"{worst:.0%} of the p99 to Kafka: the time is spent before the alert is raised "
            "(input waiting behind a stall or a queue), not in the sink."
        )
    return (
        f"In some runs up to {worst:.0%} of the p99 to Kafka lies between `detected_at` and "
        "the append on Kafka: the sink holds alerts (e.g. until a flush or an epoch close)."
    )


def _render_memory(mem: dict[str, Any], run_id: str) -> list[str]:
    lines = [
        "### Memory",
        "",
        "Each size: the given number of quiet transactions for each of N distinct cards "
        "(cards interleaved: every card is in state at the end), fed at a steady rate below "
        "the dataflow's throughput while it runs (a preloaded topic would be prefetched into "
        "librdkafka's queues, and that high-water mark stays in RSS); RSS is sampled once it "
        "has read everything and idled for 4 s (*idle*), and throughout (*peak*).",
        "",
    ]
    rows = [
        (
            f"{s['cards']:,}",
            str(s["per_card"]),
            f"{s['transactions']:,}",
            _n(s.get("feed_rate")),
            _mb(s.get("idle_rss_bytes")),
            _mb(s.get("peak_rss_bytes")),
        )
        for s in mem["sizes"]
    ]
    lines += _table(
        ("cards", "transactions per card", "transactions", "fed at (tx/s)", "idle RSS", "peak"),
        rows,
    )
    full_profile = full_profile_bytes(mem)
    lines += [
        f"**{mem['bytes_per_card']:,.0f} bytes per card** with {mem['per_card']} kept "
        f"transactions each (least-squares slope of idle RSS against cards; "
        f"{mem['fixed_bytes'] / 2**20:,.0f} MB fixed; the peak-RSS slope is "
        f"{mem['peak_bytes_per_card']:,.0f}). Each further kept transaction costs "
        f"**{mem['bytes_per_kept_transaction']:,.0f} bytes** (the {mem['deep_per_card']}-per-card "
        f"run against the {mem['per_card']}-per-card run at the same cards), so a card with a "
        f"full profile ({FULL_PROFILE_TXNS} kept transactions) holds about "
        f"{full_profile:,.0f} bytes.",
        "",
    ]
    b = mem.get("backlog")
    if b:
        quarters = b.get("rss_by_progress", {})
        lines += [
            f"Backlog: {b['preload']['count']:,} transactions ({b['preload']['cards']:,} cards) "
            f"caught up in {b['seconds']:.0f} s ({b['tx_per_s']:,.0f} tx/s); "
            f"**peak RSS {_mb(b['peak_rss_bytes'])}**. Highest RSS while each quarter of the "
            "backlog was read: "
            + ", ".join(f"{q} %: {_mb(v)}" for q, v in quarters.items())
            + ". What grows is the cards' state; the input is bounded by `FRAUD_BATCH_SIZE` "
            "(messages per poll of one partition) and librdkafka's prefetch queue "
            "(`queued.max.messages.kbytes`, per partition).",
            "",
        ]
    lines += ["Commands:", "", "```"]
    for s in mem["sizes"]:
        lines.append(_anon(s["command"], run_id))
        if s.get("feed_command"):
            lines.append("  # once its API answers, the feed:")
            lines.append(_anon(s["feed_command"], run_id))
    if b:
        lines += [_anon(b["preload"]["command"], run_id), _anon(b["command"], run_id)]
    lines += ["```", ""]
    return lines


def render(results: dict[str, dict[str, Any]]) -> str:
    """The whole page for the results present (full first, then quick)."""
    lines = [
        "# Benchmarks",
        "",
        "Generated by `python -m bench.report` from `bench/results/*.json`, which "
        "`make bench` (quick: smaller sizes, shorter runs, under 15 minutes) and "
        "`make bench-full` (the sizes of issue #6, under 45 minutes) write. Everything runs on "
        "the local stack (`make up`): Kafka and FerretDB on the same machine as the "
        "dataflow. Every run uses its own topics, database and recovery directories and "
        "removes them afterwards. `$RUN` in a command stands for the run's id. What limits "
        "these numbers, what each optimisation bought and why a missed target is missed: "
        "`docs/performance.md`.",
        "",
    ]
    first = next((results[m] for m in MODES if m in results), None)
    if first:
        m = first["machine"]
        lines += ["## Machine", ""]
        lines += _table(
            ("", ""),
            [
                ("CPU", f"{m['cpu']}, {m['cores']} cores"),
                ("memory", f"{m['memory_gb']:.0f} GB"),
                ("OS", m["os"]),
                ("Python", m["python"]),
                ("packages", ", ".join(f"{k} {v}" for k, v in m["packages"].items())),
                ("services", ", ".join(m["services"])),
            ],
        )
    for mode in MODES:
        if mode in results:
            lines += render_mode(mode, results[mode])
    return "\n".join(lines).rstrip() + "\n"


def plot(results: dict[str, dict[str, Any]], path: Path = PLOT) -> None:
    """Latency percentiles against offered rate, one line per (percentile, snapshot interval)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mode = next((m for m in MODES if m in results and results[m].get("latency")), None)
    if mode is None:
        return
    runs = results[mode]["latency"]["runs"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    styles = {1: ("-", "o"), 5: ("-.", "^"), 10: ("--", "s")}
    for ax, key, title in (
        (axes[0], "send_to_kafka_ms", "send → alert on Kafka"),
        (axes[1], "send_to_mongo_ms", "send → alert in MongoDB"),
    ):
        for snap in sorted({r["snapshot_s"] for r in runs}):
            sel = sorted((r for r in runs if r["snapshot_s"] == snap), key=lambda r: r["rate"])
            for p, color in (("p50", "C0"), ("p95", "C1"), ("p99", "C2"), ("p99.9", "C3")):
                pts = [(r["rate"], r[key][p]) for r in sel if p in r[key]]
                if pts:
                    line, marker = styles.get(snap, (":", "x"))
                    ax.plot(
                        [x for x, _ in pts],
                        [max(y, 1.0) for _, y in pts],
                        line,
                        color=color,
                        marker=marker,
                        label=f"{p}, snapshot {snap} s",
                    )
        ax.axhline(
            TARGET_P99_MS,
            color="grey",
            linewidth=0.8,
            linestyle=":",
            label=f"target: p99 {TARGET_P99_MS:g} ms",
        )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("offered rate (tx/s)")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("latency (ms)")
    axes[1].legend(fontsize=7, ncol=2)
    fig.suptitle(f"fraudwatch latency ({mode} run {results[mode]['run_id']})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def load_results(paths: dict[str, Path]) -> dict[str, dict[str, Any]]:
    return {mode: json.loads(p.read_text()) for mode, p in paths.items() if p.exists()}


def write(results: dict[str, dict[str, Any]], doc: Path = DOC, png: Path = PLOT) -> None:
    doc.write_text(render(results))
    plot(results, png)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for mode in MODES:
        parser.add_argument(f"--{mode}", type=Path, default=RESULTS_DIR / f"{mode}.json")
    args = parser.parse_args(argv)
    write(load_results({m: getattr(args, m) for m in MODES}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
