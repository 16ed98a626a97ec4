"""A no-op redeploy stays within its budget of remote commands (issue 10), so a later change
cannot quietly bring the cost back: one batched look per resource family (tasks/snapshot.py),
an op's own facts only where its resource differs.

Counted from pyinfra's own `--debug` log, which names every remote command and upload; the
breakdown by fact says where they went when the budget is exceeded. Times are not asserted
(tests/bench/converge.py measures them).
"""

from __future__ import annotations

import pytest

from lab.converge import deploy, facts_loaded, remote_commands

pytestmark = pytest.mark.lab

# Issue 10: at most 40 remote commands for the whole deploy; it needs 6 today (148 before).
BUDGET = 40


def test_noop_redeploy_stays_within_the_command_budget(converged_host):
    result = deploy(converged_host["name"], "--debug")
    assert result["returncode"] == 0, result["log"][-4000:]
    changed = [op["name"] for op in result["operations"] if op["success"]]
    assert result["totals"]["success"] == 0, changed
    commands = remote_commands(result["log"])
    facts = facts_loaded(result["log"])
    print(f"no-op redeploy: {result['totals']['hosts']} operations, {commands} remote commands, "
          f"{result['seconds']:.1f} s; facts: {facts}")
    assert commands <= BUDGET, f"{commands} remote commands (budget {BUDGET}); facts gathered: {facts}"
    # Each family is looked at once when nothing changed (a second look means a check that
    # misses its resource and falls back to the op's own facts, or a look invalidated for nothing).
    for family in ("tasks.snapshot.ManagedPaths", "tasks.snapshot.Units", "deb.DebPackages",
                   "tasks.common.AppliedConfigs", "tasks.snapshot.Concurrently"):
        assert facts.get(family) == 1, (family, facts)
