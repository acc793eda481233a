"""Proxies page and JSON API (SPEC §9): records, checks on demand, the last day's checks."""

from __future__ import annotations

from flask import Blueprint, flash, jsonify, redirect, request, url_for

from app.errors import AppError, error_response
from app.proxies import service
from app.rendering import render_page

bp = Blueprint("proxies", __name__)
api = Blueprint("proxies_api", __name__)
# (blueprint, url prefix) pairs that create_app registers.
BLUEPRINTS = [(bp, "/proxies"), (api, "/api/v1/proxies")]


def _body() -> dict | None:
    data = request.get_json(silent=True)
    return data if isinstance(data, dict) else None


@bp.get("/")
def index():
    return render_page("proxies/page.html", None, proxies=service.list_proxies(),
                       mask=service.mask, health=service.current_settings().proxy.health)


@bp.post("/")
def add():
    try:
        proxy = service.create({"name": request.form.get("name", ""),
                                "url": request.form.get("url", ""),
                                "group": request.form.get("group") or None})
    except AppError as exc:
        flash(exc.message, "error")
    else:
        flash(f"Proxy {proxy.name} added; checking it now.", "success")
        service.check(proxy)
    return redirect(url_for("proxies.index"))


@bp.post("/<int:proxy_id>/check")
def check_now(proxy_id: int):
    row = service.check(service.get(proxy_id))
    flash("Check passed." if row.ok else f"Check failed: {row.error}",
          "success" if row.ok else "error")
    return redirect(url_for("proxies.index"))


@bp.post("/<int:proxy_id>/delete")
def delete(proxy_id: int):
    try:
        service.remove(proxy_id)
    except AppError as exc:
        flash(exc.message, "error")
    return redirect(url_for("proxies.index"))


@api.get("")
def api_list():
    return jsonify(proxies=[service.proxy_json(p) for p in service.list_proxies()])


@api.post("")
def api_create():
    body = _body()
    if body is None:
        return error_response(400, 'Send a JSON object like {"name": "eu-1", "url": '
                                   '"socks5://host:1080"}.')
    return jsonify(service.proxy_json(service.create(body))), 201


@api.get("/<int:proxy_id>")
def api_show(proxy_id: int):
    return jsonify(service.proxy_json(service.get(proxy_id)))


@api.patch("/<int:proxy_id>")
def api_update(proxy_id: int):
    body = _body()
    if body is None:
        return error_response(400, "Send a JSON object of the fields to change.")
    return jsonify(service.proxy_json(service.update(proxy_id, body)))


@api.delete("/<int:proxy_id>")
def api_delete(proxy_id: int):
    service.remove(proxy_id)
    return jsonify(deleted=proxy_id)


@api.post("/<int:proxy_id>/check")
def api_check(proxy_id: int):
    row = service.check(service.get(proxy_id))
    return jsonify(ok=row.ok, latency_ms=row.latency_ms, error=row.error,
                   proxy=service.proxy_json(service.get(proxy_id)))


@api.get("/<int:proxy_id>/checks")
def api_checks(proxy_id: int):
    return jsonify(checks=service.history(proxy_id))
