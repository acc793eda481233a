"""Real RQ workers for tests: `flask worker notifications` in a process group of its own, and
a wait that sees other processes' commits."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from app.extensions import db

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


class WorkerProcess:
    """`flask worker notifications` in its own process group (it runs jobs in-process)."""

    def __init__(self, env: dict[str, str], log_path: Path):
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    def start(self) -> WorkerProcess:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(  # noqa: S603
                [str(BIN / "flask"), "--app", "app", "worker", "notifications"],
                cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def kill(self) -> None:
        """SIGKILL the worker and anything it started, at once."""
        if self.proc and self.proc.poll() is None:
            family = psutil.Process(self.proc.pid).children(recursive=True)
            os.killpg(self.proc.pid, signal.SIGKILL)
            for child in family:
                try:
                    child.kill()
                except psutil.NoSuchProcess:
                    pass
            self.proc.wait(10)
            psutil.wait_procs(family, timeout=10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]


def wait_for(predicate, timeout: float, what: str, worker: WorkerProcess | None = None):
    """The predicate's first truthy value, re-read from the database every 0.1 s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        db.session.rollback()  # see the other process's commits
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}" +
                         (f"\nworker log:\n{worker.log()}" if worker else ""))
