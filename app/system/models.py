"""System-wide records: installed FreqTrade versions and runtime settings."""

from __future__ import annotations

from app.clock import utcnow
from app.extensions import db


class FreqtradeVersion(db.Model):
    __tablename__ = "freqtrade_versions"

    id = db.Column(db.Integer, primary_key=True)
    version = db.Column(db.String(32), unique=True, nullable=False)
    executable = db.Column(db.String(512), nullable=False)
    status = db.Column(db.String(16), nullable=False, default="installed")
    is_active = db.Column(db.Boolean, nullable=False, default=False)
    installed_at = db.Column(db.DateTime, nullable=False, default=utcnow)
    message = db.Column(db.Text, nullable=False, default="")


class SystemSetting(db.Model):
    """A value changed at run time from a page or the API (e.g. the capacity alert threshold)."""

    __tablename__ = "system_settings"

    key = db.Column(db.String(64), primary_key=True)
    value = db.Column(db.JSON)
    updated_at = db.Column(db.DateTime, nullable=False, default=utcnow, onupdate=utcnow)
