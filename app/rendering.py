"""The one helper that answers an htmx request with a fragment and anything else with a page."""

from __future__ import annotations

from flask import render_template
from htmx_flask import make_response, request


def render_page(page: str, fragment: str | None = None, status: int = 200, **context):
    """Render `fragment` for an htmx request (not boosted), else `page`; Vary on HX-Request."""
    wants_fragment = fragment and getattr(request, "htmx", False) and not request.htmx.boosted
    html = render_template(fragment if wants_fragment else page, **context)
    response = make_response(html, status)
    response.vary.add("HX-Request")
    return response
