"""Strategies: records, pages, JSON API and CLI for the FreqTrade bots."""

from flask import Blueprint

bp = Blueprint("strategies", __name__)
api = Blueprint("strategies_api", __name__)

from app.strategies import routes  # noqa: E402,F401

BLUEPRINTS = [(bp, "/strategies"), (api, "/api/v1/strategies")]
