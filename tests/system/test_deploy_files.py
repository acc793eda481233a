"""Dockerfile, docker-compose.yml and nginx.conf: parsed and checked against the project.

Compose cannot run here (no Docker engine), so each service's command is resolved against the
code instead, and nginx checks its own config with `nginx -t`.
"""

from __future__ import annotations

import importlib
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from config import yaml_io

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml_io.load((ROOT / "docker-compose.yml").read_text())


def test_compose_has_every_service_and_volume(compose):
    services = compose["services"]
    for name in ("nginx", "web", "gateway", "supervisor", "worker", "cron", "postgres", "redis"):
        assert name in services, f"service {name} missing"
    assert services["postgres"]["image"].startswith("postgres:15")
    assert services["redis"]["image"].startswith("redis:7")
    assert {"btcw-data", "pg-data", "redis-data"} <= set(compose["volumes"])


def _check_command(argv: list[str], app) -> None:
    if argv[0] == "gunicorn":
        target = argv[-1]
        module, _, func = target.partition(":")
        assert func.endswith("()"), target
        assert (ROOT / f"{module}.py").exists()
        source = (ROOT / f"{module}.py").read_text()
        assert re.search(rf"^def {func[:-2]}\(", source, re.M), f"{target} not defined"
        assert "-k" in argv and argv[argv.index("-k") + 1] == "gevent"
        assert "--no-control-socket" in argv, "gunicorn's control socket is one shared path"
    elif argv[0] == "flask":
        ctx = app.cli.make_context("flask", [], resilient_parsing=True)
        group = app.cli.get_command(ctx, argv[1])
        assert group is not None, f"flask {argv[1]} does not exist"
        if len(argv) > 2 and hasattr(group, "get_command"):
            assert group.get_command(ctx, argv[2]) is not None, f"flask {' '.join(argv[1:3])}"
    else:
        raise AssertionError(f"unexpected command {argv}")


def test_every_service_command_exists(compose, app):
    built = [n for n, s in compose["services"].items() if "command" in s and "build" in s]
    assert set(built) >= {"web", "gateway", "supervisor", "worker", "cron", "migrate"}
    for name in built:
        _check_command(compose["services"][name]["command"], app)


def test_dockerfile_is_slim_non_root_gunicorn_gevent():
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim", text, re.M)
    user = re.search(r"^USER (\S+)", text, re.M)
    assert user and user.group(1) not in ("root", "0")
    assert "-k\", \"gevent\"" in text and "wsgi:web()" in text
    assert "\"--no-control-socket\"" in text


def test_every_gunicorn_the_project_starts_has_no_control_socket():
    """gunicorn >= 25.1 puts every instance's control socket at ~/.gunicorn/gunicorn.ctl, so
    two at once unlink each other's; everything that launches one passes gunicorn_flags()."""
    from app.system.stack import gunicorn_flags

    assert gunicorn_flags() == ["--no-control-socket"]
    launchers = []
    sources = [*ROOT.glob("app/**/*.py"), *ROOT.glob("tests/**/*.py"), *ROOT.glob("bench/*.py")]
    for path in sources:
        text = path.read_text()
        if re.search(r"BIN / \"gunicorn\"|\[\"gunicorn\"", text):
            launchers.append(path.relative_to(ROOT).as_posix())
            assert "gunicorn_flags()" in text, f"{launchers[-1]} starts gunicorn without it"
    assert {"app/system/stack.py", "tests/signals/webserver.py", "tests/gateway/test_gunicorn.py",
            "bench/gateway.py"} <= set(launchers)


def test_wsgi_patches_gevent_first():
    lines = [ln for ln in (ROOT / "wsgi.py").read_text().splitlines()
             if ln.strip() and not ln.startswith(("#", '"""')) and not ln[0].isspace()]
    code = [ln for ln in lines if ln.startswith(("from ", "import ", "monkey"))]
    assert code[0] == "from gevent import monkey" and code[1] == "monkey.patch_all()"


def test_nginx_config_is_valid_and_routes(tmp_path):
    text = (ROOT / "nginx" / "nginx.conf").read_text()
    assert re.search(r"location /api/ \{\s*proxy_pass http://web;", text)
    assert re.search(r"location /freqtrade/ \{\s*proxy_pass http://gateway/api/strategy/;", text)
    ws = re.search(r"location /ws \{(.*?)\}", text, re.S)
    assert ws and "Upgrade $http_upgrade" in ws.group(1)
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        pytest.fail("nginx is not installed (make test installs nginx-light)")
    local = text.replace("web:8000", "127.0.0.1:8000").replace("gateway:8080", "127.0.0.1:8080")
    local = local.replace("/app/static/", str(ROOT / "static") + "/")
    (tmp_path / "logs").mkdir()
    conf = tmp_path / "nginx.conf"
    conf.write_text("pid " + str(tmp_path / "nginx.pid") + ";\nerror_log "
                    + str(tmp_path / "logs" / "error.log") + ";\n" + local)
    result = subprocess.run([nginx, "-t", "-p", str(tmp_path), "-c", str(conf)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


def test_requirements_cover_the_fixed_stack():
    reqs = (ROOT / "requirements.txt").read_text().lower()
    for name in ("flask", "flask-sqlalchemy", "flask-migrate", "flask-sock", "htmx-flask",
                 "gunicorn", "gevent", "requests", "psutil", "rq", "redis", "freqtrade"):
        assert re.search(rf"^{re.escape(name)}\b", reqs, re.M), name
    importlib.import_module("htmx_flask")


def test_every_long_running_service_restarts_and_has_a_healthcheck(compose, app):
    for name, service in compose["services"].items():
        if name == "migrate":
            assert service["restart"] == "no"
            continue
        assert service["restart"] == "unless-stopped", name
        check = service.get("healthcheck", {}).get("test")
        if name == "nginx":
            continue
        assert check and check[0] in ("CMD", "CMD-SHELL"), name
        if check[1] == "flask":
            _check_command(check[1:], app)
    redis = compose["services"]["redis"]["command"]
    assert "--appendonly" in redis and "everysec" in redis  # queued jobs survive a restart


def test_the_health_command_exits_1_naming_the_failing_part(runner):
    result = runner.invoke(args=["monitoring", "health", "--part", "workers"])
    assert result.exit_code == 1 and "workers" in result.output and "error" in result.output
    result = runner.invoke(args=["monitoring", "health", "--part", "database", "--json"])
    assert result.exit_code == 0 and '"status": "ok"' in result.output
