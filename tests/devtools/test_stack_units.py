"""The local stack's command line, its listeners and its quiet readiness probe (no services)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from devtools import stack
from devtools.stack import LocalStack, StackConfig, kafka_properties


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_options_after_the_command_choose_a_private_stack() -> None:
    private = "/work/private-stack"
    args = stack._parse(
        ["up", "--data-dir", private, "--kafka-port", "19092", "--controller-port", "19093",
         "--mongo-port", "37017"]
    )  # fmt: skip
    assert (args.command, args.data_dir, args.kafka_port) == ("up", Path(private), 19092)
    assert (args.controller_port, args.mongo_port, args.cmd) == (19093, 37017, [])


def test_options_before_the_command_still_work() -> None:
    args = stack._parse(["--kafka-port", "19092", "status"])
    assert (args.command, args.kafka_port) == ("status", 19092)


def test_with_stack_runs_everything_after_the_double_dash_untouched() -> None:
    args = stack._parse(["with-stack", "--mongo-port", "1", "--", "pytest", "-x", "--", "-k"])
    assert args.command == "with-stack"
    assert args.mongo_port == 1
    assert args.cmd == ["pytest", "-x", "--", "-k"]


def test_kafka_and_ferretdb_listen_on_loopback_only() -> None:
    config = StackConfig(kafka_port=19092, controller_port=19093, mongo_port=37017)
    props = dict(
        line.split("=", 1) for line in kafka_properties(config).splitlines() if "=" in line
    )
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092"
    assert LocalStack(config).mongo.marker == "--listen-addr=127.0.0.1:37017"


def test_the_kafka_probe_prints_nothing_while_no_broker_listens(
    capfd: pytest.CaptureFixture[str],
) -> None:
    assert stack._kafka_ready(f"127.0.0.1:{_free_port()}") is False
    assert capfd.readouterr() == ("", "")


def test_a_failing_kafka_probe_client_logs_nowhere(
    capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A port that accepts connections but is no broker: the admin client itself fails, and
    # librdkafka's complaints must not reach the terminal.
    monkeypatch.setattr(stack, "_port_open", lambda port, host="127.0.0.1": True)
    from confluent_kafka import KafkaException

    with pytest.raises(KafkaException):  # the caller (_wait_until) asks again
        stack._kafka_ready(f"127.0.0.1:{_free_port()}")
    assert capfd.readouterr() == ("", "")
