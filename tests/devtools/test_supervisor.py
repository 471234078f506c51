"""``make run`` (devtools.supervisor): loopback listeners, the ready block, the console's
settings file for its CLI (no services)."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner
from flask.cli import cli as flask_cli

from devtools.supervisor import (
    RunSettings,
    announce_when_ready,
    components,
    ready_block,
    webapp_env,
    write_env_file,
)
from webapp.data.users import AccessStore
from webapp.services import Services, services
from webapp.settings import DEV_ENV_FILE

LOOPBACK = "127.0.0.1"
PORT_VARIABLES = (
    "FRAUD_METRICS_HOST", "FRAUD_METRICS_PORT", "TRAINER_METRICS_HOST", "TRAINER_METRICS_PORT",
    "WEBAPP_HOST", "WEBAPP_PORT",
)  # fmt: skip


@pytest.fixture(autouse=True)
def _no_port_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PORT_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def test_make_run_binds_the_console_and_both_metrics_endpoints_to_loopback() -> None:
    settings = RunSettings(_env_file=None)
    assert settings.console_url == "http://127.0.0.1:5000"
    by_name = {c.name: c for c in components(settings, "pw")}
    webapp = by_name["webapp"].argv
    assert webapp[webapp.index("--host") + 1] == LOOPBACK
    assert by_name["dataflow"].env["FRAUD_METRICS_HOST"] == LOOPBACK
    assert by_name["dataflow"].env["FRAUD_METRICS_PORT"] == "3030"
    assert by_name["trainer"].env["TRAINER_METRICS_HOST"] == LOOPBACK
    # Bytewax's own API listens on every interface (0.0.0.0): make run never turns it on.
    assert all("BYTEWAX_DATAFLOW_API_ENABLED" not in c.env for c in by_name.values())


def test_make_run_ports_are_configurable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBAPP_PORT", "15000")
    monkeypatch.setenv("FRAUD_METRICS_PORT", "13030")
    settings = RunSettings(_env_file=None)
    by_name = {c.name: c for c in components(settings, "pw")}
    assert "15000" in by_name["webapp"].argv
    assert by_name["dataflow"].env["FRAUD_METRICS_PORT"] == "13030"


def _settings(**values: object) -> RunSettings:
    return RunSettings(_env_file=None, **values)


def test_the_ready_block_says_where_who_and_what_to_try_first() -> None:
    block = ready_block(_settings(webapp_port=15000), "s3cret-pw", seeding=True)
    assert "http://127.0.0.1:15000" in block
    assert "dev / s3cret-pw" in block
    assert "case queue" in block
    assert ".venv/bin/flask --app webapp create-token dev" in block
    assert "http://127.0.0.1:3030/metrics" in block
    assert "replayed" in block


def test_the_ready_block_is_printed_once_and_only_after_the_console_answers() -> None:
    out = io.StringIO()
    answers = iter([False, False, True])
    seen_before_ready: list[str] = []

    def console_answers() -> bool:
        seen_before_ready.append(out.getvalue())
        return next(answers)

    ready = announce_when_ready(
        console_answers, lambda: "BLOCK\n", out, stopping=threading.Event(), poll_s=0
    )
    assert ready is True
    assert seen_before_ready == ["", "", ""]
    assert out.getvalue() == "BLOCK\n"


def test_no_ready_block_when_the_console_never_answers() -> None:
    out = io.StringIO()
    ready = announce_when_ready(
        lambda: False, lambda: "BLOCK\n", out, stopping=threading.Event(), timeout_s=0, poll_s=0
    )
    assert ready is False
    assert "BLOCK" not in out.getvalue()
    assert "did not answer" in out.getvalue()


def test_no_ready_block_once_stopping() -> None:
    out, stopping = io.StringIO(), threading.Event()
    stopping.set()
    assert announce_when_ready(lambda: True, lambda: "BLOCK\n", out, stopping=stopping) is False
    assert out.getvalue() == ""


def test_the_console_cli_works_with_the_settings_make_run_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`flask --app webapp create-token dev` failed with 'WEBAPP_SECRET_KEY is not set' next
    to `make run`; with the file make run writes it reaches the running console's database."""
    for name in ("WEBAPP_SECRET_KEY", "MONGODB_URI", "WEBAPP_CREATE_DEV_USER", "FLASK_APP"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FLASK_RUN_FROM_CLI", "false")  # restored after: flask's CLI sets it
    monkeypatch.chdir(tmp_path)
    running = _settings(mongodb_uri="mongodb://127.0.0.1:37017", mongodb_database="fraud_x")
    write_env_file(tmp_path / DEV_ENV_FILE, webapp_env(running, "k" * 64))
    text = (tmp_path / DEV_ENV_FILE).read_text()
    assert "WEBAPP_CREATE_DEV_USER" not in text  # a CLI call must not reset dev's password
    assert (tmp_path / DEV_ENV_FILE).stat().st_mode & 0o077 == 0

    created: list[tuple[str, str, str]] = []

    def create_token(store: AccessStore, user: str, name: str) -> tuple[str, str]:
        settings = services().settings  # the app the command runs in
        created.append((user, settings.mongodb_uri, settings.mongodb_database))
        return "tid", "the-token"

    monkeypatch.setattr(AccessStore, "create_token", create_token)
    monkeypatch.setattr(Services, "ensure_indexes", lambda self: None)
    result = CliRunner().invoke(flask_cli, ["--app", "webapp", "create-token", "dev"])
    assert result.exit_code == 0, result.output
    assert "token:    the-token" in result.output
    assert created == [("dev", "mongodb://127.0.0.1:37017", "fraud_x")]
