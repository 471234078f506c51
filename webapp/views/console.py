"""The analyst console's pages: the live case queue and a case's page with its decisions,
the alert list, an alert's detail and dispositions, and the dashboard. Every page requires a
signed-in user (``webapp.views.auth.require_login``)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from werkzeug.wrappers import Response as BaseResponse

from fraudwatch.alert_store import AlertView
from fraudwatch.cards import contains_pan
from fraudwatch.contract import epoch_ms
from fraudwatch.geo import haversine_km
from fraudwatch.vocabulary import TRANSITIONS
from webapp.dashboard_stats import build_stats, minute_floor
from webapp.data.cases import Case, CasePage
from webapp.data.read_cache import set_reads_not_before
from webapp.data.store import (
    MAX_COMMENT_CHARS,
    AlertNotFound,
    AlertPage,
    DispositionConflict,
    TransitionNotAllowed,
)
from webapp.dispositions import CaseChanged, decide_case, record_disposition
from webapp.location_plot import TravelLimit, location_panel
from webapp.queries import (
    LIST_PARAMS,
    AlertQuery,
    InvalidParameter,
    check_sig,
    check_status,
    is_alert_id,
    parse_alert_query,
    parse_epoch_ms,
    parse_whole_number,
    single_values,
)
from webapp.services import Services, services
from webapp.views.auth import SESSION_USER, analyst_required, current_user

bp = Blueprint("console", __name__)

# Session key: when (read-cache clock) this browser's user last changed an alert.
OWN_WRITE_AT = "own_write_at"
POLL_PARAMS = (*[p for p in LIST_PARAMS if p not in ("before", "after")], "sig", "seen")
CASE_LIST_PARAMS = tuple(p for p in LIST_PARAMS if p != "after")  # cases page downwards only
FILTER_FORM_FIELDS = ("status", "severity", "rule", "card", "merchant", "from", "to", "view")
# The two lists: cases (the analysts' queue, the home page) and single alerts.
VIEWS = {
    "cases": ("console.cases", "console.cases_live"),
    "alerts": ("console.queue", "console.queue_live"),
}


def remember_own_write(svc: Services) -> None:
    """After the user's own status change: their following reads, on whichever gunicorn
    worker they land, skip cached answers read before this moment (read-your-writes; this
    process's cache is already cleared by ``AlertStore.change_status``). Bearer-token API
    calls have no session and get no cookie: each of their reads is a request of its own."""
    if SESSION_USER in session:
        session[OWN_WRITE_AT] = svc.alerts.read_cache.clock()


def count_own_change(svc: Services, to: str, outcome: str) -> None:
    """After an analyst's status change (``outcome`` "ok" or "conflict"): read-your-writes for
    this browser (``remember_own_write``) and the dispositions counter."""
    remember_own_write(svc)
    svc.metrics.dispositions.labels(to, outcome).inc()


def pin_reads_after_own_write() -> None:
    """``before_request``: apply :func:`remember_own_write`'s moment while it matters (for one
    cache TTL; later every cached answer is newer anyway)."""
    cache = services().alerts.read_cache
    moment = None
    # Only look into a session that exists (reading it adds "Vary: Cookie"), never for files.
    has_session = current_app.config["SESSION_COOKIE_NAME"] in request.cookies
    if cache.enabled and has_session and request.endpoint != "static":
        moment = session.get(OWN_WRITE_AT)
    fresh = isinstance(moment, float) and cache.clock() - moment < cache.ttl_s
    set_reads_not_before(moment if fresh else None)


def _query_from_args(svc: Services, allowed: tuple[str, ...]) -> tuple[AlertQuery, dict[str, str]]:
    values = single_values(request.args.to_dict(flat=False), allowed)
    query_values = {k: v for k, v in values.items() if k in LIST_PARAMS}
    return parse_alert_query(query_values, svc.tokenizer), values


def _page_alerts(page: AlertPage | CasePage) -> list[AlertView]:
    if isinstance(page, CasePage):
        return [a for c in page.cases for a in c.alerts]
    return page.alerts


def _newest_detected_ms(page: AlertPage | CasePage) -> int:
    rows = _page_alerts(page)
    stamps = [epoch_ms(a.detected_at) for a in rows if a.detected_at is not None]
    return max(stamps, default=0)


def _queue_context(
    svc: Services, query: AlertQuery, page: AlertPage | CasePage, seen: int
) -> dict[str, Any]:
    now = svc.now()
    start, end = query.time_bounds(now, svc.alerts.queue_window)
    view = "cases" if isinstance(page, CasePage) else "alerts"
    rows = len(page.cases) if isinstance(page, CasePage) else len(page.alerts)
    return {
        "view": view,
        "list_endpoint": VIEWS[view][0],
        "live_endpoint": VIEWS[view][1],
        "row_count": rows,
        "row_noun": "case" if view == "cases" else "alert",
        "query": query,
        "page": page,
        "counts": svc.alerts.status_counts(query, now),
        "seen_ms": seen,
        "sig": page.signature(),
        "newest_ms": max(seen, _newest_detected_ms(page)),
        "window_start": start,
        "window_end": min(end, now),
        "poll_seconds": svc.settings.webapp_poll_seconds,
        "cache_seconds": svc.settings.webapp_read_cache_s,
    }


@bp.get("/")
def cases() -> BaseResponse | str:
    """The case queue: one row per case, newest day first, best score first within the day."""
    svc = services()
    svc.ensure_indexes()
    query, values = _query_from_args(svc, CASE_LIST_PARAMS)
    if query.card is not None and values.get("card") != query.card.value:
        position: dict[str, Any] = {"before": query.before.encode()} if query.before else {}
        position.update(query.params())
        return redirect(url_for("console.cases", **position), 303)
    page = svc.cases.page(query, svc.settings.webapp_case_page_size, svc.now())
    context = _queue_context(svc, query, page, seen=_newest_detected_ms(page))
    return render_template("queue.html", **context)


@bp.get("/cases/live")
def cases_live() -> BaseResponse | str:
    """htmx poll of the case queue's first page (see ``queue_live``)."""
    svc = services()
    query, values = _query_from_args(svc, POLL_PARAMS)
    sig = check_sig(values["sig"]) if "sig" in values else ""
    seen = parse_epoch_ms("seen", values.get("seen", "0"))
    page = svc.cases.page(query, svc.settings.webapp_case_page_size, svc.now())
    if page.signature() == sig:
        return Response(status=204)
    context = _queue_context(svc, query, page, seen=seen)
    return render_template("queue_live.html", oob=True, **context)


@bp.get("/alerts")
def queue() -> BaseResponse | str:
    """Single alerts, in queue order (the case queue groups them)."""
    svc = services()
    svc.ensure_indexes()
    query, values = _query_from_args(svc, LIST_PARAMS)
    if query.card is not None and values.get("card") != query.card.value:
        # A full card number was typed into the URL: continue with its token so the number
        # does not stay in the address bar, the history or any proxy's log.
        position: dict[str, Any] = {}
        if query.before:
            position["before"] = query.before.encode()
        if query.after:
            position["after"] = query.after.encode()
        position.update(query.params())
        return redirect(url_for("console.queue", **position), 303)
    page = svc.alerts.page(query, svc.settings.webapp_page_size, svc.now())
    context = _queue_context(svc, query, page, seen=_newest_detected_ms(page))
    return render_template("queue.html", **context)


@bp.get("/queue/live")
def queue_live() -> BaseResponse | str:
    """htmx poll from the first page: 204 when nothing changed, else the new table, counts
    and poller (out-of-band swaps), with rows detected since the last render highlighted."""
    svc = services()
    query, values = _query_from_args(svc, POLL_PARAMS)
    sig = check_sig(values["sig"]) if "sig" in values else ""
    seen = parse_epoch_ms("seen", values.get("seen", "0"))
    page = svc.alerts.page(query, svc.settings.webapp_page_size, svc.now())
    if page.signature() == sig:
        return Response(status=204)
    context = _queue_context(svc, query, page, seen=seen)
    return render_template("queue_live.html", oob=True, **context)


@bp.post("/filter")
def apply_filters() -> BaseResponse:
    """The filter form posts here (so a typed card number never appears in a URL) and is
    redirected to the queue with the card replaced by its token."""
    svc = services()
    form = request.form.to_dict(flat=False)
    form.pop("csrf_token", None)  # checked by CSRFProtect before this view runs
    values = single_values(form, FILTER_FORM_FIELDS)
    view = values.pop("view", "cases")
    if view not in VIEWS:
        raise InvalidParameter("view", "must be cases or alerts")
    query = parse_alert_query(values, svc.tokenizer)
    params: dict[str, Any] = query.params()
    return redirect(url_for(VIEWS[view][0], **params), 303)


def _travel_limit(svc: Services) -> TravelLimit:
    rule = svc.ruleset.rules.impossible_travel
    return TravelLimit(rule.max_speed_kmh, rule.min_distance_km)


def _detail_context(svc: Services, alert: AlertView) -> dict[str, Any]:
    history = svc.alerts.card_history(alert.card_token, limit=50)
    evidence = []
    for t in sorted(alert.evidence_txns, key=lambda t: t.timestamp or alert.timestamp):
        km = None
        if (
            t.latitude is not None
            and t.longitude is not None
            and alert.latitude is not None
            and alert.longitude is not None
        ):
            km = haversine_km(t.latitude, t.longitude, alert.latitude, alert.longitude)
        evidence.append((t, km))
    return {
        "alert": alert,
        "evidence": evidence,
        "history": history,
        "dispositions": svc.alerts.dispositions(alert.alert_id),
        "locations": location_panel(alert, _travel_limit(svc)),
        "now": svc.now(),
    }


def _load_alert(svc: Services, alert_id: str) -> AlertView:
    if not is_alert_id(alert_id):
        abort(404, description="There is no alert with this id.")
    alert = svc.alerts.get(alert_id)
    if alert is None:
        abort(404, description="There is no alert with this id.")
    return alert


@bp.get("/alerts/<alert_id>")
def alert_detail(alert_id: str) -> str:
    svc = services()
    svc.ensure_indexes()
    alert = _load_alert(svc, alert_id)
    return render_template("detail.html", **_detail_context(svc, alert))


def validate_comment(comment: str) -> str:
    """A disposition comment: plain text, bounded, and never a card number."""
    comment = comment.strip()
    if len(comment) > MAX_COMMENT_CHARS:
        raise InvalidParameter("comment", f"must be at most {MAX_COMMENT_CHARS} characters")
    if contains_pan(comment):
        raise InvalidParameter(
            "comment",
            "looks like it contains a card number: refer to the card by its masked form "
            "(first 6 + last 4) instead",
        )
    return comment


@bp.post("/alerts/<alert_id>/disposition")
@analyst_required
def disposition(alert_id: str) -> BaseResponse | tuple[str, int]:
    svc = services()
    values = single_values(
        request.form.to_dict(flat=False),
        ("seen", "to", "comment", "version", "csrf_token"),
        max_chars=MAX_COMMENT_CHARS * 2,
    )
    seen = check_status("seen", values.get("seen", ""))
    to = check_status("to", values.get("to", ""))
    comment = validate_comment(values.get("comment", ""))
    version = parse_whole_number("version", values["version"]) if "version" in values else None
    alert = _load_alert(svc, alert_id)
    user = current_user()
    if user is None:
        abort(403)
    try:
        done = record_disposition(
            svc,
            alert.alert_id,
            seen=seen,
            to=to,
            user=user.name,
            comment=comment,
            seen_version=version,
            alert=alert,
        )
    except DispositionConflict as exc:
        count_own_change(svc, to, "conflict")
        fresh = svc.alerts.get(alert.alert_id) or alert
        context = _detail_context(svc, fresh)
        return render_template("detail.html", conflict=str(exc), **context), 409
    except TransitionNotAllowed as exc:
        raise InvalidParameter("to", str(exc)) from None
    except AlertNotFound:
        abort(404, description="There is no alert with this id.")
    count_own_change(svc, to, "ok")
    # A label that could not be sent is news the analyst should see, not a success banner.
    flash(done.message, "warning" if done.label and done.label.delivery != "sent" else "success")
    return redirect(url_for("console.alert_detail", alert_id=alert.alert_id), 303)


def stats_payload(svc: Services, window_minutes: int) -> dict[str, Any]:
    """What the dashboard and ``/api/stats`` show for the last ``window_minutes``."""
    now = svc.now()
    until = minute_floor(now) + timedelta(minutes=1)
    since = until - timedelta(minutes=window_minutes)
    # Whole days: the verdicts are counted per day of the alerts (AlertStore.outcomes).
    outcome_since = (now - timedelta(days=svc.settings.webapp_outcome_days)).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    return build_stats(
        svc.alerts.minute_stats(since, until),
        svc.alerts.outcomes(outcome_since),
        since=since,
        until=until,
        outcome_since=outcome_since,
    )


@bp.get("/dashboard")
def dashboard() -> str:
    svc = services()
    svc.ensure_indexes()
    single_values(request.args.to_dict(flat=False), ())
    stats = stats_payload(svc, 60)
    return render_template("dashboard.html", stats=stats)


@bp.app_context_processor
def labels() -> dict[str, Any]:
    return {"current_user": current_user()}


# --- cases -----------------------------------------------------------------------------------


def _load_case(svc: Services, case_id: str) -> Case:
    if not is_alert_id(case_id):
        abort(404, description="There is no case with this id.")
    case = svc.cases.get(case_id)
    if case is None:
        abort(404, description="There is no case with this id.")
    return case


def _case_context(svc: Services, case: Case) -> dict[str, Any]:
    """The case page: its alerts and the evidence behind them as one timeline, oldest first,
    and the best alert's location panel."""
    events: dict[str, dict[str, Any]] = {}
    for a in case.alerts:
        for t in a.evidence_txns:
            if t.transaction_id and t.transaction_id not in events:
                events[t.transaction_id] = {"ts": t.timestamp or a.timestamp, "txn": t}
        events[a.transaction_id or a.alert_id] = {
            "ts": a.timestamp,
            "txn": events.get(a.transaction_id, {}).get("txn"),
            "alert": a,
        }
    timeline = sorted(events.values(), key=lambda e: e["ts"])
    best = case.best
    detail = _detail_context(svc, best)
    return {
        "case": case,
        "timeline": timeline,
        "best": best,
        "alert": best,  # the location panel shows the best alert's places
        "locations": detail["locations"],
        "dispositions": svc.cases.dispositions(case),
        "next_statuses": TRANSITIONS.get(case.status, ()),
        "now": svc.now(),
    }


@bp.get("/cases/<case_id>")
def case_detail(case_id: str) -> BaseResponse | str:
    svc = services()
    svc.ensure_indexes()
    single_values(request.args.to_dict(flat=False), ())
    case = _load_case(svc, case_id)
    if case.case_id != case_id:
        return redirect(url_for("console.case_detail", case_id=case.case_id), 303)
    return render_template("case.html", **_case_context(svc, case))


@bp.post("/cases/<case_id>/disposition")
@analyst_required
def case_disposition(case_id: str) -> BaseResponse | tuple[str, int]:
    """One decision for the whole case (the case as the analyst loaded it)."""
    svc = services()
    values = single_values(
        request.form.to_dict(flat=False),
        ("seen", "sig", "to", "comment", "csrf_token"),
        max_chars=MAX_COMMENT_CHARS * 2,
    )
    seen = check_status("seen", values.get("seen", ""))
    to = check_status("to", values.get("to", ""))
    sig = check_sig(values.get("sig", ""))
    comment = validate_comment(values.get("comment", ""))
    case = _load_case(svc, case_id)
    user = current_user()
    if user is None:
        abort(403)
    try:
        done = decide_case(
            svc, case, seen=seen, seen_signature=sig, to=to, user=user.name, comment=comment
        )
    except CaseChanged as exc:
        count_own_change(svc, to, "conflict")
        fresh = svc.cases.get(case.case_id) or case
        context = _case_context(svc, fresh)
        return render_template("case.html", conflict=str(exc), **context), 409
    except TransitionNotAllowed as exc:
        raise InvalidParameter("to", str(exc)) from None
    count_own_change(svc, to, "ok")
    flash(done.message, "success" if done.all_delivered else "warning")
    return redirect(url_for("console.case_detail", case_id=done.case_id), 303)
