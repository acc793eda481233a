"""Strategy pages (HTMX) and the JSON API under /api/v1/strategies."""

from __future__ import annotations

from flask import Blueprint, current_app, flash, g, jsonify, redirect, request, url_for
from htmx_flask import make_response

from app.errors import error_response
from app.gateway import frequi
from app.gateway.service import gateway_status
from app.monitoring.bot_status import cached_status
from app.rendering import render_page
from app.runtime import versions
from app.runtime.control import RuntimeControlError
from app.signals import outcomes
from app.strategies import library, service
from app.strategies.models import STATUSES
from app.strategies.validation import (
    EDITABLE,
    current_values,
    exchange_ids,
    simulator_pairs,
    timeframes_for,
)
from app.system.settings import current_settings

bp = Blueprint("strategies", __name__)
api = Blueprint("strategies_api", __name__)
# (blueprint, url prefix) pairs that create_app registers.
BLUEPRINTS = [(bp, "/strategies"), (api, "/api/v1/strategies")]

# ------------------------------------------------------------------------------ helpers


def _json_body():
    """The request's JSON object, or None."""
    data = request.get_json(silent=True)
    return data if isinstance(data, dict) else None


def _flag(value) -> bool:
    return str(value).lower() in ("1", "true", "yes", "on") if value is not None else False


def _wait_seconds() -> float:
    raw = request.args.get("wait", "0")
    try:
        wait = float(raw)
    except ValueError:
        raise service.ServiceError(f"wait must be a number of seconds, not {raw[:20]!r}.") \
            from None
    if not 0 <= wait <= 300:
        raise service.ServiceError("wait must be from 0 to 300 seconds.")
    return wait


# ---------------------------------------------------------------------------- JSON API


@api.get("")
def api_list():
    paged = {"page", "per_page", "q", "sort", "host", "desc"} & set(request.args)
    if not paged:  # every strategy, as before paging existed
        strategies = service.list_strategies(request.args.get("status") or None)
        return jsonify({"strategies": [service.to_dict(s) for s in strategies],
                        "count": len(strategies)})
    listing = service.list_page(service.list_filters(request.args))
    strategies = []
    for row in listing["rows"]:
        strategies.append({**{k: v for k, v in row.items() if k not in ("process", "bot")},
                           "process": row["process"], "bot": row["bot"]})
    return jsonify({"strategies": strategies, "count": len(strategies),
                    "matching": listing["matching"], "page": listing["page"],
                    "pages": listing["pages"], "per_page": listing["per_page"],
                    "total": listing["total"]})


@api.post("/<int:strategy_id>/move")
def api_move(strategy_id: int):
    body = _json_body() or {}
    return jsonify(service.move_strategy(strategy_id, body.get("host")))


@bp.post("/move")
def move():
    try:
        strategy_id = int(request.form.get("strategy_id", ""))
    except ValueError:
        flash("Give the id of the strategy to move.", "error")
        return _redirect(url_for("system.hosts_page"))
    try:
        moved = service.move_strategy(strategy_id, request.form.get("host"))
    except (service.ServiceError, RuntimeControlError) as exc:
        flash(str(exc), "error")
        return _redirect(url_for("system.hosts_page"))
    flash(f"Strategy {moved['strategy_id']} moved from {moved['from'] or '—'} to "
          f"{moved['to']}" + (" and started there." if moved["started"] else "."), "success")
    return _redirect(url_for("system.hosts_page"))


@api.post("/bulk")
def api_bulk():
    body = _json_body()
    if body is None:
        return error_response(400, 'Send JSON {"action": "start|stop|restart", "ids": [..]} or '
                                   '{"action": ..., "filter": {"q", "status", "host"}}.')
    ids = body.get("ids")
    if ids is not None and not isinstance(ids, list):
        return error_response(400, "ids: a list of strategy ids.", field="ids")
    filters = body.get("filter")
    if ids is None and not isinstance(filters, dict):
        return error_response(400, "Give ids or a filter object.", field="filter")
    return jsonify(service.bulk_command(body.get("action"), ids, filters)), 202


@api.get("/bulk/<operation_id>")
def api_bulk_progress(operation_id: str):
    return jsonify(service.bulk_progress(operation_id))


@api.get("/overview")
def api_overview():
    return jsonify(service.overview())


@api.post("")
def api_create():
    data = _json_body()
    if data is None:
        return error_response(400, "body: send the strategy as a JSON object "
                                   "(Content-Type: application/json).")
    strategy = service.create_strategy(data)
    body = {"strategy_id": strategy.id, "status": "created"}
    if data.get("auto_start") is True:
        try:
            body["start"] = service.run_command(strategy.id, "start")
        except (service.ServiceError, RuntimeControlError) as exc:
            body["start"] = {"status": "refused", "message": getattr(exc, "message", str(exc))}
    body["strategy"] = service.to_dict(service.get_strategy(strategy.id))
    location = url_for("strategies_api.api_show", strategy_id=strategy.id)
    return jsonify(body), 201, {"Location": location}


@api.get("/<int:strategy_id>")
def api_show(strategy_id: int):
    return jsonify(service.to_dict(service.get_strategy(strategy_id)))


@api.patch("/<int:strategy_id>")
def api_update(strategy_id: int):
    data = _json_body()
    if data is None:
        return error_response(400, "body: send the fields to change as a JSON object.")
    strategy, restart = service.update_strategy(strategy_id, data)
    return jsonify({"status": "updated", "strategy_id": strategy.id,
                    "restart_required": restart, "strategy": service.to_dict(strategy)})


@api.delete("/<int:strategy_id>")
def api_delete(strategy_id: int):
    strategy = service.delete_strategy(strategy_id)
    return jsonify({"status": "deleted", "strategy_id": strategy.id,
                    "message": f"Strategy {strategy.name} deleted; its signals are kept."})


def _command(strategy_id: int, command: str):
    result = service.run_command(strategy_id, command, wait=_wait_seconds())
    done = command == "reload_config" or result["status"] != "success" or \
        request.args.get("wait") not in (None, "", "0")
    return jsonify(result), 200 if done else 202


@api.post("/<int:strategy_id>/start")
def api_start(strategy_id: int):
    return _command(strategy_id, "start")


@api.post("/<int:strategy_id>/stop")
def api_stop(strategy_id: int):
    return _command(strategy_id, "stop")


@api.post("/<int:strategy_id>/commands/<command>")
def api_run_command(strategy_id: int, command: str):
    return _command(strategy_id, command)


@api.get("/<int:strategy_id>/status/detailed")
def api_detailed_status(strategy_id: int):
    return jsonify(service.detailed_status(strategy_id))


@api.get("/<int:strategy_id>/logs")
def api_logs(strategy_id: int):
    limit = service.parse_limit(request.args.get("limit"))
    return jsonify(service.strategy_logs(strategy_id, limit))


@api.get("/library")
def api_library():
    return jsonify({"directory": str(library.library_dir()),
                    "files": [f.to_dict() for f in library.scan()]})


@api.post("/library")
def api_library_upload():
    """Multipart (file, overwrite) or JSON {"file_name", "content", "overwrite"}."""
    upload = request.files.get("file")
    if upload is not None:
        name, content = request.form.get("file_name") or upload.filename, upload.read()
        overwrite = _flag(request.form.get("overwrite"))
    else:
        data = _json_body()
        if data is None:
            return error_response(400, "file: send the strategy file as multipart field "
                                       "'file', or JSON {\"file_name\", \"content\"}.")
        name, content = data.get("file_name"), data.get("content")
        overwrite = bool(data.get("overwrite"))
        if not isinstance(content, str):
            return error_response(400, "content: the file's text is required.", field="content")
    saved = library.save_upload(name, content, overwrite=overwrite)
    return jsonify({"status": "uploaded", **saved.to_dict()}), 201


# -------------------------------------------------------------------------------- pages


@bp.get("/")
def index():
    try:
        filters = service.list_filters(request.args)
        problem = None
    except service.ServiceError as exc:
        filters, problem = service.list_filters({}), exc.message
    progress = None
    if request.args.get("bulk"):
        try:
            progress = service.bulk_progress(request.args["bulk"])
        except service.ServiceError:
            progress = None
    listing = service.list_page(filters)
    shown = listing["filters"]
    query = {k: v for k, v in (("q", shown["q"]), ("status", shown["status"]),
                               ("host", shown["host"]), ("sort", shown["sort"] != "id"
                                                          and shown["sort"]),
                               ("desc", shown["desc"] and "1"), ("page", shown["page"] > 1
                                                                 and shown["page"]),
                               ("per_page", shown["per_page"] != service.PER_PAGE_DEFAULT
                                and shown["per_page"]),
                               ("bulk", request.args.get("bulk", "")[:40])) if v}

    def list_url(**changes) -> str:
        return url_for("strategies.index", **{**query, **changes})

    return render_page("strategies/page.html", "strategies/_list.html",
                       listing=listing, capacity=service.capacity(), statuses=STATUSES,
                       problem=problem, progress=progress, list_url=list_url, query=query)


@bp.post("/bulk")
def bulk():
    action = request.form.get("action", "")
    if request.form.get("scope") == "filtered":
        ids, filters = None, {k: request.form.get(k, "") for k in ("q", "status", "host")}
    else:
        ids, filters = request.form.getlist("ids"), None
    back = {k: request.form.get(k) for k in ("q", "status", "host", "sort", "page")
            if request.form.get(k)}
    try:
        operation = service.bulk_command(action, ids, filters)
    except service.ServiceError as exc:
        flash(exc.message, "error")
        return _redirect(url_for("strategies.index", **back))
    refused = len(operation["refused"])
    flash(f"{action.capitalize()} requested for {operation['total']} strategies"
          + (f"; {refused} refused" if refused else "") + ".", "success")
    return _redirect(url_for("strategies.index", bulk=operation["id"], **back))


def _form_context(values: dict, errors: dict | None = None, strategy=None) -> dict:
    exchange = values.get("exchange") or "simulator"
    files = library.scan()
    chosen = values.get("strategy_file")
    classes = next((f.classes for f in files if f.name == chosen), [])
    try:
        timeframes = timeframes_for(exchange) if exchange in exchange_ids() else []
    except Exception:  # noqa: BLE001 - the form still renders with a free text box
        timeframes = []
    return {
        "values": values, "errors": errors or {}, "strategy": strategy, "files": files,
        "classes": classes, "exchanges": exchange_ids(), "timeframes": timeframes,
        "simulator_pairs": simulator_pairs(), "proxies": service.proxy_choices(),
    }


def _form_values(form) -> dict:
    """The strategy fields of a submitted form (an empty proxy means a direct connection)."""
    return {k: form.get(k, "") for k in EDITABLE if k in form}


def _form_response(context: dict, status: int):
    return render_page("strategies/form.html", "strategies/_form.html", status=status,
                       **context)


@bp.get("/new")
def new():
    values = {"exchange": "simulator", "timeframe": "1m", "stake_currency": "USDT",
              "stake_amount": "unlimited", "max_open_trades": 3, "dry_run_wallet": 1000,
              "strong_threshold": 0.8, "medium_threshold": 0.6, "weak_threshold": 0.4,
              "version_label": "v1", "pairs": ""}
    if request.args.get("strategy_file"):
        values["strategy_file"] = request.args["strategy_file"]
    return _form_response(_form_context(values), 200)


@bp.post("/new")
def create():
    values = _form_values(request.form)
    try:
        strategy = service.create_strategy(values)
    except service.ValidationFailed as exc:
        return _form_response(_form_context(values, exc.errors), 422)
    flash(f"Strategy {strategy.name} created.", "success")
    if _flag(request.form.get("auto_start")):
        try:
            service.run_command(strategy.id, "start")
        except (service.ServiceError, RuntimeControlError) as exc:
            flash(f"{strategy.name} was not started: {exc}", "warning")
    return _redirect(url_for("strategies.detail", strategy_id=strategy.id))


def _redirect(target: str):
    if request.headers.get("HX-Request"):
        return make_response("", 204, redirect=target)
    return redirect(target, 303)


def _detail_context(strategy) -> dict:
    seen = cached_status(strategy.id) or {}
    return {"strategy": strategy, "process": service.process_of(strategy),
            "events": service.recent_events(strategy.id, 10),
            "freqtrade_version": versions.effective(strategy.freqtrade_version),
            "bot_version": seen.get("freqtrade_version"),
            "quality": outcomes.quality(strategy.id, 4),
            "calibration": outcomes.calibration(strategy.id),
            "chart_pair": _chart_pair(strategy)}


def _chart_pair(strategy) -> str | None:
    pairs = list(strategy.pairs or [])
    wanted = request.args.get("chart_pair")
    return wanted if wanted in pairs else (pairs[0] if pairs else None)


@bp.post("/<int:strategy_id>/calibrate")
def calibrate(strategy_id: int):
    strategy = service.get_strategy(strategy_id)
    try:
        applied = outcomes.apply_calibration(strategy.id, by=g.current_user.username)
    except outcomes.OutcomeError as exc:
        flash(exc.message, "error")
    else:
        flash(f"Thresholds of {strategy.name} set for new signals: {applied['after']} "
              f"(were {applied['before']}).", "success")
    return _redirect(url_for("strategies.detail", strategy_id=strategy.id))


@bp.get("/<int:strategy_id>")
def detail(strategy_id: int):
    strategy = service.get_strategy(strategy_id)
    return render_page("strategies/detail.html", None, **_detail_context(strategy),
                       threshold_errors={})


@bp.get("/frequi")
@bp.get("/<int:strategy_id>/frequi")
def frequi_open(strategy_id: int | None = None):
    """Into FreqUI on the gateway, logged in as the current user (at this strategy's bot)."""
    if strategy_id is None and request.args.get("bot", "").isdigit():
        strategy_id = int(request.args["bot"]) if len(request.args["bot"]) < 19 else None
    strategy = service.get_strategy(strategy_id) if strategy_id is not None else None
    try:
        frequi.index_file()
    except frequi.FrequiError as exc:
        return render_page("strategies/frequi.html", None, status=404, strategy=strategy,
                           problem=exc.message)
    return render_page("strategies/frequi.html", None, strategy=strategy, problem=None,
                       action=current_settings().system.gateway.browser_url + frequi.LOGIN_PATH,
                       ticket=frequi.make_ticket(current_app.config["SECRET_KEY"],
                                                 g.current_user))


@bp.get("/<int:strategy_id>/edit")
def edit(strategy_id: int):
    strategy = service.get_strategy(strategy_id)
    values = current_values(strategy)
    values["pairs"] = ", ".join(values["pairs"] or [])
    return _form_response(_form_context(values, strategy=strategy), 200)


@bp.post("/<int:strategy_id>/edit")
def update(strategy_id: int):
    strategy = service.get_strategy(strategy_id)
    values = _form_values(request.form)
    try:
        strategy, restart = service.update_strategy(strategy.id, values)
    except service.ValidationFailed as exc:
        return _form_response(_form_context(values, exc.errors, strategy), 422)
    if restart:
        flash(f"{strategy.name} saved. Restart it (or reload its config) to apply the new "
              "settings to the running bot.", "warning")
    else:
        flash(f"{strategy.name} saved.", "success")
    return _redirect(url_for("strategies.detail", strategy_id=strategy.id))


@bp.get("/<int:strategy_id>/status")
def status(strategy_id: int):
    strategy = service.get_strategy(strategy_id)
    return render_page("strategies/_status.html", "strategies/_status.html",
                       **_detail_context(strategy))


@bp.post("/<int:strategy_id>/commands/<command>")
def command(strategy_id: int, command: str):
    result = service.run_command(strategy_id, command)
    strategy = service.get_strategy(strategy_id)
    return render_page("strategies/_status.html", "strategies/_status.html",
                       **_detail_context(strategy), toast_message=result["message"])


@bp.get("/<int:strategy_id>/bot")
def bot(strategy_id: int):
    strategy = service.get_strategy(strategy_id)
    return render_page("strategies/_bot.html", "strategies/_bot.html", strategy=strategy,
                       details=service.bot_details(strategy, trades_limit=20))


@bp.get("/<int:strategy_id>/logs")
def logs(strategy_id: int):
    limit = service.parse_limit(request.args.get("limit"), default=100)
    result = service.strategy_logs(strategy_id, limit)
    return render_page("strategies/_logs.html", "strategies/_logs.html",
                       strategy_id=strategy_id, result=result)


@bp.post("/<int:strategy_id>/thresholds")
def thresholds(strategy_id: int):
    fields = ("strong_threshold", "medium_threshold", "weak_threshold")
    values = {k: request.form.get(k, "") for k in fields}
    try:
        strategy, _ = service.update_strategy(strategy_id, values)
    except service.ValidationFailed as exc:
        strategy = service.get_strategy(strategy_id)
        return render_page("strategies/_thresholds.html", "strategies/_thresholds.html",
                           status=422, strategy=strategy, threshold_values=values,
                           threshold_errors=exc.errors)
    return render_page("strategies/_thresholds.html", "strategies/_thresholds.html",
                       strategy=strategy, threshold_errors={}, saved=True)


@bp.post("/<int:strategy_id>/delete")
def delete(strategy_id: int):
    strategy = service.delete_strategy(strategy_id)
    flash(f"Strategy {strategy.name} deleted; its signals are kept.", "success")
    return _redirect(url_for("strategies.index"))


@bp.get("/library")
def library_page():
    return render_page("strategies/library.html", "strategies/_library.html",
                       files=library.scan(), upload_errors={}, uploaded=None)


@bp.post("/library")
def library_upload():
    upload = request.files.get("file")
    overwrite = _flag(request.form.get("overwrite"))
    errors: dict[str, str] = {}
    saved = None
    if upload is None or not upload.filename:
        errors["file"] = "Choose a .py file to upload."
    else:
        chosen = request.form.get("file_name") or ""
        try:
            saved = library.save_upload(chosen or upload.filename, upload.read(),
                                        overwrite=overwrite)
        except library.LibraryError as exc:
            errors["file_name" if chosen and exc.field == "file" else exc.field] = exc.message
    return render_page("strategies/library.html", "strategies/_library.html",
                       status=422 if errors else 200, files=library.scan(),
                       upload_errors=errors, uploaded=saved)


@bp.get("/library/classes")
def library_classes():
    """The class <select> for the chosen library file (the form swaps it in)."""
    name = request.args.get("strategy_file", "")
    try:
        classes = library.classes_in(library.check_file_name(name)) if name else []
    except library.LibraryError:
        classes = []
    return render_page("strategies/_class_select.html", "strategies/_class_select.html",
                       classes=classes, values={"strategy_class": request.args.get(
                           "strategy_class", classes[0] if len(classes) == 1 else "")},
                       errors={})


@api.get("/gateway/status")
def api_gateway_status():
    """The gateway's health and every running bot's status (app/gateway/service.py)."""
    return jsonify(gateway_status())
