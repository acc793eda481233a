"""Backups page and JSON API (SPEC §11): list, back up now, verify, restore, download, delete.

Backups, verifications and restores take minutes, so they run on the backup worker; the page
shows the running one's progress and updates itself.
"""

from __future__ import annotations

from flask import Blueprint, flash, jsonify, redirect, request, send_file, url_for
from htmx_flask import make_response

from app.backups import service
from app.rendering import render_page

bp = Blueprint("backups", __name__)
api = Blueprint("backups_api", __name__)
# (blueprint, url prefix) pairs that create_app registers.
BLUEPRINTS = [(bp, "/backups"), (api, "/api/v1/backups")]
MESSAGES = {"backup": "Backup started.", "verify": "Verification of {name} started.",
            "restore": "Restore of {name} started: the bots stop and start again."}


def _context() -> dict:
    return {"backups": service.list_backups(), "progress": service.progress(),
            "folder": service.backups_dir(), "settings": service.current_settings().system.backups}


# ----------------------------------------------------------------------------------- pages


@bp.get("/")
def index():
    return render_page("backups/page.html", "backups/_list.html", **_context())


@bp.get("/list")
def listing():
    return render_page("backups/_list.html", "backups/_list.html", **_context())


@bp.post("/run")
def run_now():
    return _start("backup")


@bp.post("/<name>/verify")
def verify(name: str):
    return _start("verify", name)


@bp.post("/<name>/restore")
def restore(name: str):
    return _start("restore", name)


def _start(operation: str, name: str | None = None):
    service.enqueue(operation, name)
    message = MESSAGES[operation].format(name=name)
    if request.headers.get("HX-Request"):
        return make_response(render_page("backups/_list.html", "backups/_list.html",
                                         **_context(), toast_message=message))
    flash(message, "success")
    return redirect(url_for("backups.index"))


@bp.get("/<name>/download")
def download(name: str):
    path = service.path_of(name)
    return send_file(path, as_attachment=True, download_name=name,
                     mimetype="application/x-tar")


# ------------------------------------------------------------------------------------ API


@api.get("")
def api_list():
    return jsonify(backups=[service.backup_json(r) for r in service.list_backups()],
                   running=service.progress())


@api.post("")
def api_run():
    return jsonify(job_id=service.enqueue("backup"), status="queued"), 202


@api.post("/<name>/verify")
def api_verify(name: str):
    return jsonify(job_id=service.enqueue("verify", name), status="queued"), 202


@api.post("/<name>/restore")
def api_restore(name: str):
    return jsonify(job_id=service.enqueue("restore", name), status="queued"), 202


@api.delete("/<name>")
def api_delete(name: str):
    service.delete(name)
    return jsonify(deleted=name)
