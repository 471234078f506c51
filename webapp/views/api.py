"""The JSON API for tools (documented in ``docs/openapi.yaml``).

Authentication: ``Authorization: Bearer fwt_...`` (per-user tokens from
``flask --app webapp create-token``), or the browser session, in which case state-changing
calls need the ``X-CSRFToken`` header like any form. Errors are ``{"error", "message"}``.
"""

from __future__ import annotations

from typing import Annotated, Any, cast

from flask import Blueprint, abort, current_app, g, jsonify, request
from flask.typing import ResponseReturnValue
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from fraudwatch.alert_store import AlertView, DispositionView
from fraudwatch.contract import format_ts_or_none
from fraudwatch.vocabulary import STATUSES
from webapp.data.cases import Case
from webapp.data.store import (
    MAX_COMMENT_CHARS,
    AlertNotFound,
    DispositionConflict,
    TransitionNotAllowed,
)
from webapp.data.users import User
from webapp.dispositions import CaseChanged, decide_case, record_disposition
from webapp.queries import (
    LIST_PARAMS,
    AlertQuery,
    InvalidParameter,
    is_alert_id,
    parse_alert_query,
    parse_limit,
    single_values,
)
from webapp.services import services
from webapp.views.auth import current_user, load_session_user
from webapp.views.console import count_own_change, stats_payload, validate_comment
from webapp.views.model_health import model_health_answer, models_answer

bp = Blueprint("api", __name__, url_prefix="/api")

API_LIST_PARAMS = (*[p for p in LIST_PARAMS if p not in ("before", "after")], "cursor", "limit")
MAX_LIMIT = 200
MAX_CASE_LIMIT = 100
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

Status = Annotated[str, StringConstraints(pattern="^(" + "|".join(STATUSES) + ")$")]


class CaseDecisionRequest(BaseModel):
    """``POST /api/cases/<id>/disposition``: the case's status and signature as read."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    from_status: Status = Field(alias="from")
    signature: Annotated[str, StringConstraints(pattern="^[0-9a-f]{16}$")]
    to: Status
    comment: Annotated[str, StringConstraints(max_length=MAX_COMMENT_CHARS)] = ""

    @classmethod
    def parse(cls, body: Any) -> CaseDecisionRequest:
        return cast("CaseDecisionRequest", _parse_body(cls, body))


def _parse_body(model: type[BaseModel], body: Any) -> BaseModel:
    if not isinstance(body, dict):
        raise InvalidParameter("body", "must be a JSON object")
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        loc = ".".join(str(p) for p in first["loc"]) or "body"
        raise InvalidParameter(loc, first["msg"]) from None


class DispositionRequest(BaseModel):
    """``POST /api/alerts/<id>/disposition``: strict strings only; unknown keys are refused."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    from_status: Status = Field(alias="from")
    to: Status
    comment: Annotated[str, StringConstraints(max_length=MAX_COMMENT_CHARS)] = ""
    # The alert's status_version when the tool read it (optional, stricter than "from").
    version: Annotated[int, Field(ge=0, le=1_000_000)] | None = None

    @classmethod
    def parse(cls, body: Any) -> DispositionRequest:
        return cast("DispositionRequest", _parse_body(cls, body))


def _unauthorized(message: str) -> ResponseReturnValue:
    response = jsonify(error="unauthorized", message=message)
    response.status_code = 401
    response.headers["WWW-Authenticate"] = 'Bearer realm="fraudwatch"'
    return response


@bp.before_request
def authenticate() -> ResponseReturnValue | None:
    """Bearer token first; else the session (and then CSRF on state-changing calls)."""
    svc = services()
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return _unauthorized("use 'Authorization: Bearer <token>'")
        user = svc.access.user_for_token(token.strip())
        if user is None:
            return _unauthorized("the token is unknown or revoked")
        g.user = user
        return None
    user = load_session_user()
    if user is None:
        return _unauthorized("sign in or send 'Authorization: Bearer <token>'")
    g.user = user
    if request.method not in SAFE_METHODS:
        current_app.extensions["csrf"].protect()
    return None


def _list_request(default: int, maximum: int) -> tuple[AlertQuery, int]:
    """A list call's filters and page size; ``cursor`` is the previous page's ``next_cursor``."""
    svc = services()
    svc.ensure_indexes()
    values = single_values(request.args.to_dict(flat=False), API_LIST_PARAMS)
    limit = parse_limit(values.pop("limit", None), default=default, maximum=maximum)
    if "cursor" in values:
        values["before"] = values.pop("cursor")
    return parse_alert_query(values, svc.tokenizer), limit


@bp.get("/alerts")
def list_alerts() -> ResponseReturnValue:
    svc = services()
    query, limit = _list_request(default=50, maximum=MAX_LIMIT)
    page = svc.alerts.page(query, limit, svc.now())
    return jsonify(
        alerts=[alert_json(a) for a in page.alerts],
        next_cursor=page.older,
        count=len(page.alerts),
    )


@bp.get("/alerts/<alert_id>")
def get_alert(alert_id: str) -> ResponseReturnValue:
    svc = services()
    single_values(request.args.to_dict(flat=False), ())
    alert = svc.alerts.get(alert_id) if is_alert_id(alert_id) else None
    if alert is None:
        abort(404, description="There is no alert with this id.")
    return jsonify(
        alert=alert_json(alert, detail=True),
        dispositions=[disposition_json(d) for d in svc.alerts.dispositions(alert.alert_id)],
        card_alerts=[
            alert_json(a)
            for a in svc.alerts.card_history(alert.card_token, limit=50)
            if a.alert_id != alert.alert_id
        ],
    )


def _analyst_json(refusal: str) -> tuple[User, Any]:
    """The analyst making a state-changing call (else 403 with ``refusal``) and its JSON body
    (else 400)."""
    user = current_user()
    if user is None or not user.can_disposition:
        abort(403, description=refusal)
    if not request.is_json:
        raise InvalidParameter("body", "send a JSON object with Content-Type: application/json")
    body = request.get_json(silent=True)
    if body is None:
        raise InvalidParameter("body", "is not valid JSON")
    return user, body


@bp.post("/alerts/<alert_id>/disposition")
def post_disposition(alert_id: str) -> ResponseReturnValue:
    svc = services()
    user, body = _analyst_json("Only analysts can change an alert's status.")
    req = DispositionRequest.parse(body)
    comment = validate_comment(req.comment)
    if not is_alert_id(alert_id):
        abort(404, description="There is no alert with this id.")
    try:
        done = record_disposition(
            svc,
            alert_id,
            seen=req.from_status,
            to=req.to,
            user=user.name,
            comment=comment,
            seen_version=req.version,
        )
    except TransitionNotAllowed as exc:
        raise InvalidParameter("to", str(exc)) from None
    except AlertNotFound:
        abort(404, description="There is no alert with this id.")
    except DispositionConflict as exc:
        count_own_change(svc, req.to, "conflict")
        response = jsonify(error="conflict", message=str(exc), current_status=exc.current)
        response.status_code = 409
        return response
    count_own_change(svc, req.to, "ok")
    alert = svc.alerts.get(alert_id)
    return jsonify(
        alert=alert_json(alert, detail=True) if alert else None,
        disposition=disposition_json(done.entry),
        label=done.label.to_api() if done.label else None,
        message=done.message,
    )


@bp.get("/cases")
def list_cases() -> ResponseReturnValue:
    """Cases in queue order; ``cursor`` is the previous page's ``next_cursor``."""
    svc = services()
    query, limit = _list_request(default=25, maximum=MAX_CASE_LIMIT)
    page = svc.cases.page(query, limit, svc.now())
    return jsonify(
        cases=[case_json(c) for c in page.cases], next_cursor=page.older, count=len(page.cases)
    )


def _case_or_404(case_id: str) -> Case:
    case = services().cases.get(case_id) if is_alert_id(case_id) else None
    if case is None:
        abort(404, description="There is no case with this id.")
    return case


@bp.get("/cases/<case_id>")
def get_case(case_id: str) -> ResponseReturnValue:
    """A case with its alerts (oldest first) and its decisions; any of its alerts' ids finds
    it too (``case.id`` is its own)."""
    svc = services()
    single_values(request.args.to_dict(flat=False), ())
    case = _case_or_404(case_id)
    return jsonify(
        case=case_json(case),
        alerts=[alert_json(a, detail=True) for a in case.alerts],
        dispositions=[disposition_json(d) for d in svc.cases.dispositions(case)],
    )


@bp.post("/cases/<case_id>/disposition")
def post_case_disposition(case_id: str) -> ResponseReturnValue:
    """One decision for the whole case; ``from`` and ``signature`` are the case as read."""
    svc = services()
    user, body = _analyst_json("Only analysts can decide a case.")
    req = CaseDecisionRequest.parse(body)
    comment = validate_comment(req.comment)
    case = _case_or_404(case_id)
    try:
        done = decide_case(
            svc,
            case,
            seen=req.from_status,
            seen_signature=req.signature,
            to=req.to,
            user=user.name,
            comment=comment,
        )
    except TransitionNotAllowed as exc:
        raise InvalidParameter("to", str(exc)) from None
    except CaseChanged as exc:
        count_own_change(svc, req.to, "conflict")
        fresh = svc.cases.get(case.case_id) or case
        response = jsonify(error="conflict", message=str(exc), current=case_json(fresh))
        response.status_code = 409
        return response
    count_own_change(svc, req.to, "ok")
    fresh = svc.cases.get(done.case_id) or case
    return jsonify(
        case=case_json(fresh),
        changed=[d.entry.alert_id for d in done.changed],
        conflicts=done.conflicts,
        labels=done.labels,
        message=done.message,
    )


@bp.get("/stats")
def stats() -> ResponseReturnValue:
    svc = services()
    values = single_values(request.args.to_dict(flat=False), ("minutes",))
    minutes = parse_limit(values.get("minutes"), default=60, maximum=1440, name="minutes")
    return jsonify(stats_payload(svc, minutes))


@bp.get("/v1/models")
def models() -> ResponseReturnValue:
    """The trainer's model versions (issue #12); see ``webapp.views.model_health``."""
    return jsonify(models_answer(services()))


@bp.get("/v1/model-health")
def model_health() -> ResponseReturnValue:
    """Daily model health and the drift alarm (issue #12); see ``webapp.views.model_health``."""
    return jsonify(model_health_answer(services()))


def alert_json(a: AlertView, *, detail: bool = False) -> dict[str, Any]:
    """An alert as the API returns it (times in RFC 3339 UTC); ``detail`` adds reasons,
    evidence and the disposition fields."""
    out: dict[str, Any] = {
        "id": a.alert_id,
        "transaction_id": a.transaction_id,
        "timestamp": format_ts_or_none(a.timestamp),
        "detected_at": format_ts_or_none(a.detected_at),
        "status": a.status,
        "severity": a.severity,
        "score": a.score,
        "card_masked": a.card_masked,
        "card_token": a.card_token,
        "card_last4": a.card_last4,
        "account_id": a.account_id,
        "amount": a.amount,
        "currency": a.currency,
        "merchant_id": a.merchant_id,
        "merchant_name": a.merchant_name,
        "merchant_category": a.merchant_category,
        "channel": a.channel,
        "country": a.country,
        "rules": list(a.rules),
    }
    if detail:
        out.update(
            latitude=a.latitude,
            longitude=a.longitude,
            reasons=[{"rule": r.rule, "score": r.score, "detail": r.detail} for r in a.reasons],
            evidence=list(a.evidence),
            evidence_txns=[
                {
                    "transaction_id": t.transaction_id,
                    "timestamp": format_ts_or_none(t.timestamp),
                    "amount_base": t.amount_base,
                    "latitude": t.latitude,
                    "longitude": t.longitude,
                    "country": t.country,
                    "channel": t.channel,
                }
                for t in a.evidence_txns
            ],
            ruleset_version=a.ruleset_version,
            model_version=a.model_version or None,
            base_currency=a.base_currency,
            late=a.late,
            status_changed_at=format_ts_or_none(a.status_changed_at),
            status_changed_by=a.status_changed_by or None,
            status_version=a.status_version,
        )
    return out


def disposition_json(d: DispositionView) -> dict[str, Any]:
    """One audit entry as the API returns it."""
    return {
        "at": format_ts_or_none(d.at),
        "user": d.user,
        "from": d.from_status,
        "to": d.to_status,
        "comment": d.comment,
        "label": d.label,
    }


def case_json(c: Case) -> dict[str, Any]:
    """A case as the API returns it (its alerts are listed by ``GET /api/cases/<id>``)."""
    return {
        "id": c.case_id,
        "status": c.status,
        "severity": c.severity,
        "score": c.score,
        "signature": c.signature,
        "card_masked": c.card_masked,
        "card_token": c.card_token,
        "alert_count": c.total_alerts,
        "alert_ids": [a.alert_id for a in c.alerts],
        "first_at": format_ts_or_none(c.first_at),
        "last_at": format_ts_or_none(c.last_at),
        "total_amount": c.total_amount,
        "base_currency": c.base_currency,
        "rules": list(c.rules),
        "merchants": [{"id": mid, "name": name} for mid, name in c.merchants],
    }
