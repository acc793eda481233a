"""Capacity dashboard and system monitoring API."""

from app.monitoring import bp
from app.rendering import render_page


@bp.get("/capacity")
def capacity():
    return render_page("monitoring/capacity.html")
