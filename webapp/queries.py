"""Request parameters -> validated filters -> MongoDB queries.

Every query-string and JSON value is checked here against a plain shape (an enum, digits, hex,
a timestamp); anything else, including repeated keys, unknown keys such as ``card[$ne]`` and
non-string JSON values, raises :class:`InvalidParameter` (a 400). MongoDB filters are then
built only from these validated scalars, so no operator from a request ever reaches a query.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING

from fraudwatch.alert_store import AlertView, rule_key_field
from fraudwatch.alert_store.schema import rule_index
from fraudwatch.cards import CardTokenizer, luhn_valid
from fraudwatch.vocabulary import RULE_NAMES, SEVERITIES, STATUSES

MAX_PARAM_CHARS = 64
_LAST4 = re.compile(r"^[0-9]{4}$")
_TOKEN = re.compile(r"^[0-9a-f]{32}$")
_PAN = re.compile(r"^[0-9]{12,19}$")
_CARD_SEPARATORS = re.compile(r"[ -]")
_MERCHANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
_CURSOR = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}_[0-9]{7}_[0-9a-f]{24}$")
_ALERT_ID = re.compile(r"^[0-9a-f]{24}$")
_DIGITS = re.compile(r"^[0-9]{1,15}$")
_SIG = re.compile(r"^[0-9a-f]{16}$")
_DATETIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?)?(?:Z|[+-]\d{2}:\d{2})?$"
)


class InvalidParameter(ValueError):
    """A request parameter that does not have the expected shape (HTTP 400)."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name
        self.message = message


def is_alert_id(value: str) -> bool:
    return bool(_ALERT_ID.match(value))


@dataclass(frozen=True, slots=True)
class Cursor:
    """A position in the queue order: the ``queue_key`` of the last row a page showed
    (``<day>_<score in millionths>_<alert id>``, see ``fraudwatch.alert_store.queue_key``)."""

    key: str

    def encode(self) -> str:
        return self.key

    @classmethod
    def decode(cls, name: str, raw: str) -> Cursor:
        if not _CURSOR.match(raw):
            raise InvalidParameter(name, "must be a cursor from a previous page")
        return cls(raw)


@dataclass(frozen=True, slots=True)
class CardFilter:
    """How the analyst identified a card: its token, or its last four digits."""

    field: str  # "card_token" or "card_last4"
    value: str


@dataclass(frozen=True, slots=True)
class AlertQuery:
    """A validated alert-list request: filters, time range and page position."""

    status: str | None = None
    severity: str | None = None
    rule: str | None = None
    card: CardFilter | None = None
    merchant: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    before: Cursor | None = None
    after: Cursor | None = None
    # The card field as the analyst should see it again: never a full card number.
    card_display: str = ""

    def params(self, *, include_status: bool = True) -> dict[str, str]:
        """Query-string parameters that reproduce the filters (not the page position)."""
        out: dict[str, str] = {}
        if self.status and include_status:
            out["status"] = self.status
        if self.severity:
            out["severity"] = self.severity
        if self.rule:
            out["rule"] = self.rule
        if self.card:
            out["card"] = self.card.value
        if self.merchant:
            out["merchant"] = self.merchant
        if self.start:
            out["from"] = format_param_time(self.start)
        if self.end:
            out["to"] = format_param_time(self.end)
        return out

    @property
    def is_first_page(self) -> bool:
        return self.before is None and self.after is None

    @property
    def has_filters(self) -> bool:
        return bool(self.params())

    def first_page(self) -> AlertQuery:
        return replace(self, before=None, after=None)

    def with_status(self, status: str | None) -> AlertQuery:
        return replace(self, status=status, before=None, after=None)

    def time_bounds(self, now: datetime, window: timedelta) -> tuple[datetime, datetime]:
        """The time range the query covers: always bounded. By default the whole UTC days that
        overlap the last ``window`` (the queue is ordered day by day), up to the end of today."""
        end = self.end or _midnight(now + timedelta(minutes=5)) + timedelta(days=1)
        start = self.start or _midnight((self.end or now) - window)
        return start, end

    @property
    def key_field(self) -> str:
        """The field the view is sorted and paged by: ``queue_key``, or with a rule filter
        the rule's queue key (the same values, on the alerts the rule fired on)."""
        return rule_key_field(self.rule) if self.rule else "queue_key"

    def sort(self, *, up: bool = False) -> list[tuple[str, int]]:
        """The queue order (newest day, best score first), or its reverse with ``up``."""
        return [(self.key_field, ASCENDING if up else DESCENDING)]

    def count_hint(self, now: datetime, window: timedelta) -> str:
        """The index a count of this view (with a status) should walk: the one of its most
        selective filter. Without statistics SQLite (the local FerretDB) guesses, and guessed
        ``by_status`` for a merchant's counts, reading every open alert of the week to count
        one merchant's; MongoDB honours the hint as well."""
        if self.card:
            return "by_card" if self.card.field == "card_token" else "by_last4"
        if self._timestamp_bounds(now, window):
            return "by_time"  # an analyst's from/to: hours, not days
        if self.merchant:
            return "by_merchant"
        if self.rule:
            return rule_index(self.rule)
        return "by_status_severity" if self.severity else "by_status"

    def mongo_filter(
        self, now: datetime, window: timedelta, *, with_status: bool = True
    ) -> dict[str, Any]:
        """The ``alerts`` filter; every value in it is a validated scalar."""
        start, end = self.time_bounds(now, window)
        flt: dict[str, Any] = {}
        if self.status and with_status:
            flt["status"] = self.status
        if self.severity:
            flt["severity"] = self.severity
        if self.card:
            flt[self.card.field] = self.card.value
        if self.merchant:
            flt["merchant_id"] = self.merchant
        # The queue key's day prefix bounds the index scan to the days of the time range; a
        # bound inside a day (an analyst's from/to) adds a timestamp condition. Whole days need
        # none, which keeps the counts per status index-only on the patched FerretDB (a
        # timestamp condition there decodes every row of the status: ~10 s at 50,000 alerts).
        # The cursor continues the scan from the key it names (one string range). A rule filter
        # ranges over that rule's own copy of the key instead (``key_field``): only alerts the
        # rule fired on have it.
        last_day = end if end == _midnight(end) else end + timedelta(days=1)
        key: dict[str, Any] = {"$gte": _day(start), "$lt": _day(last_day)}
        if self.before is not None:
            key["$lt"] = min(key["$lt"], self.before.key)
        elif self.after is not None:
            key = {"$gt": max(key["$gte"], self.after.key), "$lt": key["$lt"]}
        flt[self.key_field] = key
        if within := self._timestamp_bounds(now, window):
            flt["timestamp"] = within
        return flt

    def _timestamp_bounds(self, now: datetime, window: timedelta) -> dict[str, datetime]:
        """The time range's bounds that fall inside a day (an analyst's from/to), which the
        queue key's day prefix cannot express; empty for whole days."""
        start, end = self.time_bounds(now, window)
        within: dict[str, datetime] = {}
        if start != _midnight(start):
            within["$gte"] = start
        if end != _midnight(end):
            within["$lt"] = end
        return within

    def matches(self, alert: AlertView, now: datetime, window: timedelta) -> bool:
        """Whether an alert matches the filters and the time range, as
        ``mongo_filter`` would select it (the page position aside): the check the case queue
        makes on alerts it has already read instead of asking the server again."""
        start, end = self.time_bounds(now, window)
        if not start <= alert.timestamp < end:
            return False
        if self.status and alert.status != self.status:
            return False
        if self.severity and alert.severity != self.severity:
            return False
        if self.rule and self.rule not in alert.rules:
            return False
        if self.card and getattr(alert, self.card.field) != self.card.value:
            return False
        return not (self.merchant and alert.merchant_id != self.merchant)


def _midnight(ts: datetime) -> datetime:
    """The start of the UTC day ``ts`` is in."""
    return ts.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def _day(ts: datetime) -> str:
    """The UTC day a ``queue_key`` starts with."""
    return ts.astimezone(UTC).strftime("%Y-%m-%d")


def format_param_time(ts: datetime) -> str:
    """The ``from``/``to`` form the queue's datetime inputs use (UTC, minutes or seconds)."""
    ts = ts.astimezone(UTC)
    if ts.second == 0 and ts.microsecond == 0:
        return ts.strftime("%Y-%m-%dT%H:%M")
    return ts.strftime("%Y-%m-%dT%H:%M:%S")


def parse_time(name: str, raw: str) -> datetime:
    """``2026-11-25``, ``2026-11-25T08:40`` (UTC), or RFC 3339 with an offset."""
    if not _DATETIME.match(raw):
        raise InvalidParameter(
            name, "must be a date/time like 2026-11-25T08:40 (UTC) or 2026-11-25T08:40:00Z"
        )
    try:
        ts = datetime.fromisoformat(raw.replace("Z", "+00:00").replace(" ", "T"))
    except ValueError:
        raise InvalidParameter(name, "is not a valid date/time") from None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    ts = ts.astimezone(UTC)
    if not (datetime(2000, 1, 1, tzinfo=UTC) <= ts < datetime(2100, 1, 1, tzinfo=UTC)):
        raise InvalidParameter(name, "must be between 2000 and 2100")
    return ts


def parse_card(raw: str, tokenizer: CardTokenizer) -> CardFilter:
    """Last 4 digits, a 32-hex token, or a full card number (tokenised here, never kept)."""
    compact = _CARD_SEPARATORS.sub("", raw)
    if _LAST4.match(compact):
        return CardFilter("card_last4", compact)
    if _TOKEN.match(compact.lower()):
        return CardFilter("card_token", compact.lower())
    if _PAN.match(compact):
        if not luhn_valid(compact):
            raise InvalidParameter("card", "is not a valid card number (Luhn check failed)")
        return CardFilter("card_token", tokenizer.token(compact))
    raise InvalidParameter(
        "card", "must be the last 4 digits, a 32-character card token or a full card number"
    )


def _enum(values: Iterable[str]) -> Callable[[str, str], str]:
    allowed = tuple(values)

    def check(name: str, raw: str) -> str:
        if raw not in allowed:
            raise InvalidParameter(name, f"must be one of {', '.join(allowed)}")
        return raw

    return check


check_status = _enum(STATUSES)
check_severity = _enum(SEVERITIES)
check_rule = _enum(RULE_NAMES)


def single_values(
    args: Mapping[str, list[str]], allowed: Iterable[str], *, max_chars: int = MAX_PARAM_CHARS
) -> dict[str, str]:
    """Flatten a multi-dict of query parameters, refusing unknown, repeated or long ones.

    Empty values count as absent (HTML forms send every field).
    """
    known = set(allowed)
    out: dict[str, str] = {}
    for key, values in args.items():
        if key not in known:
            shown = key if len(key) <= 40 else key[:40] + "..."
            raise InvalidParameter(shown, "is not a known parameter")
        if len(values) != 1:
            raise InvalidParameter(key, "must be given at most once")
        value = values[0]
        if len(value) > max_chars:
            raise InvalidParameter(key, f"must be at most {max_chars} characters")
        if value.strip():
            out[key] = value.strip()
    return out


LIST_PARAMS = ("status", "severity", "rule", "card", "merchant", "from", "to", "before", "after")


def parse_alert_query(values: Mapping[str, str], tokenizer: CardTokenizer) -> AlertQuery:
    """Build an :class:`AlertQuery` from flat, single-valued string parameters."""
    card = parse_card(values["card"], tokenizer) if "card" in values else None
    merchant = values.get("merchant")
    if merchant is not None and not _MERCHANT.match(merchant):
        raise InvalidParameter("merchant", "must be a merchant id (letters, digits, . _ : -)")
    start = parse_time("from", values["from"]) if "from" in values else None
    end = parse_time("to", values["to"]) if "to" in values else None
    if start and end and start >= end:
        raise InvalidParameter("from", "must be before 'to'")
    before = Cursor.decode("before", values["before"]) if "before" in values else None
    after = Cursor.decode("after", values["after"]) if "after" in values else None
    if before and after:
        raise InvalidParameter("after", "cannot be combined with 'before'")
    return AlertQuery(
        status=check_status("status", values["status"]) if "status" in values else None,
        severity=check_severity("severity", values["severity"]) if "severity" in values else None,
        rule=check_rule("rule", values["rule"]) if "rule" in values else None,
        card=card,
        merchant=merchant,
        start=start,
        end=end,
        before=before,
        after=after,
        card_display=card.value if card else "",
    )


def parse_limit(raw: str | None, default: int, maximum: int, name: str = "limit") -> int:
    if raw is None:
        return default
    if not _DIGITS.match(raw) or not (1 <= int(raw) <= maximum):
        raise InvalidParameter(name, f"must be a whole number from 1 to {maximum}")
    return int(raw)


def parse_epoch_ms(name: str, raw: str) -> int:
    if not _DIGITS.match(raw):
        raise InvalidParameter(name, "must be a time in epoch milliseconds")
    return int(raw)


def parse_whole_number(name: str, raw: str) -> int:
    if not _DIGITS.match(raw):
        raise InvalidParameter(name, "must be a whole number")
    return int(raw)


def check_sig(raw: str) -> str:
    if not _SIG.match(raw):
        raise InvalidParameter("sig", "must be a page signature from the queue")
    return raw
