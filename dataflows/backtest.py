"""``python -m dataflows.backtest FILE.jsonl``: the detection core over a file, no services.

Reads v1 transactions as JSON lines in file order, runs exactly the dataflow's validation and
rules, and prints one alert per line (the same JSON as on ``fraud-alerts``). Alert ids, scores,
severities and reasons are identical to what the streaming pipeline produces for the same
per-card order; only ``detected_at`` and ``source_ts`` differ (wall clock / Kafka time).
Invalid lines are counted by reason on stderr, as the dataflow would dead-letter them.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

import click
import orjson

from dataflows.detector import CardState, Detector, Outcome
from dataflows.edge import Edge, RawRecord
from dataflows.ruleset import RuleSet, load_ruleset
from dataflows.settings import DataflowSettings
from fraudwatch.cards import CardTokenizer
from fraudwatch.contract import CardEvent


def run_backtest(
    lines: Iterable[bytes], ruleset: RuleSet, token_key: str | None, dead: Counter[str]
) -> Iterator[Outcome]:
    """Outcomes of every valid line, in order; invalid lines are counted in ``dead``."""
    edge = Edge(CardTokenizer(token_key), set(ruleset.currency.rates))
    detector = Detector(ruleset)
    cards: dict[str, CardState] = {}
    for number, line in enumerate(lines, start=1):
        raw = line.rstrip(b"\r\n")
        if not raw.strip():
            continue
        item = edge.to_event(RawRecord("file", 0, number, None, raw))
        if not isinstance(item, CardEvent):
            dead[item.reason] += 1
            continue
        state = cards.get(item.card_token)
        if state is None:
            state = cards[item.card_token] = CardState()
        yield detector.process(state, item, item.ts)


@click.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--rules",
    "rules_file",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="Rule file (default: FRAUD_RULES_FILE or config/rules.toml).",
)
@click.option("--output", "-o", type=click.File("wb"), default="-", help="Where alerts go.")
def main(path: Path, rules_file: Path | None, output: IO[bytes]) -> None:
    """Print the alerts the dataflow would raise for the transactions in PATH (JSON lines)."""
    settings = DataflowSettings()
    ruleset = load_ruleset(rules_file or settings.fraud_rules_file)
    key = settings.fraud_token_key.get_secret_value() if settings.fraud_token_key else None
    dead: Counter[str] = Counter()
    total = alerts = 0
    with path.open("rb") as f:
        for outcome in run_backtest(f, ruleset, key, dead):
            total += 1
            if outcome.alert is not None:
                alerts += 1
                output.write(orjson.dumps(outcome.alert.to_json_dict()) + b"\n")
    output.flush()
    summary = {
        "valid": total,
        "alerts": alerts,
        "invalid": dict(dead),
        "ruleset_version": ruleset.version,
    }
    sys.stderr.write(orjson.dumps(summary).decode() + "\n")


if __name__ == "__main__":
    main()
