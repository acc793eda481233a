"""`flask monitoring …` commands."""

from __future__ import annotations

import json

from app.monitoring import capacity


def test_threshold_command_shows_and_sets(runner):
    assert runner.invoke(args=["monitoring", "threshold"]).output.strip() == "80"
    result = runner.invoke(args=["monitoring", "threshold", "72.5"])
    assert result.exit_code == 0 and "set to 72.5%" in result.output
    assert capacity.alert_threshold() == 72.5
    bad = runner.invoke(args=["monitoring", "threshold", "abc"])
    assert bad.exit_code != 0 and "must be a number from 0 to 100, got 'abc'" in bad.output


def test_capacity_command(runner, make_strategy):
    make_strategy(port=None)
    result = runner.invoke(args=["monitoring", "capacity", "--record"])
    assert result.exit_code == 0, result.output
    assert "1 of 999 running" in result.output and "more fit" in result.output
    data = json.loads(runner.invoke(args=["monitoring", "capacity", "--json"]).output)
    assert data["capacity"]["running_strategies"] == 1


def test_sweep_and_system_commands(runner, make_strategy, standin):
    make_strategy(port=standin().port)
    result = runner.invoke(args=["monitoring", "sweep"])
    assert result.exit_code == 0, result.output
    assert "1 bot in" in result.output and "1 healthy" in result.output
    assert "CPU" in runner.invoke(args=["monitoring", "system"]).output
