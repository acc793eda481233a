"""One error path: `AppError` carries the HTTP status and the user's message; one handler
renders it (and every HTTP error) as JSON for the API and JSON clients, plain text for an htmx
request (static/js/app.js shows it in a toast), and an HTML page otherwise.

Services raise an AppError subclass; routes let it through instead of catching it.
"""

from __future__ import annotations

import logging

from flask import Flask, current_app, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
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


class AppError(Exception):
    """A request the product refuses: `status` (HTTP), `message` (what the user reads) and
    `extra`, fields added to the JSON answer (the field at fault, per-field errors, …)."""

    status = 400

    def __init__(self, message: str, *, status: int | None = None, **extra):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        self.extra = {k: v for k, v in extra.items() if v is not None}


class NotFound(AppError, LookupError):
    """No such record (or it was deleted)."""

    status = 404


class Conflict(AppError, ValueError):
    """The request does not fit the current state."""

    status = 409


def is_websocket() -> bool:
    """A WebSocket handshake (`Upgrade: websocket`) or a request for one of the /ws/ routes.

    Such a client cannot follow a redirect to the login page, so it gets a plain status code.
    """
    return (request.path.startswith("/ws/")
            or request.headers.get("Upgrade", "").lower() == "websocket")


def wants_json() -> bool:
    """API paths, WebSocket routes and clients that ask for JSON get JSON errors (a 401 for a
    missing login instead of a redirect to the login page). The gateway answers JSON always
    (it has no pages of its own to show an error in)."""
    if current_app.config.get("BTCW_JSON_ERRORS"):
        return True
    if request.path.startswith("/api/") or request.path == "/health" or is_websocket():
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json" and not request.headers.get("HX-Request")


def error_response(code: int, message: str, **extra):
    """One error, shaped for the caller: JSON for /api and JSON clients, else a page."""
    title = TITLES.get(code, "Error")
    if wants_json():
        body = {"error": title, "message": message, "status": code}
        body.update(extra)
        return jsonify(body), code
    return render_template("errors/error.html", code=code, title=title, message=message), code


def app_error_response(exc: AppError):
    """An AppError for the caller; an htmx button gets the message as text for its toast."""
    if request.headers.get("HX-Request") and not wants_json():
        return exc.message, exc.status, {"Content-Type": "text/plain; charset=utf-8"}
    return error_response(exc.status, exc.message, **exc.extra)


def register(app: Flask) -> None:
    """Route AppErrors, HTTP errors, CSRF failures and unexpected exceptions through
    error_response."""

    @app.errorhandler(AppError)
    def _app_error(exc: AppError):
        return app_error_response(exc)

    @app.errorhandler(CSRFError)
    def _csrf_error(exc: CSRFError):
        return error_response(400, f"CSRF check failed: {exc.description}")

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


def cli_error(exc: Exception):
    """The message of an error as a CLI failure (`raise cli_error(exc) from exc`)."""
    import click

    return click.ClickException(getattr(exc, "message", None) or str(exc))
