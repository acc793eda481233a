"""Notifications: channels, policy, delivery and history."""

from flask import Blueprint

bp = Blueprint("notifications", __name__)
api = Blueprint("notifications_api", __name__)

from app.notifications import routes  # noqa: E402,F401

BLUEPRINTS = [(bp, "/notifications"), (api, "/api/v1/notifications")]
