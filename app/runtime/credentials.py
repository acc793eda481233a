"""Random credentials for a bot's REST API, message websocket and webhook.

The strategies service fills them in when it creates a Strategy (`new_credentials()`); the runtime
fills any that are still empty before a start (`ensure_credentials()`).
"""

from __future__ import annotations

import secrets

# Strategy column -> how to make a fresh value. FreqTrade needs jwt_secret_key >= 32 characters.
_GENERATORS = {
    "api_username": lambda: f"btcw-{secrets.token_hex(4)}",
    "api_password": lambda: secrets.token_urlsafe(24),
    "jwt_secret": lambda: secrets.token_hex(32),
    "ws_token": lambda: secrets.token_urlsafe(24),
    "webhook_token": lambda: secrets.token_urlsafe(24),
}
JWT_SECRET_MIN_LENGTH = 32


def new_credentials() -> dict[str, str]:
    """A fresh set of values for the Strategy credential columns."""
    return {column: make() for column, make in _GENERATORS.items()}


def ensure_credentials(strategy) -> bool:
    """Fill empty (or too short) credential columns of a Strategy in place; True if any changed."""
    changed = False
    for column, make in _GENERATORS.items():
        value = getattr(strategy, column, None) or ""
        too_short = column == "jwt_secret" and len(value) < JWT_SECRET_MIN_LENGTH
        if not value or too_short:
            setattr(strategy, column, make())
            changed = True
    return changed
