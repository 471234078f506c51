"""Prometheus counters of the dataflow, and the loopback endpoint that serves them.

``FRAUD_METRICS_PORT`` (``make run``: 3030) serves the default registry at
``http://127.0.0.1:<port>/metrics`` (:func:`serve_metrics`; ``FRAUD_METRICS_HOST`` to listen
elsewhere); the trainer serves its gauges the same way. Bytewax's own API
(``BYTEWAX_DATAFLOW_API_ENABLED=1``) serves this registry too, next to Bytewax's metrics, but
listens on every interface (0.0.0.0, fixed in Bytewax 0.21): only for a container or behind a
firewall. Labels never carry card data.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Gauge, Info, start_http_server

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


class MetricsPortError(RuntimeError):
    """The metrics endpoint cannot listen; the message names the variable to change."""


def serve_metrics(host: str, port: int, variable: str) -> Any:
    """Serve the default registry at ``http://host:port/metrics`` from a daemon thread.

    Args:
        host: the address to listen on (``127.0.0.1`` unless configured otherwise).
        port: the port; 0 picks a free one (tests).
        variable: the setting that chose the port, named in the error.

    Returns:
        The HTTP server (``server_address`` says where it listens; ``shutdown()`` stops it).

    Raises:
        MetricsPortError: the address is taken or cannot be bound.
    """
    try:
        server, _thread = start_http_server(port, addr=host)
    except OSError as exc:
        raise MetricsPortError(
            f"cannot serve metrics on {host}:{port} ({exc.strerror or exc}): another process "
            f"listens there (`ss -ltnp 'sport = :{port}'` shows it); set {variable} to a free "
            "port, or 0 for no metrics endpoint"
        ) from exc
    return server
