"""Reading the text of a FreqTrade strategy message (the webhook's `msg`)."""

from __future__ import annotations

import json
from typing import Any


def message_json(msg: Any) -> dict | None:
    """The JSON object a strategy message's text holds; None for plain text, for JSON that is
    not an object, and for brackets nested too deeply to read (the one reader of msg text)."""
    if not isinstance(msg, str) or not msg.lstrip().startswith("{"):
        return None
    try:
        decoded = json.loads(msg)
    except (ValueError, RecursionError):
        return None
    return decoded if isinstance(decoded, dict) else None
