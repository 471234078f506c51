"""The console's HTTP side: one blueprint per area, registered by ``create_app``.

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
