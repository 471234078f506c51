"""Login, logout and the access rules every request passes through.

Everything needs a signed-in user except the allowlist (``PUBLIC_ENDPOINTS``); the JSON API
also accepts ``Authorization: Bearer`` tokens (see ``webapp.views.api``). Roles: ``viewer`` reads,
``analyst`` also changes alert statuses.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import ParamSpec, TypeVar

from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from werkzeug.wrappers import Response as BaseResponse

from webapp.data.users import User
from webapp.services import services

bp = Blueprint("auth", __name__)

PUBLIC_ENDPOINTS = frozenset({"auth.login", "ops.healthz", "ops.metrics", "static"})
SESSION_USER = "user"

P = ParamSpec("P")
R = TypeVar("R")


def current_user() -> User | None:
    user = g.get("user")
    return user if isinstance(user, User) else None


def load_session_user() -> User | None:
    """The user named in the session cookie, if it still exists (role read fresh)."""
    name = session.get(SESSION_USER)
    if not isinstance(name, str):
        return None
    return services().access.get_user(name)


def require_login() -> BaseResponse | None:
    """``before_request``: sign-in wall for every page outside the allowlist and the API."""
    if request.endpoint in PUBLIC_ENDPOINTS or request.blueprint == "api":
        return None
    user = load_session_user()
    if user is None:
        session.clear()
        target = url_for("auth.login", next=_safe_next(request.full_path))
        if request.headers.get("HX-Request"):
            # htmx would swap the login page into the queue; make the browser navigate.
            response = Response("sign in again", status=401)
            response.headers["HX-Redirect"] = target
            return response
        return redirect(target)
    g.user = user
    return None


def analyst_required(view: Callable[P, R]) -> Callable[P, R]:
    """Only analysts may change alerts; viewers get 403."""

    @wraps(view)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        user = current_user()
        if user is None or not user.can_disposition:
            abort(403, description="Only analysts can change an alert's status.")
        return view(*args, **kwargs)

    return wrapper


def _safe_next(target: str | None) -> str:
    """A same-site path to return to after login; anything else goes to the queue.

    Control characters are refused too: browsers drop tabs and line breaks from a URL, so
    ``/<TAB>/evil.example`` would become the off-site ``//evil.example``.
    """
    if (
        not target
        or not target.startswith("/")
        or target.startswith("//")
        or "\\" in target
        or any(ord(c) < 0x20 or ord(c) == 0x7F for c in target)
    ):
        return "/"
    if target.endswith("?"):
        target = target[:-1]
    return target if len(target) <= 2000 else "/"


def _client_ip() -> str:
    return (request.remote_addr or "unknown")[:64]


@bp.route("/login", methods=["GET", "POST"])
def login() -> BaseResponse | str | tuple[str, int] | tuple[str, int, dict[str, str]]:
    svc = services()
    next_url = _safe_next(request.values.get("next"))
    if request.method == "GET":
        if load_session_user() is not None:
            return redirect(next_url)
        return render_template("login.html", next_url=next_url)
    svc.ensure_indexes()
    now = svc.now()
    if not svc.access.allow_attempt(_client_ip(), now):
        svc.metrics.logins.labels("rate_limited").inc()
        retry = svc.access.retry_after_seconds(now)
        message = f"Too many sign-in attempts from your address. Try again in {retry} seconds."
        return (
            render_template("login.html", next_url=next_url, error=message),
            429,
            {"Retry-After": str(retry)},
        )
    username = request.form.get("username", "")[:200]
    password = request.form.get("password", "")
    decision = svc.access.authenticate(username.strip(), password, now)
    if decision.user is None:
        if decision.locked_until is not None:
            svc.metrics.logins.labels("locked").inc()
            minutes = max(1, int((decision.locked_until - now).total_seconds() // 60) + 1)
            error = (
                "Too many failed sign-ins: this account is locked for "
                f"{minutes} more minute{'s' if minutes != 1 else ''}."
            )
        else:
            svc.metrics.logins.labels("failed").inc()
            error = "Wrong user name or password."
        return render_template("login.html", next_url=next_url, error=error), 401
    svc.metrics.logins.labels("ok").inc()
    session.clear()
    session.permanent = True
    session[SESSION_USER] = decision.user.name
    return redirect(next_url)


@bp.post("/logout")
def logout() -> BaseResponse:
    session.clear()
    flash("You are signed out.", "info")
    return redirect(url_for("auth.login"))
