"""Login and logout pages."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import (
    Blueprint,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)

from app.auth import service
from app.auth.guard import public
from app.clock import utcnow
from app.extensions import csrf
from app.rendering import render_page

bp = Blueprint("auth", __name__)
api = Blueprint("auth_api", __name__)
# (blueprint, url prefix) pairs that create_app registers.
BLUEPRINTS = [(bp, ""), (api, "/api/v1/auth")]


def _safe_next(target: str | None) -> str:
    """Only redirect to a path on this site."""
    if not target:
        return url_for("strategies.index")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return url_for("strategies.index")
    return target


@bp.route("/login", methods=["GET", "POST"])
@public
def login():
    if request.method == "GET":
        user = service.user_by_id(session.get("user_id"))
        if user is not None and session.get("mark") == service.session_mark(user):
            return redirect(_safe_next(request.args.get("next")))
        return render_template("auth/login.html", next=request.args.get("next", ""))

    csrf.protect()
    username = request.form.get("username", "")
    # The direct peer's address: a client-set X-Forwarded-For could lock someone else out.
    result = service.authenticate(username, request.form.get("password", ""),
                                  source=request.remote_addr or "")
    if result.user is None:
        locked = None
        if result.locked_until:
            locked = result.locked_until.strftime("%Y-%m-%d %H:%M UTC")
        status = 423 if locked else 401
        return render_template(
            "auth/login.html", error=result.error, locked_until=locked,
            username=username[:64], next=request.form.get("next", ""),
        ), status
    session.clear()
    session.permanent = True
    session["user_id"] = result.user.id
    session["mark"] = service.session_mark(result.user)
    flash(f"Welcome, {result.user.username}.", "success")
    return redirect(_safe_next(request.form.get("next")))


@bp.route("/logout", methods=["POST"])
def logout():
    """Sign out: ends every session and gateway token of the user, on every browser."""
    if g.get("current_user") is not None:
        service.end_sessions(g.current_user)
    session.clear()
    flash("You have been signed out.", "info")
    return redirect(url_for("auth.login"))


# ------------------------------------------------------------------------------ API tokens


def _expires_days(raw) -> int | None:
    """The expiry of a new token from a form or JSON: empty for none, else whole days."""
    if raw is None or raw == "":
        return None
    if isinstance(raw, str):
        if not raw.strip().isascii() or not raw.strip().isdigit():
            raise service.AuthError(f"expires_days must be a whole number of days, got "
                                    f"{raw[:20]!r}.")
        return int(raw.strip()[:6])
    return raw


@bp.get("/tokens")
def tokens():
    """API tokens: list (name, created, last used, expiry, state), create, revoke."""
    return render_page("auth/tokens.html", "auth/_tokens.html",
                       tokens=service.list_tokens(), created=None, now=utcnow())


@bp.post("/tokens")
def token_create():
    token, plain = service.create_token(g.current_user, request.form.get("name", ""),
                                        _expires_days(request.form.get("expires_days")))
    return render_page("auth/tokens.html", "auth/_tokens.html", status=201,
                       tokens=service.list_tokens(), created=(token, plain), now=utcnow())


@bp.post("/tokens/<int:token_id>/revoke")
def token_revoke(token_id: int):
    token = service.revoke_token(token_id)
    flash(f"Token {token.name} revoked.", "success")
    return render_page("auth/tokens.html", "auth/_tokens.html",
                       tokens=service.list_tokens(), created=None, now=utcnow())


@api.get("/tokens")
def api_tokens():
    return jsonify({"tokens": [service.token_json(t) for t in service.list_tokens()]})


@api.post("/tokens")
def api_token_create():
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise service.AuthError("body: send {\"name\": …, \"expires_days\": …} as a JSON object.")
    token, plain = service.create_token(g.current_user, data.get("name") or "",
                                        _expires_days(data.get("expires_days")))
    return jsonify({**service.token_json(token), "token": plain}), 201


@api.delete("/tokens/<int:token_id>")
def api_token_revoke(token_id: int):
    return jsonify(service.token_json(service.revoke_token(token_id)))

