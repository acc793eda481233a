"""Notification history, inbox and settings pages."""

from app.notifications import bp
from app.rendering import render_page


@bp.get("/")
def index():
    return render_page("notifications/page.html")


@bp.get("/inbox")
def inbox():
    return render_page("notifications/page.html")
