"""The MongoDB side of alerts and statistics, shared by the dataflow (writer) and the console
(reader): ``schema`` (collection names, indexes, the queue's sort and row fields),
``documents`` (document shapes both ways) and ``writes`` (the dataflow's idempotent writes and
the ``queue_key`` migration). Neither the contract nor the flow knows a MongoDB field; the
console's queries (``webapp.data.store``) use the names and shapes declared here.
"""

from fraudwatch.alert_store.documents import (
    NEW_MINUTE,
    AlertView,
    DispositionView,
    Doc,
    EvidenceTxn,
    MinuteStats,
    ReasonView,
    alert_document,
    as_utc,
    minute_id,
    queue_key,
    rule_key_field,
    rule_keys,
    stats_document,
)
from fraudwatch.alert_store.schema import (
    ALERT_STATS,
    ALERTS,
    DISPOSITIONS,
    QUEUE_FIELDS,
    QUEUE_SORT,
    ensure_indexes,
)
from fraudwatch.alert_store.writes import backfill_queue_keys, write_alerts, write_stats

__all__ = [
    "ALERTS",
    "ALERT_STATS",
    "DISPOSITIONS",
    "NEW_MINUTE",
    "QUEUE_FIELDS",
    "QUEUE_SORT",
    "AlertView",
    "DispositionView",
    "Doc",
    "EvidenceTxn",
    "MinuteStats",
    "ReasonView",
    "alert_document",
    "as_utc",
    "backfill_queue_keys",
    "ensure_indexes",
    "minute_id",
    "queue_key",
    "rule_key_field",
    "rule_keys",
    "stats_document",
    "write_alerts",
    "write_stats",
]
