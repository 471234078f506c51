"""Prometheus counters of the dataflow.

Bytewax serves the default registry at ``:3030/metrics`` when ``BYTEWAX_DATAFLOW_API_ENABLED=1``,
so these appear there next to Bytewax's own metrics. Labels never carry card data.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Info

TRANSACTIONS_IN = Counter("fraudwatch_transactions_in", "Input messages read")
LABELS_IN = Counter("fraudwatch_labels_in", "Label messages read from the labels topic")
TRANSACTIONS_VALID = Counter("fraudwatch_transactions_valid", "Messages that were valid v1")
DEAD_LETTERED = Counter(
    "fraudwatch_dead_lettered", "Messages sent to the dead-letter topic", ["reason"]
)
LATE = Counter(
    "fraudwatch_late_transactions",
    "Transactions older than the allowed lateness (point rules only)",
)
DUPLICATES = Counter("fraudwatch_duplicate_transactions", "Re-sent transactions ignored by rules")
ALERTS = Counter("fraudwatch_alerts", "Alerts raised")
ALERTS_BY_RULE = Counter("fraudwatch_alert_reasons", "Rules that fired, per rule", ["rule"])
SINK_RETRIES = Counter("fraudwatch_sink_retries", "Retried writes to a sink", ["sink"])
STATS_TOO_LATE = Counter(
    "fraudwatch_stats_too_late", "Transactions too old for the per-minute stats retention"
)
CARDS_EVICTED = Counter("fraudwatch_cards_evicted", "Idle cards whose state was dropped")
FEATURE_ROWS = Counter("fraudwatch_feature_log_rows", "Rows written to the feature log")
MODEL_INFO = Info("fraudwatch_model", "The newest operating point's model version and day")
ALERT_THRESHOLD = Gauge("fraudwatch_alert_threshold", "The newest operating point's threshold")
