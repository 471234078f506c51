"""Who may use the console: users, API tokens and brute-force protection, all in MongoDB.

Collections (owned by the web app; indexes created by :meth:`AccessStore.ensure_indexes`):

- ``users``: ``{_id: name, role, password_hash, created_at}``; passwords hashed with werkzeug
  (scrypt by default). Users from ``WEBAPP_USERS`` live only in configuration.
- ``api_tokens``: ``{_id: token id, user, name, token_hash, created_at, revoked_at}``. A token
  is ``fwt_<id>_<secret>``; only the SHA-256 of the 256-bit secret is stored (a slow hash
  adds nothing for a random secret of that size).
- ``login_failures``: ``{user, at, expires_at}``, one document per failed login of a
  submitted name (deleted on success); ``login_locks``: ``{_id: name, until}``. Every worker
  process sees the same counts and locks.
- ``login_attempts``: ``{ip, at, expires_at}``, one document per login attempt, counted over
  a sliding window per client address; expired ones are swept by the app.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ASCENDING, IndexModel
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError
from werkzeug.security import check_password_hash, generate_password_hash

from webapp.settings import ROLES, USERNAME_PATTERN, ConfigUser

Doc = dict[str, Any]

USERS = "users"
API_TOKENS = "api_tokens"
LOGIN_FAILURES = "login_failures"
LOGIN_ATTEMPTS = "login_attempts"
LOGIN_LOCKS = "login_locks"

TOKEN_PATTERN = re.compile(r"^fwt_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
_USERNAME = re.compile(USERNAME_PATTERN)
MIN_PASSWORD_CHARS = 12


class UserError(ValueError):
    """A user or token request that cannot be carried out; the message says why."""


@dataclass(frozen=True, slots=True)
class User:
    name: str
    role: str
    source: str  # "database" or "config"

    @property
    def can_disposition(self) -> bool:
        return self.role == "analyst"


@dataclass(frozen=True, slots=True)
class LoginDecision:
    """The outcome of a login attempt; ``user`` is set only on success."""

    user: User | None
    locked_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class TokenInfo:
    token_id: str
    user: str
    name: str
    created_at: datetime | None
    revoked_at: datetime | None


def valid_username(name: str) -> bool:
    return bool(_USERNAME.match(name))


class AccessStore:
    """Users, API tokens and login throttling."""

    def __init__(
        self,
        db: Database[Doc],
        *,
        config_users: Iterable[ConfigUser] = (),
        lockout_threshold: int = 10,
        lockout: timedelta = timedelta(minutes=30),
        rate_limit: int = 30,
        rate_window: timedelta = timedelta(minutes=10),
        hash_method: str = "scrypt",
    ) -> None:
        self._users = db[USERS]
        self._tokens = db[API_TOKENS]
        self._failures = db[LOGIN_FAILURES]
        self._attempts = db[LOGIN_ATTEMPTS]
        self._locks = db[LOGIN_LOCKS]
        self._config_users = {u.name: u for u in config_users}
        self.lockout_threshold = lockout_threshold
        self.lockout = lockout
        self.rate_limit = rate_limit
        self.rate_window = rate_window
        self._hash_method = hash_method
        # Compared against when the user does not exist, so both paths cost one hash check.
        self._dummy_hash = generate_password_hash(secrets.token_hex(16), method=hash_method)
        self._indexes_ready = False
        self._lock = threading.Lock()

    def ensure_indexes(self) -> None:
        """Create this store's indexes once per process (idempotent on the server)."""
        if self._indexes_ready:
            return
        with self._lock:
            if self._indexes_ready:
                return
            self._tokens.create_indexes([IndexModel([("user", ASCENDING)], name="by_user")])
            # Not TTL indexes: FerretDB v1 does not implement expireAfterSeconds, so expired
            # attempts are deleted by the app (see ``allow_attempt``), using ``expiry``.
            for coll, keys, name in (
                (self._attempts, [("ip", ASCENDING), ("at", ASCENDING)], "by_ip"),
                (self._attempts, [("expires_at", ASCENDING)], "expiry"),
                (self._attempts, [("at", ASCENDING)], "by_at"),
                (self._failures, [("user", ASCENDING), ("at", ASCENDING)], "by_user"),
            ):
                coll.create_indexes([IndexModel(keys, name=name)])
            self._indexes_ready = True

    # --- users -------------------------------------------------------------------------------

    def hash_password(self, password: str) -> str:
        return generate_password_hash(password, method=self._hash_method)

    def get_user(self, name: str) -> User | None:
        """The user called ``name`` (configuration first, then the ``users`` collection)."""
        if not valid_username(name):
            return None
        configured = self._config_users.get(name)
        if configured is not None:
            return User(configured.name, configured.role, "config")
        doc = self._users.find_one({"_id": name}, {"role": 1})
        if doc is None or doc.get("role") not in ROLES:
            return None
        return User(name, str(doc["role"]), "database")

    def _password_hash(self, name: str) -> str | None:
        configured = self._config_users.get(name)
        if configured is not None:
            return configured.password_hash
        doc = self._users.find_one({"_id": name}, {"password_hash": 1})
        value = doc.get("password_hash") if doc else None
        return value if isinstance(value, str) else None

    def create_user(self, name: str, role: str, password: str, *, replace: bool = False) -> User:
        """Store a user with a hashed password.

        Raises:
            UserError: bad name/role/password, the name is taken, or defined in configuration.
        """
        if not valid_username(name):
            raise UserError(
                f"'{name}' is not a valid user name: 1-64 letters, digits, '.', '_', '@' or '-'"
            )
        if role not in ROLES:
            raise UserError(f"role must be one of {', '.join(ROLES)}")
        if len(password) < MIN_PASSWORD_CHARS:
            raise UserError(f"the password must have at least {MIN_PASSWORD_CHARS} characters")
        if name in self._config_users:
            raise UserError(f"'{name}' is defined in WEBAPP_USERS; change it there")
        doc = {
            "role": role,
            "password_hash": self.hash_password(password),
            "created_at": datetime.now(UTC),
        }
        if replace:
            self._users.update_one({"_id": name}, {"$set": doc}, upsert=True)
        else:
            try:
                self._users.insert_one({"_id": name, **doc})
            except DuplicateKeyError:
                raise UserError(
                    f"user '{name}' already exists (use --replace to reset it)"
                ) from None
        self._failures.delete_many({"user": name})
        self._locks.delete_one({"_id": name})
        return User(name, role, "database")

    def delete_user(self, name: str) -> bool:
        """Remove a stored user and revoke its API tokens; False if there was none."""
        deleted = self._users.delete_one({"_id": name}).deleted_count > 0
        self._tokens.update_many(
            {"user": name, "revoked_at": None}, {"$set": {"revoked_at": datetime.now(UTC)}}
        )
        return deleted

    def list_users(self) -> list[User]:
        stored = [
            User(str(d["_id"]), str(d.get("role", "")), "database")
            for d in self._users.find({}, {"role": 1}).sort([("_id", ASCENDING)])
        ]
        configured = [User(u.name, u.role, "config") for u in self._config_users.values()]
        return configured + stored

    # --- login -------------------------------------------------------------------------------
    # Every attempt and failure is its own inserted document and limits are counts over a
    # time range. Inserts are never lost under concurrency on any server, where a read-modify-
    # write counter can be (FerretDB v1 loses concurrent $inc updates of findAndModify).

    def allow_attempt(self, ip: str, now: datetime) -> bool:
        """Record one login attempt from ``ip``; False when more than the limit fall in the
        sliding window. Index: ``by_ip`` (ip, at)."""
        since = now - self.rate_window
        self._attempts.delete_many({"expires_at": {"$lt": now}})
        self._attempts.insert_one({"ip": ip, "at": now, "expires_at": now + self.rate_window})
        count = self._attempts.count_documents({"ip": ip, "at": {"$gt": since}})
        return count <= self.rate_limit

    def retry_after_seconds(self, now: datetime) -> int:
        """When the oldest attempt in the window leaves it (an upper bound)."""
        oldest = self._attempts.find_one(
            {"at": {"$gt": now - self.rate_window}}, {"at": 1}, sort=[("at", ASCENDING)]
        )
        when = oldest.get("at") if oldest else None
        if not isinstance(when, datetime):
            return int(self.rate_window.total_seconds())
        when = when.replace(tzinfo=UTC) if when.tzinfo is None else when
        return max(1, int((when + self.rate_window - now).total_seconds()) + 1)

    def locked_until(self, name: str, now: datetime) -> datetime | None:
        """The end of the account's lock, if it is locked now. Index: ``_id``."""
        doc = self._locks.find_one({"_id": name}, {"until": 1})
        until = doc.get("until") if doc else None
        if isinstance(until, datetime):
            until = until.replace(tzinfo=UTC) if until.tzinfo is None else until
            if until > now:
                return until
        return None

    def authenticate(self, name: str, password: str, now: datetime) -> LoginDecision:
        """Check a login; lock the name after ``lockout_threshold`` failures in a row.

        A locked account refuses even the right password until the lock expires. Unknown
        names are counted and locked the same way, so responses do not reveal which exist.
        Index: ``by_user`` (user, at) on ``login_failures``.
        """
        if not valid_username(name) or len(password) > 1024:
            check_password_hash(self._dummy_hash, password[:1024])
            return LoginDecision(None)
        locked = self.locked_until(name, now)
        if locked is not None:
            return LoginDecision(None, locked)
        stored = self._password_hash(name)
        ok = check_password_hash(stored or self._dummy_hash, password) and stored is not None
        user = self.get_user(name) if ok else None
        if user is not None:
            self._failures.delete_many({"user": name})
            return LoginDecision(user)
        self._failures.insert_one({"user": name, "at": now, "expires_at": now + self.lockout})
        failures = self._failures.count_documents({"user": name, "at": {"$gt": now - self.lockout}})
        if failures >= self.lockout_threshold:
            until = now + self.lockout
            self._locks.update_one({"_id": name}, {"$set": {"until": until}}, upsert=True)
            self._failures.delete_many({"user": name})
            return LoginDecision(None, until)
        return LoginDecision(None)

    # --- API tokens --------------------------------------------------------------------------

    def create_token(self, user: str, name: str = "") -> tuple[str, str]:
        """A new API token for ``user``: returns (token id, the token; shown only once)."""
        if self.get_user(user) is None:
            raise UserError(f"there is no user '{user}'")
        token_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        self._tokens.insert_one(
            {
                "_id": token_id,
                "user": user,
                "name": name[:100],
                "token_hash": hashlib.sha256(secret.encode()).hexdigest(),
                "created_at": datetime.now(UTC),
                "revoked_at": None,
            }
        )
        return token_id, f"fwt_{token_id}_{secret}"

    def revoke_token(self, token_id: str) -> bool:
        """Revoke a token by id; False if no active token has that id."""
        result = self._tokens.update_one(
            {"_id": token_id, "revoked_at": None}, {"$set": {"revoked_at": datetime.now(UTC)}}
        )
        return result.modified_count > 0

    def list_tokens(self, user: str | None = None) -> list[TokenInfo]:
        flt: Doc = {"user": user} if user else {}
        out = []
        for d in self._tokens.find(flt, {"token_hash": 0}).sort([("created_at", ASCENDING)]):
            out.append(
                TokenInfo(
                    token_id=str(d["_id"]),
                    user=str(d.get("user", "")),
                    name=str(d.get("name", "")),
                    created_at=d.get("created_at"),
                    revoked_at=d.get("revoked_at"),
                )
            )
        return out

    def user_for_token(self, token: str) -> User | None:
        """The user an ``Authorization: Bearer`` token belongs to, if it is valid and active."""
        match = TOKEN_PATTERN.match(token)
        if not match:
            return None
        doc = self._tokens.find_one({"_id": match.group(1)})
        if doc is None or doc.get("revoked_at") is not None:
            return None
        expected = str(doc.get("token_hash", ""))
        actual = hashlib.sha256(match.group(2).encode()).hexdigest()
        if not hmac.compare_digest(expected, actual):
            return None
        return self.get_user(str(doc.get("user", "")))
