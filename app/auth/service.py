"""Passwords, logins with lockout, and API tokens."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import case, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from werkzeug.security import check_password_hash, generate_password_hash

from app.auth.models import ApiToken, LoginAttempts, User
from app.clock import isoformat, utcnow
from app.errors import AppError, NotFound
from app.extensions import db
from app.system.settings import current_settings

USERNAME_MAX = 64
PASSWORD_MAX = 256


class AuthError(AppError, ValueError):
    """A user-facing problem with a username, password or token (a 400 in the API)."""


@dataclass
class LoginResult:
    user: User | None
    error: str | None = None
    locked_until: datetime | None = None
    attempts_left: int | None = None  # after a wrong password: failures left before the lock


def check_password_policy(password: str) -> None:
    """Raise AuthError unless the password meets the configured policy."""
    sec = current_settings().system.security
    if len(password) < sec.min_password_length:
        raise AuthError(f"Password must be at least {sec.min_password_length} characters.")
    if len(password) > PASSWORD_MAX:
        raise AuthError(f"Password must be at most {PASSWORD_MAX} characters.")
    if sec.require_special_chars and all(c.isalnum() for c in password):
        raise AuthError("Password must contain at least one special character (e.g. !@#$%).")


def validate_username(username: str) -> str:
    """Normalise and check a username; raise AuthError naming the problem."""
    name = (username or "").strip()
    if not name:
        raise AuthError("Username is required.")
    if len(name) > USERNAME_MAX:
        raise AuthError(f"Username must be at most {USERNAME_MAX} characters.")
    if any(c.isspace() or not c.isprintable() for c in name):
        raise AuthError("Username must not contain spaces or control characters.")
    return name


def create_user(username: str, password: str, is_admin: bool = True) -> User:
    """Create a user after checking the name and the password policy."""
    name = validate_username(username)
    check_password_policy(password)
    if db.session.scalar(select(User).where(User.username == name)):
        raise AuthError(f"User {name!r} already exists.")
    user = User(username=name, password_hash=generate_password_hash(password), is_admin=is_admin)
    db.session.add(user)
    db.session.commit()
    return user


def session_mark(user) -> str:
    """What every session and gateway token of a user carries: it changes with the password
    and with end_sessions(), which ends them all."""
    seed = f"{user.session_epoch or 0}:{user.password_hash}"
    return hashlib.sha256(seed.encode()).hexdigest()[:16]


def end_sessions(user: User) -> None:
    """End every session and gateway token of the user (a logout, a password change)."""
    db.session.execute(update(User).where(User.id == user.id)
                       .values(session_epoch=User.session_epoch + 1))
    db.session.commit()
    db.session.refresh(user)


def set_password(user: User, password: str) -> None:
    """Change a user's password (policy checked), clear any lockout and end every session."""
    check_password_policy(password)
    user.password_hash = generate_password_hash(password)
    user.session_epoch = (user.session_epoch or 0) + 1
    user.failed_logins = 0
    user.locked_until = None
    db.session.execute(update(LoginAttempts).where(LoginAttempts.user_id == user.id)
                       .values(attempts=0, locked_until=None))
    db.session.commit()


def authenticate(username: str, password: str, now: datetime | None = None,
                 source: str = "") -> LoginResult:
    """Check a login from `source` (the caller's address) with lockout.

    Each attempt is counted atomically *before* the password is checked, so a burst of parallel
    guesses gets at most system.security.max_login_attempts checks. That many failures in a row
    lock the (account, source) pair: a stranger cannot lock the owner out from elsewhere. Failures
    from every source together lock the whole account past account_lockout_attempts.
    """
    now = now or utcnow()
    sec = current_settings().system.security
    name = (username or "").strip()[:USERNAME_MAX]
    if not name.isprintable():
        name = ""  # control characters never belong to a user name (and PostgreSQL refuses NUL)
    user = db.session.scalar(select(User).where(User.username == name)) if name else None
    if user is None:
        # Same work as a real check, so timing does not reveal which names exist.
        check_password_hash(_DUMMY_HASH, password or "")
        return LoginResult(None, "Invalid username or password.")
    lock = timedelta(minutes=sec.lockout_duration_minutes)
    if user.locked_until and user.locked_until > now:
        return LoginResult(None, "Account locked.", user.locked_until)
    source = (source or "")[:64]
    attempts, pair_locked = _count_attempt(user.id, source, now)
    if pair_locked and pair_locked > now:
        return LoginResult(None, "Account locked.", pair_locked)
    if attempts > sec.max_login_attempts:  # the attempt that reached the limit is locking it
        return LoginResult(None, "Account locked.", now + lock)
    if check_password_hash(user.password_hash, (password or "")[:PASSWORD_MAX]):
        db.session.execute(update(LoginAttempts).where(
            LoginAttempts.user_id == user.id, LoginAttempts.source == source
        ).values(attempts=0, locked_until=None, updated_at=now))
        db.session.execute(update(User).where(User.id == user.id).values(
            failed_logins=0, locked_until=None, last_login_at=now))
        db.session.commit()
        return LoginResult(user)
    account_failures = db.session.execute(
        update(User).where(User.id == user.id).values(failed_logins=User.failed_logins + 1)
        .returning(User.failed_logins)).scalar_one()
    locked = None
    if attempts >= sec.max_login_attempts:
        locked = now + lock
        db.session.execute(update(LoginAttempts).where(
            LoginAttempts.user_id == user.id, LoginAttempts.source == source
        ).values(attempts=0, locked_until=locked, updated_at=now))
    if account_failures >= sec.account_lockout_attempts:
        locked = now + lock
        db.session.execute(update(User).where(User.id == user.id).values(
            failed_logins=0, locked_until=locked))
    db.session.commit()
    if locked:
        return LoginResult(None, "Account locked.", locked)
    left = sec.max_login_attempts - attempts
    return LoginResult(None, f"Invalid username or password ({left} attempts left).",
                       attempts_left=left)


def _count_attempt(user_id: int, source: str, now: datetime) -> tuple[int, datetime | None]:
    """Count one attempt on (account, source) in one statement; (attempts so far, locked until).

    An expired lock starts a fresh count."""
    table = LoginAttempts.__table__
    insert = pg_insert if db.engine.dialect.name == "postgresql" else sqlite_insert
    expired = (table.c.locked_until.is_not(None)) & (table.c.locked_until <= now)
    statement = insert(table).values(user_id=user_id, source=source, attempts=1,
                                     updated_at=now).on_conflict_do_update(
        index_elements=[table.c.user_id, table.c.source],
        set_={"attempts": case((expired, 1), else_=table.c.attempts + 1),
              "locked_until": case((expired, None), else_=table.c.locked_until),
              "updated_at": now},
    ).returning(table.c.attempts, table.c.locked_until)
    attempts, locked_until = db.session.execute(statement).one()
    db.session.commit()
    return attempts, locked_until


_DUMMY_HASH = generate_password_hash("not-a-real-password!")


def lockout_message(locked_until: datetime) -> str:
    """What a locked-out gateway caller is told (in the words of the login page)."""
    attempts = current_settings().system.security.max_login_attempts
    return (f"Account locked after {attempts} failed logins until "
            f"{locked_until:%Y-%m-%d %H:%M} UTC.")


def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


MAX_TOKEN_DAYS = 3650


def create_token(user: User, name: str, expires_days: int | None = None) -> tuple[ApiToken, str]:
    """Create an API token (valid until revoked, or for `expires_days` days); the plain token is
    returned once and only its hash is stored."""
    name = name.strip() if isinstance(name, str) else ""
    if not name or len(name) > 64 or not name.isprintable():
        raise AuthError("Token name must be 1..64 printable characters.")
    if expires_days is not None and (isinstance(expires_days, bool)
                                     or not isinstance(expires_days, int)
                                     or not 1 <= expires_days <= MAX_TOKEN_DAYS):
        raise AuthError(f"expires_days must be a whole number of days from 1 to "
                        f"{MAX_TOKEN_DAYS}, or empty for no expiry.")
    plain = "btcw_" + secrets.token_urlsafe(32)
    expires = utcnow() + timedelta(days=expires_days) if expires_days else None
    token = ApiToken(name=name, user_id=user.id, token_hash=_hash_token(plain), prefix=plain[:10],
                     expires_at=expires)
    db.session.add(token)
    db.session.commit()
    return token, plain


def user_for_token(plain: str, now: datetime | None = None) -> User | None:
    """The user an API token belongs to, or None if unknown or revoked."""
    if not plain or len(plain) > 200:
        return None
    token = db.session.scalar(select(ApiToken).where(ApiToken.token_hash == _hash_token(plain)))
    now = now or utcnow()
    if token is None or token.revoked_at is not None or (
            token.expires_at is not None and token.expires_at <= now):
        return None
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
        token.last_used_at = now
        db.session.commit()
    return token.user


def revoke_token(token_id: int) -> ApiToken:
    """Revoke a token so it no longer authenticates (revoking twice keeps the first time)."""
    token = db.session.get(ApiToken, token_id) if 1 <= token_id < 2**63 else None
    if token is None:
        raise NotFound(f"No token with id {token_id}.")
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        db.session.commit()
    return token


def list_tokens(user: User | None = None) -> list[ApiToken]:
    """Every API token (of one user, when given), newest first; never the token itself."""
    query = select(ApiToken).order_by(ApiToken.id.desc())
    if user is not None:
        query = query.where(ApiToken.user_id == user.id)
    return list(db.session.scalars(query))


def token_state(token: ApiToken, now: datetime | None = None) -> str:
    """active, expired or revoked."""
    now = now or utcnow()
    if token.revoked_at is not None:
        return "revoked"
    if token.expires_at is not None and token.expires_at <= now:
        return "expired"
    return "active"


def token_json(token: ApiToken) -> dict:
    """What the API and CLI show of a token: its name, dates and state, never the secret."""
    return {"id": token.id, "name": token.name, "user": token.user.username,
            "prefix": token.prefix, "state": token_state(token),
            "created_at": isoformat(token.created_at),
            "last_used_at": isoformat(token.last_used_at) if token.last_used_at else None,
            "expires_at": isoformat(token.expires_at) if token.expires_at else None,
            "revoked_at": isoformat(token.revoked_at) if token.revoked_at else None}


def user_by_id(user_id: int | None) -> User | None:
    """The user with that id, or None."""
    return db.session.get(User, user_id) if user_id else None


def user_by_name(username: str) -> User | None:
    """The user with that name, or None."""
    return db.session.scalar(select(User).where(User.username == username))


def first_admin() -> User | None:
    """The oldest admin user, or None on a fresh install."""
    return db.session.scalar(select(User).where(User.is_admin.is_(True)).order_by(User.id))


def generate_password() -> str:
    """A random password that meets the policy."""
    return secrets.token_urlsafe(12) + "!"
