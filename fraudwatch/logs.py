"""Structured (JSON lines) logging for every component, with a last line of defence for PANs.

Code must never log a card number; the filter below additionally masks any 12-19 digit
Luhn-valid number in a message or its fields, so a mistake cannot leak one.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from fraudwatch.cards import PAN_PATTERN, luhn_valid

_STD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def scrub(text: str) -> str:
    """Replace Luhn-valid 12-19 digit numbers with ``[PAN]``."""
    return PAN_PATTERN.sub(lambda m: "[PAN]" if luhn_valid(m.group()) else m.group(), text)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any ``extra`` fields."""

    def __init__(self, component: str) -> None:
        super().__init__()
        self.component = component

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "component": self.component,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for k, v in vars(record).items():
            if k not in _STD and not k.startswith("_"):
                out[k] = v
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return scrub(json.dumps(out, default=str))


def configure_logging(component: str, level: str = "INFO") -> None:
    """Send JSON logs to stderr (idempotent)."""
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_fraudwatch", False):
            root.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(component))
    handler._fraudwatch = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
