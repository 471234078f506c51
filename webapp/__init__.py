"""fraudwatch analyst console: a Flask application factory.

Development: ``flask --app webapp run``; production: ``gunicorn "webapp:create_app()"``.
Nothing here touches the network or the environment at import time: ``create_app`` reads the
settings and :func:`webapp.services.init_app` builds one lazily connecting ``MongoClient`` and
one lazily connecting Kafka label producer per process.

Layout: ``views/`` holds the blueprints, ``data/`` everything that talks to MongoDB or Kafka;
``services`` builds the clients and stores once per application; beside them ``settings``,
``queries`` (request parameters -> validated filters), ``dispositions`` (an analyst's status
change), ``dashboard_stats``, ``location_plot``, ``web_metrics``, ``templating``, ``cli`` and
``dev_server`` (one log line per request under ``flask run``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
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
    from werkzeug.middleware.proxy_fix import ProxyFix

    from webapp import cli, dev_server, services
    from webapp.settings import WebappSettings, flask_config
    from webapp.templating import register_template_helpers
    from webapp.views import api, auth, console, model_health, ops, register_request_hooks

    overrides = dict(test_config or {})
    settings = overrides.pop("SETTINGS", None) or WebappSettings()
    clock = overrides.pop("CLOCK", None) or services.utc_now
    cache_clock = overrides.pop("READ_CACHE_CLOCK", None) or time.time
    testing = bool(overrides.get("TESTING"))

    app = Flask(__name__)
    app.config.from_mapping(flask_config(settings, testing=testing))
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.config.update(overrides)
    if n := settings.webapp_proxy_count:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)  # type: ignore[method-assign]
    ops.configure_logging(settings.webapp_log_level)
    dev_server.log_requests_once()

    services.init_app(app, settings, clock=clock, cache_clock=cache_clock)

    register_request_hooks(app)
    app.register_blueprint(auth.bp)
    app.register_blueprint(console.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(ops.bp)
    app.register_blueprint(model_health.bp)
    ops.register_error_handlers(app)
    register_template_helpers(app)
    cli.register_commands(app)

    if settings.webapp_create_dev_user and not testing:
        cli.seed_dev_user(app)
    return app
