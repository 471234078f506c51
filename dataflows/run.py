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
from typing import Any

import click

# Recovery partitions are fixed when the store is created; workers map onto them, so this
# bounds how many workers (threads x processes) can share one store.
RECOVERY_PARTITIONS = 4


OWNER_FILE = "fraudwatch-recovery.json"


class RecoveryStoreMismatch(click.ClickException):
    """The store holds offsets and state of another input topic."""


# What the card state in a store looks like. 2: cards packed into FRAUD_CARD_SHARDS shards
# (step ``card_shards``); stores without it hold per-card state (step ``card_rules``).
STATE_FORMAT = 3  # 3: merchant shards and card habits/labels (2026.12)


def ensure_recovery_store(
    path: Path,
    topic: str | None = None,
    card_shards: int | None = None,
    partitions: int = RECOVERY_PARTITIONS,
) -> bool:
    """Create the recovery store once. Returns True when it was created now.

    The store remembers the input topic, the card state format and the shard count it was
    made for. Resuming it against another topic would make Bytewax panic on unknown
    partitions; resuming it with another state format or shard count would start every card
    with empty windows while the offsets skip their history. Each is refused with a message.
    """
    owner = path / OWNER_FILE
    if path.exists() and any(path.glob("part-*.sqlite3")):
        if topic is not None and owner.exists():
            made = json.loads(owner.read_text())
            _refuse_mismatch(path, made, topic, card_shards)
        return False
    from bytewax.recovery import init_db_dir

    path.mkdir(parents=True, exist_ok=True)
    init_db_dir(path, partitions)  # type: ignore[no-untyped-call]
    if topic is not None:
        made = {"topic": topic, "partitions": partitions, "state_format": STATE_FORMAT}
        if card_shards is not None:
            made["card_shards"] = card_shards
        owner.write_text(json.dumps(made))
    return True


def _refuse_mismatch(path: Path, made: dict[str, Any], topic: str, card_shards: int | None) -> None:
    if made.get("topic") != topic:
        raise RecoveryStoreMismatch(
            f"recovery store {path} holds the state of topic {made.get('topic')!r}, but "
            f"TRANSACTIONS_TOPIC is {topic!r}: use another --recovery-dir, or delete "
            "the store to start that topic from the beginning"
        )
    if made.get("state_format") != STATE_FORMAT:
        raise RecoveryStoreMismatch(
            f"recovery store {path} was written by an older fraudwatch (card state format "
            f"{made.get('state_format', 1)}, this version reads {STATE_FORMAT}): resuming it "
            "would lose every card's windows. Finish it with the older version, or delete the "
            "store to start the topic from the beginning"
        )
    made_shards = made.get("card_shards")
    if card_shards is not None and made_shards is not None and made_shards != card_shards:
        raise RecoveryStoreMismatch(
            f"recovery store {path} keeps cards in {made_shards} shards, but "
            f"FRAUD_CARD_SHARDS is {card_shards}: cards would be looked up in the wrong shard. "
            f"Set FRAUD_CARD_SHARDS={made_shards}, or delete the store to start over"
        )


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

    settings = DataflowSettings()
    created = ensure_recovery_store(
        recovery_dir, settings.transactions_topic, settings.fraud_card_shards
    )
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
