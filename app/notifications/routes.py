"""Notification history, detail, inbox, bell, settings pages and the JSON API (thin views)."""

from __future__ import annotations

from flask import Blueprint, abort, g, jsonify, render_template, request, url_for
from htmx_flask import make_response

from app.errors import error_response
from app.notifications import service, settings_editor
from app.notifications.models import DELIVERY_STATUSES, NOTIFICATION_KINDS, PRIORITIES
from app.rendering import render_page
from app.system.settings import current_settings

bp = Blueprint("notifications", __name__)
api = Blueprint("notifications_api", __name__)
# (blueprint, url prefix) pairs that create_app registers.
BLUEPRINTS = [(bp, "/notifications"), (api, "/api/v1/notifications")]

PAGE_SIZE = 50


@bp.app_context_processor
def _inbox_unread():
    """The bell's unread count on every page of a signed-in user."""
    if g.get("current_user") is None:
        return {}
    try:
        return {"inbox_unread": service.unread_count()}
    except Exception:  # noqa: BLE001 - the bell must never break a page
        return {"inbox_unread": 0}


# ---------------------------------------------------------------------------- history


def _history_context(filters: service.HistoryFilters, before: int | None) -> dict:
    zone = current_settings().notifications.timezone
    items, next_before = service.history(filters, before, PAGE_SIZE)
    args = filters.as_args(zone)
    return {
        "filters": filters, "form": args, "items": items, "before": before, "zone": zone,
        "older_url": url_for("notifications.index", before=next_before, **args)
        if next_before else None,
        "newest_url": url_for("notifications.index", **args) if before else None,
        "self_url": url_for("notifications.index", **args, **({"before": before} if before
                                                               else {})),
        "channels": service.channel_names_in_history(), "statuses": DELIVERY_STATUSES,
        "priorities": PRIORITIES, "kinds": NOTIFICATION_KINDS,
    }


@bp.get("/")
def index():
    zone = current_settings().notifications.timezone
    try:
        filters = service.parse_filters(request.args, naive_zone=zone)
        before = service.parse_positive_int("before", request.args.get("before"))
    except service.FilterError as exc:
        context = _history_context(service.HistoryFilters(), None)
        return render_page("notifications/page.html", "notifications/_history.html",
                           status=400, filter_error=f"{exc.param}: {exc}", **context)
    return render_page("notifications/page.html", "notifications/_history.html",
                       filter_error=None, **_history_context(filters, before))


@bp.get("/<int:notification_id>")
def detail(notification_id: int):
    notification = service.notification_detail(notification_id)
    if notification is None:
        abort(404, description=f"No notification with id {notification_id}.")
    items = service.digest_items(notification.id) if notification.kind == "digest" else []
    return render_page("notifications/detail.html", "notifications/_deliveries.html",
                       notification=notification, digest_items=items,
                       zone=current_settings().notifications.timezone)


@bp.post("/deliveries/<int:delivery_id>/resend")
def resend(delivery_id: int):
    delivery = service.resend(delivery_id)
    notification = service.notification_detail(delivery.notification_id)
    html = render_template("notifications/_deliveries.html", notification=notification,
                           toast=f"Delivery on {delivery.channel} queued again.",
                           zone=current_settings().notifications.timezone)
    return make_response(html)


# ------------------------------------------------------------------------------ inbox


def _inbox_context(before: int | None, unread_only: bool) -> dict:
    entries, next_before = service.inbox(before, 30, unread_only)
    extra = {"unread": 1} if unread_only else {}
    return {"entries": entries, "before": before, "unread_only": unread_only,
            "older_url": url_for("notifications.inbox", before=next_before, **extra)
            if next_before else None,
            "newest_url": url_for("notifications.inbox", **extra) if before else None,
            "inbox_unread": service.unread_count()}


@bp.get("/inbox")
def inbox():
    before = service.parse_positive_int("before", request.args.get("before"))
    unread_only = request.args.get("unread") == "1"
    return render_page("notifications/inbox.html", "notifications/_inbox.html",
                       **_inbox_context(before, unread_only))


@bp.post("/inbox/read")
def inbox_read():
    ids = None
    if request.form.get("all") != "1":
        try:
            ids = [int(v) for v in request.form.getlist("id")]
        except ValueError:
            abort(400, description="id must be whole numbers.")
    changed = service.mark_read(ids)
    unread_only = request.form.get("unread") == "1"
    html = render_template("notifications/_inbox.html", oob_bell=True,
                           toast=f"Marked {changed} as read." if ids is None else None,
                           **_inbox_context(None, unread_only))
    return make_response(html)


@bp.get("/inbox/count")
def inbox_count():
    return render_template("notifications/_bell_count.html",
                           inbox_unread=service.unread_count())


# --------------------------------------------------------------------------- settings


def _settings_context(**extra) -> dict:
    title, body, problem = settings_editor.preview()
    context = {
        "rows": settings_editor.channel_rows(),
        "channel": settings_editor.channel_form(None, request.args.get("type")),
        "rules": settings_editor.rules_form(),
        "templates": settings_editor.templates_form(),
        "preview": {"title": title, "body": body, "problem": problem},
        "config_file": str(settings_editor.config_path()),
        "errors": {}, "channel_errors": {}, "rules_errors": {}, "template_errors": {},
    }
    context.update(extra)
    return context


@bp.get("/settings")
def settings():
    return render_page("notifications/settings.html", **_settings_context())


@bp.get("/settings/channel-form")
def channel_form():
    """The add/edit form: `original` = the channel being edited, `type` switches fields."""
    original = request.args.get("original") or None
    form = settings_editor.channel_form(original, request.args.get("type"))
    if original and not form["exists"]:
        abort(404, description=f"No channel named {original!r} in the config file.")
    if "name" in request.args:
        form["name"] = request.args["name"]
    return render_template("notifications/_channel_form.html", channel=form,
                           channel_errors={})


@bp.post("/settings/channels")
def channel_save():
    try:
        name = settings_editor.save_channel(request.form)
    except settings_editor.SettingsError as exc:
        form = settings_editor.channel_form(request.form.get("original_name") or None,
                                            request.form.get("type"))
        form["name"] = request.form.get("name", "")
        form["enabled"] = request.form.get("enabled") in ("1", "on")
        for field in form["fields"]:
            if not field["secret"]:
                field["value"] = request.form.get(field["key"], field["value"])
        html = render_template("notifications/_channels.html",
                               **_settings_context(channel=form, channel_errors=exc.errors))
        return make_response(html, 422)
    html = render_template("notifications/_channels.html", oob_form=True,
                           toast=f"Channel {name} saved and reloaded.", **_settings_context())
    return make_response(html)


@bp.post("/settings/channels/<name>/delete")
def channel_delete(name: str):
    settings_editor.delete_channel(name)
    html = render_template("notifications/_channels.html", toast=f"Channel {name} removed.",
                           **_settings_context())
    return make_response(html)


@bp.post("/settings/channels/<name>/test")
def channel_test(name: str):
    notification, outcome, detail = service.send_test(name)
    category = "success" if outcome == "sent" else "error"
    text = (f"Test message sent on {name}." if outcome == "sent"
            else f"Test on {name} {outcome}: {detail}")
    html = render_template("notifications/_test_result.html", message=text,
                           category=category, notification=notification)
    return make_response(html)


@bp.post("/settings/rules")
def rules_save():
    try:
        settings_editor.save_rules(request.form, request.form.getlist)
    except settings_editor.SettingsError as exc:
        rules = settings_editor.rules_form(submitted=request.form)
        html = render_template("notifications/_rules_form.html", rules=rules,
                               rules_errors=exc.errors)
        return make_response(html, 422)
    html = render_template("notifications/_rules_form.html", rules=settings_editor.rules_form(),
                           rules_errors={}, toast="Rules saved and reloaded.")
    return make_response(html)


@bp.post("/settings/templates")
def templates_save():
    try:
        settings_editor.save_templates(request.form)
    except settings_editor.SettingsError as exc:
        templates = dict(request.form)
        templates["include_indicators"] = request.form.get("include_indicators") in ("1", "on")
        templates["include_chart_link"] = request.form.get("include_chart_link") in ("1", "on")
        title, body, problem = settings_editor.preview()
        html = render_template("notifications/_templates_form.html", templates=templates,
                               template_errors=exc.errors,
                               preview={"title": title, "body": body, "problem": problem})
        return make_response(html, 422)
    title, body, problem = settings_editor.preview()
    html = render_template("notifications/_templates_form.html",
                           templates=settings_editor.templates_form(), template_errors={},
                           preview={"title": title, "body": body, "problem": problem},
                           toast="Templates saved and reloaded.")
    return make_response(html)


# ------------------------------------------------------------------------------- API


@api.get("")
def api_list():
    filters = service.parse_filters(request.args)
    before = service.parse_positive_int("before", request.args.get("before"))
    limit = service.parse_positive_int("limit", request.args.get("limit"), PAGE_SIZE, 200)
    items, next_before = service.history(filters, before, limit)
    return jsonify({"items": [service.notification_json(n) for n in items],
                    "next_before": next_before, "limit": limit})


@api.get("/<int:notification_id>")
def api_detail(notification_id: int):
    notification = service.notification_detail(notification_id)
    if notification is None:
        return error_response(404, f"No notification with id {notification_id}.")
    return jsonify(service.notification_json(notification, attempts=True))


@api.get("/inbox/unread")
def api_unread():
    return jsonify({"unread": service.unread_count()})


@api.post("/test/<name>")
def api_test(name: str):
    notification, outcome, detail = service.send_test(name)
    return jsonify({"notification_id": notification.id, "outcome": outcome, "detail": detail}), \
        200 if outcome == "sent" else 502
