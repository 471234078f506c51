"""The web app's settings: the shared MongoDB, Kafka and token settings plus the console's
own knobs.

Built once in ``create_app`` and passed down; nothing else in the package reads the environment.
Variable names are the upper-case field names (``WEBAPP_SECRET_KEY``, ``MONGODB_URI``, ...).
:func:`flask_config` turns them into the application's Flask configuration.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, StringConstraints
from pydantic_settings import SettingsConfigDict

from dataflows.detection.ruleset import DEFAULT_RULES_FILE
from fraudwatch.settings import KafkaSettings, MongoSettings, TokenSettings

Role = Literal["viewer", "analyst"]
ROLES: tuple[Role, ...] = ("viewer", "analyst")
USERNAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$"

Username = Annotated[str, StringConstraints(pattern=USERNAME_PATTERN)]

# While `make run` runs, the console's settings of that run (its MongoDB, Kafka and session
# key): read after `.env`, so `flask --app webapp create-token ...` in the checkout reaches
# the running console's database without exporting anything. Removed when `make run` stops.
DEV_ENV_FILE = Path(".stack") / "run" / "webapp.env"


class ConfigUser(BaseModel):
    """A user defined in ``WEBAPP_USERS`` (read-only in the console; the hash comes from
    ``flask --app webapp hash-password``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Username
    role: Role
    password_hash: Annotated[str, StringConstraints(min_length=20, max_length=512)]


class SettingsError(RuntimeError):
    """The configuration cannot work; the message says which variable to set and how."""


class WebappSettings(MongoSettings, TokenSettings, KafkaSettings):
    """Everything the analyst console needs (see ``docs/webapp.md`` for the table)."""

    model_config = SettingsConfigDict(env_file=(".env", DEV_ENV_FILE), extra="ignore", frozen=True)

    # Signs session cookies. Required unless WEBAPP_CREATE_DEV_USER=1 (local development) or
    # testing; every gunicorn worker must share it.
    webapp_secret_key: SecretStr | None = None
    # Users defined in configuration: a JSON list of {"name", "role", "password_hash"}.
    webapp_users: list[ConfigUser] = Field(default_factory=list)
    # `make run` sets this: ensure a user `dev` (analyst) with a fresh random password and print it.
    webapp_create_dev_user: bool = False
    # The dev user's password instead of a random one (`make run` picks it, to print it in its
    # ready block); only with WEBAPP_CREATE_DEV_USER=1.
    webapp_dev_password: SecretStr | None = None
    # Secure flag on the session cookie; unset = on, except in development and tests.
    webapp_cookie_secure: bool | None = None
    webapp_session_hours: int = Field(default=12, gt=0, le=24 * 30)
    # Brute-force protection, kept in MongoDB so every worker sees the same counts.
    webapp_lockout_threshold: int = Field(default=10, gt=0)
    webapp_lockout_minutes: int = Field(default=30, gt=0)
    webapp_login_rate_limit: int = Field(default=30, gt=0)
    webapp_login_rate_window_seconds: int = Field(default=600, gt=0)
    # The queue shows this many hours back unless the analyst picks a time range.
    webapp_queue_window_hours: int = Field(default=168, gt=0, le=24 * 366)
    webapp_page_size: int = Field(default=50, gt=0, le=500)
    # Cases per page of the case queue: a case row carries more (alerts, amount, merchants,
    # rules) and costs one read of its alerts (docs/webapp.md, "Cases").
    webapp_case_page_size: int = Field(default=25, gt=0, le=200)
    # Server-side time limit (maxTimeMS) on every console read: a view that would take longer
    # is stopped by the database and the analyst gets a message instead of a hang.
    webapp_query_time_limit_ms: int = Field(default=3000, gt=0, le=60_000)
    webapp_poll_seconds: int = Field(default=3, gt=0, le=60)
    # Seconds an expensive read view (queue page, status counts, card history, dashboard) is
    # served from this process's memory; 0 = always read the database. See docs/webapp.md.
    webapp_read_cache_s: float = Field(default=5.0, ge=0, le=60)
    webapp_read_cache_entries: int = Field(default=256, gt=0, le=100_000)
    # Expensive reads one worker runs at the same time (others queue for their turn).
    webapp_read_concurrency: int = Field(default=1, gt=0, le=64)
    # How far back the dashboard's analyst-outcome (precision) panel looks.
    webapp_outcome_days: int = Field(default=30, gt=0, le=366)
    # Seconds the model registry and model health (page, API, drift banner, metrics) are served
    # from this process's memory: the trainer writes a few times a day. 0 = always read.
    webapp_model_cache_s: float = Field(default=60.0, ge=0, le=3600)
    # Shown while the formula scores: days of labelled history before the trainer's first
    # model (its training window of 14 days whose labels are final + the 7-day label delay).
    webapp_model_first_after_days: int = Field(default=21, gt=0, le=366)
    # Number of reverse proxies in front of the app whose X-Forwarded-For/-Proto to trust.
    webapp_proxy_count: int = Field(default=0, ge=0, le=5)
    # Set by the process manager for gunicorn with several workers (prometheus-client's name).
    prometheus_multiproc_dir: str | None = None
    webapp_log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # Publish analysts' verdicts (confirmed fraud / false positive) as fraud labels to
    # LABELS_TOPIC, with the shared KAFKA_* connection settings. See docs/webapp.md.
    webapp_publish_labels: bool = True
    # How long a disposition waits for the broker to acknowledge its label (acks=all) before
    # the label is left in the outbox for a later retry; bounds the answer time when Kafka is
    # down.
    webapp_label_timeout_s: float = Field(default=5.0, gt=0, le=60)
    # The dataflow's rule set (same variable): the detail page marks travel faster than the
    # impossible-travel rule's limit, so it must read the limit the detector applies.
    fraud_rules_file: Path = DEFAULT_RULES_FILE

    def secret_key(self, *, development: bool) -> str | None:
        """The session signing key, or ``None`` when development may use a random one.

        Raises:
            SettingsError: outside development when ``WEBAPP_SECRET_KEY`` is missing or short.
        """
        if self.webapp_secret_key is not None:
            value = self.webapp_secret_key.get_secret_value()
            if len(value) >= 32:
                return value
            raise SettingsError(
                "WEBAPP_SECRET_KEY is too short: use at least 32 random characters, e.g. "
                "`python -c 'import secrets; print(secrets.token_hex(32))'`"
            )
        if development:
            return None
        raise SettingsError(
            "WEBAPP_SECRET_KEY is not set: the console signs session cookies with it and every "
            "gunicorn worker must share it. Set it to a long random secret, e.g. "
            "`export WEBAPP_SECRET_KEY=$(python -c 'import secrets; print(secrets.token_hex(32))')`"
            "; for local development use `make run` (WEBAPP_CREATE_DEV_USER=1)."
        )


def flask_config(settings: WebappSettings, *, testing: bool) -> dict[str, Any]:
    """The Flask configuration of the console: session cookie, CSRF and request-size limits.

    Development (``WEBAPP_CREATE_DEV_USER=1``) and tests may run without
    ``WEBAPP_SECRET_KEY`` (a random key per process) and without secure cookies.

    Raises:
        SettingsError: outside development when ``WEBAPP_SECRET_KEY`` is missing or short.
    """
    development = settings.webapp_create_dev_user or testing
    secret = settings.secret_key(development=development) or secrets.token_hex(32)
    secure_cookies = (
        settings.webapp_cookie_secure
        if settings.webapp_cookie_secure is not None
        else not development
    )
    return {
        "SECRET_KEY": secret,
        "SESSION_COOKIE_NAME": "fraudwatch_session",
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": secure_cookies,
        "PERMANENT_SESSION_LIFETIME": timedelta(hours=settings.webapp_session_hours),
        # CSRF tokens live as long as the session they are bound to.
        "WTF_CSRF_TIME_LIMIT": settings.webapp_session_hours * 3600,
        "WTF_CSRF_SSL_STRICT": secure_cookies,
        "MAX_CONTENT_LENGTH": 64 * 1024,
        "MAX_FORM_MEMORY_SIZE": 64 * 1024,
        "PASSWORD_HASH_METHOD": "scrypt",
    }
