"""The map of the house (.importlinter) holds, and it can fail."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _lint(tree: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=tree, capture_output=True,
                          text=True, env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
                          timeout=120)


def _lint_with(tmp_path: Path, module: str, line: str) -> subprocess.CompletedProcess:
    """lint-imports on a copy of the tree where `module` (a path under app/) ends with `line`."""
    for name in ("app", "config"):
        shutil.copytree(ROOT / name, tmp_path / name,
                        ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / ".importlinter", tmp_path / ".importlinter")
    with (tmp_path / "app" / module).open("a") as fh:
        fh.write(f"\n{line}  # noqa: E402,F401\n")
    return _lint(tmp_path)


def test_the_import_contracts_are_kept():
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_a_service_importing_a_routes_module_breaks_the_contract(tmp_path):
    result = _lint_with(tmp_path, "signals/service.py", "import app.signals.routes")
    assert result.returncode != 0
    assert "app.signals.service is not allowed to import app.signals.routes" in result.stdout


def test_a_model_importing_a_service_breaks_the_contract(tmp_path):
    result = _lint_with(tmp_path, "signals/models.py", "import app.strategies.service")
    assert result.returncode != 0
    assert "Foundations import no domain logic BROKEN" in result.stdout


def test_importing_the_supervisor_loads_no_web_layer():
    code = ("import sys, app.runtime.supervisor; "
            "print(sorted(m for m in sys.modules if m.endswith('.routes')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True, timeout=60).stdout.strip()
    assert out == "[]"
