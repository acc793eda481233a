"""Error responses: JSON for the API, an HTML page for pages."""

from __future__ import annotations

import logging

from flask import Flask, jsonify, render_template
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

TITLES = {
    400: "Bad request",
    401: "Login required",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Request too large",
    422: "Unprocessable input",
    429: "Too many requests",
    500: "Something went wrong",
    502: "Bot unreachable",
    503: "Service unavailable",
    504: "Bot timed out",
}


def error_response(code: int, message: str, **extra):
    """One error, shaped for the caller: JSON for /api and JSON clients, else a page."""
    from app.auth.guard import wants_json

    title = TITLES.get(code, "Error")
    if wants_json():
        body = {"error": title, "message": message, "status": code}
        body.update(extra)
        return jsonify(body), code
    return render_template("errors/error.html", code=code, title=title, message=message), code


def register(app: Flask) -> None:
    """Route every HTTP error and unexpected exception through error_response."""

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        code = exc.code or 500
        message = exc.description or TITLES.get(code, "Error")
        if code == 413:
            limit = app.config.get("MAX_CONTENT_LENGTH") or 0
            message = f"Request body is larger than {limit // 1024} KiB."
        return error_response(code, message)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        if isinstance(exc, HTTPException):  # pragma: no cover - handled above
            return _http_error(exc)
        log.exception("unhandled error")
        return error_response(500, "An unexpected error occurred; it has been logged.")
