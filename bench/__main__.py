"""``python -m bench --quick`` (``make bench``) / ``--full`` (``make bench-full``).

Runs the throughput and scale-out, latency and memory benchmarks on the local stack (``make
up`` first), writes ``bench/results/<mode>.json`` and renders ``docs/benchmarks.md`` and
``docs/benchmarks-latency.png`` from it (the other mode's results stay in the page).
``--only throughput,latency`` runs a part and merges it into the results file.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import latency, memory, report, throughput
from bench.common import (
    REPO,
    SCRATCH_ROOT,
    Procs,
    Stack,
    log,
    new_run_id,
    run_logs,
    scratch_run,
    stop_on_sigterm,
)


@dataclass(frozen=True)
class Plan:
    throughput: throughput.ThroughputConfig
    latency: latency.LatencyConfig
    memory: memory.MemoryConfig
    parts: tuple[str, ...] = field(default=("throughput", "latency", "memory"))


PLANS = {
    "quick": Plan(
        throughput.ThroughputConfig(count=200_000, naive_max_s=60),
        latency.LatencyConfig(
            duration_s=15.0, only=((1_000, 1), (5_000, 1), (20_000, 1), (5_000, 10))
        ),
        memory.MemoryConfig(card_sizes=(10_000, 30_000, 60_000), deep_per_card=12, backlog=500_000),
    ),
    # Not for numbers: a few minutes' check that every part runs end to end.
    "smoke": Plan(
        throughput.ThroughputConfig(count=20_000, cards=5_000, naive_max_s=5),
        latency.LatencyConfig(rates=(1_000, 5_000), duration_s=8.0, cards=5_000),
        memory.MemoryConfig(
            card_sizes=(2_000, 5_000, 10_000), deep_per_card=6, backlog=30_000, backlog_cards=5_000
        ),
    ),
    "full": Plan(
        throughput.ThroughputConfig(count=1_000_000, naive_max_s=180),
        latency.LatencyConfig(duration_s=60.0),
        memory.MemoryConfig(
            card_sizes=(10_000, 100_000, 1_000_000), backlog=5_000_000, feed_rate=8_000
        ),
    ),
}


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with contextlib.suppress(OSError, ValueError):
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    packages = {}
    for name in ("bytewax", "confluent-kafka", "kafka-python", "pymongo", "orjson", "pydantic"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            packages[name] = importlib.metadata.version(name)
    build = REPO / ".stack" / "build"
    services = sorted(p.name for p in build.glob("*") if p.is_dir()) if build.is_dir() else []
    import confluent_kafka

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": mem_kb / 2**20,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "packages": {**packages, "librdkafka": confluent_kafka.libversion()[0]},
        "services": services,
        "commit": _git("rev-parse", "--short", "HEAD"),
        "dirty": bool(_git("status", "--porcelain", "--", "dataflows", "fraudwatch", "producer")),
        "load_before": " ".join(f"{x:.1f}" for x in os.getloadavg()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode_group = parser.add_mutually_exclusive_group(required=True)
    mode_group.add_argument("--quick", action="store_const", dest="mode", const="quick")
    mode_group.add_argument("--full", action="store_const", dest="mode", const="full")
    mode_group.add_argument(
        "--smoke", action="store_const", dest="mode", const="smoke", help="tiny sizes, no docs"
    )
    parser.add_argument("--only", help="comma-separated: throughput, latency, memory")
    parser.add_argument("--results", type=Path, help="default: bench/results/<mode>.json")
    parser.add_argument("--no-docs", action="store_true", help="do not render docs/")
    parser.add_argument("--keep", action="store_true", help="keep topics, databases, dirs")
    args = parser.parse_args(argv)
    stop_on_sigterm()
    plan = PLANS[args.mode]
    parts = tuple(args.only.split(",")) if args.only else plan.parts
    unknown = set(parts) - set(plan.parts)
    if unknown:
        parser.error(f"unknown part(s): {', '.join(sorted(unknown))}")
    results_dir = report.RESULTS_DIR if args.mode in report.MODES else SCRATCH_ROOT
    results_path = args.results or results_dir / f"{args.mode}.json"

    stack = Stack.from_env()
    run_id = new_run_id()
    logs = run_logs(run_id)
    t0 = time.monotonic()
    res: dict[str, Any] = {}
    if args.only and results_path.exists():
        res = json.loads(results_path.read_text())
    res.update(
        run_id=run_id,
        mode=args.mode,
        started=time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        machine=machine(),
    )
    log(f"{args.mode} run {run_id}: {', '.join(parts)} (process logs in {logs})")
    with scratch_run(stack, run_id, keep=args.keep) as scratch, Procs(logs) as procs:
        if "throughput" in parts:
            res["throughput"] = throughput.run(scratch, procs, plan.throughput)
        if "latency" in parts:
            res["latency"] = latency.run(scratch, procs, plan.latency)
        if "memory" in parts:
            res["memory"] = memory.run(scratch, procs, plan.memory)
        for part in parts:
            res[part]["run_id"] = run_id
    res["seconds"] = round(time.monotonic() - t0, 1)
    res["machine"]["load_after"] = " ".join(f"{x:.1f}" for x in os.getloadavg())
    results_path.parent.mkdir(parents=True, exist_ok=True)
    results_path.write_text(json.dumps(res, indent=1) + "\n")
    log(f"results in {results_path} ({res['seconds'] / 60:.1f} min)")
    if not args.no_docs and args.mode in report.MODES:
        paths = {m: report.RESULTS_DIR / f"{m}.json" for m in report.MODES}
        paths[args.mode] = results_path
        report.write(report.load_results(paths))
        log(f"wrote {report.DOC.relative_to(REPO)} and {report.PLOT.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
