"""Capacity: the alert threshold, once-per-crossing alerts, real memory figures, the trend."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import timedelta

import psutil
import pytest
from sqlalchemy import func, select

from app.clock import utcnow
from app.extensions import db, redis_store
from app.monitoring import bot_usage, capacity
from app.monitoring.models import Alert, MetricSample
from app.strategies.models import Strategy

# ------------------------------------------------------------------------------ threshold


@pytest.mark.parametrize(("body", "reason"), [
    ({"threshold": 150}, "between 0 and 100, got 150"),
    ({"threshold": -1}, "between 0 and 100, got -1"),
    ({"threshold": "abc"}, "must be a number from 0 to 100, got 'abc'"),
    ({"threshold": True}, "is required"),
    ({"threshold": None}, "is required"),
    ({}, "is required"),
    ({"threshold": [80]}, "must be a number"),
    ({"threshold": "NaN"}, "must be a number"),
    ({"threshold": "1_0"}, "must be a number from 0 to 100, got '1_0'"),
    ({"threshold": "\u0661\u0660"}, "must be a number from 0 to 100"),
    ({"threshold": "1e1"}, "must be a number from 0 to 100, got '1e1'"),
])
def test_bad_threshold_is_400_with_the_reason(client, api_token, body, reason):
    response = client.post("/api/v1/system/capacity/alert-threshold", json=body,
                           headers={"Authorization": f"Bearer {api_token}"})
    assert response.status_code == 400
    assert reason in response.get_json()["message"]
    assert capacity.alert_threshold() == 80.0  # unchanged: the config default


@pytest.mark.parametrize("data", ["garbage{", "[80]", "80"])
def test_a_body_that_is_not_a_json_object_is_400(client, api_token, data):
    response = client.post("/api/v1/system/capacity/alert-threshold", data=data,
                           headers={"Authorization": f"Bearer {api_token}",
                                    "Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.get_json()["message"].startswith("body: send a JSON object")
    assert capacity.alert_threshold() == 80.0


def test_threshold_is_saved_and_survives_a_restart(client, api_token, app_config):
    response = client.post("/api/v1/system/capacity/alert-threshold", json={"threshold": 75},
                           headers={"Authorization": f"Bearer {api_token}"})
    assert response.status_code == 200
    assert response.get_json() == {"status": "success", "threshold": 75.0,
                                   "message": "Capacity alert threshold set to 75%"}
    # A new app (a restarted web process) with the same database and a flushed Redis.
    redis_store.client.flushdb()
    from app import create_app

    fresh = create_app(dict(app_config))
    with fresh.app_context():
        assert capacity.alert_threshold() == 75.0
        body = fresh.test_client().get(
            "/api/v1/system/capacity", headers={"Authorization": f"Bearer {api_token}"}
        ).get_json()
        assert body["alert_threshold"] == 75.0


def test_design_client_field_name_is_accepted(client, api_token):
    response = client.post("/api/v1/system/capacity/alert-threshold",
                           json={"threshold_percent": 65.5},
                           headers={"Authorization": f"Bearer {api_token}"})
    assert response.status_code == 200 and capacity.alert_threshold() == 65.5


def test_threshold_slider_form_saves_with_csrf(auth, client):
    response = client.post("/capacity/threshold", data={"threshold": "70"},
                           headers={"HX-Request": "true", "X-CSRFToken": auth.csrf()})
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert 'id="capacity-threshold"' in html and "set to 70%" in html
    assert response.headers["HX-Trigger"] == "capacity-changed"
    assert capacity.alert_threshold() == 70.0
    refused = client.post("/capacity/threshold", data={"threshold": "101"},
                          headers={"HX-Request": "true", "X-CSRFToken": auth.csrf()})
    assert refused.status_code == 422
    assert "between 0 and 100, got 101" in refused.get_data(as_text=True)
    without_csrf = client.post("/capacity/threshold", data={"threshold": "60"},
                               headers={"HX-Request": "true"})
    assert without_csrf.status_code == 400
    assert capacity.alert_threshold() == 70.0


# ------------------------------------------------------------------------ levels, alerts


@pytest.mark.parametrize(("utilization", "threshold", "level"), [
    (0, 80, "plenty"), (50, 80, "plenty"), (50.01, 80, "normal"), (80, 80, "normal"),
    (80.01, 80, "warning"), (90, 80, "warning"), (90.01, 80, "critical"),
    (71, 70, "warning"), (92, 95, "critical"), (96, 95, "critical"), (60, 40, "warning"),
])
def test_levels(utilization, threshold, level):
    assert capacity.level_for(utilization, threshold) == level


@pytest.mark.parametrize(("previous", "utilization", "expected"), [
    ("ok", 85, "warning"), ("ok", 95, "critical"), ("warning", 95, "critical"),
    ("warning", 79, "warning"),   # within 2 points below the threshold: stays
    ("warning", 77.9, "ok"),
    ("critical", 89, "critical"),  # within 2 points below 90
    ("critical", 87, "warning"),
    ("critical", 50, "ok"),
])
def test_next_alert_level_has_hysteresis(previous, utilization, expected):
    assert capacity.next_alert_level(previous, utilization, 80) == expected


def _alerts(kind: str) -> list[Alert]:
    return list(db.session.scalars(select(Alert).where(Alert.kind == kind).order_by(Alert.id)))


def test_capacity_alert_fires_once_per_crossing(app):
    for utilization in (10, 40, 85, 86, 88, 85):  # crosses 80 once, stays above
        capacity.check_alert(utilization, 80)
    warnings = _alerts("capacity")
    assert [a.severity for a in warnings] == ["warning"]
    assert "85.00%, above 80%" in warnings[0].message

    capacity.check_alert(93, 80)  # on to critical: one more
    capacity.check_alert(97, 80)
    assert [a.severity for a in _alerts("capacity")] == ["warning", "critical"]

    redis_store.client.flushdb()  # the level lives in the database, not only in Redis
    capacity.check_alert(96, 80)
    assert len(_alerts("capacity")) == 2

    capacity.check_alert(30, 80)  # back down: resolved, one recovery note
    assert all(a.resolved_at is not None for a in _alerts("capacity"))
    assert len(_alerts("capacity_recovered")) == 1
    capacity.check_alert(20, 80)
    assert len(_alerts("capacity_recovered")) == 1

    capacity.check_alert(82, 80)  # a new crossing alerts again
    assert [a.severity for a in _alerts("capacity")] == ["warning", "critical", "warning"]


def test_alert_threshold_is_the_saved_one(app):
    capacity.set_alert_threshold(60)
    capacity.check_alert(65, capacity.alert_threshold())
    assert len(_alerts("capacity")) == 1


# --------------------------------------------------------------------- real measurements


@pytest.fixture
def memory_hogs():
    """Two real processes holding ~80 MB and ~40 MB of private memory each."""
    code = ("import sys, time; b = bytearray(int(sys.argv[1]) * 1024 * 1024); "
            "b[::4096] = b'x' * len(b[::4096]); print('ready', flush=True); time.sleep(120)")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(mb)], stdout=subprocess.PIPE)
             for mb in (80, 40)]
    for proc in procs:
        assert proc.stdout.readline().strip() == b"ready"
    yield procs
    for proc in procs:
        proc.kill()
        proc.wait(10)


def test_capacity_measures_real_processes(app, make_strategy, memory_hogs):
    for proc in memory_hogs:
        make_strategy(pid=proc.pid, port=None)
    make_strategy(name="elsewhere", pid=memory_hogs[0].pid, host="10.254.0.9")  # other host

    detail = capacity.detailed()
    bots = detail["resources"]["bots"]
    assert bots["measured"] == 2
    expected_pss = sum(psutil.Process(p.pid).memory_full_info().pss for p in memory_hogs)
    assert bots["memory_pss"] == pytest.approx(expected_pss, rel=0.1)
    assert bots["memory_pss"] > 120 * 1024 * 1024
    assert bots["average_basis"] == "measured_pss"
    available = psutil.virtual_memory().available
    fit = detail["resources"]["bots_that_fit"]
    assert fit["by_memory"] == pytest.approx(available / (expected_pss / 2), rel=0.1)
    assert detail["capacity"]["bots_that_fit"] == min(fit["by_memory"], fit["by_ports"],
                                                       fit["by_slots"])
    assert detail["capacity"]["running_strategies"] == 3


def test_without_bots_the_estimate_is_used(app):
    bots = bot_usage.measure_bots()
    assert bots["measured"] == 0 and bots["average_basis"] == "estimate"
    assert bots["average_bot_memory"] == 330 * 1024 * 1024


def test_effective_utilization_is_limited_by_memory(app, make_strategy, monkeypatch):
    for _ in range(3):
        make_strategy(port=None)
    monkeypatch.setattr(capacity, "host_memory", lambda: {
        "total": 4 * capacity.GB, "available": int(1.0 * 330 * 1024 * 1024),
        "percent": 80.0, "cgroup_limited": False})
    info = capacity.capacity_info()
    assert info["utilization_percent"] == round(3 * 100 / 999, 2)
    assert info["bots_that_fit"] == 1 and info["limited_by"] == "memory"
    assert info["effective_utilization_percent"] == 75.0
    assert info["level"] == "normal"
    recs = capacity.recommendations(capacity.snapshot())
    assert recs[1]["action"] == "memory_headroom" and recs[1]["level"] == "warning"
    assert "About 1 more bot fits in memory" in recs[1]["message"]


# ---------------------------------------------------------------------- history, trend


def _sample(hours_ago: float, utilization: float, effective: float | None = None) -> None:
    db.session.add(MetricSample(kind="capacity", recorded_at=utcnow() - timedelta(hours=hours_ago),
                                data={"utilization_percent": utilization,
                                      "effective_utilization_percent": effective or utilization,
                                      "running_strategies": round(utilization * 9.99)}))


def test_trend_reports_current_peak_average_and_direction(client, api_token):
    for i in range(24):
        _sample(23.5 - i, 1.0 + i * 0.5)  # 1 % -> 12.5 %: increasing
    _sample(30, 99.0)  # outside the 24 h window
    db.session.commit()
    body = client.get("/api/v1/system/capacity/utilization-trend?hours=24",
                      headers={"Authorization": f"Bearer {api_token}"}).get_json()
    assert body["period_hours"] == 24
    assert body["samples"] == 24
    assert body["trend"] == "increasing"
    assert body["peak_utilization"] == 12.5
    assert body["current_utilization"] == 0.0
    assert len(body["data_points"]) == 25 and body["data_points"][-1]["current"] is True
    assert {"timestamp", "utilization", "effective_utilization"} <= set(body["data_points"][0])
    assert set(body["effective"]) == {"current_utilization", "peak_utilization",
                                      "average_utilization", "trend"}


@pytest.mark.parametrize(("values", "direction"), [
    ([5, 5, 5, 5, 5], "stable"),
    ([1, 2, 3, 4, 5], "increasing"),
    ([5, 4, 3, 2, 1], "decreasing"),
    ([5, 5.05, 5, 5.05, 5], "stable"),   # noise below one bot's worth
    ([0.5, 0.5, 0.6, 0.6, 0.6], "stable"),  # +0.1 point: less than one bot of 999 here
    ([7], "stable"),
])
def test_trend_direction(values, direction):
    assert capacity.trend_direction(values, 100 / 999 * 2) == direction


@pytest.mark.parametrize("hours", ["0", "169", "abc", "-5", "2.5"])
def test_trend_hours_are_validated(client, api_token, hours):
    response = client.get(f"/api/v1/system/capacity/utilization-trend?hours={hours}",
                          headers={"Authorization": f"Bearer {api_token}"})
    assert response.status_code == 400
    assert "1 to 168" in response.get_json()["message"]


def test_seven_days_of_points_are_thinned_for_the_chart(app):
    for i in range(2016):  # one every 5 minutes for 7 days
        _sample(i / 12, 10.0)
    db.session.commit()
    trend = capacity.utilization_trend(168)
    assert trend["samples"] == 2016
    assert len(trend["data_points"]) <= capacity.MAX_TREND_POINTS
    assert trend["trend"] == "stable"


def test_record_capacity_keeps_seven_days(app):
    _sample(24 * 8, 5.0)
    _sample(24 * 6, 5.0)
    db.session.commit()
    data = capacity.record_capacity()
    assert data["alert"] == "ok"
    times = db.session.scalars(select(MetricSample.recorded_at).where(
        MetricSample.kind == "capacity")).all()
    assert len(times) == 2  # the 8-day-old one is gone, the new one is there
    assert min(times) > utcnow() - timedelta(days=7)


def test_record_capacity_alerts_once(app, make_strategy, monkeypatch):
    monkeypatch.setattr(capacity, "host_memory", lambda: {
        "total": 4 * capacity.GB, "available": 0, "percent": 99.0, "cgroup_limited": False})
    make_strategy(port=None)
    assert capacity.record_capacity()["alert"] == "critical"
    assert capacity.record_capacity()["alert"] == "critical"
    assert db.session.scalar(select(func.count(Alert.id)).where(Alert.kind == "capacity")) == 1
    time.sleep(0)  # keep the imports honest


def test_other_hosts_add_their_room_and_local_ones_are_not_counted_twice(app, monkeypatch):
    from app.runtime import hosts

    bot = 330 * 1024 * 1024
    monkeypatch.setattr(capacity, "host_memory", lambda: {
        "total": 8 * capacity.GB, "available": 4 * bot, "percent": 50.0,
        "cgroup_limited": False})
    for host, free in (("10.0.0.5", 10 * bot), ("127.0.0.2", 4 * bot)):  # remote, this machine
        hosts.write_heartbeat(redis_store.client, hosts.HostInfo(
            host=host, pid=1, free_memory=free, total_memory=16 * capacity.GB, running=0,
            updated_at=time.time()))
    snap = capacity.snapshot()
    assert snap.fit["by_memory"] == 4
    assert snap.fit["here"] == 4
    assert snap.remote_hosts == [{"host": "10.0.0.5", "free_memory": 10 * bot,
                                  "total_memory": 16 * capacity.GB, "running": 0,
                                  "bots_that_fit": 10, "limited_by": "memory"}]
    assert snap.fit["total"] == 14 and snap.fit["limited_by"] == "memory"
    assert snap.port_pool["total_ports"] == 2000  # one range per live supervisor host


def test_memory_is_walked_for_a_share_of_the_bots_each_time_and_cpu_every_time(
        app, make_strategy, memory_hogs):
    """Four bots: the first measurement walks all four; each next one walks the stalest
    quarter (one) and reuses the others' memory; a bot with another process is walked at once."""
    hog = memory_hogs[0]
    ids = [make_strategy(pid=hog.pid, port=None).id for _ in range(4)]
    bot_usage.measure_bots()
    first = bot_usage.stored_usage(ids)
    assert {f["memory_pss"] > 60 * 2**20 for f in first.values()} == {True}
    walked_at = {sid: f["memory_at"] for sid, f in first.items()}
    seen_walked = set()
    for _ in range(4):
        time.sleep(0.01)
        bot_usage.measure_bots()
        now = bot_usage.stored_usage(ids)
        walked = {sid for sid, f in now.items() if f["memory_at"] != walked_at[sid]}
        assert len(walked) == 1, now
        assert all(f["measured_at"] >= f["memory_at"] for f in now.values())
        seen_walked |= walked
        walked_at = {sid: f["memory_at"] for sid, f in now.items()}
    assert seen_walked == set(ids)  # the stalest first: every bot once in four

    other = db.session.get(Strategy, ids[0])
    other.pid = memory_hogs[1].pid
    db.session.commit()
    bot_usage.measure_bots()
    figures = bot_usage.stored_usage([ids[0]])[ids[0]]
    assert figures["pid"] == memory_hogs[1].pid and figures["memory_at"] != walked_at[ids[0]]
    assert figures["memory_pss"] < 60 * 2**20  # the 40 MB process, not the 80 MB one
