"""Auth: login, logout, sessions and API tokens."""

from flask import Blueprint

bp = Blueprint("auth", __name__)

from app.auth import routes  # noqa: E402,F401

BLUEPRINTS = [(bp, "")]
