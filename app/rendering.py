"""How pages are rendered: the one helper that answers an htmx request with a fragment and
anything else with a page, and the template filters every page shares."""

from __future__ import annotations

from flask import Flask, render_template
from htmx_flask import make_response, request

MIB = 1024 * 1024


def render_page(page: str, fragment: str | None = None, status: int = 200, **context):
    """Render `fragment` for an htmx request (not boosted), else `page`; Vary on HX-Request."""
    wants_fragment = fragment and getattr(request, "htmx", False) and not request.htmx.boosted
    html = render_template(fragment if wants_fragment else page, **context)
    response = make_response(html, status)
    response.vary.add("HX-Request")
    return response


def mebibytes(value, digits: int = 0) -> str:
    """Bytes as MiB, e.g. '238 MiB' (`{{ bytes | mib }}`); '—' when unknown.

    The one format of a process's memory (strategies list and detail, Capacity), so the same
    bot shows the same figure everywhere.
    """
    if value is None or value == "":
        return "—"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "—"
    return f"{number / MIB:,.{digits}f} MiB"


def register_filters(app: Flask) -> None:
    """Register the shared template filters (once, in the app factory)."""
    app.jinja_env.filters["mib"] = mebibytes
