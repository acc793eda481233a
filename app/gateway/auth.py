"""Who is calling the gateway: a BTC Watcher user, never a bot's own credentials.

Accepted, in this order:
- `Authorization: Bearer <gateway access token>` issued by the gateway's own
  `/api/v1/token/login` (what FreqUI and freqtrade-client use after logging in);
- `Authorization: Bearer btcw_…`: a BTC Watcher API token;
- `Authorization: Basic user:password` of a BTC Watcher user (login lockout applies, see below);
- the web app's session cookie (same SECRET_KEY), with the CSRF token in `X-CSRFToken` for
  anything but GET/HEAD/OPTIONS.

Checking a password or a token costs a hash or a database query, so a successful check is
cached in memory for AUTH_CACHE_SECONDS, keyed by a digest of the credential (never the
credential itself). After that a Basic login is renewed with one database read (same password
hash, not locked) instead of another slow hash; a first check runs the hash in gevent's thread
pool so other requests are not held up. Failures are never cached, so every wrong password
counts toward lockout.

Lockout: a wrong Basic password counts toward the same lockout as the login page
(system.security.max_login_attempts failures lock the account for lockout_duration_minutes).
It is the same account and the same password, so the gateway must not be a way around the web
app's lockout; a locked account is refused on both. The 401 says how many attempts are left
(`attempts_left`) or until when the account is locked (`locked_until`), as the login page does.
Each refused Basic login is logged as one warning line (user, client address, reason), no
traceback.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from werkzeug.http import parse_cookie

from app.auth import service
from app.auth.service import lockout_message
from app.clock import isoformat, utcnow
from app.runtime.bot_client import _in_gevent

log = logging.getLogger(__name__)

AUTH_CACHE_SECONDS = 15.0
AUTH_CACHE_MAX = 10_000
ACCESS_TOKEN_SECONDS = 15 * 60  # like FreqTrade's own access tokens
REFRESH_TOKEN_SECONDS = 30 * 24 * 3600
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


class AuthFailure(Exception):
    """The caller could not be authenticated; `status` is 401 (or 403 for a CSRF failure).

    `details` are extra fields of the JSON error (attempts_left, locked_until); `username` is
    the user a refused Basic login named (for the log line).
    """

    def __init__(self, message: str, status: int = 401, details: dict | None = None,
                 username: str | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.details = details or {}
        self.username = username


def _locked(locked_until: datetime, username: str | None = None) -> AuthFailure:
    """The failure of a locked account: until when, in the login page's words."""
    return AuthFailure(lockout_message(locked_until),
                       details={"locked_until": isoformat(locked_until)}, username=username)


@dataclass(frozen=True)
class Caller:
    """An authenticated BTC Watcher user."""

    user_id: int
    username: str
    method: str  # gateway_token | api_token | basic | session


def _password_mark(user) -> str:
    """What the user's sessions and tokens carry: they die with a password change or logout."""
    return service.session_mark(user)


class GatewayAuth:
    """Authenticates gateway callers and issues the gateway's own FreqTrade-style tokens."""

    def __init__(self, app):
        self.app = app
        secret = app.config["SECRET_KEY"]
        self._access = URLSafeTimedSerializer(secret, salt="btcw-gateway-access")
        self._refresh = URLSafeTimedSerializer(secret, salt="btcw-gateway-refresh")
        self._session = app.session_interface.get_signing_serializer(app)
        self._csrf = URLSafeTimedSerializer(
            app.config.get("WTF_CSRF_SECRET_KEY") or secret, salt="wtf-csrf-token")
        self._cookie_name = app.config.get("SESSION_COOKIE_NAME", "session")
        self._session_max_age = int(app.permanent_session_lifetime.total_seconds())
        self._cache: dict[bytes, tuple[Caller, float, str | None]] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ entry point

    def identify(self, environ: dict, method: str, query_token: str | None = None) -> Caller:
        """The caller of a WSGI request, or raise AuthFailure with a message saying why.

        `query_token` is the `?token=` of a websocket request (FreqUI sends its access token
        there since browsers cannot set headers on websockets).
        """
        header = environ.get("HTTP_AUTHORIZATION", "")
        if header:
            cached = self._cached(header)
            if cached is not None:
                return cached
            scheme = header[:7].lower()
            if scheme == "bearer ":
                return self._remember(header, self._bearer(header[7:].strip()))
            if scheme[:6] == "basic ":
                try:
                    caller = self._revalidated(header)
                    if caller is None:
                        caller, mark = _off_the_loop(self._basic, header[6:].strip(),
                                                     environ.get("REMOTE_ADDR") or "")
                        self._remember(header, caller, mark)
                except AuthFailure as exc:
                    log.warning("gateway: Basic login of %r from %s refused: %s",
                                exc.username, _client_address(environ), exc.message)
                    raise
                return caller
            raise AuthFailure("Unsupported Authorization scheme: use Basic or Bearer.")
        if query_token:
            cached = self._cached(query_token)
            if cached is not None:
                return cached
            return self._remember(query_token, self._bearer(query_token))
        return self._cookie(environ, method)

    # ------------------------------------------------------------------ tokens

    def issue_tokens(self, caller: Caller) -> dict:
        """A FreqTrade-shaped token pair for a user: {"access_token", "refresh_token"}."""
        payload = self._payload(caller.user_id)
        return {"access_token": self._access.dumps(payload),
                "refresh_token": self._refresh.dumps(payload)}

    def refresh_tokens(self, environ: dict) -> dict:
        """A new access token for the refresh token sent as Bearer (FreqTrade's token/refresh)."""
        header = environ.get("HTTP_AUTHORIZATION", "")
        if header[:7].lower() != "bearer ":
            raise AuthFailure("Send the refresh token as 'Authorization: Bearer <token>'.")
        try:
            payload = self._refresh.loads(header[7:].strip(), max_age=REFRESH_TOKEN_SECONDS)
        except SignatureExpired as exc:
            raise AuthFailure("Refresh token expired; log in again.") from exc
        except BadSignature as exc:
            raise AuthFailure("Invalid refresh token.") from exc
        caller = self._from_payload(payload, "gateway_token")
        return {"access_token": self._access.dumps(self._payload(caller.user_id))}

    def _payload(self, user_id: int) -> dict:
        user = self._user(user_id)
        if user is None:
            raise AuthFailure("Unknown user.")
        return {"u": user.id, "p": _password_mark(user)}

    def _from_payload(self, payload, method: str) -> Caller:
        if not isinstance(payload, dict) or "u" not in payload:
            raise AuthFailure("Invalid token.")
        user = self._user(payload["u"])
        if user is None or payload.get("p") != _password_mark(user):
            raise AuthFailure("Token no longer valid (user removed, password changed or "
                              "signed out).")
        return Caller(user.id, user.username, method)

    # ------------------------------------------------------------------ schemes

    def _bearer(self, token: str) -> Caller:
        if not token:
            raise AuthFailure("Empty Bearer token.")
        if token.startswith("btcw_"):
            with self.app.app_context():
                user = service.user_for_token(token)
                if user is None:
                    raise AuthFailure("Invalid or revoked API token.")
                return Caller(user.id, user.username, "api_token")
        try:
            payload = self._access.loads(token, max_age=ACCESS_TOKEN_SECONDS)
        except SignatureExpired as exc:
            raise AuthFailure("Access token expired; refresh it or log in again.") from exc
        except BadSignature as exc:
            raise AuthFailure("Invalid Bearer token.") from exc
        return self._from_payload(payload, "gateway_token")

    def _basic(self, encoded: str, source: str = "") -> tuple[Caller, str]:
        """Check Basic credentials (a slow password hash) from the peer address `source`, which
        counts toward the login lockout like the login page; (caller, password-hash mark)."""
        try:
            username, sep, password = base64.b64decode(encoded).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
            raise AuthFailure("Malformed Basic credentials.") from exc
        if not sep:
            raise AuthFailure("Malformed Basic credentials.")
        with self.app.app_context():
            result = service.authenticate(username, password, source=source)
            if result.user is None:
                if result.locked_until is not None:
                    raise _locked(result.locked_until, username[:64])
                details = ({"attempts_left": result.attempts_left}
                           if result.attempts_left is not None else {})
                raise AuthFailure(result.error or "Invalid username or password.",
                                  details=details, username=username[:64])
            return (Caller(result.user.id, result.user.username, "basic"),
                    _password_mark(result.user))

    def _cookie(self, environ: dict, method: str) -> Caller:
        raw = environ.get("HTTP_COOKIE")
        value = parse_cookie(raw).get(self._cookie_name) if raw else None
        if not value:
            raise AuthFailure("Login required: send Basic credentials of a BTC Watcher user, "
                              "a Bearer token, or a session cookie.")
        caller = self._cached("cookie:" + value)
        if caller is None:
            try:
                data = self._session.loads(value, max_age=self._session_max_age)
            except BadSignature as exc:
                raise AuthFailure("Session expired or invalid; log in again.") from exc
            user = self._user(data.get("user_id")) if isinstance(data, dict) else None
            if user is None:
                raise AuthFailure("Login required: the session has no user.")
            if data.get("mark") != _password_mark(user):
                raise AuthFailure("Session ended (signed out or password changed); log in "
                                  "again.")
            caller = self._remember("cookie:" + value, Caller(user.id, user.username, "session"))
        else:
            data = None
        if method not in SAFE_METHODS:
            self._check_csrf(environ, value, data)
        return caller

    def _check_csrf(self, environ: dict, cookie: str, data: dict | None) -> None:
        """A session-authenticated change needs the page's CSRF token (X-CSRFToken)."""
        token = environ.get("HTTP_X_CSRFTOKEN") or environ.get("HTTP_X_CSRF_TOKEN")
        if not token:
            raise AuthFailure("CSRF token missing: send X-CSRFToken with a session login.", 403)
        if data is None:
            try:
                data = self._session.loads(cookie, max_age=self._session_max_age)
            except BadSignature as exc:  # pragma: no cover - checked just before
                raise AuthFailure("Session invalid.", 403) from exc
        expected = data.get("csrf_token") if isinstance(data, dict) else None
        try:
            raw = self._csrf.loads(token)
        except BadSignature as exc:
            raise AuthFailure("CSRF token invalid.", 403) from exc
        if not expected or not hmac.compare_digest(str(expected), str(raw)):
            raise AuthFailure("CSRF token does not match the session.", 403)

    # ------------------------------------------------------------------ helpers

    def _user(self, user_id):
        if not isinstance(user_id, int):
            return None
        with self.app.app_context():
            user = service.user_by_id(user_id)
            if user is not None:
                # Detach what we need so it outlives the app context.
                return _UserView(user.id, user.username, user.password_hash, user.locked_until,
                                 user.session_epoch)
            return None

    def _key(self, credential: str) -> bytes:
        return hashlib.blake2b(credential.encode(), digest_size=20).digest()

    def _cached(self, credential: str) -> Caller | None:
        hit = self._cache.get(self._key(credential))
        if hit is not None and hit[1] > time.monotonic():
            return hit[0]
        return None

    def _remember(self, credential: str, caller: Caller, mark: str | None = None) -> Caller:
        with self._lock:
            if len(self._cache) >= AUTH_CACHE_MAX:
                self._cache.clear()
            self._cache[self._key(credential)] = (caller, time.monotonic() + AUTH_CACHE_SECONDS,
                                                  mark)
        return caller

    def _revalidated(self, credential: str) -> Caller | None:
        """An expired Basic login, renewed without hashing the password again when the user's
        password hash is unchanged and the account is not locked (one database read)."""
        hit = self._cache.get(self._key(credential))
        if hit is None or hit[2] is None:
            return None
        caller, _, mark = hit
        user = self._user(caller.user_id)
        if user is None or _password_mark(user) != mark:
            return None
        if user.locked_until is not None and user.locked_until > utcnow():
            with self.app.app_context():
                raise _locked(user.locked_until, user.username)
        return self._remember(credential, caller, mark)

    def forget(self) -> None:
        """Drop every cached login (tests; after a password change)."""
        with self._lock:
            self._cache.clear()


@dataclass(frozen=True)
class _UserView:
    id: int
    username: str
    password_hash: str
    locked_until: datetime | None = None
    session_epoch: int = 0


def _client_address(environ: dict) -> str:
    """The caller's address for a log line: X-Forwarded-For's first hop, else REMOTE_ADDR."""
    forwarded = environ.get("HTTP_X_FORWARDED_FOR", "")
    return forwarded.split(",")[0].strip()[:64] or environ.get("REMOTE_ADDR") or "?"


def _outcome(func, args) -> tuple[bool, object]:
    """(True, result) or (False, the exception): nothing is raised inside the thread pool."""
    try:
        return True, func(*args)
    except Exception as exc:  # noqa: BLE001 - handed back to the caller, raised there
        return False, exc


def _off_the_loop(func, *args):
    """Run a CPU-heavy call (a password hash) in gevent's thread pool when this process is
    gevent-patched, so the worker's other requests keep flowing; directly otherwise.

    An exception of `func` is raised in the caller, not inside the pool: gevent's hub would
    print the traceback of every exception raised in a pool thread ("… failed with
    AuthFailure"), one per wrong password.
    """
    if _in_gevent():
        from gevent import get_hub

        ok, value = get_hub().threadpool.apply(_outcome, (func, args))
        if not ok:
            raise value
        return value
    return func(*args)
