"""Image updates end to end (issue 12), on a lab host of its own whose registry holds stand-in
tags of one minor line and the next (lab/config.py STANDIN_GITEA_TAGS): N 1.27.3, N+1 1.27.4,
N+2 1.27.5 (migrates its database, then fails its health check), 1.28.0.

In file order, sharing the host:
  1. deployed on N with seeded data (a user, a repository with history);
  2. the operator's pin change to N+1 goes through gitea-update: a pre-update snapshot, data
     intact, users see at most a short pause (measured from outside, through nginx);
  3. a PostgreSQL major change is refused before anything changes;
  4. the update window's run (`gitea-update auto`) takes N+2, the newest of the line and never
     1.28.0: it fails, the stack is back on N+1 with the database as before the attempt (N+1
     refuses a database N+2 migrated, so this proves the restore), GiteaUpdateFailed reaches the
     webhook;
  5. the next scheduled redeploy changes nothing (also with the failed release pinned);
  6. the operator's minor upgrade (pin 1.28.0) takes the same sequence; a pin back to 1.27 is then
     a downgrade, refused before anything changes;
  7. no container, volume or image is left over beyond the previous one.
Figures are printed (tests/bench/updates.py collects them).
"""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from lab import api, registry
from lab.converge import deploy, root_ca_file
from tests.lab import alert_support as support
from tests.lab import stack_support as stack
from tests.lab.stack_support import COMPOSE, ok
from tests.lab.test_deploy import healthz

pytestmark = pytest.mark.lab

NAME = os.environ.get("GITEA_LAB_UPDATES_HOST") or "gitea-lab-updates"
# In the window all day: the test runs `gitea-update auto` itself (the timer's unit runs the same).
ALWAYS = "* 00:00-23:59"
FIGURES: dict[str, float] = {}
TAGS = registry.gitea_references()
N, N1, N2, NEXT_MINOR = (TAGS[t] for t in ("1.27.3", "1.27.4", "1.27.5", "1.28.0"))


def sh(script: str, **kw) -> subprocess.CompletedProcess:
    return stack.sh(NAME, script, **kw)


def deploy_with(*data: str) -> dict:
    """The deploy with the test's webhook as the alert receiver, the window always open, and `data`."""
    values = (f"alert_webhook_urls={json.dumps([f'http://127.0.0.1:{support.HOOK_PORT}/hook'])}",
              f"update_window={ALWAYS}", *data)
    return deploy(NAME, *[arg for value in values for arg in ("--data", value)])


def running() -> dict[str, str]:
    return stack.running(NAME)


def seeded() -> str:
    return stack.seeded(NAME)


def state() -> dict:
    return json.loads(sh("gitea-update status").stdout)


@pytest.fixture(scope="module")
def host(lab_engine):
    api.down([NAME])  # a stale host from an interrupted run
    api.up([NAME])
    support.start_receiver(NAME)
    started = time.monotonic()
    ok(deploy_with(f"gitea_image={N}"))
    FIGURES["first deploy (s)"] = time.monotonic() - started
    yield NAME
    for key, value in FIGURES.items():
        if not key.startswith("_"):
            print(f"updates: {key}: {value:.1f}")
    support.stop_receiver(NAME)
    api.down([NAME])


def test_seed_on_n(host):
    FIGURES["_seed"] = stack.seed(NAME)  # type: ignore[assignment]
    assert running()["gitea"] == N


def pre_update_snapshots() -> list[str]:
    return [s["id"] for s in json.loads(sh("gitea-backup restic local snapshots --json --tag pre-update").stdout)]


def test_a_pin_change_goes_through_the_update_sequence(host):
    before = pre_update_snapshots()
    with stack.Poller(NAME) as poll:
        result = deploy_with(f"gitea_image={N1}")
    ok(result)
    assert "Update the stack to" in result["log"] and "Start the stack" not in result["log"]
    assert running()["gitea"] == N1
    last = state()["last"]
    assert last["outcome"] == "ok" and last["to"]["gitea"] == N1 and last["from"]["gitea"] == N
    assert len(set(pre_update_snapshots()) - set(before)) == 1
    assert seeded() == FIGURES["_seed"]
    FIGURES["pin update N -> N+1 (s)"] = last["seconds"]
    FIGURES["users' pause during the patch update (s)"] = poll.longest


def refused(data: str, message: str) -> None:
    """The deploy with `data` stops with `message` before any operation, and the stack is unchanged."""
    before = (running(), sh("sha256sum /srv/gitea/compose.yaml").stdout)
    result = deploy_with(*data.split("\n"))
    assert result["returncode"] != 0, result["totals"]
    assert message in result["log"] and "Nothing was changed" in result["log"], result["log"][-3000:]
    assert not result["totals"].get("success"), result["totals"]
    assert (running(), sh("sha256sum /srv/gitea/compose.yaml").stdout) == before


def test_a_postgres_major_change_is_refused(host):
    refused(f"gitea_image={N1}\npostgres_image=127.0.0.1:5000/lab/postgres:18",
            "is PostgreSQL 18, but the data in /srv/gitea/postgres is PostgreSQL 17")


def test_the_host_lists_the_registrys_tags_page_by_page(host):
    """Against the lab's real registry (CNCF Distribution), one tag a page: every tag, by its Link
    headers, as the window's run asks for them."""
    out = sh("cd /usr/local/lib/gitea-deploy && python3 -c 'import json, sys, gitea_registry as r; "
             "print(json.dumps(r.list_tags(r.parse_reference(sys.argv[1]), page_size=1)))' " + N).stdout
    assert set(TAGS) <= set(json.loads(out)), out


def test_the_window_takes_the_newest_patch_and_rolls_back_its_failure(host):
    started = time.monotonic()
    cp = sh("gitea-update auto", check=False)
    FIGURES["failing update to healthy on the previous version (s)"] = time.monotonic() - started
    assert cp.returncode != 0
    last = state()["last"]
    assert last["outcome"] == "rolled-back", last
    assert last["to"]["gitea"] == N2 and last["restored_snapshot"], last  # the newest of 1.27, never 1.28
    assert running()["gitea"] == N1
    assert NEXT_MINOR not in json.dumps(state())
    # N+1 starts only on a database N+2 did not migrate: the restore put it back.
    assert sh(f"{COMPOSE} exec -T gitea gitea doctor check").returncode == 0
    assert seeded() == FIGURES["_seed"]
    assert healthz(api.state()["hosts"][NAME]["ip"], str(root_ca_file(NAME))) == "pass"
    metrics = sh("cat /var/lib/prometheus/node-exporter/gitea_update.prom").stdout
    assert "gitea_deploy_update_last_failed 1.000" in metrics


def test_the_failure_reaches_the_webhook(host):
    started = time.monotonic()

    def firing():
        return [m for m in support.received(NAME, "/hook")
                if "GiteaUpdateFailed" in support.firing_names(m)]

    support.wait_for("GiteaUpdateFailed on the webhook", firing, timeout=420, interval=5)
    FIGURES["failed update to webhook (s)"] = time.monotonic() - started


def test_the_next_scheduled_redeploy_changes_nothing(host):
    result = deploy_with(f"gitea_image={N1}")
    ok(result)
    assert result["totals"].get("success", 0) == 0, result["totals"]
    # The pin of a failed release keeps the stack where it is, saying so.
    result = deploy_with(f"gitea_image={N2}")
    ok(result)
    assert result["totals"].get("success", 0) == 0, result["totals"]
    assert f"{N2} is not deployed: it failed its update on this host" in result["log"]


def test_a_minor_upgrade_is_the_operators_pin_and_the_same_sequence(host):
    result = deploy_with(f"gitea_image={NEXT_MINOR}")
    ok(result)
    assert "Update the stack to" in result["log"]
    assert running()["gitea"] == NEXT_MINOR and state()["last"]["outcome"] == "ok"
    assert seeded() == FIGURES["_seed"]


def test_a_downgrade_is_refused(host):
    refused(f"gitea_image={N1}", f"is older than {NEXT_MINOR}")


def test_no_container_volume_or_image_is_left_over(host):
    containers = sh("docker ps -a --format '{{.Names}}' | sort").stdout.split()
    assert containers == ["gitea-db-1", "gitea-gitea-1"], containers
    assert sh("docker volume ls -q").stdout.split() == []
    images = sorted(sh("docker images --format '{{.Repository}}:{{.Tag}}'").stdout.split())
    # The running one and the previous one; N (before the previous) and the failed N+2 are gone.
    assert images == sorted([N1, NEXT_MINOR, "127.0.0.1:5000/lab/postgres:17"]), images
