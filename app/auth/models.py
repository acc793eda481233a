"""Users and API tokens."""

from __future__ import annotations

from app.clock import utcnow
from app.extensions import db


class User(db.Model):
    __tablename__ = "users"

    id = db.Column(db.Integer, primary_key=True)
    username = db.Column(db.String(64), unique=True, nullable=False)
    password_hash = db.Column(db.String(255), nullable=False)
    is_admin = db.Column(db.Boolean, nullable=False, default=True)
    failed_logins = db.Column(db.Integer, nullable=False, default=0)
    locked_until = db.Column(db.DateTime)
    last_login_at = db.Column(db.DateTime)
    created_at = db.Column(db.DateTime, nullable=False, default=utcnow)
    # Raised by a logout or a password change: every session and gateway token made before
    # carries the old value and stops working (service.session_mark).
    session_epoch = db.Column(db.Integer, nullable=False, default=0, server_default="0")

    def __repr__(self) -> str:
        return f"<User {self.username}>"


class ApiToken(db.Model):
    __tablename__ = "api_tokens"

    id = db.Column(db.Integer, primary_key=True)
    name = db.Column(db.String(64), nullable=False)
    user_id = db.Column(db.Integer, db.ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    token_hash = db.Column(db.String(64), unique=True, nullable=False)
    prefix = db.Column(db.String(12), nullable=False)
    created_at = db.Column(db.DateTime, nullable=False, default=utcnow)
    last_used_at = db.Column(db.DateTime)
    revoked_at = db.Column(db.DateTime)
    expires_at = db.Column(db.DateTime)  # none: until revoked

    user = db.relationship("User")


class LoginAttempts(db.Model):
    """Login attempts on one account from one source address, counted atomically; five in a
    row without a success lock that pair (system.security.max_login_attempts)."""

    __tablename__ = "login_attempts"
    __table_args__ = (db.UniqueConstraint("user_id", "source", name="uq_login_attempts_source"),)

    id = db.Column(db.Integer, primary_key=True)
    user_id = db.Column(db.Integer, db.ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    source = db.Column(db.String(64), nullable=False, default="")
    attempts = db.Column(db.Integer, nullable=False, default=0)
    locked_until = db.Column(db.DateTime)
    updated_at = db.Column(db.DateTime, nullable=False, default=utcnow)

