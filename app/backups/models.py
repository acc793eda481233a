"""Backups made by the backup job or `flask backup run`."""

from __future__ import annotations

from app.clock import utcnow
from app.extensions import db


class Backup(db.Model):
    __tablename__ = "backups"

    id = db.Column(db.Integer, primary_key=True)
    filename = db.Column(db.String(255), nullable=False)
    status = db.Column(db.String(16), nullable=False, default="running")  # running|ok|failed
    size_bytes = db.Column(db.BigInteger)
    sha256 = db.Column(db.String(64))
    parts = db.Column(db.JSON, nullable=False, default=list)
    error = db.Column(db.Text, nullable=False, default="")
    created_at = db.Column(db.DateTime, nullable=False, default=utcnow, index=True)
    finished_at = db.Column(db.DateTime)
    trigger = db.Column(db.String(16), nullable=False, default="manual")  # manual|daily|upgrade
    verified_at = db.Column(db.DateTime)
    verify_error = db.Column(db.Text, nullable=False, default="")
    manifest = db.Column(db.JSON, nullable=False, default=dict)
