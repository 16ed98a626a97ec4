"""The zero-change guarantee holds after every stage and after a reboot (issue 10).

Scheduled redeploys (docs/runbooks/schedule.md) are only quiet, and their "changed" only means
drift, if a deploy changes nothing on a host in any state a previous run could have left. A run
can stop after any stage (killed, failed, an interrupted first deploy), and hosts reboot. So on a
fresh lab host of its own, for N = 1 .. the number of stages in deploy.py: deploy its first N
stages (tests/lab/deploy_prefix.py runs deploy.py's own code cut after the Nth stage call; the
stages are read from deploy.py, never listed here), then the same prefix again, which must change
nothing. Then the whole deploy.py twice (the second changes nothing), a reboot, and the first
deploy after it must change nothing either.

The host uses a shared emulated AWS (named after the host): a host's own moto sidecar is recreated empty at
a reboot, so its first deploy after one re-creates the bucket and the SSM parameter, which is
lab state, not the host's. The shared one outlives the reboot as real AWS would.

The steps share the host and run in file order; each prints its runs' totals and seconds.
"""

from __future__ import annotations

import os

import pytest

from lab import api
from lab.converge import deploy
from tests.lab.stages import ENV, stages
from tests.lab.test_deploy import wait_healthy

pytestmark = pytest.mark.lab

# GITEA_LAB_ZERO_HOST names another host (and shared AWS), to run this module beside a suite.
HOST = os.environ.get("GITEA_LAB_ZERO_HOST") or "gitea-lab-zero"
AWS = HOST.removeprefix("gitea-lab-")  # the shared emulated AWS: container gitea-lab-aws-<that>
PREFIX = "tests/lab/deploy_prefix.py"
STAGES = stages()  # deploy.py's, in order
SEEN: dict[str, list[str]] = {}  # what the runs did, for the steps after them


@pytest.fixture(scope="module")
def lab_host(lab_engine, tmp_path_factory):
    api.down([HOST])  # a stale host of an interrupted run
    api.aws_down(AWS)
    api.up([HOST], aws=AWS)
    # Pebble makes a new root at every reboot and the deploy keeps its certificate: the served
    # chain verifies against the root current when it was issued, the one of now.
    ca = tmp_path_factory.mktemp("ca") / "issuing-root.pem"
    ca.write_text(api.pebble_root(HOST))
    yield {"name": HOST, "ca": str(ca)}
    api.down([HOST])
    api.aws_down(AWS)


def changed_ops(result: dict) -> list[str]:
    return [op["name"] for op in result.get("operations", []) if op["success"]]


def stage_of(op_name: str) -> str | None:
    """The deploy.py stage an op belongs to: pyinfra names it "<@deploy name> | <op name>"."""
    return next((s.name for s in STAGES if op_name.startswith(f"{s.deploy_name} | ")), None)


def run(label: str, n: int | None = None) -> dict:
    """Deploy deploy.py's first n stages (None: deploy.py itself); it must succeed."""
    result = deploy(HOST) if n is None else deploy(HOST, deploy_file=PREFIX, env={ENV: str(n)})
    totals = result["totals"]
    print(f"{label}: {totals.get('success')} changed, {totals.get('no_change')} unchanged, "
          f"{totals.get('error')} failed in {result['seconds']:.1f} s")
    assert result["returncode"] == 0, result["log"][-5000:]
    assert totals["error"] == 0, result["log"][-5000:]
    return result


@pytest.mark.parametrize("n", range(1, len(STAGES) + 1), ids=[f"{i}-{s.name}" for i, s in enumerate(STAGES, 1)])
def test_zero_changes_after_each_stage(lab_host, n):
    stage = STAGES[n - 1]
    first = run(f"stages 1..{n} (to {stage.name}), first run", n)
    names = [op["name"] for op in first["operations"]]
    # The prefix ran exactly stages 1..n: every op is one of theirs, each of them has ops.
    assert {stage_of(name) for name in names} == {s.name for s in STAGES[:n]}, names
    # What the stages before did is settled (their last run changed nothing): only stage n changes.
    assert all(stage_of(name) == stage.name for name in changed_ops(first)), changed_ops(first)
    if n == len(STAGES):
        SEEN["all stages"] = names

    again = run(f"stages 1..{n} (to {stage.name}), second run", n)
    assert again["totals"]["success"] == 0, f"after stage {n} ({stage.name}): {changed_ops(again)}"
    assert [op["name"] for op in again["operations"]] == names


def test_zero_changes_for_the_whole_deploy(lab_host):
    first = run("deploy.py, first run")
    names = [op["name"] for op in first["operations"]]
    # The last prefix was deploy.py: the same operations, and it left nothing to change.
    assert "all stages" in SEEN, "the prefix with every stage did not run (run the whole module)"
    assert names == SEEN["all stages"], "tests/lab/deploy_prefix.py with every stage is not deploy.py"
    assert first["totals"]["success"] == 0, changed_ops(first)
    again = run("deploy.py, second run")
    assert again["totals"]["success"] == 0, changed_ops(again)
    assert wait_healthy(api.state()["hosts"][HOST]["ip"], lab_host["ca"], seconds=60) >= 0


def started() -> dict[str, str]:
    """When the host's init and each container of the stack started (a reboot restarts them all)."""
    script = ("echo init $(cut -d' ' -f22 /proc/1/stat); "
              "docker inspect -f '{{.Name}} {{.State.StartedAt}}' $(docker ps -aq --filter label=com.docker.compose.project=gitea)")
    return dict(line.split(" ", 1) for line in api.exec(HOST, script, check=True).stdout.splitlines())


def test_zero_changes_after_a_reboot(lab_host):
    """The first deploy after a reboot, once the host serves again (what the reboot left, not a
    deploy racing the boot), changes nothing."""
    before = started()
    api.reboot(HOST)
    seconds = wait_healthy(api.state()["hosts"][HOST]["ip"], lab_host["ca"])
    print(f"healthy {seconds:.0f} s after the reboot")
    after = started()
    assert after.keys() == before.keys() and len(before) >= 2, (before, after)
    assert all(after[key] != before[key] for key in before), f"not restarted by the reboot: {before} {after}"
    result = run("deploy.py, first run after the reboot")
    assert result["totals"]["success"] == 0, f"after a reboot: {changed_ops(result)}"
