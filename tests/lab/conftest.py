"""Lab tests need a Docker engine; `make test` starts one. Without it they skip, saying why."""

import os
import shutil
import subprocess

import pytest

from tests.conftest import skip_because


@pytest.fixture(scope="session")
def lab_engine():
    if not shutil.which("docker"):
        skip_because("no docker client on PATH (make test installs docker.io)")
    from lab import api

    try:
        api.engine()
    except (RuntimeError, subprocess.SubprocessError, OSError) as error:
        skip_because(f"no Docker engine could be started: {error}")
    return api


# One converged lab host for the modules that only need a deployed, healthy host and change
# nothing the others look at (mail, read-only checks), or redeploy what they broke (test_drift).
# Brought up and deployed once per session, on first use, and removed at the end; modules that
# reboot, break for good or destroy their host keep their own (test_deploy, test_backup,
# test_prod_inventory). GITEA_LAB_SHARED_HOST names another host, so a developer's run of these
# modules never takes over the host of a suite running beside it.
SHARED_HOST = os.environ.get("GITEA_LAB_SHARED_HOST") or "gitea-lab-shared"


@pytest.fixture(scope="session")
def converged_host(lab_engine):
    from lab import api
    from lab.converge import deploy

    api.down([SHARED_HOST])  # a stale host from an interrupted run
    api.up([SHARED_HOST])
    result = deploy(SHARED_HOST)
    if result["returncode"] != 0 or result["totals"]["error"]:
        api.down([SHARED_HOST])
        pytest.fail(f"{SHARED_HOST}: the deploy failed\n{result['log'][-4000:]}")
    yield {"name": SHARED_HOST, **api.state()["hosts"][SHARED_HOST]}
    api.down([SHARED_HOST])


# One lab host for the alerting modules (test_alert_delivery, test_alert_faults): each deploys it
# with the receivers it reads, so neither needs a fresh one. Removed at the end of the session.
ALERT_HOST = os.environ.get("GITEA_LAB_ALERT_HOST") or "gitea-lab-alerts"


@pytest.fixture(scope="session")
def alert_host(lab_engine):
    from lab import api

    api.down([ALERT_HOST])  # a stale host from an interrupted run
    api.up([ALERT_HOST])
    yield ALERT_HOST
    api.down([ALERT_HOST])
