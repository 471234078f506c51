"""fraudwatch analyst console: a Flask application factory.

Development: ``flask --app webapp run``; production: ``gunicorn "webapp:create_app()"``.
Nothing here touches the network or the environment at import time: ``create_app`` reads the
settings and builds one lazily connecting ``MongoClient`` and one lazily connecting Kafka
label producer per process.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from flask import Flask

__all__ = ["create_app"]


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Build the console.

    Args:
        test_config: Flask config overrides for tests. ``SETTINGS`` may hold a ready
            :class:`webapp.settings.WebappSettings`, ``CLOCK`` a ``() -> datetime``,
            ``READ_CACHE_CLOCK`` a ``() -> float`` (seconds) for the read cache's TTL.

    Raises:
        webapp.settings.SettingsError: when the configuration cannot work (e.g. no
            ``WEBAPP_SECRET_KEY`` in production), with the variable to set.
    """
    from flask_wtf.csrf import CSRFProtect
    from werkzeug.middleware.proxy_fix import ProxyFix

    from fraudwatch.cards import CardTokenizer
    from fraudwatch.clients import mongo_client
    from webapp.cli import register_commands, seed_dev_user
    from webapp.data.label_outbox import LabelOutbox, LabelPublisher
    from webapp.data.label_producer import LabelProducer
    from webapp.data.model_registry import ModelRegistry
    from webapp.data.read_cache import ReadCache
    from webapp.data.store import AlertStore
    from webapp.data.users import AccessStore
    from webapp.services import EXTENSION_KEY, Services, utc_now
    from webapp.settings import WebappSettings
    from webapp.templating import register_template_helpers
    from webapp.views import api, auth, console, model_health, ops
    from webapp.web_metrics import WebMetrics

    overrides = dict(test_config or {})
    settings = overrides.pop("SETTINGS", None) or WebappSettings()
    testing = bool(overrides.get("TESTING"))
    development = settings.webapp_create_dev_user or testing
    secret = settings.secret_key(development=development) or secrets.token_hex(32)
    secure_cookies = (
        settings.webapp_cookie_secure
        if settings.webapp_cookie_secure is not None
        else not development
    )

    app = Flask(__name__)
    app.config.from_mapping(
        SECRET_KEY=secret,
        SESSION_COOKIE_NAME="fraudwatch_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=secure_cookies,
        PERMANENT_SESSION_LIFETIME=timedelta(hours=settings.webapp_session_hours),
        # CSRF tokens live as long as the session they are bound to.
        WTF_CSRF_TIME_LIMIT=settings.webapp_session_hours * 3600,
        WTF_CSRF_SSL_STRICT=secure_cookies,
        MAX_CONTENT_LENGTH=64 * 1024,
        MAX_FORM_MEMORY_SIZE=64 * 1024,
        PASSWORD_HASH_METHOD="scrypt",  # noqa: S106 - an algorithm name, not a password
    )
    app.json.sort_keys = False  # type: ignore[attr-defined]
    clock = overrides.pop("CLOCK", None) or utc_now
    cache_clock = overrides.pop("READ_CACHE_CLOCK", None) or time.time
    app.config.update(overrides)
    if settings.webapp_proxy_count:
        n = settings.webapp_proxy_count
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)  # type: ignore[method-assign]

    ops.configure_logging(settings.webapp_log_level)
    client = mongo_client(
        settings,
        connect=False,  # no I/O until the first request (safe with gunicorn --preload)
        tz_aware=True,
        appname="fraudwatch-webapp",
    )
    db = client[settings.mongodb_database]
    key = settings.fraud_token_key.get_secret_value() if settings.fraud_token_key else None
    metrics = WebMetrics(settings.prometheus_multiproc_dir)
    read_cache = ReadCache(
        settings.webapp_read_cache_s,
        settings.webapp_read_cache_entries,
        max_loads=settings.webapp_read_concurrency,
        clock=cache_clock,
        observer=metrics.read_cache_lookup,
    )
    labels = None
    if settings.webapp_publish_labels:
        labels = LabelPublisher(
            LabelOutbox(db),
            LabelProducer(settings, settings.labels_topic, settings.webapp_label_timeout_s),
            observer=metrics.label_delivery,
        )
    app.extensions[EXTENSION_KEY] = Services(
        settings=settings,
        client=client,
        alerts=AlertStore(
            db,
            queue_window=timedelta(hours=settings.webapp_queue_window_hours),
            read_cache=read_cache,
            time_limit_ms=settings.webapp_query_time_limit_ms,
        ),
        access=AccessStore(
            db,
            config_users=settings.webapp_users,
            lockout_threshold=settings.webapp_lockout_threshold,
            lockout=timedelta(minutes=settings.webapp_lockout_minutes),
            rate_limit=settings.webapp_login_rate_limit,
            rate_window=timedelta(seconds=settings.webapp_login_rate_window_seconds),
            hash_method=str(app.config["PASSWORD_HASH_METHOD"]),
        ),
        tokenizer=CardTokenizer(key),
        metrics=metrics,
        # A cache of its own: these reads must not queue behind the alert scans' bulkhead.
        models=ModelRegistry(
            db,
            read_cache=ReadCache(
                settings.webapp_model_cache_s,
                16,
                clock=cache_clock,
                observer=metrics.read_cache_lookup,
            ),
        ),
        clock=clock,
        labels=labels,
    )

    app.before_request(ops.start_timer)
    app.before_request(console.pin_reads_after_own_write)
    # The sign-in wall runs before the CSRF check, so anonymous requests are sent to /login.
    app.before_request(auth.require_login)
    csrf = CSRFProtect(app)
    csrf.exempt(api.bp)  # the API checks CSRF itself, only for session-authenticated calls
    app.after_request(ops.finish_request)
    app.register_blueprint(auth.bp)
    app.register_blueprint(console.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(ops.bp)
    app.register_blueprint(model_health.bp)
    ops.register_error_handlers(app)
    register_template_helpers(app)
    register_commands(app)

    if settings.webapp_create_dev_user and not testing:
        seed_dev_user(app)
    return app
