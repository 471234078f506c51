"""``python -m bench.snapshot_store``: what writing one epoch's snapshots to SQLite costs.

Bytewax 0.21 writes every state key touched in an epoch to its SQLite recovery store at the
epoch close, on the worker thread, and deletes the snapshots the new ones supersede. This
replays that pattern (one transaction per epoch: insert ``--keys`` rows of ``--kb`` KB, delete
the previous epoch's) to show the stall a given amount of touched state causes, without the
dataflow: the floor under the latency tail at an epoch close (docs/performance.md).
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import tempfile
import time


def measure(keys: int, kb: int, epochs: int, journal: str) -> list[float]:
    """Milliseconds per epoch write (insert this epoch's rows, delete the previous ones)."""
    with tempfile.TemporaryDirectory(prefix="fraudwatch-snapstore-") as tmp:
        con = sqlite3.connect(os.path.join(tmp, "part-0.sqlite3"))
        con.execute(f"PRAGMA journal_mode={journal}")
        con.execute(
            "CREATE TABLE snaps (step_id TEXT, state_key TEXT, epoch INTEGER, ser_change BLOB, "
            "PRIMARY KEY (step_id, state_key, epoch))"
        )
        blobs = [os.urandom(kb * 1024) for _ in range(keys)]
        out = []
        for epoch in range(1, epochs + 1):
            t0 = time.perf_counter()
            with con:
                con.executemany(
                    "INSERT INTO snaps VALUES ('card_shards', ?, ?, ?)",
                    [(f"{i:04d}", epoch, b) for i, b in enumerate(blobs)],
                )
                con.execute("DELETE FROM snaps WHERE epoch < ?", (epoch,))
            out.append((time.perf_counter() - t0) * 1000)
        con.close()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--keys", type=int, default=256, help="state keys written per epoch")
    p.add_argument("--kb", type=int, default=100, help="size of each key's snapshot")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--journal", default="DELETE", help="SQLite journal mode")
    a = p.parse_args()
    ms = measure(a.keys, a.kb, a.epochs, a.journal)
    steady = ms[1:]  # the first epoch has nothing to delete
    print(
        json.dumps(
            {
                "keys": a.keys,
                "mb_per_epoch": round(a.keys * a.kb / 1024, 1),
                "journal": a.journal,
                "ms_per_epoch": [round(x) for x in ms],
                "median_ms": round(statistics.median(steady)),
            }
        )
    )


if __name__ == "__main__":
    main()
