"""Operations: ``/healthz``, ``/metrics``, structured access logs, security headers and error
pages (HTML for people, JSON under ``/api``)."""

from __future__ import annotations

import json
import logging
import secrets
import sys
import time
from typing import Any

from flask import Blueprint, Flask, Response, g, jsonify, render_template, request
from flask.typing import ResponseReturnValue
from flask_wtf.csrf import CSRFError
from pymongo.errors import ExecutionTimeout, PyMongoError
from werkzeug.exceptions import HTTPException

from fraudwatch.cards import PAN_PATTERN, luhn_valid
from webapp.queries import InvalidParameter
from webapp.services import services
from webapp.views.auth import current_user
from webapp.views.model_health import update_model_gauges

bp = Blueprint("ops", __name__)

ACCESS_LOGGER = "fraudwatch.webapp.access"
APP_LOGGER = "fraudwatch.webapp"

# No inline script or style anywhere: htmx, Chart.js and our own code are files under /static.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Permissions-Policy": "geolocation=(), camera=(), microphone=(), payment=()",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}

ERROR_TITLES = {
    400: "Bad request",
    401: "Sign-in required",
    403: "Not allowed",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Request too large",
    429: "Too many requests",
    500: "Something went wrong",
    503: "Service unavailable",
}


def mask_pans(text: str) -> str:
    """Replace probable card numbers (12-19 Luhn-valid digits) in free text with a mask."""

    def repl(match: Any) -> str:
        digits = str(match.group())
        return "#" * (len(digits) - 4) + digits[-4:] if luhn_valid(digits) else digits

    return PAN_PATTERN.sub(repl, text)


class RedactCardNumbers(logging.Filter):
    """Masks card numbers in log lines we do not format ourselves (werkzeug's request log
    prints the raw query string)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_pans(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            payload.update(extra)
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


def configure_logging(level: str) -> None:
    """JSON lines on stdout for the app and access loggers (once per process)."""
    JsonFormatter.converter = time.gmtime
    for name in (APP_LOGGER, ACCESS_LOGGER):
        logger = logging.getLogger(name)
        logger.setLevel(level)
        if not any(getattr(h, "_fraudwatch", False) for h in logger.handlers):
            handler = logging.StreamHandler(sys.stdout)
            handler.setFormatter(JsonFormatter())
            handler._fraudwatch = True  # type: ignore[attr-defined]
            logger.addHandler(handler)
            logger.propagate = False
    werkzeug_logger = logging.getLogger("werkzeug")
    if not any(isinstance(f, RedactCardNumbers) for f in werkzeug_logger.filters):
        werkzeug_logger.addFilter(RedactCardNumbers())


def _route() -> str:
    rule = request.url_rule
    return rule.rule if rule is not None else "unmatched"


def start_timer() -> None:
    g.started = time.perf_counter()
    incoming = request.headers.get("X-Request-ID", "")
    ok = 0 < len(incoming) <= 64 and incoming.replace("-", "").isalnum()
    g.request_id = incoming if ok else secrets.token_hex(8)


def finish_request(response: Response) -> Response:
    """Security headers, metrics and one structured access-log line per request."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if request.is_secure:
        response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
    if request.endpoint != "static":
        # Pages and API answers hold alert data: keep them out of shared and browser caches.
        response.headers.setdefault("Cache-Control", "no-store")
    response.headers["X-Request-ID"] = g.get("request_id", "")
    elapsed = time.perf_counter() - g.get("started", time.perf_counter())
    route = _route()
    try:
        metrics = services().metrics
        metrics.requests.labels(route, request.method, str(response.status_code)).inc()
        metrics.latency.labels(route).observe(elapsed)
    except KeyError:  # pragma: no cover - app without services (never in practice)
        pass
    user = current_user()
    logging.getLogger(ACCESS_LOGGER).info(
        "request",
        extra={
            "fields": {
                "request_id": g.get("request_id"),
                "method": request.method,
                "path": request.path,
                # Parameter names only: values can hold card numbers or tokens.
                "query_keys": sorted(request.args.keys()),
                "route": route,
                "status": response.status_code,
                "duration_ms": round(elapsed * 1000, 1),
                "user": user.name if user else None,
                "remote_addr": request.remote_addr,
                "bytes": response.calculate_content_length(),
            }
        },
    )
    return response


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    """200 when MongoDB answers a ping, 503 otherwise (no authentication, no data)."""
    try:
        services().alerts.ping()
    except PyMongoError as exc:
        logging.getLogger(APP_LOGGER).warning("healthz: MongoDB unreachable: %s", exc)
        return jsonify(status="unavailable", mongodb="unreachable"), 503
    return jsonify(status="ok", mongodb="ok")


@bp.get("/metrics")
def metrics() -> Response:
    svc = services()
    update_model_gauges(svc)
    body = svc.metrics.render()
    return Response(body, mimetype="text/plain; version=0.0.4; charset=utf-8")


def _wants_json() -> bool:
    return request.path.startswith("/api/") or request.path == "/healthz"


def _error_response(status: int, message: str, code: str | None = None) -> ResponseReturnValue:
    title = ERROR_TITLES.get(status, "Error")
    if _wants_json():
        return jsonify(error=code or title.lower().replace(" ", "_"), message=message), status
    if request.headers.get("HX-Request"):
        return Response(message, status=status, mimetype="text/plain")
    return render_template("error.html", status=status, title=title, message=message), status


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(InvalidParameter)
    def invalid_parameter(exc: InvalidParameter) -> ResponseReturnValue:
        return _error_response(400, f"{exc.name}: {exc.message}", "invalid_parameter")

    @app.errorhandler(CSRFError)
    def csrf_error(exc: CSRFError) -> ResponseReturnValue:
        return _error_response(
            400,
            "The form has expired or did not come from this site (CSRF check failed: "
            f"{exc.description}). Reload the page and try again.",
            "csrf_failed",
        )

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> ResponseReturnValue:
        status = exc.code or 500
        response = _error_response(status, exc.description or ERROR_TITLES.get(status, ""))
        if status == 405 and isinstance(response, tuple):
            allowed = exc.get_headers()
            return (*response, dict(allowed))
        return response

    @app.errorhandler(ExecutionTimeout)
    def query_timeout(exc: ExecutionTimeout) -> ResponseReturnValue:
        # maxTimeMS (WEBAPP_QUERY_TIME_LIMIT_MS) stopped the read on the server.
        logging.getLogger(APP_LOGGER).warning(
            "query time limit reached", extra={"fields": {"request_id": g.get("request_id")}}
        )
        return _error_response(
            503,
            "This view took too long on the alert database and was stopped. Choose a shorter "
            "time range or add a filter (card, merchant, status), then try again.",
            "query_timeout",
        )

    @app.errorhandler(PyMongoError)
    def database_error(exc: PyMongoError) -> ResponseReturnValue:
        logging.getLogger(APP_LOGGER).error(
            "MongoDB error", extra={"fields": {"request_id": g.get("request_id")}}, exc_info=exc
        )
        return _error_response(
            503,
            "The alert database is not reachable right now. Try again in a moment; if it "
            "persists, check /healthz and MongoDB.",
            "database_unavailable",
        )

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> ResponseReturnValue:
        logging.getLogger(APP_LOGGER).error(
            "unhandled error", extra={"fields": {"request_id": g.get("request_id")}}, exc_info=exc
        )
        return _error_response(
            500,
            f"Something went wrong on our side (request id {g.get('request_id', '-')}).",
            "internal_error",
        )
