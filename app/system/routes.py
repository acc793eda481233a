"""Health, configuration API and the system page."""

from __future__ import annotations

from flask import Blueprint, flash, g, jsonify, redirect, request, url_for

from app.auth.guard import public
from app.errors import error_response
from app.extensions import redis_store
from app.monitoring.overview import system_health, system_page_context
from app.relay import service as relay_service
from app.rendering import render_page
from app.runtime import upgrades, versions
from app.system import config_service
from app.system.hosts import hosts_report

bp = Blueprint("system", __name__)
api = Blueprint("system_api", __name__)
root = Blueprint("root", __name__)
freqtrade_api = Blueprint("freqtrade_api", __name__)
# (blueprint, url prefix) pairs that create_app registers.
BLUEPRINTS = [(root, ""), (bp, "/system"), (api, "/api/v1/system"),
              (freqtrade_api, "/api/v1/freqtrade")]


@root.get("/")
def home():
    return redirect(url_for("strategies.index"))


@root.get("/health")
@public
def health():
    report, ok = system_health()
    return jsonify(report), 200 if ok else 503


@api.get("/config/<name>")
def config_show(name: str):
    try:
        return jsonify(config_service.config_view(name))
    except KeyError:
        return error_response(
            404, f"Unknown config {name!r}; one of: {', '.join(config_service.NAMES)}."
        )


@api.post("/config/reload")
def config_reload():
    ok, message = config_service.reload()
    if not ok:
        return error_response(400, message)
    return jsonify({"status": "reloaded", "message": message})


@bp.get("/")
def index():
    report, _ = system_health()
    return render_page("system/page.html", "system/_health.html", health=report,
                       **system_page_context())


# ------------------------------------------------------------------------ hosts


@bp.get("/hosts")
def hosts_page():
    return render_page("system/hosts.html", "system/_hosts.html", **hosts_report())


@api.get("/hosts")
def api_hosts():
    return jsonify(hosts_report())


# ------------------------------------------------------------------------ exchange access


@bp.get("/exchange")
def exchange_page():
    return render_page("system/exchange.html", "system/_exchange.html",
                       **relay_service.access_report())


@api.get("/exchange")
def api_exchange():
    return jsonify(relay_service.access_report())


# ------------------------------------------------------------------------ FreqTrade versions


def _install_job(version: str) -> str:
    version = versions.parse(version)
    if versions.is_installed(version):
        return ""
    job = redis_store.queue(upgrades.QUEUE).enqueue(
        "app.tasks.runtime.install_version", version, job_timeout=3600,
        job_id=f"freqtrade-install-{version}")
    return job.id


def _strategies_field(body: dict):
    chosen = body.get("strategies", "all")
    return None if chosen in ("all", None) else chosen


@bp.get("/freqtrade")
def freqtrade_page():
    return render_page("system/freqtrade.html", "system/_freqtrade.html",
                       versions=versions.installed(), history=upgrades.history(20),
                       running=upgrades.running_upgrade(), default=versions.default_version())


@bp.post("/freqtrade/install")
def freqtrade_install():
    version = request.form.get("version", "")
    _install_job(version)
    flash(f"Installing FreqTrade {versions.parse(version)} (a few minutes).", "success")
    return redirect(url_for("system.freqtrade_page"))


@bp.post("/freqtrade/upgrade")
def freqtrade_upgrade():
    ids = request.form.getlist("strategy", type=int) or None
    row = upgrades.request_upgrade(request.form.get("version", ""), ids,
                                   requested_by=g.current_user.username)
    flash(f"Upgrade #{row.id} to FreqTrade {row.target} started.", "success")
    return redirect(url_for("system.freqtrade_page"))


@freqtrade_api.get("/versions")
def api_versions():
    return jsonify(default=versions.default_version(), versions=versions.installed())


@freqtrade_api.post("/versions")
def api_install():
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return error_response(400, 'Send a JSON object like {"version": "2026.8"}.')
    job = _install_job(body.get("version"))
    return jsonify(version=versions.parse(body.get("version")), job_id=job or None,
                   status="queued" if job else "installed"), 202 if job else 200


@freqtrade_api.delete("/versions/<version>")
def api_remove(version: str):
    versions.remove(version)
    return jsonify(removed=version)


@freqtrade_api.post("/upgrade")
def api_upgrade():
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return error_response(400, 'Send a JSON object like {"version": "2026.9", '
                                   '"strategies": "all"}.')
    row = upgrades.request_upgrade(body.get("version"), _strategies_field(body),
                                   requested_by=g.current_user.username)
    return jsonify(upgrades.upgrade_json(row)), 202


@freqtrade_api.get("/upgrades")
def api_upgrades():
    return jsonify(upgrades=[upgrades.upgrade_json(r) for r in upgrades.history(100)])


@freqtrade_api.get("/upgrades/<int:upgrade_id>")
def api_upgrade_detail(upgrade_id: int):
    row = upgrades.get_upgrade(upgrade_id)
    if row is None:
        return error_response(404, f"No upgrade with id {upgrade_id}.")
    return jsonify(upgrades.upgrade_json(row))
