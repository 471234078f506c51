"""The console's HTTP side: one blueprint per area, registered by ``create_app`` after
:func:`register_request_hooks`.

- ``auth``: sign-in and sign-out, and the sign-in wall every request passes.
- ``console``: the analyst's pages: live queue, filters, alert detail, the disposition form,
  the dashboard.
- ``api``: the JSON API under ``/api`` (bearer tokens or the session).
- ``model_health``: the ``/model`` page, the drift banner, the model answers of the API and the
  ``fraudwatch_model_*`` gauges.
- ``ops``: ``/healthz``, ``/metrics``, access logs, security headers and error pages.

Views build no clients: they read and write through the stores of ``webapp.data``, reached
with :func:`webapp.services.services`.
"""

from __future__ import annotations

from flask import Flask


def register_request_hooks(app: Flask) -> None:
    """Install what runs around every view, in this order: the request timer, read pinning
    after the user's own write, the sign-in wall, then the CSRF check (so anonymous requests
    are sent to ``/login``); the access log and security headers after it."""
    from flask_wtf.csrf import CSRFProtect

    from webapp.views import api, auth, console, ops

    app.before_request(ops.start_timer)
    app.before_request(console.pin_reads_after_own_write)
    app.before_request(auth.require_login)
    csrf = CSRFProtect(app)
    csrf.exempt(api.bp)  # the API checks CSRF itself, only for session-authenticated calls
    app.after_request(ops.finish_request)
