"""Strategy pages and JSON API."""

from app.rendering import render_page
from app.strategies import bp


@bp.get("/")
def index():
    return render_page("strategies/page.html")
