"""The dataflow's and the trainer's metrics endpoints bind 127.0.0.1 unless configured otherwise."""

from __future__ import annotations

import socket
import urllib.request

import pytest

from dataflows.io.prometheus import MetricsPortError, serve_metrics
from dataflows.settings import DataflowSettings, TrainerSettings

LOOPBACK = "127.0.0.1"


@pytest.fixture(autouse=True)
def _no_port_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FRAUD_METRICS_HOST", "FRAUD_METRICS_PORT", "TRAINER_METRICS_HOST",
                 "TRAINER_METRICS_PORT"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)


def test_the_dataflow_serves_no_metrics_unless_asked_and_then_on_loopback() -> None:
    settings = DataflowSettings(_env_file=None)
    assert settings.fraud_metrics_port == 0
    assert settings.fraud_metrics_host == LOOPBACK


def test_the_trainer_metrics_listen_on_loopback() -> None:
    settings = TrainerSettings(_env_file=None)
    assert (settings.trainer_metrics_host, settings.trainer_metrics_port) == (LOOPBACK, 3031)


def test_the_metrics_endpoint_listens_where_it_is_told() -> None:
    server = serve_metrics(LOOPBACK, 0, "FRAUD_METRICS_PORT")
    try:
        host, port = server.server_address[:2]
        assert host == LOOPBACK
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as answer:
            assert b"fraudwatch_transactions_in_total" in answer.read()
    finally:
        server.shutdown()
        server.server_close()


def test_a_taken_metrics_port_names_the_variable_to_change() -> None:
    with socket.socket() as taken:
        taken.bind((LOOPBACK, 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(MetricsPortError, match="TRAINER_METRICS_PORT"):
            serve_metrics(LOOPBACK, port, "TRAINER_METRICS_PORT")
