"""Signal pages, JSON API and the webhook receiver."""

from app.rendering import render_page
from app.signals import bp


@bp.get("/")
def index():
    return render_page("signals/page.html")
