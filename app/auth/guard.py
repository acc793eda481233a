"""Every request needs a session or an API token, except views marked @public."""

from __future__ import annotations

import base64
import binascii

from flask import Flask, abort, current_app, g, redirect, request, session, url_for
from htmx_flask import make_response

from app.auth import service
from app.errors import is_websocket, wants_json
from app.extensions import csrf
from app.system.settings import refresh_if_changed

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def public(view):
    """Mark a view as reachable without login (health, webhook, login page)."""
    view.btcw_public = True
    return view


def bearer_token() -> str | None:
    """The token of an `Authorization: Bearer …` header, if any."""
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    return None


def basic_credentials() -> tuple[str, str] | None:
    """(username, password) of an `Authorization: Basic …` header, if any."""
    header = request.headers.get("Authorization", "")
    if header[:6].lower() != "basic ":
        return None
    try:
        user, _, password = base64.b64decode(header[6:].strip()).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return user, password


def identify() -> tuple[object | None, str | None]:
    """Who is calling: (user, how) with how in session|token, or (None, None)."""
    token = bearer_token()
    if token:
        user = service.user_for_token(token)
        return (user, "token") if user else (None, None)
    user = service.user_by_id(session.get("user_id"))
    if user is not None and session.get("mark") == service.session_mark(user):
        return user, "session"
    if user is not None:
        session.clear()  # ended by a logout elsewhere or a password change
    return None, None


def _reject_nul_bytes() -> None:
    """No database stores a NUL character: refuse it in query strings and forms, by name."""
    sources = [("query parameter", request.args)]
    if request.method not in SAFE_METHODS and request.mimetype in (
        "application/x-www-form-urlencoded", "multipart/form-data"
    ):
        sources.append(("form field", request.form))
    for kind, values in sources:
        for key, value in values.items(multi=True):
            if "\x00" in key or "\x00" in value:
                abort(400, description=f"The {kind} {key.replace(chr(0), '')!r} contains a NUL "
                                       "character.")


def _guard():
    g.current_user, g.auth_method = None, None
    _reject_nul_bytes()
    if request.url_rule is None and not is_websocket():
        return None  # no such route: the 404 (or 405) says so, whoever asks
    view = _view(request.endpoint)
    if request.endpoint == "static" or getattr(view, "btcw_public", False):
        return None
    user, how = identify()
    if user is None:
        if request.headers.get("Authorization") or wants_json():
            abort(401, description="Login required: send a session cookie or a Bearer token.")
        if request.headers.get("HX-Request"):
            return make_response("", 401, redirect=url_for("auth.login", next=request.full_path))
        return redirect(url_for("auth.login", next=request.full_path))
    g.current_user, g.auth_method = user, how
    if how == "session" and request.method not in SAFE_METHODS:
        csrf.protect()
    return None


def _view(endpoint: str):
    return current_app.view_functions.get(endpoint)


def register(app: Flask) -> None:
    """Install the guard and expose `current_user` to templates."""
    app.before_request(refresh_if_changed)
    app.before_request(_guard)

    @app.context_processor
    def _inject_user():
        return {"current_user": g.get("current_user")}
