"""``python -m dataflows.run``: the dataflow with Bytewax recovery, as `make run` starts it.

Initialises the recovery partitions once (``RECOVERY_PARTITIONS``, enough for the most workers
we support), then replaces itself with ``python -m bytewax.run dataflows.fraud -r DIR -s S -b B``
plus any scaling flags given after ``--`` (``-w 2``, or ``-i 0 -a "host1:2101;host2:2101"``).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

# Recovery partitions are fixed when the store is created; workers map onto them, so this
# bounds how many workers (threads x processes) can share one store.
RECOVERY_PARTITIONS = 4


OWNER_FILE = "fraudwatch-recovery.json"


class RecoveryStoreMismatch(click.ClickException):
    """The store holds offsets and state of another input topic."""


def ensure_recovery_store(
    path: Path, topic: str | None = None, partitions: int = RECOVERY_PARTITIONS
) -> bool:
    """Create the recovery store once. Returns True when it was created now.

    The store remembers the input topic it was made for: resuming it against another topic
    would make Bytewax panic on unknown partitions, so that is refused with a clear message.
    """
    owner = path / OWNER_FILE
    if path.exists() and any(path.glob("part-*.sqlite3")):
        if topic is not None and owner.exists():
            made_for = json.loads(owner.read_text()).get("topic")
            if made_for != topic:
                raise RecoveryStoreMismatch(
                    f"recovery store {path} holds the state of topic {made_for!r}, but "
                    f"TRANSACTIONS_TOPIC is {topic!r}: use another --recovery-dir, or delete "
                    "the store to start that topic from the beginning"
                )
        return False
    from bytewax.recovery import init_db_dir

    path.mkdir(parents=True, exist_ok=True)
    init_db_dir(path, partitions)  # type: ignore[no-untyped-call]
    if topic is not None:
        owner.write_text(json.dumps({"topic": topic, "partitions": partitions}))
    return True


@click.command(context_settings={"ignore_unknown_options": True})
@click.option(
    "--recovery-dir",
    type=click.Path(path_type=Path),
    default=Path("recovery"),
    show_default=True,
    help="Bytewax recovery store (created on first use).",
)
@click.option(
    "--snapshot-interval",
    type=click.IntRange(min=1),
    default=5,
    show_default=True,
    help="Seconds between state snapshots; a crash replays at most about this much.",
)
@click.option(
    "--backup-interval",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Seconds to keep older snapshots (for external backups of the store).",
)
@click.argument("bytewax_args", nargs=-1, type=click.UNPROCESSED)
def main(
    recovery_dir: Path,
    snapshot_interval: int,
    backup_interval: int,
    bytewax_args: tuple[str, ...],
) -> None:
    """Run dataflows.fraud with recovery on."""
    from dataflows.settings import DataflowSettings

    created = ensure_recovery_store(recovery_dir, DataflowSettings().transactions_topic)
    if created:
        print(
            f"initialised {RECOVERY_PARTITIONS} recovery partitions in {recovery_dir}",
            file=sys.stderr,
        )
    argv = [
        sys.executable,
        "-m",
        "bytewax.run",
        "dataflows.fraud",
        "-r",
        str(recovery_dir),
        "-s",
        str(snapshot_interval),
        "-b",
        str(backup_interval),
        *bytewax_args,
    ]
    os.execv(sys.executable, argv)  # noqa: S606 - replace ourselves: signals go straight to Bytewax


if __name__ == "__main__":
    main()
