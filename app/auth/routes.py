"""Login and logout pages."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, flash, g, redirect, render_template, request, session, url_for

from app.auth import service
from app.auth.guard import public
from app.extensions import csrf

bp = Blueprint("auth", __name__)
# (blueprint, url prefix) pairs that create_app registers.
BLUEPRINTS = [(bp, "")]


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
