"""The console's security suite, driven by ``app.url_map`` so that a new route is covered, or
fails loudly until it is classified here:

- a route x principal matrix (anonymous, every role by session and by API token);
- NoSQL-operator payloads in every path, query-string, form and JSON parameter of every route:
  a 4xx with a message, or nothing beyond a literal match of the payload;
- an XSS corpus in every displayed field of alerts, dispositions and stats, seeded straight
  into MongoDB: every page is checked statically, then loaded in headless Chromium with the
  CSP switched off (escaping alone must hold) and on (no violation);
- CSRF on every state-changing route (no token, a wrong one, another session's, one in the
  URL), with nothing changed;
- login lockout and rate limit beyond ``test_security.py``;
- security headers on every answer, including redirects, errors, static files and the API.
"""

from __future__ import annotations

import json
import re
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from playwright.sync_api import Browser, Page, sync_playwright
from werkzeug.serving import make_server
from werkzeug.test import TestResponse

from fraudwatch.alert_store import ALERT_STATS, ALERTS, DISPOSITIONS, minute_id
from fraudwatch.vocabulary import TRANSITIONS
from webapp.data.cases import case_signature
from webapp.data.model_registry import MODEL_HEALTH, MODELS
from webapp.queries import LIST_PARAMS
from webapp.settings import ROLES
from webapp.views.api import API_LIST_PARAMS, CaseDecisionRequest, DispositionRequest
from webapp.views.console import POLL_PARAMS
from webapp.views.ops import SECURITY_HEADERS

from .conftest import PASSWORD, AlertFactory, build_app, make_user
from .model_factories import health_days, make_health_doc, make_model_doc
from .test_browser import CHROMIUM, CHROMIUM_ARGS

pytestmark = pytest.mark.integration

TEMPLATES = Path(__file__).resolve().parents[2] / "webapp" / "templates"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
REDIRECTS = {301, 302, 303, 307, 308}
HEX_ID = re.compile(r"[0-9a-f]{24}")


# --- the routes ------------------------------------------------------------------------------


def url_map_routes(app: Flask) -> set[tuple[str, str]]:
    """Every (rule, method) the app answers, from ``app.url_map`` (HEAD/OPTIONS are implied)."""
    return {
        (rule.rule, method)
        for rule in app.url_map.iter_rules()
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}
    }


@dataclass
class Ctx:
    """What a request needs: the alerts it may act on and the client's CSRF token."""

    form_alert: str
    api_alert: str
    csrf: str = ""
    status: dict[str, str] = field(default_factory=dict)
    version: dict[str, int] = field(default_factory=dict)
    # The alert's stored (status, version), for requests that must name the current state.
    lookup: Callable[[str], tuple[str, int]] | None = None

    def next_status(self, alert_id: str) -> tuple[str, str]:
        seen = self.status.get(alert_id, "open")
        return seen, TRANSITIONS[seen][0]

    def case_decision(self, alert_id: str) -> tuple[str, str, str]:
        """(seen, to, signature) of a valid decision on the one-alert case of ``alert_id``."""
        if self.lookup is not None:
            seen, version = self.lookup(alert_id)
        else:
            seen, version = self.status.get(alert_id, "open"), self.version.get(alert_id, 0)
        return seen, TRANSITIONS[seen][0], case_signature([(alert_id, seen, version)])


Request = dict[str, Any]


def _disposition_form(ctx: Ctx) -> Request:
    seen, to = ctx.next_status(ctx.form_alert)
    return {
        "path": f"/alerts/{ctx.form_alert}/disposition",
        "data": {
            "seen": seen,
            "to": to,
            "comment": "checked with the cardholder",
            "version": str(ctx.version.get(ctx.form_alert, 0)),
            "csrf_token": ctx.csrf,
        },
    }


def _disposition_api(ctx: Ctx) -> Request:
    seen, to = ctx.next_status(ctx.api_alert)
    return {
        "path": f"/api/alerts/{ctx.api_alert}/disposition",
        "json": {
            "from": seen,
            "to": to,
            "comment": "checked with the cardholder",
            "version": ctx.version.get(ctx.api_alert, 0),
        },
        "headers": {"X-CSRFToken": ctx.csrf},
    }


def _case_form(ctx: Ctx) -> Request:
    seen, to, sig = ctx.case_decision(ctx.form_alert)
    return {
        "path": f"/cases/{ctx.form_alert}/disposition",
        "data": {
            "seen": seen,
            "sig": sig,
            "to": to,
            "comment": "checked with the cardholder",
            "csrf_token": ctx.csrf,
        },
    }


def _case_api(ctx: Ctx) -> Request:
    seen, to, sig = ctx.case_decision(ctx.api_alert)
    return {
        "path": f"/api/cases/{ctx.api_alert}/disposition",
        "json": {"from": seen, "signature": sig, "to": to, "comment": "checked"},
        "headers": {"X-CSRFToken": ctx.csrf},
    }


# A valid request for every route: the matrix, CSRF, header and injection tests start here.
VALID_REQUESTS: dict[tuple[str, str], Callable[[Ctx], Request]] = {
    ("/login", "GET"): lambda c: {"path": "/login?next=/dashboard"},
    ("/login", "POST"): lambda c: {
        "path": "/login",
        "data": {"username": "alice", "password": PASSWORD, "next": "/", "csrf_token": c.csrf},
    },
    ("/logout", "POST"): lambda c: {"path": "/logout", "data": {"csrf_token": c.csrf}},
    ("/", "GET"): lambda c: {"path": "/?severity=high"},
    ("/filter", "POST"): lambda c: {
        "path": "/filter",
        "data": {"severity": "high", "rule": "", "card": "", "csrf_token": c.csrf},
    },
    ("/queue/live", "GET"): lambda c: {"path": "/queue/live?seen=0"},
    ("/alerts", "GET"): lambda c: {"path": "/alerts?severity=high"},
    ("/cases/live", "GET"): lambda c: {"path": "/cases/live?seen=0"},
    ("/cases/<case_id>", "GET"): lambda c: {"path": f"/cases/{c.form_alert}"},
    ("/cases/<case_id>/disposition", "POST"): _case_form,
    ("/api/cases", "GET"): lambda c: {"path": "/api/cases?limit=20"},
    ("/api/cases/<case_id>", "GET"): lambda c: {"path": f"/api/cases/{c.api_alert}"},
    ("/api/cases/<case_id>/disposition", "POST"): _case_api,
    ("/alerts/<alert_id>", "GET"): lambda c: {"path": f"/alerts/{c.form_alert}"},
    ("/alerts/<alert_id>/disposition", "POST"): _disposition_form,
    ("/dashboard", "GET"): lambda c: {"path": "/dashboard"},
    ("/model", "GET"): lambda c: {"path": "/model"},
    ("/api/v1/models", "GET"): lambda c: {"path": "/api/v1/models?limit=5"},
    ("/api/v1/model-health", "GET"): lambda c: {"path": "/api/v1/model-health?days=7"},
    ("/api/alerts", "GET"): lambda c: {"path": "/api/alerts?limit=20"},
    ("/api/alerts/<alert_id>", "GET"): lambda c: {"path": f"/api/alerts/{c.api_alert}"},
    ("/api/alerts/<alert_id>/disposition", "POST"): _disposition_api,
    ("/api/stats", "GET"): lambda c: {"path": "/api/stats?minutes=30"},
    ("/healthz", "GET"): lambda c: {"path": "/healthz"},
    ("/metrics", "GET"): lambda c: {"path": "/metrics"},
    ("/static/<path:filename>", "GET"): lambda c: {"path": "/static/app.css"},
}

PRINCIPALS = ("anonymous", "viewer", "analyst", "viewer_token", "analyst_token")
LOGIN = "to /login"  # an expected outcome: 302 to the sign-in page
PAGE: dict[str, int | str] = {
    "anonymous": LOGIN,
    "viewer": 200,
    "analyst": 200,
    "viewer_token": LOGIN,
    "analyst_token": LOGIN,
}
API: dict[str, int | str] = {
    "anonymous": 401,
    "viewer": 200,
    "analyst": 200,
    "viewer_token": 200,
    "analyst_token": 200,
}
PUBLIC: dict[str, int | str] = dict.fromkeys(PRINCIPALS, 200)

# Expected answer per route and principal. Token principals carry no session: to the pages
# they are anonymous. The login attempt uses a wrong password (401 for everyone).
EXPECTED: dict[tuple[str, str], dict[str, int | str]] = {
    ("/login", "GET"): {**PUBLIC, "viewer": 302, "analyst": 302},
    ("/login", "POST"): dict.fromkeys(PRINCIPALS, 401),
    ("/logout", "POST"): dict.fromkeys(PRINCIPALS, LOGIN),
    ("/", "GET"): PAGE,
    ("/filter", "POST"): {**PAGE, "viewer": 303, "analyst": 303},
    ("/queue/live", "GET"): PAGE,
    ("/alerts", "GET"): PAGE,
    ("/cases/live", "GET"): PAGE,
    ("/cases/<case_id>", "GET"): PAGE,
    ("/cases/<case_id>/disposition", "POST"): {**PAGE, "viewer": 403, "analyst": 303},
    ("/api/cases", "GET"): API,
    ("/api/cases/<case_id>", "GET"): API,
    ("/api/cases/<case_id>/disposition", "POST"): {**API, "viewer": 403, "viewer_token": 403},
    ("/alerts/<alert_id>", "GET"): PAGE,
    ("/alerts/<alert_id>/disposition", "POST"): {**PAGE, "viewer": 403, "analyst": 303},
    ("/dashboard", "GET"): PAGE,
    ("/model", "GET"): PAGE,
    ("/api/v1/models", "GET"): API,
    ("/api/v1/model-health", "GET"): API,
    ("/api/alerts", "GET"): API,
    ("/api/alerts/<alert_id>", "GET"): API,
    ("/api/alerts/<alert_id>/disposition", "POST"): {**API, "viewer": 403, "viewer_token": 403},
    ("/api/stats", "GET"): API,
    ("/healthz", "GET"): PUBLIC,
    ("/metrics", "GET"): PUBLIC,
    ("/static/<path:filename>", "GET"): PUBLIC,
}


def send(client: FlaskClient, method: str, request: Request) -> TestResponse:
    return client.open(
        request["path"],
        method=method,
        data=request.get("data"),
        json=request.get("json"),
        headers=request.get("headers"),
    )


def csrf_token(client: FlaskClient) -> str:
    """The CSRF token of the client's session. A 404 page is the cheapest page that carries
    one for a signed-in user (the sign-out form); the login form has one for everyone else."""
    html = client.get("/login").get_data(as_text=True)
    if 'name="csrf_token"' not in html:
        html = client.get("/alerts/not-an-alert").get_data(as_text=True)
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no page carries a CSRF token"
    return match.group(1)


def sign_in(client: FlaskClient, name: str, password: str = PASSWORD) -> TestResponse:
    data = {"username": name, "password": password, "csrf_token": csrf_token(client)}
    return client.post("/login", data=data)


def stored_state(mongo_db: Any) -> Callable[[str], tuple[str, int]]:
    """The alert's status and version as stored (a case decision names them)."""

    def lookup(alert_id: str) -> tuple[str, int]:
        doc = mongo_db[ALERTS].find_one({"_id": alert_id}) or {}
        return str(doc.get("status", "open")), int(doc.get("status_version", 0))

    return lookup


def alert_state(mongo_db: Any) -> dict[str, tuple[Any, Any]]:
    return {d["_id"]: (d.get("status"), d.get("status_version")) for d in mongo_db[ALERTS].find()}


# --- security headers ------------------------------------------------------------------------


def assert_security_headers(response: TestResponse, what: str, *, https: bool = False) -> None:
    headers = response.headers
    for name, value in SECURITY_HEADERS.items():
        assert headers.get(name) == value, (what, name, headers.get(name))
    csp = headers["Content-Security-Policy"]
    for directive in (
        "default-src 'self'",
        "script-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
        "form-action 'self'",
    ):
        assert directive in csp, (what, directive)
    assert "unsafe-inline" not in csp
    assert "unsafe-eval" not in csp
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert re.fullmatch(r"[0-9a-zA-Z-]{1,64}", headers.get("X-Request-ID", "")), what
    if not response.request.path.startswith("/static/"):
        assert headers.get("Cache-Control") == "no-store", what
    if https:
        assert headers.get("Strict-Transport-Security", "").startswith("max-age="), what


# --- route x principal matrix ----------------------------------------------------------------


def test_every_route_and_method_is_classified(app) -> None:
    """A new route (or method) fails here until its expected answers are written down."""
    assert url_map_routes(app) == set(EXPECTED), "classify the new route in EXPECTED"
    assert set(VALID_REQUESTS) == set(EXPECTED)
    assert set(ROLES) == {"viewer", "analyst"}, "a new role needs a column in the matrix"


@pytest.mark.parametrize("principal", PRINCIPALS)
def test_route_role_matrix(app, client, seed, mongo_db, principal) -> None:
    form_alert, api_alert = seed()["_id"], seed()["_id"]
    untouched = seed()["_id"]
    make_user(app, "victor", "viewer")
    make_user(app, "alice", "analyst")
    access = app.extensions["fraudwatch"].access
    headers: dict[str, str] = {}
    if principal in ("viewer", "analyst"):
        assert sign_in(client, "victor" if principal == "viewer" else "alice").status_code == 302
    elif principal != "anonymous":
        _, token = access.create_token("victor" if principal == "viewer_token" else "alice")
        headers = {"Authorization": f"Bearer {token}"}
    ctx = Ctx(form_alert, api_alert, csrf=csrf_token(client), lookup=stored_state(mongo_db))
    before = alert_state(mongo_db)
    # Sign-out last: it ends the session the other rows need.
    for rule, method in sorted(url_map_routes(app), key=lambda r: (r == ("/logout", "POST"), r)):
        expected = EXPECTED[(rule, method)][principal]
        if method not in SAFE_METHODS:
            # The sign-in wall clears an anonymous session, and its CSRF token with it.
            ctx.csrf = csrf_token(client)
        request = VALID_REQUESTS[(rule, method)](ctx)
        if rule == "/login" and method == "POST":
            request["data"]["password"] = "not the password"
        request["headers"] = {**request.get("headers", {}), **headers}
        response = send(client, method, request)
        what = f"{principal} {method} {rule}"
        assert_security_headers(response, what)
        if expected == LOGIN:
            assert response.status_code == 302, (what, response.status_code)
            assert response.headers["Location"].startswith("/login"), what
        else:
            assert response.status_code == expected, (what, response.status_code)
        if response.status_code in (401, 403):
            body = response.get_data(as_text=True)
            assert form_alert not in body, what
            assert api_alert not in body, what
    after = alert_state(mongo_db)
    changed = {k for k in before if before[k] != after[k]}
    may_change = {"analyst": {form_alert, api_alert}, "analyst_token": {api_alert}}
    assert changed == may_change.get(principal, set()), principal
    assert after[untouched] == before[untouched]


def test_a_removed_user_or_role_change_takes_effect_on_the_next_request(app, client, seed) -> None:
    alert = seed()
    make_user(app, "alice", "analyst")
    assert sign_in(client, "alice").status_code == 302
    app.extensions["fraudwatch"].access.create_user("alice", "viewer", PASSWORD, replace=True)
    token = csrf_token(client)
    response = client.post(
        f"/alerts/{alert['_id']}/disposition",
        data={"seen": "open", "to": "investigating", "csrf_token": token},
    )
    assert response.status_code == 403
    app.extensions["fraudwatch"].access.delete_user("alice")
    assert client.get("/").status_code == 302
    assert client.get("/api/alerts").status_code == 401


# --- NoSQL operators in every parameter -------------------------------------------------------

# Values: operators as JSON text, as bare words, JavaScript for $where, regex wildcards.
OPERATOR_VALUES = (
    '{"$ne": null}',
    '{"$gt": ""}',
    '{"$where": "sleep(100) || true"}',
    '{"$regex": ".*"}',
    '{"$in": ["open", "dismissed"]}',
    "$ne",
    ".*",
    "' || '1'=='1",
    "this.status != null",
)


def operator_keys(name: str) -> tuple[str, ...]:
    """The ways a parser (PHP/qs/body-parser style) could turn a key into an operator."""
    return (
        f"{name}[$ne]",
        f"{name}[$gt]",
        f"{name}[$regex]",
        f"{name}[$where]",
        f"{name}[$in][]",
        f"{name}[]",
        f"{name}.$ne",
        f"{name}.0",
    )


JSON_OPERATOR_VALUES: tuple[Any, ...] = (
    {"$ne": None},
    {"$gt": ""},
    {"$regex": ".*"},
    {"$where": "true"},
    {"$in": ["open", "investigating"]},
    ["open"],
    None,
    True,
    1.5,
)
JSON_EXTRA_KEYS: tuple[dict[str, Any], ...] = (
    {"$set": {"status": "dismissed"}},
    {"status": "dismissed"},
    {"from.$ne": None},
    {"_id": {"$ne": None}},
    {"alert_id": {"$gt": ""}},
)
PATH_PAYLOADS = (
    '{"$ne": null}',
    "[$ne]",
    "$where",
    ".*",
    "a" * 23 + ".",
    "A" * 24,
    "a" * 24 + "' || '1'=='1",
    "../../pyproject.toml",
)


@dataclass(frozen=True)
class Params:
    """Where a route takes parameters (the path's are its url_map arguments)."""

    query: tuple[str, ...] = ()
    form_action: str | None = None  # the form that posts here: its fields are taken from
    form_page: str = ""  # this page, as rendered
    json: tuple[str, ...] = ()


DISPOSITION_JSON = tuple(f.alias or name for name, f in DispositionRequest.model_fields.items())
CASE_JSON = tuple(f.alias or name for name, f in CaseDecisionRequest.model_fields.items())
PARAMS: dict[tuple[str, str], Params] = {
    ("/login", "GET"): Params(query=("next",)),
    ("/login", "POST"): Params(form_action="/login", form_page="/login"),
    ("/logout", "POST"): Params(form_action="/logout", form_page="/dashboard"),
    ("/", "GET"): Params(query=LIST_PARAMS),
    ("/filter", "POST"): Params(form_action="/filter", form_page="/"),
    ("/queue/live", "GET"): Params(query=POLL_PARAMS),
    ("/alerts", "GET"): Params(query=LIST_PARAMS),
    ("/cases/live", "GET"): Params(query=POLL_PARAMS),
    ("/cases/<case_id>", "GET"): Params(),
    ("/cases/<case_id>/disposition", "POST"): Params(
        form_action="/disposition", form_page="/cases/<alert_id>"
    ),
    ("/api/cases", "GET"): Params(query=API_LIST_PARAMS),
    ("/api/cases/<case_id>", "GET"): Params(),
    ("/api/cases/<case_id>/disposition", "POST"): Params(json=CASE_JSON),
    ("/alerts/<alert_id>", "GET"): Params(),
    ("/alerts/<alert_id>/disposition", "POST"): Params(
        form_action="/disposition", form_page="/alerts/<alert_id>"
    ),
    ("/dashboard", "GET"): Params(),
    ("/model", "GET"): Params(),
    ("/api/v1/models", "GET"): Params(query=("limit",)),
    ("/api/v1/model-health", "GET"): Params(query=("days",)),
    ("/api/alerts", "GET"): Params(query=API_LIST_PARAMS),
    ("/api/alerts/<alert_id>", "GET"): Params(),
    ("/api/alerts/<alert_id>/disposition", "POST"): Params(json=DISPOSITION_JSON),
    ("/api/stats", "GET"): Params(query=("minutes",)),
    ("/healthz", "GET"): Params(),
    ("/metrics", "GET"): Params(),
    ("/static/<path:filename>", "GET"): Params(),
}
GENERIC_KEYS = ("status", "user")  # tried on every route, whatever it takes


class FormFields(HTMLParser):
    """The names of the fields of each ``<form>`` on a page, by its action."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: dict[str, set[str]] = {}
        self._action: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form":
            self._action = a.get("action") or ""
            self.forms.setdefault(self._action, set())
        elif (
            tag in ("input", "select", "textarea", "button")
            and self._action is not None
            and a.get("name")
        ):
            self.forms[self._action].add(str(a["name"]))

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._action = None


def form_fields(html: str, action_suffix: str) -> set[str]:
    parser = FormFields()
    parser.feed(html)
    found = [names for action, names in parser.forms.items() if action.endswith(action_suffix)]
    assert found, f"no form posts to ...{action_suffix}"
    return found[0] - {"csrf_token"}


def error_message(response: TestResponse) -> str:
    if response.is_json:
        return str(response.get_json().get("message", ""))
    text = response.get_data(as_text=True)
    match = re.search(r'class="error-message">([^<]+)<', text) or re.search(
        r'id="login-error">([^<]+)<', text
    )
    return match.group(1).strip() if match else ""


@pytest.fixture
def injection_app(mongo_db, clock) -> Flask:
    # Injection payloads in the login form must meet the parser, not the throttle.
    app = build_app(
        mongo_db.name, clock, webapp_login_rate_limit=100_000, webapp_lockout_threshold=100_000
    )
    app.extensions["fraudwatch"].ensure_indexes()
    return app


Variant = tuple[str, Callable[[Request], Request]]


def _query_variant(name: str, pairs: list[tuple[str, str]]) -> Callable[[Request], Request]:
    def build(base: Request) -> Request:
        plain, _, query = base["path"].partition("?")
        kept = [(k, v) for k, v in urllib.parse.parse_qsl(query) if k != name]
        return {**base, "path": plain + "?" + urllib.parse.urlencode(kept + pairs)}

    return build


def _form_variant(name: str, key: str, value: str) -> Callable[[Request], Request]:
    def build(base: Request) -> Request:
        data = {k: v for k, v in base["data"].items() if k != name}
        return {**base, "data": {**data, key: value}}

    return build


def _json_variant(changes: dict[str, Any]) -> Callable[[Request], Request]:
    return lambda base: {**base, "json": {**base["json"], **changes}}


def _raw_json_variant(body: Any) -> Callable[[Request], Request]:
    return lambda base: {**base, "json": None, "raw_json": json.dumps(body)}


def _path_variant(path: str) -> Callable[[Request], Request]:
    return lambda base: {**base, "path": path}


def variants(route: tuple[str, str], params: Params, form: set[str]) -> Iterator[Variant]:
    """Every injected request for a route, as (description, change to a valid request)."""
    yield "?$where", _query_variant("$where", [("$where", "1")])
    if route[1] not in SAFE_METHODS:
        # A form or JSON write reads no query string: two unknown keys show it is ignored.
        yield "?status[$ne]", _query_variant("status", [("status[$ne]", "x")])
        yield "?user[$gt]", _query_variant("user", [("user[$gt]", "")])
    for name in (*params.query, *GENERIC_KEYS) if route[1] in SAFE_METHODS else ():
        for value in OPERATOR_VALUES:
            yield f"?{name}={value}", _query_variant(name, [(name, value)])
        for key in operator_keys(name):
            yield f"?{key}", _query_variant(name, [(key, "x")])
        yield f"?{name} twice", _query_variant(name, [(name, "open"), (name, "dismissed")])
    for name in sorted(form):
        for value in OPERATOR_VALUES:
            yield f"form {name}={value}", _form_variant(name, name, value)
        for key in operator_keys(name):
            yield f"form {key}", _form_variant(name, key, "x")
    for name in params.json:
        for json_value in (*JSON_OPERATOR_VALUES, json.dumps({"$ne": None})):
            yield f"json {name}={json_value!r}", _json_variant({name: json_value})
    if params.json:
        for extra in JSON_EXTRA_KEYS:
            yield f"json +{extra!r}", _json_variant(extra)
        for body in (["open", "investigating"], "open", 1, None):
            yield f"json body {body!r}", _raw_json_variant(body)
    rule = route[0]
    for value in PATH_PAYLOADS:
        quoted = urllib.parse.quote(value, safe="")
        if "<alert_id>" in rule:
            yield f"path {value}", _path_variant(rule.replace("<alert_id>", quoted))
        if "<path:filename>" in rule:
            yield f"path {value}", _path_variant("/static/" + urllib.parse.quote(value))


@pytest.mark.parametrize(("rule", "method"), sorted(PARAMS))
def test_operator_payloads_in_every_parameter_give_a_400_or_only_a_literal_match(
    injection_app, mongo_db, clock, seed, rule, method
) -> None:
    app = injection_app
    assert url_map_routes(app) == set(PARAMS), "add the new route's parameters to PARAMS"
    # Alerts a leak would show: every status, severity, rule, card and merchant.
    seeded = [seed(status=s) for s in TRANSITIONS]
    seeded += [seed(rules=["card_testing"], severity="critical"), seed(severity="low")]
    seeded_ids = {d["_id"] for d in seeded}
    form_alert, api_alert = seeded[0]["_id"], seeded[1]["_id"]
    make_user(app, "alice", "analyst")
    client = app.test_client()
    assert sign_in(client, "alice").status_code == 302
    ctx = Ctx(form_alert, api_alert, csrf=csrf_token(client), lookup=stored_state(mongo_db))

    state = initial = alert_state(mongo_db)
    dispositions = 0

    def follow(state: dict[str, tuple[Any, Any]]) -> None:
        """The next valid disposition starts from the alerts' current status and version."""
        for alert_id in (form_alert, api_alert):
            ctx.status[alert_id] = state[alert_id][0] or "open"
            ctx.version[alert_id] = state[alert_id][1] or 0

    follow(state)
    params = PARAMS[(rule, method)]
    form: set[str] = set()
    if params.form_action:
        page = params.form_page.replace("<alert_id>", form_alert)
        html = (app.test_client() if page == "/login" else client).get(page)
        form = form_fields(html.get_data(as_text=True), params.form_action)
    target = {
        "/alerts/<alert_id>/disposition": form_alert,
        "/api/alerts/<alert_id>/disposition": api_alert,
        "/cases/<case_id>/disposition": form_alert,
        "/api/cases/<case_id>/disposition": api_alert,
    }.get(rule)
    # Controls: the unfiltered queue and API do show every seeded alert.
    assert seeded_ids <= set(HEX_ID.findall(client.get("/").get_data(as_text=True)))
    assert seeded_ids <= {a["id"] for a in client.get("/api/alerts").get_json()["alerts"]}

    tried = 0
    baseline_location: str | None = None
    for what, change in variants((rule, method), params, form):
        tried += 1
        request = change(VALID_REQUESTS[(rule, method)](ctx))
        writes = method not in SAFE_METHODS
        if "raw_json" in request:
            response = client.open(
                request["path"],
                method=method,
                data=request["raw_json"],
                content_type="application/json",
                headers=request.get("headers"),
            )
        else:
            response = send(client, method, request)
        label = f"{method} {rule}: {what} -> {response.status_code}"
        assert response.status_code < 500, label
        assert_security_headers(response, label)
        after = alert_state(mongo_db) if writes else state
        if 400 <= response.status_code < 500:
            assert error_message(response), f"{label}: a refusal must say why"
            assert after == state, f"{label}: a refused request changed alerts"
        else:
            body = response.get_data(as_text=True)
            shown = set(HEX_ID.findall(body + response.headers.get("Location", ""))) & seeded_ids
            literal = {target} if target else set()
            if rule == "/alerts/<alert_id>":
                literal = seeded_ids  # a literal id's page lists its card's alerts
            assert shown <= literal, f"{label}: shows {shown - literal}"
            changed = {k for k in state if state[k] != after[k]}
            assert changed <= literal, f"{label}: changed {changed}"
            if changed:
                # The write went through: with the payload as literal text, nothing more.
                dispositions += 1
                assert mongo_db[DISPOSITIONS].count_documents({}) == dispositions, label
                entry = mongo_db[DISPOSITIONS].find_one(
                    {"alert_id": target}, sort=[("version", -1)]
                )
                sent = request.get("data") or request.get("json") or {}
                assert entry["comment"] == str(sent.get("comment") or "").strip(), label
            if response.status_code in REDIRECTS:
                location = response.headers["Location"]
                assert location.startswith("/"), label
                assert not location.startswith("//"), label
                for key, value in urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query):
                    assert not re.search(r"[$\[\].{}]", key), label
                    assert not value.startswith(("$", "{", "[")), label
                if rule == "/filter":
                    baseline_location = baseline_location or location
                    if what.startswith("?"):  # a form POST ignores its query string
                        assert location == baseline_location, label
            if rule == "/logout":
                assert sign_in(client, "alice").status_code == 302
                ctx.csrf = csrf_token(client)
        state = after
        follow(state)
    assert tried >= 3
    if method in SAFE_METHODS:
        assert alert_state(mongo_db) == initial, "a read-only route changed alerts"


# --- CSRF on every state-changing route -------------------------------------------------------

STATE_CHANGING = sorted(r for r in EXPECTED if r[1] not in SAFE_METHODS)


def _without_token(request: Request) -> Request:
    data = {k: v for k, v in (request.get("data") or {}).items() if k != "csrf_token"}
    headers = {k: v for k, v in (request.get("headers") or {}).items() if k != "X-CSRFToken"}
    return {**request, "data": data or None, "headers": headers}


def _with_token(request: Request, token: str) -> Request:
    request = _without_token(request)
    if request.get("json") is not None:
        return {**request, "headers": {**request["headers"], "X-CSRFToken": token}}
    return {**request, "data": {**(request["data"] or {}), "csrf_token": token}}


@pytest.mark.parametrize(("rule", "method"), STATE_CHANGING)
def test_every_state_changing_route_refuses_a_missing_or_foreign_csrf_token(
    app, seed, mongo_db, rule, method
) -> None:
    assert {r for r in url_map_routes(app) if r[1] not in SAFE_METHODS} == set(STATE_CHANGING)
    ctx = Ctx(seed()["_id"], seed()["_id"], lookup=stored_state(mongo_db))
    make_user(app, "alice", "analyst")
    make_user(app, "bob", "analyst")
    client, other = app.test_client(), app.test_client()
    signs_in = rule == "/login"  # the only route used without a session: login CSRF
    if not signs_in:
        assert sign_in(client, "alice").status_code == 302
        assert sign_in(other, "bob").status_code == 302
    ctx.csrf = csrf_token(client)
    valid = VALID_REQUESTS[(rule, method)](ctx)

    def signed_in() -> bool:
        return bool(client.get("/alerts/not-an-alert").status_code == 404)

    state = (alert_state(mongo_db), signed_in())
    attempts = {
        "no token": _without_token(valid),
        "a made-up token": _with_token(valid, "IjAxMjM0NTY3ODlhYmNkZWYi.aBcDeF.forged"),
        "another session's token": _with_token(valid, csrf_token(other)),
        "the token in the URL": {
            **_without_token(valid),
            "path": valid["path"] + "?" + urllib.parse.urlencode({"csrf_token": ctx.csrf}),
        },
    }
    for what, request in attempts.items():
        response = send(client, method, request)
        assert response.status_code == 400, (what, response.status_code)
        assert "CSRF" in error_message(response), what
        assert_security_headers(response, what)
        assert (alert_state(mongo_db), signed_in()) == state, f"{what} changed something"
    assert mongo_db[DISPOSITIONS].count_documents({}) == 0
    # The same request with the session's own token goes through: the token was the reason.
    # (The sign-in wall cleared the anonymous session's token above: take the current one.)
    ctx.csrf = csrf_token(client)
    response = send(client, method, VALID_REQUESTS[(rule, method)](ctx))
    assert response.status_code in (200, 302, 303), response.status_code


# --- login lockout and rate limit -------------------------------------------------------------


def test_a_locked_account_gives_no_hint_whether_the_password_was_right(app, client) -> None:
    make_user(app)
    for _ in range(10):
        sign_in(client, "alice", "wrong password!")
    right, wrong = sign_in(client, "alice"), sign_in(client, "alice", "wrong password!")
    assert right.status_code == wrong.status_code == 401
    assert error_message(right) == error_message(wrong)
    assert "locked" in error_message(right)
    assert client.get("/").status_code == 302  # and no session


def test_failures_from_many_addresses_still_lock_the_account(app) -> None:
    make_user(app)
    for n in range(10):
        spread = app.test_client()
        spread.environ_base["REMOTE_ADDR"] = f"10.0.0.{n + 1}"
        assert sign_in(spread, "alice", "guess").status_code == 401
    assert "locked" in error_message(sign_in(app.test_client(), "alice"))


def test_rate_limit_is_per_address_and_ignores_forged_forwarding_headers(mongo_db, clock) -> None:
    app = build_app(mongo_db.name, clock, webapp_login_rate_limit=3)
    make_user(app)
    attacker = app.test_client()
    attacker.environ_base["REMOTE_ADDR"] = "192.0.2.7"
    for n in range(3):
        forged = {"X-Forwarded-For": f"198.51.100.{n}", "X-Real-IP": f"198.51.100.{n}"}
        data = {"username": f"u{n}", "password": "x", "csrf_token": csrf_token(attacker)}
        assert attacker.post("/login", data=data, headers=forged).status_code == 401
    limited = sign_in(attacker, "alice")  # even the right password
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) > 0
    assert "Too many sign-in attempts" in error_message(limited)
    assert_security_headers(limited, "429")
    assert attacker.get("/").status_code == 302
    colleague = app.test_client()
    colleague.environ_base["REMOTE_ADDR"] = "192.0.2.8"
    assert sign_in(colleague, "alice").status_code == 302


def test_login_only_returns_to_paths_on_this_site(app, client) -> None:
    """Browsers drop tabs and line breaks inside URLs: ``/<TAB>/evil.example`` is off-site."""
    make_user(app)
    for target in (
        "//evil.example/",
        "https://evil.example/",
        "/\\evil.example",
        "/\t/evil.example",
        "/\n/evil.example",
        "/\r/evil.example",
        "\t//evil.example",
        "javascript:alert(1)",
    ):
        data = {"username": "alice", "password": PASSWORD, "next": target}
        response = client.post("/login", data={**data, "csrf_token": csrf_token(client)})
        assert response.headers["Location"] == "/", repr(target)
        client.post("/logout", data={"csrf_token": csrf_token(client)})
    assert sign_in(client, "alice").status_code == 302
    assert client.get("/login?next=/%09/evil.example").headers["Location"] == "/"


# --- security headers on every answer ---------------------------------------------------------


def test_security_headers_are_on_every_kind_of_answer(app, client, seed, mongo_db) -> None:
    alert = seed()
    make_user(app, "alice", "analyst")
    make_user(app, "victor", "viewer")
    seen: dict[int, int] = {}

    def check(response: TestResponse, what: str, status: int, **kw: Any) -> None:
        assert response.status_code == status, (what, response.status_code)
        assert_security_headers(response, what, **kw)
        seen[status] = seen.get(status, 0) + 1

    check(client.get("/nowhere"), "anonymous, unknown path", 302)
    check(client.get("/", headers={"HX-Request": "true"}), "htmx without a session", 401)
    check(client.get("/api/alerts"), "API without credentials", 401)
    check(client.get("/static/vendor/htmx.min.js"), "static file", 200)
    check(client.get("/static/nothing.js"), "missing static file", 404)
    check(client.get("/login", base_url="https://localhost"), "over HTTPS", 200, https=True)
    check(client.post("/login", data={"username": "a"}), "CSRF failure", 400)
    viewer = app.test_client()
    sign_in(viewer, "victor")
    token = csrf_token(viewer)
    denied = viewer.post(
        f"/alerts/{alert['_id']}/disposition",
        data={"seen": "open", "to": "investigating", "csrf_token": token},
    )
    check(denied, "viewer writes", 403)
    sign_in(client, "alice")
    token = csrf_token(client)
    check(client.get("/nowhere"), "unknown path", 404)
    check(client.get("/api/nowhere"), "unknown API path", 404)
    check(client.get("/?status=bogus"), "bad parameter", 400)
    check(client.get("/api/alerts?limit=0"), "bad API parameter", 400)
    check(client.get("/filter"), "wrong method", 405)
    check(client.head("/"), "HEAD", 200)
    check(client.options("/api/alerts"), "OPTIONS", 200)
    stale = {"seen": "investigating", "to": "dismissed", "csrf_token": token}
    check(client.post(f"/alerts/{alert['_id']}/disposition", data=stale), "stale form", 409)
    huge = {"card": "1" * 70_000, "csrf_token": token}
    check(client.post("/filter", data=huge), "body over the limit", 413)
    check(client.get(f"/api/alerts/{alert['_id']}"), "API detail", 200)
    assert {200, 302, 400, 401, 403, 404, 405, 409, 413} <= set(seen)


def test_security_headers_on_server_errors_and_an_unreachable_database(mongo_db) -> None:
    app = build_app(mongo_db.name)

    def boom() -> str:
        raise RuntimeError("a bug")

    app.add_url_rule("/boom", "boom", boom)
    make_user(app)
    client = app.test_client()
    sign_in(client, "alice")
    response = client.get("/boom")
    assert response.status_code == 500
    assert "a bug" not in response.get_data(as_text=True)
    assert_security_headers(response, "500")
    down = build_app(
        mongo_db.name,
        mongodb_uri="mongodb://127.0.0.1:1/?connectTimeoutMS=200",
        mongodb_timeout_ms=300,
    ).test_client()
    health = down.get("/healthz")
    assert health.status_code == 503
    assert_security_headers(health, "503")


# --- XSS in every displayed field -------------------------------------------------------------

XSS_CORPUS = (
    "<script>alert('xss-1')</script>",
    "<img src=x onerror=alert('xss-2')>",
    '"><svg onload=alert("xss-3")>',
    "'><svg/onload=alert('xss-4')>",
    "javascript:alert('xss-5')",
    '" onmouseover="alert(\'xss-6\')" x="',
    "' onfocus='alert(`xss-7`)' autofocus='",
    "</textarea><script>alert('xss-8')</script>",
    "</script><script>alert('xss-9')</script>",
    "<iframe srcdoc=\"<script>parent.alert('xss-10')</script>\"></iframe>",
    "<a href=\"javascript:alert('xss-11')\">xss-11</a>",
    "<body onload=alert('xss-12')>",
    "<details open ontoggle=alert('xss-13')>",
    '<div hx-get="/logout" hx-trigger="load">xss-14</div>',
    "<math><mtext><table><mglyph><style><img src=x onerror=alert('xss-15')>",
    '<meta http-equiv="refresh" content="0;url=javascript:alert(\'xss-16\')">',
    '<base href="//evil.example/">xss-17',
    "{{7*191}}${7*191}<%= 7*191 %>#{7*191}",
)
TEMPLATE_RESULT = str(7 * 191)  # a template engine evaluating the last payload would print it
# Top-level text fields an alert page or queue row shows (the rest are nested, set below).
XSS_FIELDS = (
    "merchant_name",
    "merchant_id",
    "merchant_category",
    "card_masked",
    "card_last4",
    "account_id",
    "transaction_id",
    "country",
    "channel",
    "currency",
    "base_currency",
    "ruleset_version",
    "severity",
    "status_changed_by",
)
URL_ATTRIBUTES = {"href", "src", "action", "formaction", "data-href", "hx-get", "xlink:href"}


def xss(i: int) -> str:
    return XSS_CORPUS[i % len(XSS_CORPUS)]


def xss_alert_fields(n: int) -> dict[str, Any]:
    """Alert ``n`` of the corpus: every displayed field holds a payload, a different one per
    field, so that across the alerts every field meets every payload."""
    fields: dict[str, Any] = {name: xss(n + i) for i, name in enumerate(XSS_FIELDS)}
    k = len(XSS_FIELDS)
    fields["all_rules"] = ["card_testing", xss(n + k)]
    fields["reasons"] = [
        {"rule": "card_testing", "score": 0.9, "detail": xss(n + k + 1)},
        {"rule": xss(n + k + 2), "score": 0.5, "detail": xss(n + k + 3)},
    ]
    fields["evidence"] = [xss(n + k + 4)]
    fields["evidence_txns"] = [
        {
            "transaction_id": xss(n + k + 5),
            "timestamp": "2026-01-01T00:00:00Z",
            "amount_base": 1.0,
            "latitude": 52.5,
            "longitude": 13.4,
            "country": xss(n + k + 6),
            "channel": xss(n + k + 7),
        }
    ]
    fields["status_changed_at"] = None
    return fields


class PageScan(HTMLParser):
    """Start tags and the text of ``<script>`` elements of a page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.scripts: list[tuple[dict[str, str], str]] = []
        self._script: dict[str, str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k.lower(): v or "" for k, v in attrs}
        self.tags.append((tag.lower(), values))
        if tag.lower() == "script":
            self._script = values
            self.scripts.append((values, ""))

    def handle_data(self, data: str) -> None:
        if self._script is not None and self.scripts:
            attrs, text = self.scripts[-1]
            self.scripts[-1] = (attrs, text + data)

    def handle_endtag(self, tag: str) -> None:
        if tag.lower() == "script":
            self._script = None


def template_vocabulary() -> tuple[set[str], set[str]]:
    """Tag names and ``hx-`` attributes the templates use: any other one came from data."""
    source = "\n".join(p.read_text() for p in TEMPLATES.glob("*.html"))
    tags = {t.lower() for t in re.findall(r"<([a-zA-Z][a-zA-Z0-9-]*)", source)}
    return tags, set(re.findall(r"\b(hx-[a-z-]+)=", source))


def assert_no_injected_markup(html: str, what: str) -> None:
    tags, hx_attributes = template_vocabulary()
    scan = PageScan()
    scan.feed(html)
    for tag, attrs in scan.tags:
        assert tag in tags, f"{what}: <{tag}> is not in any template"
        for name, value in attrs.items():
            assert not name.startswith("on"), f"{what}: <{tag} {name}=...>"
            assert name not in ("srcdoc", "style", "http-equiv", "formaction"), f"{what}: {name}"
            if name.startswith(("hx-", "data-hx-")):
                assert name in hx_attributes, f"{what}: {name}"
            if name in URL_ATTRIBUTES:
                compact = re.sub(r"[\x00-\x20]", "", value).lower()
                assert not compact.startswith(("javascript:", "vbscript:", "data:")), (what, value)
    for attrs, text in scan.scripts:
        if attrs.get("type") == "application/json":
            json.loads(text)  # data only, and it is still one JSON value
            assert "<" not in text, f"{what}: markup in a JSON script"
        else:
            assert attrs.get("src", "").startswith("/static/"), f"{what}: script {attrs}"
            assert not text.strip(), f"{what}: inline script"
    for payload in XSS_CORPUS:
        if re.search(r"[<>\"'&]", payload):
            assert payload not in html, f"{what}: unescaped {payload!r}"
    assert TEMPLATE_RESULT not in html, f"{what}: a payload was evaluated as a template"


def seed_xss_alert(seed: AlertFactory, mongo_db: Any, n: int) -> dict[str, Any]:
    fields = xss_alert_fields(n)
    rules = fields.pop("all_rules")  # ``seed`` takes ``rules`` as the rules that fired
    doc = seed(**fields)
    mongo_db[ALERTS].update_one({"_id": doc["_id"]}, {"$set": {"rules": rules}})
    return doc


@pytest.fixture
def xss_world(app, seed, mongo_db, clock) -> dict[str, Any]:
    """Alerts whose every displayed field is a payload, all on one card (so each detail page's
    card history shows the others), with dispositions, stats and a queue page of them."""
    ids = [seed_xss_alert(seed, mongo_db, n)["_id"] for n in range(len(XSS_CORPUS))]
    card = mongo_db[ALERTS].find_one({"_id": ids[0]})["card_token"]
    mongo_db[ALERTS].update_many({}, {"$set": {"card_token": card}})
    mongo_db[DISPOSITIONS].insert_many(
        [
            {
                "_id": f"{alert_id}:1",
                "alert_id": alert_id,
                "at": clock.now,
                "user": xss(n),
                "from": xss(n + 1),
                "to": xss(n + 2),
                "comment": xss(n + 3),
                "version": 1,
            }
            for n, alert_id in enumerate(ids)
        ]
    )
    minute = clock.now.replace(second=0, microsecond=0)
    mongo_db[ALERT_STATS].insert_one(
        {
            "_id": minute_id(minute),
            "minute": minute,
            "transactions": 100,
            "alerts": len(ids),
            "by_rule": {"card_testing": len(ids), "x-xss-rule": 1},
            "by_severity": {"critical": len(ids)},
            "late": 0,
        }
    )
    # The trainer's documents, every text field a payload; the newest measured day drifts, so
    # the banner (on every page) shows a payload model version too.
    mongo_db[MODELS].insert_many(
        [
            make_model_doc(
                f"v{n}-" + xss(n),
                kind=xss(n + 1),
                status="promoted" if n % 2 else xss(n + 2),
                features=[xss(n + 3)],
                # Keys may hold no "." on FerretDB.
                params={xss(n + 4).replace(".", "_"): xss(n + 5)},
                libraries={xss(n + 6).replace(".", "_"): xss(n + 7)},
                reason=xss(n + 8),
                metrics={"current_version": xss(n + 9)},
                effective_day=f"2026-10-{n + 1:02d}",
            )
            for n in range(len(XSS_CORPUS))
        ]
    )
    mongo_db[MODEL_HEALTH].insert_many(
        [
            make_health_doc(d["day"], model_version=xss(n), drift=True, day_ap=0.2)
            for n, d in enumerate(health_days("2026-10-01", len(XSS_CORPUS)))
        ]
    )
    # A stored user whose name is markup can neither be created nor sign in.
    mongo_db["users"].insert_one(
        {"_id": XSS_CORPUS[0], "role": "analyst", "password_hash": "x", "created_at": clock.now}
    )
    make_user(app, "alice", "analyst")
    return {"ids": ids}


def xss_pages(ids: list[str]) -> list[str]:
    reflected = [
        "/?" + urllib.parse.urlencode({XSS_CORPUS[0]: "1"}),
        "/?" + urllib.parse.urlencode({"merchant": XSS_CORPUS[2]}),
        "/alerts/" + urllib.parse.quote(XSS_CORPUS[1], safe=""),
        "/?" + urllib.parse.urlencode({"card": XSS_CORPUS[5]}),
    ]
    return [
        "/",
        "/?rule=card_testing",
        "/alerts",
        "/alerts?rule=card_testing",
        "/dashboard",
        "/model",
        *[f"/alerts/{i}" for i in ids],
        *[f"/cases/{i}" for i in ids],
        *reflected,
    ]


def test_xss_corpus_in_every_displayed_field_renders_as_inert_text(app, client, xss_world) -> None:
    ids = xss_world["ids"]
    anonymous = app.test_client()
    for path in ("/login?" + urllib.parse.urlencode({"next": "/" + XSS_CORPUS[2]}),):
        response = anonymous.get(path)
        assert_no_injected_markup(response.get_data(as_text=True), path)
    failed = anonymous.post(
        "/login",
        data={"username": XSS_CORPUS[0], "password": "x", "csrf_token": csrf_token(anonymous)},
    )
    assert failed.status_code == 401
    assert_no_injected_markup(failed.get_data(as_text=True), "login as markup")
    assert sign_in(client, "alice").status_code == 302
    queue = client.get("/alerts").get_data(as_text=True)
    assert set(ids) <= set(HEX_ID.findall(queue)), "the payload alerts must be on the page"
    assert "&lt;script&gt;alert(&#39;xss-1&#39;)&lt;/script&gt;" in queue  # shown, as text
    for path in (*xss_pages(ids), "/queue/live?seen=0", "/cases/live?seen=0"):
        response = client.get(path, follow_redirects=True)  # a case page by any alert's id
        assert response.status_code in (200, 400, 404), (path, response.status_code)
        assert response.mimetype == "text/html", path
        assert_no_injected_markup(response.get_data(as_text=True), path)
    detail = client.get(f"/alerts/{ids[0]}").get_data(as_text=True)
    for field_name in ("merchant_name", "account_id", "transaction_id", "status_changed_by"):
        assert str(xss_alert_fields(0)[field_name]) not in detail
    model = client.get("/model").get_data(as_text=True)
    assert 'id="drift-banner"' in model
    assert "&lt;script&gt;alert(&#39;xss-1&#39;)&lt;/script&gt;" in model  # shown, as text
    versions = client.get("/api/v1/models").get_json()["models"]
    assert {m["reason"] for m in versions} <= set(XSS_CORPUS)  # data, as it was
    api = client.get(f"/api/alerts/{ids[0]}")
    assert api.mimetype == "application/json"
    assert api.get_json()["alert"]["merchant_name"] == XSS_CORPUS[0]  # data, as it was


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is missing: `apt-get install -y chromium` (make test does this)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def live_server(app, xss_world) -> Iterator[str]:
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    thread.join(timeout=10)


@dataclass
class Witness:
    """Everything a page did that an injected payload would cause."""

    dialogs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)


def watch(page: Page, base: str) -> Witness:
    seen = Witness()

    def on_dialog(dialog: Any) -> None:
        seen.dialogs.append(dialog.message)
        dialog.dismiss()

    def on_request(request: Any) -> None:
        url = request.url
        path = urllib.parse.urlsplit(url).path
        if not url.startswith(base) or path in ("/x", "/logout"):
            seen.requests.append(url)

    page.on("dialog", on_dialog)
    page.on("request", on_request)
    page.on("pageerror", lambda exc: seen.errors.append(str(exc)))

    def on_console(msg: Any) -> None:
        # The error pages themselves load with a 4xx: that is the point of visiting them.
        if msg.type == "error" and not msg.text.startswith("Failed to load resource"):
            seen.errors.append(msg.text)

    page.on("console", on_console)
    return seen


def browser_sign_in(page: Page, base: str) -> None:
    page.goto(f"{base}/login")
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector("#queue-table")


def test_no_payload_executes_in_chromium_even_with_the_csp_switched_off(
    browser, live_server, xss_world, mongo_db, seed
) -> None:
    base, ids = live_server, xss_world["ids"]
    context = browser.new_context(bypass_csp=True)  # escaping alone has to hold
    page = context.new_page()
    page.set_default_timeout(15_000)
    seen = watch(page, base)
    try:
        browser_sign_in(page, base)
        # Each alert page shows every payload (its own fields and its card's other alerts):
        # the static test reads all of them, the browser runs a few.
        for path in xss_pages(ids[:3]):
            page.goto(base + path)
            page.wait_for_load_state("load")
            page.hover("main")
            assert seen == Witness(), f"{path}: {seen}"
        # A payload alert arriving through the live queue (an htmx swap) is inert too.
        page.goto(base + "/alerts")
        page.wait_for_selector("#queue-table")
        fresh = seed_xss_alert(seed, mongo_db, 3)
        page.wait_for_selector(f'tr[data-alert-id="{fresh["_id"]}"]', timeout=15_000)
        page.hover(f'tr[data-alert-id="{fresh["_id"]}"] td.merchant')
        assert seen == Witness(), seen
        # Had anything run, it would have left a dialog or a request; the page is intact.
        assert page.locator("script:not([src]):not([type='application/json'])").count() == 0
    finally:
        context.close()


def test_pages_with_payloads_raise_no_csp_violation_in_chromium(
    browser, live_server, xss_world
) -> None:
    base, ids = live_server, xss_world["ids"]
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(15_000)
    seen = watch(page, base)
    try:
        browser_sign_in(page, base)
        for path in ("/", f"/alerts/{ids[0]}", "/model", "/dashboard"):
            page.goto(base + path)
            page.wait_for_load_state("load")
            if path == "/model":
                page.wait_for_selector("body[data-charts=ready]")
                assert page.locator("#drift-banner").is_visible()
        page.wait_for_selector("body[data-charts=ready]")
        assert seen == Witness(), seen
    finally:
        context.close()
